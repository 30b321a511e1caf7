"""agent.pipeline.mutations: substitution fills for canvas sites, and that they can fix real
small bugs."""

from __future__ import annotations

import re
import warnings
from collections.abc import Collection

from greenpatch.agent.pipeline.mutations import (
    edit_fills,
    missing_names,
    substitution_fills,
    widen_fills,
)
from greenpatch.agent.pipeline.sites import Site, apply, parses, rank_sites, sites_for_line


def mutation_fills(source: str, site: Site, wanted: Collection[str] = ()) -> list[str]:
    """Every model-free fill of `site`, substitutions first (the drafter's own order)."""
    fills = substitution_fills(source, site) + edit_fills(source, site, wanted)
    return list(dict.fromkeys(fills + widen_fills(source, site)))


SRC = """\
LIMIT = 10


def count_valid(items, limit=3):
    count = 0
    for item in items:
        if item is not None and count < limit:
            count += 1
    return not is_done(count)


def is_done(n):
    return n in (LIMIT, None)
"""


def line_of(text: str) -> int:
    return next(i for i, ln in enumerate(SRC.splitlines(), 1) if text in ln)


def site(line_text: str, kind: str, original: str) -> Site:
    sites = sites_for_line("m.py", SRC, line_of(line_text))
    return next(s for s in sites if s.kind == kind and s.original_text == original)


def test_operator_swaps() -> None:
    cond = "if item is not None"
    assert mutation_fills(SRC, site(cond, "operator", "<")) == ["<=", ">", ">=", "==", "!="]
    assert mutation_fills(SRC, site(cond, "operator", "is not")) == ["is"]
    assert mutation_fills(SRC, site(cond, "operator", "and")) == ["or"]
    assert mutation_fills(SRC, site("count += 1", "operator", "+=")) == [
        "-=", "*=", "/=", "//=", "%=",
    ]  # fmt: skip
    assert mutation_fills(SRC, site("return n in", "operator", "in")) == ["not in"]
    assert mutation_fills(SRC, site("return not", "operator", "not")) == [""]


def test_constants() -> None:
    assert mutation_fills(SRC, site("count += 1", "token", "1")) == ["2", "0"]
    assert mutation_fills(SRC, site("count = 0", "token", "0")) == ["1", "-1"]
    assert mutation_fills(SRC, site("if item is not None", "token", "None")) == ["True", "False"]
    assert mutation_fills(SRC, site("limit=3", "token", "3")) == ["4", "2", "0", "1"]


def test_identifiers_come_from_the_function_nearest_first_then_the_file() -> None:
    fills = mutation_fills(SRC, site("count < limit", "token", "limit"))
    # the same line's names, then the function's by distance, then the rest by distance
    assert fills[:7] == ["count", "item", "items", "is_done", "count_valid", "n", "LIMIT"]
    assert "limit" not in fills


def test_an_attributes_name_is_replaced_by_attribute_names_first() -> None:
    src = "def merge(last, current):\n    return (last.start, max(last.end, current.start))\n"
    line = sites_for_line("m.py", src, 2)
    start = [s for s in line if s.kind == "token" and s.original_text == "start"][-1]
    assert substitution_fills(src, start)[0] == "end"
    # A name on the left of `+=` cannot become `not (...)`: every fill parses.
    lhs = site("count += 1", "token", "count")
    assert all(parses(apply(SRC, lhs, f)) for f in mutation_fills(SRC, lhs))
    assert not any(f.startswith("not") for f in mutation_fills(SRC, lhs))


def test_negating_conditions_and_expressions() -> None:
    line = site("if item is not None", "line", "if item is not None and count < limit:")
    assert mutation_fills(SRC, line) == ["if not (item is not None and count < limit):"]
    node = site("if item is not None", "node", "count < limit")
    assert mutation_fills(SRC, node) == ["not (count < limit)"]
    assert mutation_fills(SRC, site("return not", "node", "not is_done(count)")) == [
        "is_done(count)"
    ]
    # A call, a name or an attribute is negated without parentheses, as a person writes it.
    call = edit_fills(SRC, site("return not", "node", "is_done(count)"))
    assert call == ["not is_done(count)", "is_done(count) + 1", "is_done(count) - 1"]
    assert edit_fills(SRC, site("return n in", "token", "n"))[0] == "not n"


def test_a_negation_of_a_whole_condition_is_dropped_with_its_parentheses() -> None:
    src = ("def f(a, b):\n    if not (a and not b):\n        return 1\n"
           "    return 1 + (not (a or b))\n")
    cond = next(s for s in sites_for_line("m.py", src, 2)
                if s.kind == "node" and s.original_text == "not (a and not b)")
    assert edit_fills(src, cond)[0] == "a and not b"
    assert edit_fills(src, next(s for s in sites_for_line("m.py", src, 2) if s.kind == "line")
                      ) == ["if a and not b:"]
    # Inside a larger expression the parentheses stay (`1 + (a or b)`, not `1 + a or b`).
    part = next(s for s in sites_for_line("m.py", src, 4)
                if s.kind == "node" and s.original_text == "not (a or b)")
    assert edit_fills(src, part)[0] == "(a or b)"


def test_a_condition_loses_one_clause() -> None:
    # A condition made more specific than it should be (`if x is None and flag:`): PySStuBs'
    # "more specific if" is undone by keeping either clause.
    node = site("if item is not None", "node", "item is not None and count < limit")
    fills = edit_fills(SRC, node)
    assert fills[0] == "not (item is not None and count < limit)"
    assert {"item is not None", "count < limit"} <= set(fills)


