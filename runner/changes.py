"""A change as {relpath: new text or None (deleted)}, from the working tree or from a patch.

Read-only towards the user's repository: a patch is applied to a private index file, never to
the working tree or the real index.
"""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from pathlib import Path

from greenpatch.runner.errors import RunnerError
from greenpatch.sandboxes import safegit


def _git(root: Path, *args: str, env: dict | None = None, stdin: bytes | None = None) -> bytes:
    # The repository is untrusted: `git diff` would run its fsmonitor and clean filters.
    env = env if env is not None else safegit.environment(root)
    done = subprocess.run(
        ["git", *args], cwd=root, input=stdin, capture_output=True, env=env, check=False
    )
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RunnerError(f"git {args[0]}: {lines[0] if lines else 'failed'}")
    return done.stdout


def _names(raw: bytes) -> list[str]:
    return [n for n in raw.decode("utf-8", "surrogateescape").split("\0") if n]


MAX_FILE_BYTES = 16 * 1024 * 1024


def _read(root: Path, name: str) -> str | None:
    """A changed file's text; None if deleted. Only regular files: a link's target (a host
    file, a directory) never goes to the sandbox in its place."""
    path = root / name
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        raise RunnerError(f"{name} is {kind}: only regular files can be tested as a change")
    if st.st_size > MAX_FILE_BYTES:
        raise RunnerError(f"{name} is over {MAX_FILE_BYTES >> 20} MiB: too big to test as a change")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        return handle.read(MAX_FILE_BYTES + 1).decode("utf-8", "surrogateescape")


def working_changes(root: Path, base: str = "HEAD") -> dict[str, str | None]:
    """Files of the working tree that differ from `base` (untracked, non-ignored files included)."""
    try:
        _git(root, "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}")
    except RunnerError:
        raise RunnerError(f"unknown revision: {base}") from None
    names = _names(_git(root, "diff", "--name-only", "--no-renames", "-z", base, "--"))
    names += _names(_git(root, "ls-files", "--others", "--exclude-standard", "-z"))
    return {name: _read(root, name) for name in dict.fromkeys(names)}


def patch_changes(root: Path, patch: str) -> dict[str, str | None]:
    """The files a unified diff changes, as they are after applying it to HEAD."""
    with tempfile.TemporaryDirectory(prefix="gp-patch-") as tmp:
        env = dict(safegit.environment(root), GIT_INDEX_FILE=str(Path(tmp, "index")))
        _git(root, "read-tree", "HEAD", env=env)
        try:
            _git(
                root, "apply", "--cached", "--whitespace=nowarn", "-", env=env, stdin=patch.encode()
            )
        except RunnerError as exc:
            why = str(exc).replace("git apply: ", "")
            raise RunnerError(f"the patch does not apply to HEAD: {why}") from None
        names = _names(
            _git(root, "diff", "--cached", "--name-only", "--no-renames", "-z", "HEAD", env=env)
        )
        if not names:
            raise RunnerError("the patch changes nothing")
        changes: dict[str, str | None] = {}
        staged = set(_names(_git(root, "ls-files", "-z", "--", *names, env=env)))
        for name in names:
            if name in staged:
                blob = _git(root, "show", f":{name}", env=env)
                changes[name] = blob.decode("utf-8", "surrogateescape")
            else:
                changes[name] = None
        return changes
