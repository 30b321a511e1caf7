"""The parts of the host filesystem every sandbox shows, read-only, at their host paths."""

from __future__ import annotations

import os
from pathlib import Path

from greenpatch.sandboxes.base import SandboxError

# Top-level system directories; on merged-/usr systems most are symlinks into /usr.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# /etc entries programs need (loader, users, time zone, certificates); not the rest of /etc,
# which can hold credentials (pip.conf, npmrc, docker, ssh).
ETC_FILES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "localtime",
    "timezone",
    "passwd",
    "group",
    "nsswitch.conf",
    "hosts",
    "ssl",
    "ca-certificates",
    "mime.types",
    "os-release",
    "locale.alias",
)


def system_links() -> dict[str, str]:
    """System directories that are symlinks: path -> link target."""
    return {p: os.readlink(p) for p in SYSTEM_DIRS if os.path.islink(p)}


def system_dirs() -> list[str]:
    """System directories that are real directories."""
    return [p for p in SYSTEM_DIRS if os.path.isdir(p) and not os.path.islink(p)]


def etc_files() -> list[str]:
    """The allowlisted /etc entries present on this host."""
    return [f"/etc/{n}" for n in ETC_FILES if os.path.exists(f"/etc/{n}")]


def check_readonly(paths: tuple[Path, ...]) -> None:
    """Refuse extra read-only paths that do not exist or would show the user's home."""
    home = Path.home().resolve()
    for path in paths:
        if not os.path.exists(path):
            raise SandboxError(f"read-only path {path} does not exist")
        if home.is_relative_to(path.resolve()):
            raise SandboxError(
                f"refusing to expose {path} to a sandbox: it holds your home directory"
            )
