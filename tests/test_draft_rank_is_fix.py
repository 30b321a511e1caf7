"""`benchmarks/draft_rank.py`'s is_fix: the same verdict as parsing both files, per draft."""

import importlib.util
import sys
from pathlib import Path

from greenpatch.agent.bench.inject import same_code

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "draft_rank.py"
spec = importlib.util.spec_from_file_location("draft_rank", SCRIPT)
draft_rank = importlib.util.module_from_spec(spec)
sys.modules["draft_rank"] = draft_rank  # its dataclasses look their module up
spec.loader.exec_module(draft_rank)

FIXED = '''def total(xs):
    """Sum of xs; "strings" and # marks between the two sites."""
    n = 0
    for x in xs:
        n += x
    label = "done"  # a comment
    kept = [label]
    kept.append(n)
    del kept
    return n if n > 0 else 0
'''


def _with(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


def test_is_fix_agrees_with_parsing_both_files():
    buggy = _with(FIXED, "n += x", "n -= x")
    drafts = [
        _with(buggy, "n -= x", "n += x"),  # the fix
        _with(buggy, "n -= x", "n += (x)"),  # the fix, other layout
        _with(buggy, "n > 0", "n >= 0"),  # another site: the bug stays, strings between
        _with(buggy, "n -= x", "n *= x"),  # the right site, the wrong fill
        _with(buggy, '"done"', '"dome"'),  # a change inside a string
        _with(buggy, "    n = 0\n", ""),  # a line fewer
        _with(buggy, "    del kept\n", "    del kept\n    m = 1\n"),  # a line more, far off
        _with(buggy, "n -= x", "n += (\n            x)"),  # the fix over two lines
    ]
    verdicts = [draft_rank.is_fix(d, FIXED) for d in drafts]
    assert verdicts == [same_code(d, FIXED) for d in drafts]
    assert verdicts == [True, True, False, False, False, False, False, True]


def test_each_run_of_differing_lines_is_judged_on_its_own():
    buggy = _with(FIXED, "n += x", "n -= x")
    draft = _with(buggy, "n > 0", "n >= 0")
    assert [a for a, _ in draft_rank._hunks(draft, FIXED)] == [
        "        n -= x", "    return n if n >= 0 else 0"]


def test_runs_are_found_when_a_draft_adds_a_line():
    buggy = _with(FIXED, "n += x", "n -= x")
    draft = _with(buggy, "    del kept\n", "    del kept\n    m = 1\n")
    assert draft_rank._hunks(draft, FIXED) == [
        ("        n -= x", "        n += x"), ("    m = 1", "")]
