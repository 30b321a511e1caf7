"""Chat replies read into whole-function candidates: code blocks, diffs, bare code, junk."""

from __future__ import annotations

from greenpatch.agent.pipeline.replies import enclosing_function, rewrites

SOURCE = '''import math


class Shape:
    def area(self, r):
        """Area of a circle."""
        return math.pi * r * 2

    def name(self):
        return "circle"
'''
FIXED_BODY = "return math.pi * r ** 2"


def _one(reply: str) -> list[str]:
    function = enclosing_function(SOURCE, 7)
    assert function is not None and function.name == "area"
    return rewrites(reply, SOURCE, function)


def test_a_fenced_block_replaces_the_method_at_its_indentation() -> None:
    reply = ("The bug is the exponent.\n\n```python\ndef area(self, r):\n"
             f'    """Area of a circle."""\n    {FIXED_BODY}\n```\nDone.')  # fmt: skip
    (new,) = _one(reply)
    assert new == SOURCE.replace("return math.pi * r * 2", FIXED_BODY)


def test_an_unterminated_block_and_bare_code_are_read() -> None:
    assert _one(f"```python\ndef area(self, r):\n    {FIXED_BODY}\n")
    assert _one(f"def area(self, r):\n    {FIXED_BODY}\n")


def test_a_unified_diff_with_wrong_line_numbers_applies_by_text() -> None:
    reply = ("```diff\n--- a/shape.py\n+++ b/shape.py\n@@ -70,3 +70,3 @@\n"
             '         """Area of a circle."""\n-        return math.pi * r * 2\n'
             f"+        {FIXED_BODY}\n \n```\n")  # fmt: skip
    (new,) = _one(reply)
    assert new == SOURCE.replace("return math.pi * r * 2", FIXED_BODY)


def test_junk_other_functions_and_no_ops_give_nothing() -> None:
    assert _one("I cannot help with that.") == []
    assert _one("```python\ndef other():\n    pass\n```") == []  # not the function asked for
    assert _one("```python\ndef area(self, r):\n    return (\n```") == []  # does not parse
    assert _one("```diff\n@@ -1 +1 @@\n-nothing like this\n+x\n```") == []  # hunk not found
    unchanged = SOURCE.split("    def area")[1].split("    def name")[0]
    assert _one(f"```python\n    def area{unchanged}```") == []  # the same code


def test_several_blocks_give_several_distinct_candidates() -> None:
    reply = (f"```python\ndef area(self, r):\n    {FIXED_BODY}\n```\nor\n"
             "```python\ndef area(self, r):\n    return math.pi * r * r\n```\n"
             f"```python\ndef area(self, r):\n    {FIXED_BODY}\n```")  # fmt: skip
    assert len(_one(reply)) == 2
