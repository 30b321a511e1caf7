"""Changed lines mapped to function bodies or module level (tree-sitter)."""

from __future__ import annotations

import difflib
import random

from greenpatch.runner.blocks import changed_lines, classify, enclosing, functions

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


def test_changed_lines_are_a_true_diff_and_no_wider_than_difflibs():
    # Random edits of files with many repeated lines (where alignments are ambiguous): every
    # line left out of the change must line up with its counterpart, and the change found
    # (shared head and tail set aside first) is never wider than difflib's over whole files.
    rng = random.Random(0)
    for _ in range(2000):
        a = [rng.choice("abcde") for _ in range(rng.randrange(12))]
        b = list(a)
        for _ in range(rng.randrange(1, 3)):
            i = rng.randrange(len(b) + 1)
            if rng.random() < 0.4 or not b:
                b.insert(i, rng.choice("abcdef"))
            elif rng.random() < 0.5:
                del b[min(i, len(b) - 1)]
            else:
                b[min(i, len(b) - 1)] = rng.choice("abcdef")
        old_lines, new_lines, _ = changed_lines("".join(x + "\n" for x in a),
                                                "".join(x + "\n" for x in b))
        kept_a = [x for i, x in enumerate(a, 1) if i not in set(old_lines)]
        kept_b = [x for i, x in enumerate(b, 1) if i not in set(new_lines)]
        assert kept_a == kept_b, (a, b)
        whole = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
        widest = sum(i2 - i1 + j2 - j1 for tag, i1, i2, j1, j2 in whole if tag != "equal")
        assert len(old_lines) + len(new_lines) <= widest, (a, b)


def test_one_changed_line_of_a_long_module_is_that_line():
    old = "".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(2000))
    new = old.replace("return x + 1234\n", "return x - 1234\n")
    assert changed_lines(old, new) == ([3 * 1234 + 2], [3 * 1234 + 2], [])


def test_functions_inside_compound_statements_and_unparsable_code_are_found():
    source = (
        "try:\n    import fast\nexcept ImportError:\n    def fast(x):\n        return x\n"
        "if True:\n    with open('f') as f:\n        for line in f:\n            def g():\n"
        "                return 1\n"
        "match command:\n    case 1:\n        def h():\n            return 2\n"
        "x = (\n"  # never closed: tree-sitter recovers what follows
        "def after():\n    return 3\n"
    )
    names = [f.qualname for f in functions(source)]
    assert names[:3] == ["fast", "g", "h"] and "after" in names
    # A caller's list is its own: the kept answer for this source is not changed through it.
    functions(source).clear()
    assert [f.qualname for f in functions(source)] == names
