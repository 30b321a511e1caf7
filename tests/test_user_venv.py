"""A user's venv holds their dependencies, not ours: no coverage.py, no pytest-xdist. greenpatch
brings its own tools from a private overlay and leaves the venv byte for byte as it was."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from greenpatch.runner.pool import Job, Pool

from tests.conftest import make_repo

ROOT = Path(__file__).resolve().parent.parent
# What pytest needs at run time, copied from our environment into the user's.
PYTEST_DISTS = ("pytest", "_pytest", "pluggy", "iniconfig", "packaging", "pygments", "py.py")


def user_venv(path: Path) -> Path:
    """A real venv with pytest and nothing of ours."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    site = next(path.glob("lib/python3*/site-packages"))
    ours = Path(pytest.__file__).resolve().parent.parent
    for entry in ours.iterdir():
        if entry.name.split("-")[0] in PYTEST_DISTS:
            copy = shutil.copytree if entry.is_dir() else shutil.copy2
            copy(entry, site / entry.name)
    python = path / "bin" / "python"
    has = subprocess.run([str(python), "-c", "import coverage"], capture_output=True)
    assert has.returncode != 0, "the user's venv must not have coverage"
    return python


def digest(path: Path) -> str:
    """Every file's path, mode and bytes under `path` (symlinks by their target)."""
    h = hashlib.sha256()
    for item in sorted(path.rglob("*")):
        h.update(str(item.relative_to(path)).encode())
        if item.is_symlink():
            h.update(os.readlink(item).encode())
        elif item.is_file():
            h.update(oct(item.stat().st_mode).encode() + item.read_bytes())
    return h.hexdigest()


@pytest.mark.slow
def test_fix_with_a_venv_that_lacks_coverage_leaves_it_unchanged(tmp_path):
    python = user_venv(tmp_path / "venv")
    before = digest(tmp_path / "venv")
    repo = tmp_path / "stockroom"
    subprocess.run([sys.executable, str(ROOT / "examples/prepare.py"), "stockroom", str(repo)],
                   check=True, capture_output=True)  # fmt: skip
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", "greenpatch.agent",
         "fix", str(ROOT / "examples/tickets/stockroom.md"),
         "--repo", str(repo), "--python", str(python), "--drafter", "mutations",
         "--budget", "120", "--json", "-"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "green" and report["baseline_complete"]
    assert digest(tmp_path / "venv") == before
    overlays = list((tmp_path / "cache/greenpatch/overlays").iterdir())
    assert len(overlays) == 1 and (overlays[0] / "coverage").is_dir()


def test_coverage_missing_in_the_worker_is_a_tool_error_not_test_errors(tmp_path):
    # Without the overlay, the user's venv cannot measure coverage: that must stop the job as
    # our failure (and so never be cached as the project's outcomes), not error every test.
    python = user_venv(tmp_path / "venv")
    repo = make_repo(tmp_path / "repo", {"test_a.py": "def test_a():\n    pass\n"})
    with Pool(repo, str(python), "bwrap", workers=1) as pool:
        done = pool.run(Job("cov", {}, ["test_a.py::test_a"], fail_fast=False, coverage=True))
    assert done.reason == "tool error" and "coverage" in done.tool_error
    assert done.results == ()
