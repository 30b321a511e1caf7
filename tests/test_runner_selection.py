"""Baseline (per-test coverage, flaky detection, storage) and affected-test selection, on a real
project run by real pytest."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
from greenpatch.runner.baseline import BaselineOptions, build_baseline
from greenpatch.runner.pool import Job, Pool
from greenpatch.runner.results import JobDone
from greenpatch.runner.selection import select_tests

from tests.runner_support import (
    ALL,
    AREA,
    PYTHON,
    RECT,
    SQUARE,
    UNIT,
    area_with,
    make_project,
)

# The flaky test keeps its state outside the worktree: only `process` lets it persist.
PROCESS = BaselineOptions(sandbox="process", workers=1)

BROKEN = "tests/test_broken.py::test_broken"
FLAKY = "tests/test_flaky.py::test_flaky"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("selection")
    marker = tmp / "flaky-ran-once"
    flaky = (
        "from pathlib import Path\n\n\ndef test_flaky():\n"
        f"    marker = Path({str(marker)!r})\n"
        "    first = not marker.exists()\n    marker.touch()\n    assert not first\n"
    )
    repo = make_project(
        tmp / "geometry",
        {
            "tests/test_broken.py": "def test_broken():\n    assert 1 == 2\n",
            "tests/test_flaky.py": flaky,
        },
    )
    start = time.monotonic()
    baseline = build_baseline(repo, PYTHON, PROCESS, cache_dir=tmp / "cache")
    return repo, tmp / "cache", baseline, time.monotonic() - start


def test_baseline_records_outcomes_flaky_and_failing(built):
    _, _, baseline, _ = built
    assert set(baseline.tests) == {*ALL, BROKEN, FLAKY}
    assert baseline.failing == [BROKEN]
    assert baseline.flaky == [FLAKY]
    assert set(baseline.passing) == set(ALL)
    record = baseline.records[BROKEN]
    assert "assert 1 == 2" in record.message
    assert ("tests/test_broken.py", 2) in record.frames


def test_baseline_has_per_test_lines(built):
    _, _, baseline, _ = built
    square = baseline.coverage(SQUARE)
    assert 5 in square["geometry/area.py"] and 9 not in square["geometry/area.py"]
    assert baseline.tests_covering("geometry/area.py", [9]) == {RECT}
    # Reading a constant executes no line of its module: only the import graph knows.
    assert baseline.tests_covering("geometry/units.py") == set()
    assert baseline.importers("geometry/units.py") == {UNIT}


def test_baseline_is_stored_and_reused(built):
    repo, cache, baseline, _ = built
    start = time.monotonic()
    again = build_baseline(repo, PYTHON, PROCESS, cache_dir=cache)
    assert time.monotonic() - start < 2.0
    assert again.path == baseline.path and again.tests == baseline.tests


def test_a_copy_of_the_same_code_shares_the_baseline(built, tmp_path):
    # Keyed by the commit's tree: another clone, another commit message, the same code.
    repo, cache, baseline, _ = built
    copy = tmp_path / "copy"
    shutil.copytree(repo, copy)
    subprocess.run(
        ["git", "-c", "user.name=o", "-c", "user.email=o@o", "commit", "-q", "--amend", "-m", "x"],
        cwd=copy, check=True,
    )  # fmt: skip
    assert _head(copy) != _head(repo)
    start = time.monotonic()
    shared = build_baseline(copy, PYTHON, PROCESS, cache_dir=cache)
    assert time.monotonic() - start < 2.0
    assert shared.path == baseline.path


def _head(repo) -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout


def test_a_function_body_change_selects_the_tests_that_ran_it(built):
    _, _, baseline, _ = built
    selection = select_tests(baseline, {"geometry/area.py": area_with("    return side**2\n")})
    assert selection.tests == [SQUARE]
    assert "square" in selection.reasons[SQUARE]
    assert selection.conservative is None


def test_a_module_level_change_selects_every_importer(built):
    _, _, baseline, _ = built
    selection = select_tests(baseline, {"geometry/area.py": AREA.replace("SCALE = 1", "SCALE = 2")})
    assert set(selection.tests) == {SQUARE, RECT}
    selection = select_tests(baseline, {"geometry/units.py": 'UNIT = "mm"\n'})
    assert selection.tests == [UNIT]


def test_unchanged_content_selects_nothing(built):
    _, _, baseline, _ = built
    assert select_tests(baseline, {"geometry/area.py": AREA}).tests == []


def test_a_test_module_changed_at_module_level_runs_the_whole_file(built):
    _, _, baseline, _ = built
    text = baseline.source("tests/test_area.py") + "\n\ndef test_new():\n    pass\n"
    selection = select_tests(baseline, {"tests/test_area.py": text})
    assert "tests/test_area.py" in selection.tests
    assert SQUARE not in selection.tests  # the whole file covers it


@pytest.mark.parametrize(
    ("path", "text", "why"),
    [
        ("tests/conftest.py", "import pytest\n", "conftest.py"),
        ("geometry/extra.py", "X = 1\n", "new file"),
        ("geometry/units.py", None, "deleted"),
        ("data/table.csv", "a,b\n", "not a Python file"),
    ],
)
def test_what_selection_cannot_reason_about_selects_everything(built, path, text, why):
    _, _, baseline, _ = built
    selection = select_tests(baseline, {path: text})
    assert set(baseline.tests) <= set(selection.tests)
    assert why in selection.conservative


def test_selection_catches_every_mutant_the_full_suite_catches(built):
    """Mutants of every line of area.py: caught by the whole suite => caught by the selection."""
    repo, _, baseline, _ = built
    lines = AREA.splitlines(keepends=True)
    mutants = {}
    for number, line in enumerate(lines):
        for old, new in (("*", "+"), ("1", "0"), ("side", "1")):
            if old in line:
                mutants[f"m{number}{old}"] = "".join(
                    [*lines[:number], line.replace(old, new, 1), *lines[number + 1 :]]
                )
    selections = {
        job_id: select_tests(baseline, {"geometry/area.py": text}).tests
        for job_id, text in mutants.items()
    }
    with Pool(repo, PYTHON, "process", workers=2) as pool:
        for job_id, text in mutants.items():
            files = {"geometry/area.py": text}
            pool.submit(Job(f"full-{job_id}", files, baseline.passing, fail_fast=False))
            if selections[job_id]:
                pool.submit(Job(f"sel-{job_id}", files, selections[job_id], fail_fast=True))
        caught = {e.job_id for e in pool.events() if isinstance(e, JobDone) and e.failed}
    full = {j for j in mutants if f"full-{j}" in caught}
    assert len(full) >= len(mutants) // 2
    assert {j for j in mutants if f"sel-{j}" in caught} == full
