"""A project pytest itself runs on (pluggy, iniconfig...): its tests must see one copy of it,
the candidate's, as plain pytest does; a warm worker would hold pytest's own copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import iniconfig
from greenpatch.runner.baseline import BaselineOptions, build_baseline
from greenpatch.runner.pool import Job, Pool

from tests.conftest import make_repo
from tests.runner_support import PYTHON

ONE_COPY = (
    "import iniconfig\n"
    "from _pytest.config import findpaths\n\n\n"
    "def test_one_copy():\n"
    "    assert findpaths.iniconfig is iniconfig\n\n\n"
    "def test_version():\n"
    "    assert iniconfig.VERSION_MARK == 'candidate'\n"
)


def project(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(Path(iniconfig.__file__).parent, repo / "iniconfig",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    init = repo / "iniconfig" / "__init__.py"
    init.write_text(init.read_text() + "\nVERSION_MARK = 'original'\n")
    return make_repo(repo, {"tests/test_copy.py": ONE_COPY})


def test_the_project_pytest_runs_on_is_imported_once_per_job(tmp_path):
    repo = project(tmp_path)
    baseline = build_baseline(repo, PYTHON, BaselineOptions(sandbox="bwrap", workers=1),
                              cache_dir=tmp_path / "cache")  # fmt: skip
    assert baseline.records["tests/test_copy.py::test_one_copy"].outcome == "passed"
    assert baseline.failing == ["tests/test_copy.py::test_version"]
    init = (repo / "iniconfig" / "__init__.py").read_text()
    candidate = {"iniconfig/__init__.py": init.replace("'original'", "'candidate'")}
    with Pool(repo, PYTHON, "bwrap", workers=1) as pool:
        done = pool.run(Job("c", candidate, ["tests/test_copy.py"], fail_fast=False))
    assert done.green, [(r.test_id, r.message[-200:]) for r in done.results]
