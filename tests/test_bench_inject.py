"""Bug injection: each tree-sitter operator proposes real, compiling, AST-changing mutants."""

from __future__ import annotations

import ast

import pytest
from greenpatch.agent.bench.inject import (
    KINDS,
    ORIGINAL_KINDS,
    REAL_BUG_KINDS,
    Mutation,
    Validator,
    candidates,
    enclosing_function,
    same_code,
)

SOURCE = b"""LIMIT = 1 + 2


def f(a, b, items):
    total = 0
    if a < b and a is not None:
        total += a * 2
    for x in items:
        total = g(x, b)
    return total


class C:
    def __init__(self):
        self.x = 1
        self.y = 2

    def m(self):
        return self.x + 1

    def ok(self):
        return True
"""


def mutant(kind: str, original: str, buggy: str) -> Mutation:
    found = [m for m in candidates(SOURCE, kind) if (m.original, m.buggy) == (original, buggy)]
    assert found, [(m.original, m.buggy) for m in candidates(SOURCE, kind)]
    return found[0]


# Real-bug shapes: conditions, builtin wrappers, argument arithmetic, concatenation, loops.
SNIPPET = b"""LABEL = "n" + str(2)


def scan(items, limit, prefix):
    out = []
    i = 0
    while i < len(items) and items[i] is not None:
        item = items[i]
        if item > limit or not prefix:
            out.append(prefix + str(item))
        i += 1
    for item in items:
        total = max(limit, item)
        out.append(["x"] + out)
        shift(total - limit, key=item + 1, width=2 * limit)
    return len(out), out.count, items.index, "%d" % limit, prefix + limit


def other(node):
    while node:
        node = node.parent
    return node.left
"""


@pytest.mark.parametrize(("kind", "source", "first"), [
    *((kind, SOURCE, b"def f") for kind in ORIGINAL_KINDS),
    *((kind, SNIPPET, b"def scan") for kind in REAL_BUG_KINDS),
])
def test_every_kind_proposes_compiling_mutants_inside_functions(
    kind: str, source: bytes, first: bytes
) -> None:
    found = candidates(source, kind)
    assert found
    for m in found:
        assert m.kind == kind
        assert source[m.start : m.end].decode() == m.original
        assert m.start >= source.index(first), "module-level code is never mutated"
        mutated = m.apply(source)
        assert not same_code(mutated, source), "a mutant changes the AST"
        compile(mutated, "<m>", "exec")


def test_kinds_are_the_original_ones_then_the_real_bug_ones() -> None:
    assert KINDS == ORIGINAL_KINDS + REAL_BUG_KINDS
    assert not set(ORIGINAL_KINDS) & set(REAL_BUG_KINDS)


def test_original_kinds_propose_what_their_tasks_were_drawn_from() -> None:
    # Task ids hash these mutants (`Mutation.key`): the operators must keep proposing them,
    # in this order, or regenerating the benchmark would not give the frozen tasks.
    keys = {kind: [m.key for m in candidates(SOURCE, kind)] for kind in ORIGINAL_KINDS}
    assert keys == {
        "comparison": ["b6075fb2", "3ab57015"],
        "arithmetic": ["ee04a785", "34bdf4b3", "022364d7"],
        "boolean": ["3a7fc8db"],
        "off_by_one": ["c4e9ba16", "912a7e89", "9003ce75", "8de377fa", "68c8d09a"],
        "wrong_name": ["8252e594", "e7313d70", "8fe94791", "65394f9c", "d059ed9c", "c63c18f1",
                       "f1b962c5", "507aefd1"],
        "swapped_args": ["5b05d4af"],
        "negated_condition": ["d199a83e"],
        "deleted_statement": ["cb71160b", "09ad8d01", "b3d31d55"],
        "wrong_return": ["a21c0219", "55b9fddf", "63ffd21e"],
    }


def edits(kind: str) -> set[tuple[str, str]]:
    return {(m.original, m.buggy) for m in candidates(SNIPPET, kind)}


def test_conditions_are_made_more_specific() -> None:
    found = edits("more_specific_condition")
    # A disjunct dropped...
    assert ("item > limit or not prefix", "item > limit") in found
    assert ("item > limit or not prefix", "not prefix") in found
    # ... or a conjunct added, taken from another condition of the function, with parentheses
    # where `and` would bind into an `or`.
    added = {b for a, b in found if a == "item > limit or not prefix" and " and " in b}
    assert added == {"(item > limit or not prefix) and i < len(items)"}
    # Never an `and` dropped: that widens the condition.
    assert ("i < len(items) and items[i] is not None", "i < len(items)") not in found


def test_conditions_are_made_less_specific() -> None:
    found = edits("less_specific_condition")
    condition = "i < len(items) and items[i] is not None"
    assert (condition, "i < len(items)") in found
    assert (condition, "items[i] is not None") in found
    assert (condition, f"({condition}) or item > limit") in found
    assert ("item > limit or not prefix", "not prefix") not in found


def test_an_added_test_reads_a_name_the_condition_does_not() -> None:
    source = b"def f(n):\n    if n == 0:\n        return 1\n    if n == 1:\n        return 2\n"
    for kind in ("more_specific_condition", "less_specific_condition"):
        assert candidates(source, kind) == [], "no `n == 0 and n == 1`"


