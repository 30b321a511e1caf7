"""agent.publish.branch on real git repositories: the user's tree, index and HEAD never change."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from greenpatch.agent.errors import AgentError
from greenpatch.agent.publish.branch import (
    check_branch_name,
    commit_fix,
    commit_message,
    commit_on_branch,
    default_branch_name,
    minimal_diff,
)
from greenpatch.agent.tickets import Ticket


def git(cwd: Path, *args: str, input: bytes | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, input=input
    ).stdout.decode()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Dev")
    git(root, "config", "user.email", "dev@example.com")
    (root / "pkg").mkdir()
    (root / "pkg" / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (root / "pkg" / "other.py").write_text("X = 1\n")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "run.sh", 0o755)
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "initial")
    return root


def snapshot(root: Path) -> dict[str, str]:
    """Everything the user could see: files, index, HEAD, branches, status."""
    state: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(".git/") and rel not in (".git/index", ".git/HEAD"):
            continue
        if path.is_file():
            state[rel] = hashlib.sha256(path.read_bytes()).hexdigest() + oct(path.stat().st_mode)
    state["rev"] = git(root, "rev-parse", "HEAD")
    state["symbolic"] = subprocess.run(
        ["git", "symbolic-ref", "-q", "HEAD"], cwd=root, capture_output=True, text=True
    ).stdout
    state["status"] = git(root, "status", "--porcelain=v1", "--untracked-files=all")
    state["staged"] = git(root, "diff", "--cached")
    return state


def dirty(root: Path) -> None:
    (root / "pkg" / "calc.py").write_text("def add(a, b):\n    return a - b  # user edit\n")
    (root / "pkg" / "other.py").write_text("X = 2\n")
    git(root, "add", "pkg/other.py")
    (root / "notes.txt").write_text("untracked\n")


FIX = {"pkg/calc.py": "def add(a, b):\n    return a + b\n"}


def test_commit_leaves_dirty_tree_index_and_branch_untouched(repo: Path) -> None:
    dirty(repo)
    base = git(repo, "rev-parse", "HEAD").strip()
    before = snapshot(repo)
    sha = commit_on_branch(repo, base, FIX, "greenpatch/add", "Fix add\n\nFixes #1\n")
    assert snapshot(repo) == before
    assert git(repo, "rev-parse", "refs/heads/greenpatch/add").strip() == sha
    assert git(repo, "rev-parse", f"{sha}^").strip() == base
    assert git(repo, "diff", "--name-only", base, sha).split() == ["pkg/calc.py"]
    assert git(repo, "show", f"{sha}:pkg/calc.py") == FIX["pkg/calc.py"]
    assert git(repo, "log", "-1", "--format=%B", sha).startswith("Fix add\n\nFixes #1")
    assert git(repo, "log", "-1", "--format=%an <%ae>", sha).strip() == "Dev <dev@example.com>"


def test_detached_head_is_allowed_and_stays_detached(repo: Path) -> None:
    git(repo, "checkout", "-q", "--detach")
    base = git(repo, "rev-parse", "HEAD").strip()
    before = snapshot(repo)
    sha = commit_on_branch(repo, base, FIX, "fix-detached", "fix")
    assert snapshot(repo) == before
    assert before["symbolic"] == ""
    assert git(repo, "rev-parse", "fix-detached").strip() == sha


def test_existing_branch_is_refused_and_nothing_changes(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "branch", "greenpatch/x")
    dirty(repo)
    before = snapshot(repo)
    objects_before = git(repo, "count-objects", "-v")
    with pytest.raises(AgentError) as err:
        commit_on_branch(repo, base, FIX, "greenpatch/x", "fix")
    assert err.value.code == 2
    assert str(err.value) == "branch greenpatch/x already exists; pass --branch NAME"
    assert snapshot(repo) == before
    assert git(repo, "rev-parse", "greenpatch/x").strip() == base
    assert git(repo, "count-objects", "-v") == objects_before


def test_current_branch_name_is_refused(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    with pytest.raises(AgentError, match="branch main already exists"):
        commit_on_branch(repo, base, FIX, "main", "fix")


@pytest.mark.parametrize("name", ["bad..name", "-x", "has space", ""])
def test_invalid_branch_name(repo: Path, name: str) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    with pytest.raises(AgentError, match="invalid branch name"):
        commit_on_branch(repo, base, FIX, name, "fix")


@pytest.mark.parametrize(
    ("existing", "wanted"),
    [("greenpatch", "greenpatch/stockroom"), ("greenpatch/x", "greenpatch"),
     ("a/b/c", "a/b")],
)  # fmt: skip
def test_a_branch_blocked_by_an_existing_one_is_refused_before_any_work(
    repo: Path, existing: str, wanted: str
) -> None:
    """git keeps refs as files: `greenpatch` and `greenpatch/x` cannot both exist."""
    git(repo, "branch", existing)
    with pytest.raises(AgentError) as err:
        check_branch_name(repo, wanted)
    assert str(err.value) == (
        f"branch {existing} exists, and git cannot have both {existing} and {wanted}; "
        "pass --branch NAME"
    )


def test_names_git_would_read_as_another_branch_are_refused(repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "other")
    git(repo, "checkout", "-q", "main")  # @{-1} now means `other`
    for name in ("@{-1}", "HEAD"):
        with pytest.raises(AgentError, match="invalid branch name"):
            check_branch_name(repo, name)


def test_a_fix_whose_branch_was_taken_meanwhile_goes_on_a_fresh_name(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    check_branch_name(repo, "greenpatch/fix")  # free when the run starts
    git(repo, "branch", "greenpatch/fix")  # ...and taken by the time the fix is found
    sha, branch = commit_fix(repo, base, FIX, "greenpatch/fix", "fix")
    assert branch == "greenpatch/fix-2"
    assert git(repo, "rev-parse", branch).strip() == sha
    assert git(repo, "rev-parse", "greenpatch/fix").strip() == base  # somebody's, untouched
    # A branch named like the folder blocks every greenpatch/... name: a flat one is used.
    git(repo, "branch", "-D", "greenpatch/fix", "greenpatch/fix-2")
    git(repo, "branch", "greenpatch")
    sha, branch = commit_fix(repo, base, FIX, "greenpatch/fix", "fix")
    assert branch == f"greenpatch-{sha[:12]}"
    assert git(repo, "show", f"{branch}:pkg/calc.py") == FIX["pkg/calc.py"]


def test_paths_outside_repo_and_unknown_base_are_refused(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    with pytest.raises(AgentError, match="outside the repository"):
        commit_on_branch(repo, base, {"../evil.py": "x"}, "b1", "fix")
    with pytest.raises(AgentError, match="outside the repository"):
        commit_on_branch(repo, base, {".git/config": "x"}, "b2", "fix")
    with pytest.raises(AgentError, match="base commit not found"):
        commit_on_branch(repo, "0" * 40, FIX, "b3", "fix")
    with pytest.raises(AgentError, match="nothing to commit"):
        commit_on_branch(repo, base, {"pkg/other.py": "X = 1\n"}, "b4", "fix")
    assert git(repo, "branch", "--format=%(refname:short)").split() == ["main"]


def test_mode_kept_and_new_files_added(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    files = {"run.sh": "#!/bin/sh\necho fixed\n", "pkg/new.py": b"Y = 3\n"}
    sha = commit_on_branch(repo, base, files, "modes", "fix")
    tree = git(repo, "ls-tree", "-r", sha)
    assert "100755 blob" in next(ln for ln in tree.splitlines() if ln.endswith("run.sh"))
    assert "100644 blob" in next(ln for ln in tree.splitlines() if ln.endswith("pkg/new.py"))
    assert git(repo, "show", f"{sha}:pkg/new.py") == "Y = 3\n"


def test_minimal_diff_applies_and_skips_unchanged_files(repo: Path, tmp_path: Path) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    files = {
        "pkg/calc.py": "def add(a, b):\n    return a + b",  # drops the final newline
        "pkg/other.py": "X = 1\n",  # unchanged
        "pkg/new.py": "Y = 3\n",
    }
    diff = minimal_diff(repo, base, files)
    assert "other.py" not in diff
    assert "-    return a - b\n+    return a + b\n\\ No newline at end of file\n" in diff
    assert "new file mode 100644" in diff
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    git(clone, "apply", "--index", input=diff.encode())
    assert (clone / "pkg" / "calc.py").read_text() == files["pkg/calc.py"]
    assert (clone / "pkg" / "new.py").read_text() == "Y = 3\n"
    assert minimal_diff(repo, base, {"pkg/other.py": "X = 1\n"}) == ""


def test_branch_name_and_message_cite_the_ticket() -> None:
    ticket = Ticket(id="acme-lib-12", title="Add returns  the difference", body="...")
    assert default_branch_name(ticket) == "greenpatch/acme-lib-12"
    msg = commit_message(ticket)
    assert msg.startswith("Fix: Add returns the difference\n\n")
    assert "ticket acme-lib-12" in msg
    ticket.url = "https://github.com/acme/lib/issues/12"
    assert "Fixes https://github.com/acme/lib/issues/12" in commit_message(ticket)
