"""Worktrees: made from HEAD without touching the user's tree, reset to pristine, always removed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from greenpatch.sandboxes.base import Limits, SandboxError, WorkerSpec
from greenpatch.sandboxes.worktree import Worktree, cleanup_stale

from tests.conftest import git, make_repo
from tests.test_sandbox_helpers import use_backend

FILES = {
    "pkg/__init__.py": "",
    "pkg/core.py": "def f():\n    return 1\n",
    "tests/test_core.py": "from pkg.core import f\n\ndef test_f():\n    assert f() == 1\n",
    ".gitignore": "*.pyc\n__pycache__/\n",
}


@pytest.fixture
def user_repo(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "repo", FILES)
    # The user's own uncommitted work, staged and unstaged, must survive everything.
    (repo / "pkg" / "core.py").write_text("def f():\n    return 2  # user's edit\n")
    (repo / "notes.txt").write_text("mine\n")
    git(repo, "add", "notes.txt")
    return repo


def user_state(repo: Path) -> tuple[str, str, str]:
    return (
        git(repo, "status", "--porcelain"),
        (repo / "pkg" / "core.py").read_text(),
        git(repo, "rev-parse", "HEAD"),
    )


def test_create_from_head_leaves_user_tree_alone(user_repo: Path, tmp_path: Path) -> None:
    before = user_state(user_repo)
    tree = Worktree.create(user_repo, tmp_path / "cache")
    assert tree.path.parent == (tmp_path / "cache").resolve()
    assert (tree.path / "pkg" / "core.py").read_text() == FILES["pkg/core.py"]
    assert not (tree.path / "notes.txt").exists()
    tree.write({"pkg/core.py": "def f():\n    return 3\n", "pkg/new.py": "x = 1\n"})
    tree.reset()
    tree.remove()
    assert not tree.path.exists()
    assert user_state(user_repo) == before
    assert git(user_repo, "worktree", "list").count("\n") == 1


def test_reset_restores_everything(user_repo: Path, tmp_path: Path) -> None:
    with Worktree.create(user_repo, tmp_path / "cache") as tree:
        p = tree.path
        assert tree.reset() == 0
        (p / "pkg" / "core.py").write_text("broken")
        (p / "tests" / "test_core.py").unlink()
        (p / "pkg" / "extra.py").write_text("planted")
        (p / "pkg" / "evil.pyc").write_bytes(b"\0planted")  # ignored by .gitignore
        (p / "pkg" / "__pycache__").mkdir()
        (p / "pkg" / "__pycache__" / "core.cpython-311.pyc").write_bytes(b"planted")
        (p / "newdir" / "deep").mkdir(parents=True)
        (p / "newdir" / "deep" / "conftest.py").write_text("planted")
        os.chmod(p / "pkg" / "__init__.py", 0o755)
        assert tree.reset() >= 6
        assert tree.changed() == []
        assert (p / "pkg" / "core.py").read_text() == FILES["pkg/core.py"]
        assert (p / "tests" / "test_core.py").read_text() == FILES["tests/test_core.py"]
        for gone in ("pkg/extra.py", "pkg/evil.pyc", "pkg/__pycache__", "newdir"):
            assert not (p / gone).exists(), gone


def test_reset_does_not_follow_symlinks_out(user_repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "core.py").write_text("precious")
    (outside / "test_core.py").write_text("precious")
    with Worktree.create(user_repo, tmp_path / "cache") as tree:
        # Candidate replaces a tracked directory by a symlink to somewhere outside.
        import shutil

        shutil.rmtree(tree.path / "pkg")
        (tree.path / "pkg").symlink_to(outside)
        (tree.path / "tests").rename(tree.path / "tests_moved")
        (tree.path / "tests").symlink_to(outside)
        tree.reset()
        assert tree.changed() == []
        assert not (tree.path / "pkg").is_symlink()
        assert (tree.path / "pkg" / "core.py").read_text() == FILES["pkg/core.py"]
    assert (outside / "core.py").read_text() == "precious"
    assert (outside / "test_core.py").read_text() == "precious"


def test_tampered_dot_git_is_ignored_and_restored(user_repo: Path, tmp_path: Path) -> None:
    evil = make_repo(tmp_path / "evil", {"a": "a\n"})
    marker = tmp_path / "pwned"
    git(evil, "config", "core.fsmonitor", f"touch {marker}; false")
    with Worktree.create(user_repo, tmp_path / "cache") as tree:
        original = (tree.path / ".git").read_text()
        (tree.path / ".git").write_text(f"gitdir: {evil}/.git\n")
        (tree.path / "pkg" / "core.py").write_text("changed")
        tree.reset()
        assert (tree.path / ".git").read_text() == original
        assert (tree.path / "pkg" / "core.py").read_text() == FILES["pkg/core.py"]
    assert not marker.exists()


def test_write_refuses_to_escape(user_repo: Path, tmp_path: Path) -> None:
    with Worktree.create(user_repo, tmp_path / "cache") as tree:
        with pytest.raises(SandboxError, match="outside the worktree"):
            tree.write({"../escape.py": "x"})
        (tree.path / "link").symlink_to(tmp_path)
        with pytest.raises(SandboxError, match="outside the worktree"):
            tree.write({"link/escape.py": "x"})
    assert not (tmp_path / "escape.py").exists()


# chown to another uid needs root; CI runs as root, so this runs there.
@pytest.mark.skipif(os.geteuid() != 0, reason="changing file owners needs root")
def test_files_keep_the_worktree_owner(user_repo: Path, tmp_path: Path) -> None:
    from greenpatch.sandboxes.worktree import chown_tree

    with Worktree.create(user_repo, tmp_path / "cache") as tree:
        chown_tree(tree.path, 65534, 65534)
        (tree.path / "pkg" / "core.py").unlink()
        tree.write({"pkg/sub/new.py": "x = 1\n"})
        tree.reset()
        for rel in ("pkg/core.py", "pkg"):
            assert (tree.path / rel).stat().st_uid == 65534
        tree.write({"pkg/sub/new.py": "x = 1\n"})
        assert (tree.path / "pkg" / "sub" / "new.py").stat().st_uid == 65534
        assert (tree.path / "pkg" / "sub").stat().st_uid == 65534


def test_not_a_repository(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="git rev-parse failed"):
        Worktree.create(tmp_path, tmp_path / "cache")


def _spawn_owner(repo: Path, cache: Path, then: str) -> subprocess.Popen[str]:
    code = textwrap.dedent(
        f"""
        import os, signal, sys, time
        from pathlib import Path
        from greenpatch.sandboxes.worktree import Worktree
        tree = Worktree.create(Path({str(repo)!r}), Path({str(cache)!r}))
        print(tree.path, flush=True)
        {then}
        """
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        cwd=Path.cwd(), preexec_fn=_default_signals,
    )  # fmt: skip


def _default_signals() -> None:
    # A suite started in the background (`nohup`, `cmd &`) hands SIGINT/SIGHUP down ignored,
    # and an ignored signal is rightly left alone: the owner must see them as a terminal would.
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


@pytest.mark.parametrize(
    "then, how",
    [
        ("sys.stdin.readline()", None),  # exits normally once the test closes its stdin
        ("time.sleep(60)", signal.SIGTERM),
        ("time.sleep(60)", signal.SIGINT),
        ("time.sleep(60)", signal.SIGHUP),
    ],
    ids=["normal-exit", "sigterm", "ctrl-c", "sighup"],
)
def test_removed_on_exit(user_repo: Path, tmp_path: Path, then: str, how: int | None) -> None:
    proc = _spawn_owner(user_repo, tmp_path / "cache", then)
    path = Path(proc.stdout.readline().strip())
    assert path.is_dir()
    if how is not None:
        proc.send_signal(how)
    proc.stdin.close()
    proc.wait(30)
    assert not path.exists()
    assert list((tmp_path / "cache").iterdir()) == []
    assert git(user_repo, "worktree", "list").count("\n") == 1


# The run dies with its janitor (a machine crash, a kill of everything): nothing cleans up then.
NO_JANITOR = ("import greenpatch.sandboxes.worktree as w; w._janitor.kill(); w._janitor.wait(); "
              "print('alone')")
NO_JANITOR += "; sys.stdout.flush(); time.sleep(60)"


def test_a_killed_run_leaves_nothing_behind(user_repo: Path, tmp_path: Path) -> None:
    """SIGKILL runs no exit hook: the janitor process, which outlives the run, removes its
    worktrees and their entries in the user's .git/worktrees."""
    cache = tmp_path / "cache"
    proc = _spawn_owner(user_repo, cache, "time.sleep(60)")
    assert Path(proc.stdout.readline().strip()).is_dir()
    proc.kill()
    proc.wait(30)
    deadline = time.monotonic() + 20  # the folder goes first, then its entry and owner file
    while list(cache.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(cache.iterdir()) == []
    assert git(user_repo, "worktree", "list").count("\n") == 1


def test_a_stale_worktree_of_another_cache_is_removed_at_start(
    user_repo: Path, tmp_path: Path
) -> None:
    """A run that died with its janitor, its cache elsewhere: the next run on the repository
    finds its worktree in the user's .git/worktrees and removes it."""
    crashed = _spawn_owner(user_repo, tmp_path / "elsewhere", NO_JANITOR)
    path = Path(crashed.stdout.readline().strip())
    assert crashed.stdout.readline() == "alone\n"
    crashed.kill()
    crashed.wait(30)
    with Worktree.create(user_repo, tmp_path / "cache") as tree:
        assert not path.exists()
        listed = git(user_repo, "worktree", "list")
        assert str(path) not in listed and str(tree.path) in listed


def test_empty_worktree_folders_without_owner_are_swept(tmp_path: Path) -> None:
    """A container engine recreates a removed worktree as an empty folder: swept; a folder
    with files in it is never touched."""
    cache = tmp_path / "cache"
    (cache / "proj-123-0123abcd").mkdir(parents=True)
    (cache / "proj-124-89abcdef").mkdir()
    (cache / "proj-124-89abcdef" / "keep.txt").write_text("somebody's\n")
    (cache / "notes").mkdir()
    assert cleanup_stale(cache) == [cache / "proj-123-0123abcd"]
    assert sorted(p.name for p in cache.iterdir()) == ["notes", "proj-124-89abcdef"]


def test_crash_leftovers_cleaned_by_a_later_run(user_repo: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    proc = _spawn_owner(user_repo, cache, NO_JANITOR)
    path = Path(proc.stdout.readline().strip())
    assert proc.stdout.readline() == "alone\n"
    live = Worktree.create(user_repo, cache)  # ours: alive, must survive the cleanup
    proc.kill()  # SIGKILL: no exit hook runs
    proc.wait(30)
    assert path.is_dir()
    assert cleanup_stale(cache) == [path]
    assert not path.exists() and live.path.is_dir()
    assert str(path) not in git(user_repo, "worktree", "list")
    live.remove()


def test_next_run_sweeps_leftovers_by_itself(user_repo: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    crashed = _spawn_owner(user_repo, cache, NO_JANITOR)
    path = Path(crashed.stdout.readline().strip())
    assert crashed.stdout.readline() == "alone\n"
    crashed.kill()
    crashed.wait(30)
    later = _spawn_owner(user_repo, cache, "pass")  # a new run, in a new process
    fresh = Path(later.stdout.readline().strip())
    later.wait(30)
    assert not path.exists() and not fresh.exists()
    assert git(user_repo, "worktree", "list").count("\n") == 1


def test_reset_is_fast_on_a_large_repo(tmp_path: Path) -> None:
    files = {f"pkg{i // 100}/m{i}.py": f"x = {i}\n" for i in range(2000)}
    repo = make_repo(tmp_path / "big", files)
    with Worktree.create(repo, tmp_path / "cache") as tree:
        tree.write({f"pkg{i}/m{i * 100}.py": "changed\n" for i in range(10)})
        start = time.perf_counter()
        assert tree.reset() == 10
        assert time.perf_counter() - start < 2.0
        assert tree.changed() == []


@pytest.mark.docker
def test_a_container_made_after_its_worktree_was_removed_leaves_no_folder(
    tmp_path: Path,
) -> None:
    """A spare container is made in the background when a worker stops; when the run has
    removed the worktree by then, the engine must not recreate it as an empty folder."""
    backend = use_backend("docker")
    gone = tmp_path / "cache" / "proj-1-0123abcd"
    spec = WorkerSpec(argv=[sys.executable, "-c", "pass"], worktree=gone, limits=Limits())
    with pytest.raises(SandboxError, match="cannot create a container"):
        backend._create(spec, f"{os.getuid()}:{os.getgid()}")
    assert not gone.exists()
