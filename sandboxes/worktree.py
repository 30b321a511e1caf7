"""One git worktree per worker: created from HEAD, reset to pristine between jobs, always removed.

The user's working tree, index and branch are never touched: `git worktree add --detach` only adds
an entry under `.git/worktrees/`. Every worktree lives in a cache directory next to an `.owner`
file naming the process that made it; worktrees of this process are removed at exit (normal exit,
Ctrl-C, SIGTERM/SIGHUP), and `cleanup_stale()` removes those whose owner died (crash, SIGKILL).

Files in a worktree belong to the owner of its root directory: a sandbox that runs as another user
(bwrap as root drops to an unprivileged uid) owns its worktree, and `write()`/`reset()` keep it so.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from greenpatch.sandboxes import safegit
from greenpatch.sandboxes.base import SandboxError
from greenpatch.sandboxes.cacheroot import cache_root

OWNER_SUFFIX = ".owner"
_live: dict[Path, Worktree] = {}
_live_lock = threading.Lock()
_hooks_installed = False
_swept: set[Path] = set()  # cache dirs already cleared of stale worktrees by this process
_swept_repos: set[Path] = set()  # repositories whose .git/worktrees this process pruned
_janitor: subprocess.Popen[bytes] | None = None
_NAME = re.compile(r".+-\d+-[0-9a-f]{8}")  # a worktree folder: <repo>-<pid>-<random>
# Run by a process of its own that outlives us: when its stdin (a pipe only we hold) ends, we
# are gone, however we ended (SIGKILL included), and it removes what we left.
_JANITOR = """
import sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from greenpatch.sandboxes.worktree import cleanup_stale, owner_gone
bases = [line.strip() for line in sys.stdin if line.strip()]
owner_gone(int(sys.argv[2]), sys.argv[3], 10.0)
for base in dict.fromkeys(bases):
    cleanup_stale(Path(base))
try:  # its docker workers too (their containers sleep until removed)
    import docker
    label = f"greenpatch.sandbox={sys.argv[2]}:{sys.argv[3]}"
    client = docker.from_env(timeout=10)
    for container in client.containers.list(all=True, filters={"label": label},
                                            ignore_removed=True):
        try:
            container.remove(force=True)
        except docker.errors.NotFound:  # another sweep got there first
            pass
except Exception:
    pass
"""


def default_base_dir() -> Path:
    return cache_root() / "worktrees"


def _spawn(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    # The repository is untrusted: git runs without its hooks, fsmonitor and filters (safegit).
    try:
        return subprocess.Popen(
            ["git", "-c", f"safe.directory={cwd}", *args],
            cwd=cwd,
            env=env if env is not None else safegit.environment(cwd),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except FileNotFoundError:
        raise SandboxError("git is not installed (apt-get install git)") from None


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """(inode, size, ctime) of a regular file, never following a symlink; None otherwise."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return (st.st_ino, st.st_size, st.st_ctime_ns)


def _output(proc: subprocess.Popen[bytes], cwd: Path, what: str) -> str:
    out, err = proc.communicate()
    if proc.returncode != 0:
        line = err.decode(errors="replace").strip().splitlines()
        raise SandboxError(f"git {what} failed in {cwd}: {line[-1] if line else 'no output'}")
    return out.decode("utf-8", "surrogateescape")


def _git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return _output(_spawn(cwd, *args, env=env), cwd, args[0])


def process_start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (tells a live owner from a reused pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def chown_tree(path: Path, uid: int, gid: int) -> None:
    """Give `path` and everything under it to uid:gid, without following symlinks."""
    os.lchown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, gid)


