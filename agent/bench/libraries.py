"""The libraries bugs are injected into: pinned sdists from PyPI, unpacked once into a cached
pristine git repository that every task is copied from."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from greenpatch.agent.errors import AgentError
from greenpatch.sandboxes import safegit
from greenpatch.sandboxes.cacheroot import cache_root

# Fixed identity and dates make every rebuilt commit hash reproducible.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "greenpatch-bench",
    "GIT_AUTHOR_EMAIL": "bench@greenpatch.invalid",
    "GIT_COMMITTER_NAME": "greenpatch-bench",
    "GIT_COMMITTER_EMAIL": "bench@greenpatch.invalid",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00+00:00",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00+00:00",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}
GITIGNORE = "__pycache__/\n*.pyc\n.pytest_cache/\n"


@dataclass(frozen=True)
class Library:
    """One pinned library: where its code and tests live, and the pytest config the task repo
    gets so that a plain `python -m pytest` in its root runs the suite against the local code."""

    name: str
    version: str
    licence: str
    sha256: str
    top: str  # the sdist's top-level folder
    modules: tuple[str, ...]  # files bugs are injected into, relative to the repo root
    tests: tuple[str, ...]  # test paths (files or folders) of the full suite
    pytest_ini: str  # written to pytest.ini in the pristine commit

    @property
    def sdist(self) -> str:
        return f"{self.top}.tar.gz"

    def relevant_tests(self, module: str) -> list[str]:
        """Test files named after `module` (cheap first pass); the full suite if there are none."""
        stem = Path(module).stem
        found = []
        for test_path in self.tests:
            folder = Path(test_path)
            if folder.suffix == ".py":
                continue
            found += sorted(
                str(folder / p.name) for p in (self.source_root / folder).glob(f"test_{stem}*.py")
            )
        return found or list(self.tests)

    @property
    def source_root(self) -> Path:
        return pristine_repo(self)


def _ini(pythonpath: str, testpaths: str, extra: str = "") -> str:
    return f"[pytest]\npythonpath = {pythonpath}\ntestpaths = {testpaths}\n{extra}"


LIBRARIES: dict[str, Library] = {
    lib.name: lib
    for lib in (
        Library(
            name="more-itertools",
            version="10.5.0",
            licence="MIT",
            sha256="5482bfef7849c25dc3c6dd53a6173ae4795da2a41a80faea6700d9f5846c5da6",
            top="more-itertools-10.5.0",
            modules=("more_itertools/more.py", "more_itertools/recipes.py"),
            tests=("tests",),
            pytest_ini=_ini(".", "tests"),
        ),
        Library(
            name="toolz",
            version="1.0.0",
            licence="BSD-3-Clause",
            sha256="2c86e3d9a04798ac556793bced838816296a2f085017664e4995cb40a1047a02",
            top="toolz-1.0.0",
            modules=("toolz/itertoolz.py", "toolz/functoolz.py", "toolz/dicttoolz.py"),
            tests=("toolz/tests",),
            pytest_ini=_ini(".", "toolz/tests"),
        ),
        Library(
            name="cachetools",
            version="5.5.0",
            licence="MIT",
            sha256="2cc24fb4cbe39633fb7badd9db9ca6295d766d9c2995f245725a46715d050f2a",
            top="cachetools-5.5.0",
            modules=("src/cachetools/__init__.py", "src/cachetools/func.py"),
            tests=("tests",),
            pytest_ini=_ini("src", "tests"),
        ),
        Library(
            name="boltons",
            version="24.1.0",
            licence="BSD-3-Clause",
            sha256="4a49b7d57ee055b83a458c8682a2a6f199d263a8aa517098bda9bab813554b87",
            top="boltons-24.1.0",
            modules=(
                "boltons/iterutils.py",
                "boltons/strutils.py",
                "boltons/dictutils.py",
                "boltons/setutils.py",
                "boltons/listutils.py",
                "boltons/mathutils.py",
                "boltons/queueutils.py",
            ),
            tests=("tests",),
            # Its conftest uses a hook signature pytest 8 removed (it only skips _py2 files), and
            # test_iter_find_files str.lstrip()s a path, so it passes or fails by folder name.
            pytest_ini=_ini(
                ".",
                "tests",
                "addopts = --noconftest\n"
                "    --deselect tests/test_fileutils.py::test_iter_find_files\n"
                "doctest_optionflags = NORMALIZE_WHITESPACE IGNORE_EXCEPTION_DETAIL ELLIPSIS "
                "ALLOW_UNICODE\n",
            ),
        ),
    )
}


def get_library(name: str) -> Library:
    try:
        return LIBRARIES[name]
    except KeyError:
        known = ", ".join(LIBRARIES)
        raise AgentError(f"unknown bench library '{name}' (known: {known})") from None


def git(repo: Path, *args: str) -> str:
    # The library's files are not ours: git runs without hooks, filters or secrets (safegit).
    env = {**safegit.environment(repo), **GIT_ENV}
    proc = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        raise AgentError(f"git {args[0]} failed in {repo}: {proc.stderr.strip()}")
    return proc.stdout


def fetch_sdist(lib: Library) -> Path:
    """The library's sdist, downloaded with pip once and checked against its pinned sha256."""
    folder = cache_root() / "sdists"
    path = folder / lib.sdist
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
        proc = subprocess.run(
            [*cmd, f"{lib.name}=={lib.version}", "-d", str(folder)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0 or not path.exists():
            raise AgentError(f"cannot download {lib.name}=={lib.version} from PyPI")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != lib.sha256:
        raise AgentError(f"{path} has sha256 {digest}, expected {lib.sha256}")
    return path


def pristine_repo(lib: Library) -> Path:
    """A cached git repo of the unpacked sdist with one commit, "pristine". Built once, atomically
    (unpacked into a temporary folder, then renamed), so parallel callers never see half a tree."""
    target = cache_root() / "trees" / lib.top
    if (target / ".git").is_dir():
        return target
    sdist = fetch_sdist(lib)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{lib.top}-", dir=target.parent))
    try:
        with tarfile.open(sdist) as tar:
            tar.extractall(staging, filter="data")
        tree = staging / lib.top
        (tree / "pytest.ini").write_text(lib.pytest_ini)
        (tree / ".gitignore").write_text(GITIGNORE)
        git(tree, "init", "-q", "-b", "main")
        git(tree, "add", "-A")
        git(tree, "commit", "-q", "-m", "pristine")
        try:
            tree.rename(target)
        except OSError:
            if not (target / ".git").is_dir():  # lost a race with another builder: fine
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
