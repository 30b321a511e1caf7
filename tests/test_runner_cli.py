"""`agent test` end to end: a real project, real git, real pytest, the process sandbox."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from tests.runner_support import AREA, RECT, SQUARE, make_project

# Each case starts the real CLI (and all its imports) in a subprocess.
pytestmark = pytest.mark.slow


def agent_test(repo: Path, cache: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, XDG_CACHE_HOME=str(cache))
    return subprocess.run(
        [sys.executable, "-m", "greenpatch.agent",
         "test", "--repo", str(repo), "--sandbox", "process",
         "--workers", "1", *args],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip


def one_error_line(done: subprocess.CompletedProcess, needle: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("cli") / "geometry")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def test_uncommitted_change_runs_the_affected_tests(project, cache, tmp_path):
    (project / "geometry/area.py").write_text(AREA.replace("side * side", "side + side"))
    try:
        done = agent_test(project, cache, "--json", "-", "--junit", str(tmp_path / "junit.xml"))
    finally:
        git(project, "checkout", "--", "geometry/area.py")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["selected"] == 1 and report["failed"] == 1 and report["passed"] == 0
    assert [(t["id"], t["outcome"]) for t in report["tests"]] == [(SQUARE, "failed")]
    assert "assert 6 == 9" in report["tests"][0]["message"]
    assert "FAILED" in done.stderr and SQUARE in done.stderr  # failures shown as they come
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite.get("tests") == "1" and suite.get("failures") == "1"


def test_a_patch_runs_its_affected_tests(project, cache, tmp_path):
    patch = tmp_path / "fix.patch"
    (project / "geometry/area.py").write_text(AREA.replace("width * height", "height * width"))
    patch.write_text(git(project, "diff"))
    git(project, "checkout", "--", "geometry/area.py")
    done = agent_test(project, cache, "--patch", str(patch), "--json", "-")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [(t["id"], t["outcome"]) for t in report["tests"]] == [(RECT, "passed")]
    assert (project / "geometry/area.py").read_text() == AREA  # the user's tree is untouched


def test_all_runs_everything_and_second_time_from_cache(project, cache):
    first = agent_test(project, cache, "--all", "--json", "-")
    second = agent_test(project, cache, "--all", "--json", "-")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    one, two = json.loads(first.stdout), json.loads(second.stdout)
    assert one["selected"] == two["selected"] == 4 and one["passed"] == two["passed"] == 4
    assert all(t["cached"] for t in two["tests"])


def test_a_patch_that_does_not_apply(project, cache, tmp_path):
    patch = tmp_path / "bad.patch"
    patch.write_text(
        "--- a/geometry/area.py\n+++ b/geometry/area.py\n@@ -1,1 +1,1 @@\n-NOT THERE\n+X = 1\n"
    )
    one_error_line(agent_test(project, cache, "--patch", str(patch)), "does not apply")


def test_not_a_pytest_project(tmp_path):
    repo = make_repo(tmp_path / "plain", {"README.md": "hi\n", "lib.py": "X = 1\n"})
    one_error_line(agent_test(repo, tmp_path / "cache", "--all"), "no tests found")


def test_collection_errors(tmp_path):
    repo = make_repo(tmp_path / "broken", {"tests/test_x.py": "def test_x(:\n    pass\n"})
    one_error_line(agent_test(repo, tmp_path / "cache", "--all"), "collection error")


def test_an_interpreter_that_does_not_exist(tmp_path):
    repo = make_project(
        tmp_path / "geometry",
        {"pyproject.toml": '[tool.greenpatch]\npython = "/nonexistent/bin/python"\n'},
    )
    one_error_line(agent_test(repo, tmp_path / "cache", "--all"), "interpreter not found")