def _remove_path(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


class Worktree:
    """A detached checkout of a repository's HEAD in a directory of its own."""

    def __init__(self, path: Path, repo_root: Path) -> None:
        self.path = path
        self.repo_root = repo_root
        self._git_dir: str | None = None  # the admin dir under the repo's .git, once known
        self._dot_git = ""
        # Computed once: reset() runs git for every job and must stay cheap.
        self._env = safegit.environment(repo_root)
        # Untracked files that survive a reset while untouched (see keep_untracked).
        self._kept: dict[str, tuple[int, int, int]] = {}

    @classmethod
    def create(cls, repo_root: Path, base_dir: Path | None = None) -> Worktree:
        """A fresh worktree of `repo_root`'s HEAD under `base_dir` (default: the user's cache)."""
        repo_root = Path(repo_root).resolve()
        top = Path(_git(repo_root, "rev-parse", "--show-toplevel").strip())
        base = Path(base_dir or default_base_dir()).resolve()
        base.mkdir(parents=True, exist_ok=True)
        if base not in _swept:
            _swept.add(base)
            cleanup_stale(base)
            _tell_janitor(base)
        if top not in _swept_repos:
            _swept_repos.add(top)
            _sweep_repo(top)
        path = base / f"{top.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        owner = {"pid": os.getpid(), "start": process_start_time(os.getpid()), "repo": str(top)}
        # The owner file comes first, so a crash at any later point leaves something to clean.
        Path(f"{path}{OWNER_SUFFIX}").write_text(json.dumps(owner))
        tree = cls(path, top)
        _register(tree)
        _git(top, "worktree", "add", "--detach", "--quiet", str(path), "HEAD", env=tree._env)
        tree._dot_git = (path / ".git").read_text()
        tree._git_dir = _git(path, "rev-parse", "--absolute-git-dir", env=tree._env).strip()
        return tree

    def _git_args(self, *args: str) -> tuple[str, ...]:
        # The git dir is named explicitly: the worktree's own `.git` file is writable by sandboxed
        # code, which could point it at a repository whose config runs commands (core.fsmonitor).
        assert self._git_dir is not None
        return (f"--git-dir={self._git_dir}", f"--work-tree={self.path}", *args)

    def git(self, *args: str) -> str:
        """Run git on the worktree; its stdout."""
        return _git(self.path, *self._git_args(*args), env=self._env)

    def _owner(self) -> tuple[int, int] | None:
        """The (uid, gid) files must have, when it is not ours."""
        st = self.path.stat()
        if st.st_uid == os.geteuid():
            return None
        return st.st_uid, st.st_gid

    def _give(self, rel: Path, owner: tuple[int, int]) -> None:
        """Hand a path (and the directories leading to it) to the worktree's owner."""
        chown_tree(self.path / rel, *owner)
        for parent in rel.parents:
            if parent != Path("."):
                os.lchown(self.path / parent, *owner)

    def write(self, files: Mapping[str, str]) -> None:
        """Write files (paths relative to the worktree; never outside it)."""
        owner = self._owner()
        root = self.path.resolve()
        for rel, text in files.items():
            target = (root / rel).resolve()
            if not target.is_relative_to(root) or target == root:
                raise SandboxError(f"refusing to write outside the worktree: {rel}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            if owner:
                self._give(target.relative_to(root), owner)

    def changed(self) -> list[tuple[str, str]]:
        """(status code, path) of everything differing from HEAD, untracked and ignored included."""
        out = self.git("status", "--porcelain", "-z", "--untracked-files=all", "--ignored")
        entries, items = [], out.split("\0")
        i = 0
        while i < len(items):
            item = items[i]
            i += 1
            if not item:
                continue
            code, rel = item[:2], item[3:]
            if code[0] in "RC":  # a rename carries its source as the next item
                i += 1
            entries.append((code, rel))
        return entries

    def keep_untracked(self) -> int:
        """Let the untracked files present now (a warm worker's bytecode caches) survive later
        resets for as long as each is untouched; how many.

        Touched is judged by inode, size and ctime: a sandbox can reset a file's mtime, never
        its ctime, so a rewritten, replaced or renamed file is removed like any other.
        """
        listed = _output(
            _spawn(self.path, *self._git_args("ls-files", "-o", "-z"), env=self._env),
            self.path, "ls-files",
        )  # fmt: skip
        # The index's stat data predates handing the files to the sandbox's uid (their ctime
        # changed): refreshed once, every later diff-files compares stat, not every file's
        # content. A file whose content changed stays listed as changed.
        # (Exit 1 means some file changed: that is for reset() to restore.)
        _spawn(self.path, *self._git_args("update-index", "-q", "--refresh"),
               env=self._env).communicate()  # fmt: skip
        self._kept = {}
        for rel in filter(None, listed.split("\0")):
            stamp = _stamp(self.path / rel)
            if stamp is not None:
                self._kept[rel] = stamp
        return len(self._kept)

    def reset(self) -> int:
        """Back to HEAD, touching only what changed; the number of paths restored or removed."""
        dot_git = self.path / ".git"
        fixed_dot_git = 0
        if dot_git.is_symlink() or not dot_git.is_file() or dot_git.read_text() != self._dot_git:
            _remove_path(dot_git)
            dot_git.write_text(self._dot_git)
            fixed_dot_git = 1
        # Two cheap scans at once instead of `git status`: tracked files that differ from the
        # index (stat, then content when racy), and everything untracked or ignored.
        env = self._env
        modified = _spawn(self.path, *self._git_args("diff-files", "--name-only", "-z"), env=env)
        # With kept files, untracked paths are listed file by file to tell them apart.
        listing = ["ls-files", "-o", "-z", *(() if self._kept else ("--directory",))]
        others = _spawn(self.path, *self._git_args(*listing), env=env)
        restore = [p for p in _output(modified, self.path, "diff-files").split("\0") if p]
        remove = [
            p for p in _output(others, self.path, "ls-files").split("\0")
            if p and not (p in self._kept and _stamp(self.path / p) == self._kept[p])
        ]  # fmt: skip
        for rel in remove:
            _remove_path(self.path / rel.rstrip("/"))
            self._prune_empty_parents(Path(rel.rstrip("/")))
        if restore:
            for rel in restore:
                # A parent may have become a symlink (possibly leading outside) or a file: clear
                # those first, so that nothing below follows them.
                for parent in reversed(Path(rel).parents):
                    p = self.path / parent
                    if parent != Path(".") and (p.is_symlink() or p.is_file()):
                        _remove_path(p)
                        break
                target = self.path / rel
                if target.is_symlink() or target.is_dir():
                    _remove_path(target)
            # --index refreshes the restored entries' stat data, so the next diff-files is quick.
            self.git("checkout-index", "--index", "--force", "--quiet", "--", *restore)
            owner = self._owner()
            if owner:
                for rel in restore:
                    self._give(Path(rel), owner)
        return len(restore) + len(remove) + fixed_dot_git

    def _prune_empty_parents(self, rel: Path) -> None:
        # git does not list empty directories; a directory emptied here was the candidate's.
        for parent in rel.parents:
            if parent == Path("."):
                return
            try:
                os.rmdir(self.path / parent)
            except OSError:
                return

    def remove(self) -> None:
        """Delete the worktree and its git bookkeeping; idempotent."""
        with _live_lock:
            _live.pop(self.path, None)
        _remove_worktree(self.path, self.repo_root)

    def __enter__(self) -> Worktree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _remove_worktree(path: Path, repo_root: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(SandboxError, FileNotFoundError, NotADirectoryError):
        _git(repo_root, "worktree", "prune")
    with contextlib.suppress(FileNotFoundError):
        Path(f"{path}{OWNER_SUFFIX}").unlink()


def _alive(owner: dict) -> bool:
    """Whether the process an owner file names still runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{int(owner['pid'])}/stat").read_text()
    except (OSError, ValueError, KeyError, TypeError):
        return False
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0] not in "ZX" and fields[19] == owner.get("start")


def _read_owner(owner_file: Path) -> dict:
    try:
        owner = json.loads(owner_file.read_text())
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def cleanup_stale(base_dir: Path | None = None) -> list[Path]:
    """Remove worktrees left behind by processes that no longer exist; the paths removed. Empty
    worktree folders without an owner file (a container engine recreates a removed bind mount's
    source) go too."""
    base = Path(base_dir or default_base_dir())
    removed = []
    for owner_file in base.glob(f"*{OWNER_SUFFIX}"):
        owner = _read_owner(owner_file)
        if _alive(owner):
            continue
        path = Path(str(owner_file)[: -len(OWNER_SUFFIX)])
        _remove_worktree(path, Path(owner.get("repo", path)))
        removed.append(path)
    with contextlib.suppress(OSError):
        for path in base.iterdir():
            if _NAME.fullmatch(path.name) and not Path(f"{path}{OWNER_SUFFIX}").exists():
                with contextlib.suppress(OSError):
                    path.rmdir()  # only when empty: never somebody's files
                    removed.append(path)
    return removed


def _sweep_repo(top: Path) -> None:
    """Worktrees of `top` whose greenpatch run died, wherever their cache was, are removed with
    their entries in its .git/worktrees. Other worktrees of the user are left alone (a missing
    one may be on a drive not mounted now): git prunes only when an entry of ours is stale."""
    env = safegit.environment(top)
    with contextlib.suppress(SandboxError):
        stale = False
        for line in _git(top, "worktree", "list", "--porcelain", env=env).splitlines():
            if not line.startswith("worktree "):
                continue
            path = Path(line[len("worktree ") :])
            owner_file = Path(f"{path}{OWNER_SUFFIX}")
            if owner_file.is_file() and not _alive(_read_owner(owner_file)):
                _remove_worktree(path, top)
            elif _NAME.fullmatch(path.name) and not path.exists() and not owner_file.exists():
                stale = True  # ours, its folder and owner file gone, its entry left
        if stale:
            _git(top, "worktree", "prune", env=env)


def owner_gone(pid: int, start: str, timeout: float) -> None:
    """Wait (at most `timeout` seconds) until process `pid` (started at `start`) is gone or a
    zombie: its worktrees can be told from a live run's only then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive({"pid": pid, "start": start}):
        time.sleep(0.05)


def _tell_janitor(base: Path) -> None:
    """Start the janitor once per process; tell it every cache dir we make worktrees in."""
    global _janitor
    if _janitor is None:
        with contextlib.suppress(OSError):
            _janitor = subprocess.Popen(
                [sys.executable, "-c", _JANITOR, str(Path(__file__).resolve().parents[2]),
                 str(os.getpid()), str(process_start_time(os.getpid()))],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                cwd="/", env=safegit.scrub(os.environ), start_new_session=True,
            )  # fmt: skip
    if _janitor is not None and _janitor.stdin is not None:
        with contextlib.suppress(OSError):
            _janitor.stdin.write(f"{base}\n".encode())
            _janitor.stdin.flush()


def remove_all() -> None:
    """Remove every worktree this process made (the exit hook)."""
    with _live_lock:
        trees = list(_live.values())
    for tree in trees:
        tree.remove()


def _register(tree: Worktree) -> None:
    global _hooks_installed
    with _live_lock:
        _live[tree.path] = tree
        if _hooks_installed:
            return
        _hooks_installed = True
    atexit.register(remove_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) == signal.SIG_DFL:
                # Turn the signal into SystemExit so finally blocks and atexit hooks run.
                signal.signal(sig, _exit_on_signal)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)
