"""The target project's interpreter: does it exist, what is installed, and a hash of all that."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from runner.errors import RunnerError

_PROBE = r"""
import json, sys, sysconfig, importlib.util
from importlib import metadata
dists = metadata.distributions()
pkgs = sorted({(d.metadata["Name"] or "").lower(): d.version for d in dists}.items())
print(json.dumps({
    "executable": sys.executable,
    "version": sys.version,
    "prefix": sys.prefix,
    "base_prefix": sys.base_prefix,
    "purelib": sysconfig.get_paths()["purelib"],
    "platlib": sysconfig.get_paths()["platlib"],
    "packages": pkgs,
    "has": {m: importlib.util.find_spec(m) is not None for m in ("pytest", "xdist", "coverage")},
}))
"""


@dataclass(frozen=True)
class PythonEnv:
    """What the runner needs to know about the interpreter that runs the target's tests."""

    python: str
    version: str
    prefix: Path
    base_prefix: Path
    site_dirs: tuple[Path, ...]
    packages: tuple[tuple[str, str], ...]
    has_pytest: bool
    has_xdist: bool
    has_coverage: bool
    hash: str

    def readonly_paths(self) -> tuple[Path, ...]:
        """Host paths a sandboxed worker must be able to read to run this interpreter."""
        paths = {self.prefix, self.base_prefix, *self.site_dirs, Path(self.python).resolve().parent}
        return tuple(sorted(p for p in paths if p.exists()))


@functools.lru_cache(maxsize=16)
def probe(python: str) -> PythonEnv:
    """Inspect `python` (a path or a name on PATH); RunnerError if it cannot run or lacks pytest."""
    exe = python if os.sep in python else shutil.which(python)
    if not exe or not os.path.isfile(exe):
        raise RunnerError(f"python interpreter not found: {python}")
    if not os.access(exe, os.X_OK):
        raise RunnerError(f"python interpreter is not executable: {python}")
    try:
        done = subprocess.run(
            [exe, "-I", "-c", _PROBE], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError as exc:
        raise RunnerError(f"cannot run python interpreter {python}: {exc.strerror}") from None
    except subprocess.TimeoutExpired:
        raise RunnerError(f"python interpreter {python} did not answer within 60 s") from None
    if done.returncode != 0:
        raise RunnerError(f"{python} is not a working Python 3 interpreter")
    try:
        info = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RunnerError(f"{python} is not a working Python 3 interpreter") from None
    if not info["has"]["pytest"]:
        raise RunnerError(f"pytest is not installed for {python} (pip install pytest)")
    packages = tuple(tuple(p) for p in info["packages"])
    digest = hashlib.sha256(
        json.dumps([os.path.realpath(info["executable"]), info["version"], packages]).encode()
    ).hexdigest()[:16]
    return PythonEnv(
        python=info["executable"],
        version=info["version"].split()[0],
        prefix=Path(info["prefix"]),
        base_prefix=Path(info["base_prefix"]),
        site_dirs=tuple({Path(info["purelib"]), Path(info["platlib"])}),
        packages=packages,
        has_pytest=True,
        has_xdist=info["has"]["xdist"],
        has_coverage=info["has"]["coverage"],
        hash=digest,
    )


def source_path(root: Path) -> str:
    """PYTHONPATH for running a project's tests from `root`: its src/ layout first, then root.

    Put first so that the tree under test wins over an installed (or editable) copy elsewhere.
    """
    parts = [str(root / "src")] if (root / "src").is_dir() else []
    return os.pathsep.join([*parts, str(root)])
