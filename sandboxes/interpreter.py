"""Which host directories a Python interpreter needs to run: its prefixes and site-packages."""

from __future__ import annotations

import functools
import os
from pathlib import Path


def _venv_home(bin_dir: Path) -> Path | None:
    """The base interpreter's directory named by a venv's pyvenv.cfg (`home = ...`), if any."""
    cfg = bin_dir.parent / "pyvenv.cfg"
    try:
        lines = cfg.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() == "home" and value.strip():
            return Path(value.strip())
    return None


@functools.lru_cache(maxsize=32)
def python_paths(executable: str) -> tuple[Path, ...]:
    """Directories to bind read-only so `executable` works in a sandbox (empty if not a Python).

    Read from the file system, never by running the interpreter: it may be the repository's own
    code, which runs only inside a sandbox. A venv brings its own directory and its base
    interpreter's prefix (from pyvenv.cfg); a plain interpreter its prefix (bin/..).
    """
    exe = Path(os.path.abspath(executable))
    if not exe.name.startswith("python") or not exe.exists():
        return ()
    dirs = [exe.parent.parent]
    home = _venv_home(exe.parent)
    if home is not None:
        dirs.append(Path(os.path.realpath(home)).parent)
    real = Path(os.path.realpath(exe))
    dirs += [real.parent, real.parent.parent]
    return minimal_roots([d for d in dirs if d != Path("/")])


def minimal_roots(paths: list[Path]) -> tuple[Path, ...]:
    """Existing paths with those inside another one dropped, sorted."""
    existing = sorted({Path(os.path.realpath(p)) for p in paths if os.path.exists(p)})
    roots: list[Path] = []
    for path in existing:
        if not any(path.is_relative_to(root) for root in roots):
            roots.append(path)
    return tuple(roots)