def test_deleting_statements() -> None:
    assert mutation_fills(SRC, site("count = 0", "delete", "    count = 0\n")) == [""]
    # Alone in its block, the statement is replaced by `pass` so the file still parses.
    alone = site("count += 1", "delete", "            count += 1\n")
    assert mutation_fills(SRC, alone) == ["            pass\n"]


def test_inserted_lines_from_assignment_templates_and_deterministic_order() -> None:
    inserted = next(
        s for s in sites_for_line("m.py", SRC, line_of("count += 1")) if s.kind == "insert_after"
    )
    fills = mutation_fills(SRC, inserted)
    # Assignments to the function's own names, names of the site's line first, then jumps.
    assert fills and all(
        re.fullmatch(r"\w+ = \w+", f) or f in ("break", "continue", "return", "return None")
        for f in fills
    )
    # `return` and `return None` compile to the same program: one of them is kept.
    assert fills[-3:] == ["break", "continue", "return"]
    every = sites_for_line("m.py", SRC, line_of("if item is not None"))
    assert [mutation_fills(SRC, s) for s in every] == [mutation_fills(SRC, s) for s in every]


def first_fix(source: str, check) -> str | None:
    """Try every mutation of every line in ranked site order; the first source passing `check`."""
    for line in range(1, source.count("\n") + 1):
        for s in rank_sites(sites_for_line("m.py", source, line)):
            for fill in mutation_fills(source, s):
                candidate = apply(source, s, fill)
                namespace: dict = {}
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # e.g. `18[...]` is legal but silly
                        exec(compile(candidate, "m.py", "exec"), namespace)
                    if check(namespace):
                        return candidate
                except Exception:
                    continue
    return None


def test_mutations_fix_small_real_bugs() -> None:
    boundary = "def is_adult(age):\n    return age > 18\n"
    fixed = first_fix(boundary, lambda ns: ns["is_adult"](18) and not ns["is_adult"](17))
    assert fixed == "def is_adult(age):\n    return age >= 18\n"

    off_by_one = "def last(xs):\n    return xs[len(xs)]\n"
    fixed = first_fix(off_by_one, lambda ns: ns["last"]([1, 2, 3]) == 3)
    assert fixed == "def last(xs):\n    return xs[len(xs) - 1]\n"

    wrong_name = "def area(width, height):\n    return width * width\n"
    fixed = first_fix(wrong_name, lambda ns: ns["area"](2, 5) == 10)
    assert fixed == "def area(width, height):\n    return height * width\n"


EDITS = """\
def pick(value, kind):
    return isinstance(kind, value)


class Table(dict):
    def first(self, key):
        vals = self.get(key)
        return len(vals)

    def second(self, key):
        total = 0
        return len(vals) + total


def parse(lines):
    last = None
    for line in lines:
        if line.startswith(" ") and last is not None:
            continue
        key = line.strip()
    return None
"""


def edit_site(line_text: str, kind: str) -> Site:
    line = next(i for i, ln in enumerate(EDITS.splitlines(), 1) if line_text in ln)
    return next(s for s in sites_for_line("m.py", EDITS, line) if s.kind == kind)


def test_substitutions_are_the_baseline_and_edits_come_on_top() -> None:
    line = edit_site("return isinstance", "line")
    assert substitution_fills(EDITS, line) == []  # one-token substitutions only
    assert "return isinstance(value, kind)" in edit_fills(EDITS, line)  # swapped arguments
    assert "return isinstance(value, kind)" in mutation_fills(EDITS, line)


def test_a_missing_name_gets_the_statement_that_binds_it_elsewhere_first() -> None:
    inserted = edit_site("total = 0", "insert_after")
    fills = mutation_fills(EDITS, inserted, missing_names("NameError: name 'vals' is not defined"))
    assert fills[0] == "vals = self.get(key)"
    assert missing_names("UnboundLocalError: cannot access local variable 'x' where") == ["x"]


def test_a_sentinel_never_updated_is_the_first_assignment_target() -> None:
    inserted = edit_site("key = line.strip()", "insert_after")
    assert mutation_fills(EDITS, inserted)[0] == "last = key"


def test_a_returned_none_can_return_a_name_of_the_function() -> None:
    fills = edit_fills(EDITS, edit_site("return None", "line"))
    assert {"return lines", "return last", "return key"} <= set(fills)


def test_real_bug_shapes_no_inverse_operator_undoes_are_reached() -> None:
    # The simple-bug shapes of real projects (PySStuBs): swapped operands of a concatenation,
    # a missing wrapper call, a changed argument.
    prepend = "def prepend(key, path):\n    return path + (key,)\n"
    fixed = first_fix(prepend, lambda ns: ns["prepend"]("a", ("b",)) == ("a", "b"))
    assert fixed == "def prepend(key, path):\n    return (key,) + path\n"

    wrapper = "def size(items):\n    return items\n"
    fixed = first_fix(wrapper, lambda ns: ns["size"]([4, 5]) == 2)
    assert fixed == "def size(items):\n    return len(items)\n"

    argument = "def window(data, start, width):\n    return data[start:width]\n"
    fixed = first_fix(argument, lambda ns: ns["window"]("abcdef", 2, 3) == "cde")
    assert fixed == "def window(data, start, width):\n    return data[start:width + start]\n"


def test_widening_is_its_own_family_and_spares_callees() -> None:
    source = "def size(items):\n    return count(items)\n"
    sites = {s.original_text: s for s in sites_for_line("m.py", source, 2) if s.kind == "token"}
    assert "len(items)" not in edit_fills(source, sites["items"])
    fills = widen_fills(source, sites["items"])
    assert fills.index("len(items)") < fills.index("next(items, None)")
    assert not any(f.startswith("len(") for f in widen_fills(source, sites["count"]))
