"""Which host directories a Python interpreter needs to run: its prefixes and site-packages."""

from __future__ import annotations

import functools
import json
import os
import subprocess
from pathlib import Path

_PROBE = (
    "import json, site, sys; print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix, "
    "sys.base_exec_prefix, *site.getsitepackages()]))"
)


@functools.lru_cache(maxsize=32)
def python_paths(executable: str) -> tuple[Path, ...]:
    """Directories to bind read-only so `executable` works in a sandbox (empty if not a Python).

    Cached per executable: a probe costs one interpreter start.
    """
    if not Path(executable).name.startswith("python"):
        return ()
    try:
        out = subprocess.run(
            [executable, "-I", "-c", _PROBE], capture_output=True, check=True, timeout=30
        ).stdout
        dirs = json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError):
        return ()
    real = Path(os.path.realpath(executable)).parent
    return minimal_roots([Path(d) for d in dirs] + [real])


def minimal_roots(paths: list[Path]) -> tuple[Path, ...]:
    """Existing paths with those inside another one dropped, sorted."""
    existing = sorted({Path(os.path.realpath(p)) for p in paths if os.path.exists(p)})
    roots: list[Path] = []
    for path in existing:
        if not any(path.is_relative_to(root) for root in roots):
            roots.append(path)
    return tuple(roots)
