"""agent.pipeline.localize: Ochiai + tracebacks + disbelief, on hand-built data and a real
coverage run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import coverage
from greenpatch.agent.pipeline.localize import is_protected, ochiai, rank_lines

NEVER_EDIT = ["tests/**", "test_*.py", "*_test.py", "**/conftest.py"]


def test_ochiai_formula() -> None:
    assert ochiai(0, 5, 3) == 0.0
    assert ochiai(2, 0, 0) == 0.0
    assert ochiai(2, 0, 2) == 1.0
    assert math.isclose(ochiai(1, 3, 2), 1 / math.sqrt(2 * 4))


def test_is_protected_globs() -> None:
    assert is_protected("tests/test_x.py", NEVER_EDIT)
    assert is_protected("tests/data/helper.py", NEVER_EDIT)
    assert is_protected("pkg/test_util.py", NEVER_EDIT)
    assert is_protected("pkg/sub/conftest.py", NEVER_EDIT)
    assert is_protected("conftest.py", NEVER_EDIT)
    assert is_protected("./tests/a.py", NEVER_EDIT)
    assert is_protected("vendor/x/y.py", ["vendor/"])
    assert not is_protected("pkg/contest.py", NEVER_EDIT)
    assert not is_protected("pkg/tests_util.py", NEVER_EDIT)
    assert not is_protected("src/tests.py", NEVER_EDIT)
    assert not is_protected("pkg/mod.py", [])


def hand_coverage() -> dict[str, dict[str, set[int]]]:
    return {
        "tests/test_m.py::test_fail_a": {"m.py": {1, 2, 3, 7}, "tests/test_m.py": {10, 11}},
        "tests/test_m.py::test_fail_b": {"m.py": {1, 2, 3, 5}, "tests/test_m.py": {20}},
        "tests/test_m.py::test_pass_a": {"m.py": {1, 2, 5}},
        "tests/test_m.py::test_pass_b": {"m.py": {1, 4}},
    }


def test_ochiai_ranking_on_hand_built_coverage() -> None:
    failing = {"tests/test_m.py::test_fail_a", "tests/test_m.py::test_fail_b"}
    passing = {"tests/test_m.py::test_pass_a", "tests/test_m.py::test_pass_b"}
    ranked = rank_lines(hand_coverage(), failing, passing, never_edit=NEVER_EDIT)
    assert [(s.path, s.line) for s in ranked] == [
        ("m.py", 3),  # both failures, no pass: 1.0
        ("m.py", 2),  # 2 / sqrt(2 * 3)
        ("m.py", 1),  # 2 / sqrt(2 * 4)
        ("m.py", 7),  # 1 / sqrt(2 * 1)
        ("m.py", 5),  # 1 / sqrt(2 * 2)
    ]
    assert ranked[0].ochiai == 1.0 and ranked[0].score == 1.0
    assert math.isclose(ranked[1].ochiai, 2 / math.sqrt(6))
    assert all(not s.in_traceback and s.disbelief == 0.0 for s in ranked)
    assert all(s.path == "m.py" for s in ranked)  # test files never ranked
    assert ("m.py", 4) not in {(s.path, s.line) for s in ranked}  # only passing tests ran it


def test_traceback_boost_prefers_the_deepest_project_frame() -> None:
    # Two lines with identical spectra; the failure crashed in line 7 called from line 3.
    cov = {
        "t.py::test_f": {"m.py": {3, 7, 8}},
        "t.py::test_p": {"m.py": {3, 7, 8}},
    }
    frames = {"t.py::test_f": [("t.py", 5), ("m.py", 3), ("m.py", 7), ("/usr/lib/python3/x.py", 9)]}
    ranked = rank_lines(cov, {"t.py::test_f"}, {"t.py::test_p"}, frames, never_edit=["t.py"])
    assert [(s.line, s.in_traceback) for s in ranked] == [(7, True), (3, True), (8, False)]
    assert math.isclose(ranked[0].score - ranked[2].score, 0.3)  # deepest project frame
    assert math.isclose(ranked[1].score - ranked[2].score, 0.15)  # one frame further out


def test_traceback_lines_count_as_executed_even_without_coverage() -> None:
    frames = {"t.py::test_f": [("t.py", 5), ("m.py", 12)]}
    ranked = rank_lines({}, {"t.py::test_f"}, set(), frames, never_edit=["t.py"])
    assert [(s.path, s.line, s.ochiai, s.in_traceback) for s in ranked] == [("m.py", 12, 1.0, True)]


def test_disbelief_breaks_ties_but_does_not_override_ochiai() -> None:
    cov = {"a::f": {"m.py": {1, 2, 3}}, "a::p": {"m.py": {1, 2}}}
    ranked = rank_lines(cov, {"a::f"}, {"a::p"}, disbelief={("m.py", 1): 0.9, ("m.py", 3): 5.0})
    assert [s.line for s in ranked] == [3, 1, 2]
    assert ranked[0].disbelief == 1.0  # clipped
    assert math.isclose(ranked[1].score, ranked[1].ochiai + 0.09)


def test_ties_are_deterministic_and_limit() -> None:
    cov = {"a::f": {"b.py": {5, 1}, "a.py": {9}}}
    first = rank_lines(cov, ["a::f"], [])
    assert [(s.path, s.line) for s in first] == [("a.py", 9), ("b.py", 1), ("b.py", 5)]
    assert rank_lines(cov, ["a::f"], [], limit=2) == first[:2]
    assert rank_lines(cov, [], ["a::f"]) == []


PLUGIN = """
import json, os
import coverage
import pytest