def test_a_builtin_wrapper_call_is_dropped_for_one_of_its_arguments() -> None:
    found = edits("missing_wrapper_call")
    assert {("max(limit, item)", "limit"), ("max(limit, item)", "item"),
            ("len(items)", "items"), ("str(item)", "item"), ("len(out)", "out")} == found
    assert all("shift" not in a for a, _ in found), "only builtins wrap"
    assert candidates(b"def f(x):\n    return sum(y for y in x)\n", "missing_wrapper_call") == []
    compound = candidates(b"def f(a, b):\n    return int(a + b) * 2\n", "missing_wrapper_call")
    assert [m.buggy for m in compound] == ["(a + b)"], "the argument keeps its precedence"


def test_an_argument_loses_an_arithmetic_operand() -> None:
    found = edits("changed_argument")
    assert {("total - limit", "total"), ("item + 1", "item"), ("2 * limit", "limit"),
            ("prefix + str(item)", "prefix")} == found
    # String formatting and sequence joins are no arithmetic.
    source = b"def f(x):\n    g('%d' % x, (1,) + x)\n"
    assert candidates(source, "changed_argument") == []


def test_a_concatenation_with_a_literal_has_its_operands_swapped() -> None:
    assert edits("swapped_concatenation") == {('["x"] + out', 'out + ["x"]')}
    # `prefix + limit` may add numbers: without a literal sequence it is left alone.
    chain = candidates(b"def f(a, b):\n    return a + 'x' + b\n", "swapped_concatenation")
    assert {m.buggy for m in chain} == {"b + a + 'x'", "'x' + a"}


def test_a_loop_loses_a_statement_but_not_its_progress() -> None:
    found = edits("missing_loop_statement")
    assert ("        item = items[i]\n", "") in found
    assert ("        total = max(limit, item)\n", "") in found
    assert any(a.startswith("        if item > limit") for a, _ in found), "compound too"
    assert all("i += 1" not in a for a, _ in found), "progress is missing_loop_progress"
    assert all("node = node.parent" not in a for a, _ in found)
    assert all("out = []" not in a for a, _ in found), "only statements of a loop body"


def test_a_while_loop_loses_its_progress() -> None:
    assert edits("missing_loop_progress") == {
        ("        i += 1\n", ""),
        ("        node = node.parent\n", "        pass\n"),  # a block's only statement
    }
    source = b"def f(stack):\n    while stack:\n        x = stack.pop()\n        g(x)\n"
    assert [m.original for m in candidates(source, "missing_loop_progress")] == [
        "        x = stack.pop()\n"]


def test_an_attribute_becomes_another_used_on_the_same_receiver() -> None:
    found = edits("wrong_attribute")
    # items.index has no other attribute on `items`: no candidate there.
    assert found == {("append", "count"), ("count", "append"), ("parent", "left"),
                     ("left", "parent")}
    assert candidates(SOURCE, "wrong_attribute") == [], "self's attributes are wrong_name's"


def test_operators_make_the_expected_edits() -> None:
    assert mutant("comparison", "<", "<=").apply(SOURCE).count(b"if a <= b and") == 1
    assert mutant("comparison", "is not", "is")
    assert mutant("arithmetic", "+=", "-=")
    assert mutant("arithmetic", "*", "//")
    assert mutant("boolean", "and", "or")
    assert mutant("swapped_args", "x, b", "b, x").apply(SOURCE).count(b"g(b, x)") == 1
    condition = "a < b and a is not None"
    negated = mutant("negated_condition", condition, f"not ({condition})")
    assert b"if not (a < b and a is not None):" in negated.apply(SOURCE)
    assert mutant("wrong_return", "total", "None")
    assert mutant("wrong_return", "True", "False")
    deleted = mutant("deleted_statement", "    total = 0\n", "")
    assert b"total = 0" not in deleted.apply(SOURCE)
    renamed = {m.buggy for m in candidates(SOURCE, "wrong_name") if m.original == "b"}
    assert renamed and renamed <= {"a", "items", "total", "x"}
    attributes = {m.buggy for m in candidates(SOURCE, "wrong_name") if m.original == "x"}
    assert "y" in attributes  # self.x read in m() becomes another attribute of self
    bumped = {m.buggy for m in candidates(SOURCE, "off_by_one") if m.original == "2"}
    assert bumped and bumped <= {"1", "3"}


def test_a_lone_statement_is_never_deleted() -> None:
    # `total += a * 2` is its block's only statement: deleting it would not parse.
    assert all("total +=" not in m.original for m in candidates(SOURCE, "deleted_statement"))


def test_validator_rejects_no_op_and_duplicate_mutants() -> None:
    validator = Validator(SOURCE)
    start = SOURCE.index(b"a * 2")
    spaced = Mutation("arithmetic", start, start + 5, "a * 2", "a  *  2")
    assert not validator.accept(spaced), "a whitespace change is no bug"
    swap = mutant("arithmetic", "*", "//")
    assert validator.accept(swap)
    same_module = Mutation(swap.kind, swap.start - 2, swap.end + 2, "a * 2", "a // 2")
    assert not validator.accept(same_module), "a duplicate module is one bug, not two"
    broken = Mutation("comparison", start, start + 5, "a * 2", "a * * 2")
    assert not validator.accept(broken)


def test_same_code_ignores_formatting_but_not_meaning() -> None:
    assert same_code(SOURCE, SOURCE.replace(b"total = 0", b"total = (0)  # start"))
    assert not same_code(SOURCE, mutant("comparison", "<", "<=").apply(SOURCE))
    assert not same_code(b"def (:", b"def (:")
    ast.parse(SOURCE)


def test_enclosing_function() -> None:
    offset = SOURCE.index(b"self.x + 1")
    name, first, last = enclosing_function(SOURCE, offset)
    assert name == "m"
    assert SOURCE.decode().splitlines()[first - 1].strip() == "def m(self):"
    assert last == first + 1
    assert enclosing_function(SOURCE, 3) is None
