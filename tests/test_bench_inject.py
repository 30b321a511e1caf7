"""Bug injection: each tree-sitter operator proposes real, compiling, AST-changing mutants."""

from __future__ import annotations

import ast

import pytest
from greenpatch.agent.bench.inject import (
    KINDS,
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


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_proposes_compiling_mutants_inside_functions(kind: str) -> None:
    found = candidates(SOURCE, kind)
    assert found
    first_def = SOURCE.index(b"def f")
    for m in found:
        assert m.kind == kind
        assert SOURCE[m.start : m.end].decode() == m.original
        assert m.start >= first_def, "module-level code is never mutated"
        mutated = m.apply(SOURCE)
        assert mutated != SOURCE
        compile(mutated, "<m>", "exec")


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
