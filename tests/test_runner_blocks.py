"""Changed lines mapped to function bodies or module level (tree-sitter)."""

from __future__ import annotations

from greenpatch.runner.blocks import classify, enclosing, functions

SOURCE = """\
import os

LIMIT = 3


@decorated
def top(x):
    y = x + 1

    def inner():
        return y

    return inner()


class Shape:
    sides = 4

    def area(self):
        return self.sides * 2

    def one(self): return 1
"""


def test_functions_have_body_lines_without_their_headers():
    found = {f.qualname: (f.body_start, f.body_end) for f in functions(SOURCE)}
    assert found["top"] == (8, 13)
    assert found["top.inner"] == (11, 11)
    assert found["Shape.area"] == (20, 20)
    # A one-line function shares its only line with the header: nothing runs only when called.
    assert "Shape.one" not in found


def test_enclosing_is_the_innermost_body():
    funcs = functions(SOURCE)
    assert enclosing(funcs, 11).qualname == "top.inner"
    # inner's `def` line runs whenever top runs.
    assert enclosing(funcs, 10).qualname == "top"
    assert enclosing(funcs, 3) is None  # constant
    assert enclosing(funcs, 6) is None  # decorator
    assert enclosing(funcs, 7) is None  # def line
    assert enclosing(funcs, 17) is None  # class body


def test_body_change_maps_to_its_function():
    change = classify(SOURCE, SOURCE.replace("self.sides * 2", "self.sides * 3"))
    assert [f.qualname for f in change.functions] == ["Shape.area"]
    assert change.module_level == ()


def test_module_level_changes_are_import_time():
    for old, new in [("LIMIT = 3", "LIMIT = 4"), ("sides = 4", "sides = 5"),
                     ("def top(x):", "def top(x=1):"), ("@decorated", "@other")]:  # fmt: skip
        change = classify(SOURCE, SOURCE.replace(old, new))
        assert change.module_level, old
        assert change.functions == ()


def test_inserted_line_in_a_body_maps_to_the_old_function():
    new = SOURCE.replace(
        "        return self.sides * 2\n", "        print()\n        return self.sides * 2\n"
    )
    change = classify(SOURCE, new)
    assert [f.qualname for f in change.functions] == ["Shape.area"]
    assert change.module_level == ()


def test_a_new_function_is_a_module_level_change():
    new = SOURCE + "\n\ndef extra():\n    return 2\n"
    change = classify(SOURCE, new)
    assert change.module_level
