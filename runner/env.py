"""The target project's interpreter: does it exist, what is installed, and a hash of all that.

The interpreter may be the repository's own (its config names it), so it is only ever run inside
the chosen sandbox, never on the host.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from greenpatch.runner.errors import RunnerError
from greenpatch.sandboxes import Backend, SandboxError
from greenpatch.sandboxes.interpreter import python_paths
from greenpatch.sandboxes.oneshot import run_once

_PROBE = r"""
import json, sys, sysconfig, importlib.util
from importlib import metadata
dists = metadata.distributions()
pkgs = sorted({(d.metadata["Name"] or "").lower(): d.version for d in dists}.items())
print(json.dumps({
    "executable": sys.executable,
    "tag": sys.implementation.cache_tag,
    "platform": sysconfig.get_platform(),
    "soabi": sysconfig.get_config_var("SOABI") or "",
    "version": sys.version,
    "prefix": sys.prefix,
    "base_prefix": sys.base_prefix,
    "purelib": sysconfig.get_paths()["purelib"],
    "platlib": sysconfig.get_paths()["platlib"],
    "packages": pkgs,
    "has": {m: importlib.util.find_spec(m) is not None for m in ("pytest", "coverage")},
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
    has_coverage: bool
    tag: str  # "cpython-311": what compiled extensions must be built for
    platform: str
    soabi: str
    hash: str
    pytest_version: str = ""

    def readonly_paths(self) -> tuple[Path, ...]:
        """Host paths a sandboxed worker must be able to read to run this interpreter."""
        paths = {self.prefix, self.base_prefix, *self.site_dirs}
        return tuple(sorted(p for p in paths if p.exists()))


_probed: dict[tuple[str, str, int], PythonEnv] = {}


def probe(python: str, backend: Backend) -> PythonEnv:
    """Inspect `python` (a path or a name on PATH) by running it inside `backend`'s sandbox;
    RunnerError if it cannot run or lacks pytest. Remembered per interpreter file and backend."""
    exe = python if os.sep in python else shutil.which(python)
    if not exe or not os.path.isfile(exe):
        raise RunnerError(f"python interpreter not found: {python}")
    if not os.access(exe, os.X_OK):
        raise RunnerError(f"python interpreter is not executable: {python}")
    exe = os.path.abspath(exe)
    key = (exe, backend.name, os.stat(exe).st_mtime_ns)
    if key not in _probed:
        _probed[key] = _probe(exe, backend)
    return _probed[key]


def _probe(exe: str, backend: Backend) -> PythonEnv:
    python = exe
    try:
        status, out, reason = run_once(
            backend, [exe, "-I", "-c", _PROBE], readonly=python_paths(exe), timeout=60
        )
    except SandboxError as exc:
        raise RunnerError(f"cannot run python interpreter {python}: {exc}") from None
    if reason == "timeout":
        raise RunnerError(f"python interpreter {python} did not answer within 60 s")
    try:
        info = json.loads(out.decode("utf-8", "replace").strip().splitlines()[-1])
        packages = tuple((str(n), str(v)) for n, v in info["packages"])
        has = {k: bool(v) for k, v in info["has"].items()}
    except (ValueError, IndexError, KeyError, TypeError, AttributeError):
        raise RunnerError(f"{python} is not a working Python 3 interpreter") from None
    if status != 0:
        raise RunnerError(f"{python} is not a working Python 3 interpreter")
    if not has.get("pytest"):
        raise RunnerError(f"pytest is not installed for {python} (pip install pytest)")
    digest = hashlib.sha256(
        json.dumps([os.path.realpath(exe), info["version"], packages]).encode()
    ).hexdigest()[:16]
    versions = dict(packages)
    return PythonEnv(
        # The path we were given, not what the sandbox reports: the host never trusts that.
        python=exe,
        version=str(info["version"]).split()[0],
        prefix=Path(str(info["prefix"])),
        base_prefix=Path(str(info["base_prefix"])),
        site_dirs=tuple({Path(str(info["purelib"])), Path(str(info["platlib"]))}),
        packages=packages,
        has_pytest=True,
        has_coverage=has.get("coverage", False),
        tag=str(info.get("tag", "")),
        platform=str(info.get("platform", "")),
        soabi=str(info.get("soabi", "")),
        hash=digest,
        pytest_version=versions.get("pytest", ""),
    )


def source_path(root: Path) -> str:
    """PYTHONPATH for running a project's tests from `root`: its src/ layout first, then root.

    Put first so that the tree under test wins over an installed (or editable) copy elsewhere.
    """
    parts = [str(root / "src")] if (root / "src").is_dir() else []
    return os.pathsep.join([*parts, str(root)])
