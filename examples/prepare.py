#!/usr/bin/env python3
"""Copy an example project into DEST as a fresh git repository with one commit.

    python examples/prepare.py NAME DEST

Prints DEST on success. Exit 2 with one line on stderr when NAME is not an example project or
DEST already holds files. Standard library only, so it runs under any Python 3.10+.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent
# Build and test leftovers from running a suite in place are not part of the project.
_IGNORE = shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.egg-info", "*.pyc", ".git")


def projects() -> list[str]:
    """Names of the example projects: folders with their own pyproject.toml."""
    return sorted(p.name for p in EXAMPLES.iterdir() if (p / "pyproject.toml").is_file())


def _git(dest: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=dest, check=True, capture_output=True, text=True)


def prepare(name: str, dest: Path) -> Path:
    """Copy project `name` to `dest`, `git init -b main` it and commit everything."""
    if name not in projects():
        raise ValueError(f"unknown example {name!r} (choose from: {', '.join(projects())})")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ValueError(f"destination {dest} exists and is not empty")
    shutil.copytree(EXAMPLES / name, dest, ignore=_IGNORE, dirs_exist_ok=True)
    _git(dest, "init", "-q", "-b", "main")
    _git(dest, "config", "user.name", "Example Maintainer")
    _git(dest, "config", "user.email", "maintainer@example.org")
    _git(dest, "config", "commit.gpgsign", "false")
    _git(dest, "add", "-A")
    _git(dest, "commit", "-q", "-m", "initial import")
    return dest


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python examples/prepare.py NAME DEST", file=sys.stderr)
        return 2
    try:
        dest = prepare(argv[0], Path(argv[1]).resolve())
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = (getattr(exc, "stderr", "") or str(exc)).strip().splitlines() or ["failed"]
        print(f"error: cannot prepare {argv[0]}: {detail[-1]}", file=sys.stderr)
        return 2
    print(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
