"""Our tools for the target's interpreter, never installed into the user's environment.

The per-test coverage of the baseline needs coverage.py in the interpreter that runs the tests. A
user's venv holds their dependencies, not ours, so coverage comes from a private overlay directory
built once per interpreter ABI under the cache and appended to the worker's `sys.path` (a copy the
project has of its own still wins). Built from our own installed copy when the target's Python is
the same version as ours (offline), else by `pip install --target` for the target's ABI; a built
overlay is reused offline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from importlib import metadata
from pathlib import Path

from greenpatch.runner.env import PythonEnv
from greenpatch.runner.errors import RunnerError

TOOLS = ("coverage",)


def overlay_dir(env: PythonEnv, cache_root: Path) -> Path:
    version = metadata.version("coverage")
    name = f"{env.tag or 'python'}-{env.platform or 'any'}-coverage{version}".replace("/", "_")
    return cache_root / "overlays" / name


def ensure_overlay(env: PythonEnv, cache_root: Path) -> Path:
    """The overlay directory for `env`, built if absent; RunnerError if it cannot be built."""
    target = overlay_dir(env, cache_root)
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    staging.chmod(0o755)  # read by the sandbox's own unprivileged uid
    try:
        if _same_abi(env):
            _copy_ours(staging)
        else:
            _pip_install(env, staging)
        (staging / ".complete").write_text("")
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / ".complete").exists():  # not a concurrent build that won
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _same_abi(env: PythonEnv) -> bool:
    return env.tag == sys.implementation.cache_tag and env.platform == sysconfig.get_platform()


def _copy_ours(staging: Path) -> None:
    for tool in TOOLS:
        dist = metadata.distribution(tool)
        for file in dist.files or ():
            source = Path(dist.locate_file(file))
            if ".." in file.parts or not source.is_file() or file.suffix == ".pth":
                continue
            dest = staging / file
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)


def _pip_install(env: PythonEnv, staging: Path) -> None:
    """Wheels for the target's version and platform, fetched by our pip (never the target's)."""
    major, minor = env.version.split(".")[:2]
    platform = env.platform.replace("-", "_").replace(".", "_")
    platforms = [platform]
    if platform.startswith("linux_"):
        arch = platform.removeprefix("linux_")
        platforms += [f"manylinux2014_{arch}", f"manylinux_2_17_{arch}", f"manylinux_2_28_{arch}"]
    pins = [f"{tool}=={metadata.version(tool)}" for tool in TOOLS]
    argv = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--no-deps", "--only-binary=:all:", "--target", str(staging),
        "--python-version", f"{major}.{minor}", "--implementation", "cp",
        *(a for p in platforms for a in ("--platform", p)), *pins,
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
        raise RunnerError(
            f"cannot fetch coverage.py for Python {major}.{minor} ({env.platform}) into "
            f"{staging.parent}: {lines[-1] if lines else 'pip failed'}"
        )
