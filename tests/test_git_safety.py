"""Git on a hostile repository runs nothing of it: no hook, fsmonitor, filter driver, textconv,
external diff, credential helper or receive-pack named by its config, and no token reaches git.

Every command the hostile config names writes a marker file holding the GITHUB_TOKEN it saw; the
tests run our git paths (worktrees, commits, diffs, push, the batch's PR body) on real
repositories and assert that no marker exists afterwards and the work itself was done.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from greenpatch.agent.batch.journal import Entry
from greenpatch.agent.batch.publish import _body
from greenpatch.agent.batch.sources import BatchTicket
from greenpatch.agent.errors import AgentError
from greenpatch.agent.publish import github
from greenpatch.agent.publish.branch import commit_on_branch, minimal_diff
from greenpatch.agent.repo import resolve_repo
from greenpatch.agent.tickets import Ticket
from greenpatch.runner.changes import patch_changes, working_changes
from greenpatch.sandboxes import safegit
from greenpatch.sandboxes.worktree import Worktree

from tests.test_fix_cli import ROOT, prepare

TOKEN = "ghp_hostile_test_token"
SOURCE = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"
# Each command the hostile config names: its marker, and what it does after writing it.
COMMANDS = {
    "post-checkout": "", "reference-transaction": "", "pre-push": "", "pre-commit": "",
    "fsmonitor": "", "smudge": "cat", "clean": "cat", "process": "", "textconv": "cat \"$1\"",
    "extdiff": "", "credential": "", "receive-pack": "exec git-receive-pack \"$@\"",
    "ssh": "", "gpg": "", "pre-receive": "", "post-receive": "", "update": "",
}  # fmt: skip


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def _script(markers: Path, name: str) -> str:
    path = markers.parent / "bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(
        f'#!/bin/sh\necho "token=$GITHUB_TOKEN" > "{markers}/{name}"\n{COMMANDS[name]}\n'
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.fixture
def hostile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(repo, markers): a repository whose config, hooks and attributes run commands."""
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    markers = tmp_path / "markers"
    markers.mkdir()
    root = tmp_path / "proj"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Dev")
    git(root, "config", "user.email", "dev@example.com")
    (root / "calc.py").write_text(SOURCE)
    (root / ".gitattributes").write_text("*.py filter=evil diff=evil\n*.txt filter=proc\n")
    (root / "notes.txt").write_text("notes\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "initial")
    arm(root, markers)
    return root, markers


def arm(root: Path, markers: Path) -> None:
    """Hooks and config that run commands; installed after the commits: the attack is on what
    greenpatch does, not on our set-up."""
    for hook in ("post-checkout", "reference-transaction", "pre-push", "pre-commit"):
        os.symlink(_script(markers, hook), root / ".git" / "hooks" / hook)
    config = {
        "core.fsmonitor": _script(markers, "fsmonitor"),
        "filter.evil.smudge": _script(markers, "smudge"),
        "filter.evil.clean": _script(markers, "clean"),
        "filter.evil.required": "true",
        "filter.proc.process": _script(markers, "process"),
        "diff.evil.textconv": _script(markers, "textconv"),
        "diff.external": _script(markers, "extdiff"),
        "credential.helper": _script(markers, "credential"),
        "core.sshCommand": _script(markers, "ssh"),
        "gpg.program": _script(markers, "gpg"),
        "commit.gpgSign": "true",
    }
    for key, value in config.items():
        git(root, "config", key, value)


def _ran(markers: Path) -> dict[str, str]:
    return {p.name: p.read_text().strip() for p in markers.iterdir()}


def test_the_hostile_repository_does_attack_plain_git(hostile: tuple[Path, Path]) -> None:
    """The fixture is real: plain git runs its hook, fsmonitor and filters with the token."""
    root, markers = hostile
    # It fails, too: the process filter does not speak git's protocol.
    subprocess.run(["git", "worktree", "add", "-q", "--detach", str(root.parent / "plain")],
                   cwd=root, capture_output=True, check=False)  # fmt: skip
    ran = _ran(markers)
    assert {"fsmonitor", "smudge", "process"} <= set(ran)
    assert ran["smudge"] == f"token={TOKEN}"
    git(root, "update-ref", "refs/heads/other", "HEAD")
    assert "reference-transaction" in _ran(markers)


def test_worktrees_run_nothing_of_the_repository(
    hostile: tuple[Path, Path], tmp_path: Path
) -> None:
    root, markers = hostile
    tree = Worktree.create(root, tmp_path / "cache")
    try:
        assert (tree.path / "calc.py").read_text() == SOURCE  # checked out, unfiltered
        tree.write({"calc.py": FIXED, "new.py": "x = 1\n"})
        assert {rel for _, rel in tree.changed()} == {"calc.py", "new.py"}
        assert tree.reset() == 2
        assert (tree.path / "calc.py").read_text() == SOURCE
    finally:
        tree.remove()
    assert _ran(markers) == {}


def test_commits_and_diffs_run_nothing_of_the_repository(hostile: tuple[Path, Path]) -> None:
    root, markers = hostile
    base = git(root, "rev-parse", "HEAD").strip()
    files = {"calc.py": FIXED, "notes.txt": "more notes\n"}
    diff = minimal_diff(root, base, files)
    assert "+    return a + b" in diff
    sha = commit_on_branch(root, base, files, "greenpatch/fix", "Fix add")
    assert git(root, "show", f"{sha}:calc.py") == FIXED  # no clean filter in between
    assert git(root, "cat-file", "-p", sha).count("gpgsig") == 0
    assert _ran(markers) == {}


def test_the_batch_pr_body_runs_no_textconv_or_external_diff(
    hostile: tuple[Path, Path],
) -> None:
    root, markers = hostile
    base = git(root, "rev-parse", "HEAD").strip()
    sha = commit_on_branch(root, base, {"calc.py": FIXED}, "greenpatch/fix", "Fix add")
    item = BatchTicket(Ticket("t1", "Fix add", "add subtracts"), root)
    entry = Entry(item, "green", base, "greenpatch/fix", sha, "", 1.0, 1, None, None, None, None)
    assert "+    return a + b" in _body(resolve_repo(root), entry)
    assert _ran(markers) == {}


def test_push_runs_no_hook_helper_or_receive_pack_of_the_repository(
    hostile: tuple[Path, Path], tmp_path: Path
) -> None:
    root, markers = hostile
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(root, "remote", "add", "origin", str(bare))
    git(root, "config", "remote.origin.receivepack", _script(markers, "receive-pack"))
    # A remote on this machine runs its receive-pack, and that its hooks, here.
    for hook in ("pre-receive", "post-receive", "update"):
        os.symlink(_script(markers, hook), bare / "hooks" / hook)
    base = git(root, "rev-parse", "HEAD").strip()
    sha = commit_on_branch(root, base, {"calc.py": FIXED}, "greenpatch/fix", "Fix add")
    github.push_branch(root, "greenpatch/fix")
    assert git(bare, "rev-parse", "refs/heads/greenpatch/fix").strip() == sha
    assert _ran(markers) == {}


def test_no_token_reaches_git_on_the_repository(hostile: tuple[Path, Path]) -> None:
    """An alias shows the environment git's children get: a repository's `!command` would see
    the same. The token is not in it."""
    root, _ = hostile
    git(root, "config", "alias.showenv", "!env")
    shown = resolve_repo(root).git.showenv()
    assert "GIT_DIR" in shown or "PATH=" in shown
    assert TOKEN not in shown


def test_agent_test_changed_runs_nothing_of_the_repository(hostile: tuple[Path, Path]) -> None:
    """`agent test --changed`: the working tree's changes, read with git diff in the user's
    repository (which would ask the fsmonitor and clean the changed files)."""
    root, markers = hostile
    (root / "calc.py").write_text(FIXED)
    (root / "new.py").write_text("y = 2\n")
    assert working_changes(root) == {"calc.py": FIXED, "new.py": "y = 2\n"}
    patched = patch_changes(root, minimal_diff(root, "HEAD", {"calc.py": FIXED}))
    assert patched == {"calc.py": FIXED}
    assert _ran(markers) == {}


def test_push_runs_the_users_ssh_command_with_the_token_never_the_repositorys(
    hostile: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The push is the one git process that gets credentials: the user's own (global) ssh
    command and the token; the repository's core.sshCommand does not run."""
    root, markers = hostile
    home = tmp_path / "home"
    home.mkdir()
    user_ssh = home / "user-ssh"
    user_ssh.write_text(f'#!/bin/sh\necho "token=$GITHUB_TOKEN" > "{home}/ran"\nexit 1\n')
    user_ssh.chmod(0o755)
    (home / ".gitconfig").write_text(f"[core]\n\tsshCommand = {user_ssh}\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    git(root, "remote", "add", "origin", "ssh://git.example.invalid/acme/lib.git")
    base = git(root, "rev-parse", "HEAD").strip()
    commit_on_branch(root, base, {"calc.py": FIXED}, "greenpatch/fix", "Fix add")
    with pytest.raises(AgentError, match="^git push of greenpatch/fix to origin failed"):
        github.push_branch(root, "greenpatch/fix")
    assert (home / "ran").read_text().strip() == f"token={TOKEN}"
    assert _ran(markers) == {}


def test_agent_fix_on_a_hostile_repository_runs_none_of_its_git_config(tmp_path: Path) -> None:
    """The whole run (baseline, workers' worktrees, confirmation, commit, diff) on an example
    whose hooks, fsmonitor and filters would each leave a marker holding the token."""
    repo = prepare("stockroom", tmp_path / "stockroom")
    (repo / ".gitattributes").write_text("*.py filter=evil diff=evil\n*.toml filter=proc\n")
    git(repo, "add", ".gitattributes")
    git(repo, "commit", "-q", "-m", "attributes")
    markers = tmp_path / "markers"
    markers.mkdir()
    arm(repo, markers)
    result = subprocess.run(
        [sys.executable, "-m", "greenpatch.agent",
         "fix", str(ROOT / "examples/tickets/stockroom.md"),
         "--repo", str(repo), "--drafter", "edits", "--sandbox", "process", "--budget", "240",
         "--json", "-", "-q"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "GITHUB_TOKEN": TOKEN},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "green"
    assert "if quantity >= tier.min_quantity:" in report["diff"]
    assert _ran(markers) == {}


def test_a_filter_whose_name_holds_dots_and_an_equals_sign_is_off_too(tmp_path: Path) -> None:
    """`-c filter.a=b.x.smudge=` would split at the first `=`: the overrides go by
    GIT_CONFIG_KEY_n/VALUE_n, which take any name."""
    root = tmp_path / "odd"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "a.py").write_text("x = 1\n")
    (root / ".gitattributes").write_text("*.py filter=a=b.x\n")
    git(root, "add", ".")
    git(root, "-c", "user.name=Dev", "-c", "user.email=d@e", "commit", "-q", "-m", "initial")
    marker = tmp_path / "ran"
    git(root, "config", "filter.a=b.x.smudge", f"sh -c 'touch {marker}; cat'")
    with Worktree.create(root, tmp_path / "cache") as tree:
        assert (tree.path / "a.py").read_text() == "x = 1\n"
    assert not marker.exists()


@pytest.mark.parametrize(
    ("name", "secret"),
    [("GITHUB_TOKEN", True), ("NPM_TOKEN", True), ("GREENPATCH_API_KEY", True),
     ("AWS_SECRET_ACCESS_KEY", True), ("DB_PASSWORD", True), ("SSH_AUTH_SOCK", True),
     ("TOKENIZERS_PARALLELISM", False), ("PATH", False), ("HOME", False)],
)  # fmt: skip
def test_what_counts_as_a_secret(name: str, secret: bool) -> None:
    assert safegit.is_secret(name) is secret
    assert (name in safegit.scrub({name: "x"})) is not secret