_cov = coverage.Coverage(data_file=os.environ["GP_COV_DATA"], source=["mylib"])
_outcomes = {}

def pytest_configure(config):
    _cov.start()

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _cov.switch_context(item.nodeid)
    yield
    _cov.switch_context("")

def pytest_runtest_makereport(item, call):
    if call.when != "call":
        return
    frames = []
    if call.excinfo is not None:
        root = str(item.config.rootpath) + os.sep
        for entry in call.excinfo.traceback:
            path = str(entry.path)
            frames.append([path[len(root):] if path.startswith(root) else path, entry.lineno + 1])
    _outcomes[item.nodeid] = {"failed": call.excinfo is not None, "frames": frames}

def pytest_unconfigure(config):
    _cov.stop()
    _cov.save()
    with open(os.environ["GP_OUTCOMES"], "w") as f:
        json.dump(_outcomes, f)
"""

STATS = """
def mean(xs):
    total = 0
    for x in xs:
        total += x
    return total / len(xs)


def clamp(x, lo, hi):
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


def median(xs):
    s = sorted(xs)
    n = len(s)
    mid = n // 2
    if n % 2 == 1:
        return s[mid]
    return (s[mid + 1] + s[mid]) / 2


def spread(xs):
    return max(xs) - min(xs)
"""

TESTS = """
from mylib.stats import clamp, mean, median, spread


def test_mean():
    assert mean([1, 2, 3]) == 2


def test_clamp():
    assert clamp(5, 0, 3) == 3
    assert clamp(-1, 0, 3) == 0
    assert clamp(2, 0, 3) == 2


def test_median_odd():
    assert median([3, 1, 2]) == 2


def test_median_single():
    assert median([4]) == 4


def test_median_even():
    assert median([4, 1, 3, 2]) == 2.5


def test_median_pair():
    assert median([1, 3]) == 2


def test_spread():
    assert spread([1, 5, 2]) == 4
"""


def run_project_with_coverage(root: Path) -> tuple[dict, dict]:
    (root / "mylib").mkdir()
    (root / "mylib" / "__init__.py").write_text("")
    (root / "mylib" / "stats.py").write_text(textwrap.dedent(STATS).lstrip())
    (root / "tests").mkdir()
    (root / "tests" / "test_stats.py").write_text(textwrap.dedent(TESTS).lstrip())
    plugin_dir = root.parent / "plugin"
    plugin_dir.mkdir()
    (plugin_dir / "gp_cov.py").write_text(PLUGIN)
    env = {
        **os.environ,
        "PYTHONPATH": f"{plugin_dir}{os.pathsep}{root}",
        "GP_COV_DATA": str(root.parent / "cov.data"),
        "GP_OUTCOMES": str(root.parent / "outcomes.json"),
    }
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "gp_cov", "-p", "no:cacheprovider", "tests"],
        cwd=root,
        env=env,
        capture_output=True,
        timeout=120,
    )
    data = coverage.CoverageData(basename=env["GP_COV_DATA"])
    data.read()
    per_test: dict[str, dict[str, set[int]]] = {}
    for measured in data.measured_files():
        rel = Path(measured).resolve().relative_to(root.resolve()).as_posix()
        for line, contexts in data.contexts_by_lineno(measured).items():
            for context in contexts:
                if context:
                    per_test.setdefault(context, {}).setdefault(rel, set()).add(line)
    outcomes = json.loads(Path(env["GP_OUTCOMES"]).read_text())
    return per_test, outcomes


def test_buggy_line_ranks_top_on_a_real_project(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    per_test, outcomes = run_project_with_coverage(root)
    failing = {t for t, o in outcomes.items() if o["failed"]}
    passing = set(outcomes) - failing
    assert failing == {
        "tests/test_stats.py::test_median_even",
        "tests/test_stats.py::test_median_pair",
    }
    frames = {t: [tuple(f) for f in outcomes[t]["frames"]] for t in failing}
    buggy = (
        "mylib/stats.py",
        1 + STATS.lstrip().splitlines().index("    return (s[mid + 1] + s[mid]) / 2"),
    )
    # The pair test crashes with IndexError inside the buggy line itself.
    assert buggy in frames["tests/test_stats.py::test_median_pair"]

    ranked = rank_lines(per_test, failing, passing, frames, never_edit=NEVER_EDIT)
    top = [(s.path, s.line) for s in ranked[:3]]
    assert top[0] == buggy
    assert ranked[0].in_traceback and ranked[0].ochiai == 1.0
    assert all(not s.path.startswith("tests/") for s in ranked)

    # Coverage alone (no traceback) still puts the buggy line in the top 3.
    plain = rank_lines(per_test, failing, passing, never_edit=NEVER_EDIT)
    assert buggy in [(s.path, s.line) for s in plain[:3]]
