"""Before a ticket runs, the repository is asked whether its fix is already committed: a fix
branch from an interrupted attempt is recorded green (never redone, never a second branch), a
branch of that name holding anything else is left alone."""

from __future__ import annotations

from pathlib import Path

import git as gitpython
import pytest
from greenpatch.agent.batch.board import Board
from greenpatch.agent.batch.journal import Journal
from greenpatch.agent.batch.recover import existing_fix
from greenpatch.agent.batch.scheduler import BatchOptions, TicketScheduler
from greenpatch.agent.batch.sources import BatchTicket
from greenpatch.agent.errors import AgentError
from greenpatch.agent.publish.branch import commit_message, commit_on_branch
from greenpatch.agent.tickets import Ticket

from tests.conftest import git, make_repo


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return make_repo(tmp_path / "proj", {"calc.py": "def add(a, b):\n    return a - b\n"})


def _ticket(n: int) -> Ticket:
    return Ticket(f"bug-{n}", f"bug {n}", "add subtracts\n", ["tests/test_calc.py::test_add"])


def _run(journal: Journal) -> None:
    board = Board()
    for entry in journal.entries():
        board.add(entry.id, "proj", entry.state)
    TicketScheduler(journal, BatchOptions(drafter="edits", sandbox="process"), board).run(
        journal.entries()
    )


def _branches(repo: Path) -> list[str]:
    return git(repo, "branch", "--format=%(refname:short)").split()


def test_fixes_already_in_the_repository_are_recorded_not_redone(
    repo: Path, tmp_path: Path
) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    one, two, three = _ticket(1), _ticket(2), _ticket(3)
    fix = {"calc.py": "def add(a, b):\n    return a + b\n"}
    # 1: an earlier batch committed the fix and was killed before its journal said so.
    sha1 = commit_on_branch(repo, base, fix, "greenpatch/bug-1", commit_message(one))
    # 2: the fix is on origin only (pushed by last night's CI run; this checkout is fresh).
    sha2 = commit_on_branch(repo, base, fix, "greenpatch/bug-2", commit_message(two))
    git(repo, "update-ref", "refs/remotes/origin/greenpatch/bug-2", sha2)
    git(repo, "branch", "-D", "greenpatch/bug-2")
    # 3: somebody's own branch with the name greenpatch would use.
    theirs = commit_on_branch(repo, base, {"calc.py": "# mine\n"}, "greenpatch/bug-3", "mine")
    with Journal(tmp_path / "j.sqlite") as journal:
        journal.add([BatchTicket(t, repo) for t in (one, two, three)])
        journal.start("bug-1", base, "greenpatch/bug-1")  # what the killed batch had written
        _run(journal)
        entries = {e.id: e for e in journal.entries()}
        events = journal.events()
    assert (entries["bug-1"].state, entries["bug-1"].commit) == ("green", sha1)
    assert "already holds the fix" in entries["bug-1"].reason
    assert (entries["bug-2"].state, entries["bug-2"].commit) == ("green", sha2)
    assert "origin greenpatch/bug-2" in entries["bug-2"].reason
    assert entries["bug-3"].state == "error"
    assert (
        entries["bug-3"].reason
        == "branch greenpatch/bug-3 exists and is not greenpatch's fix for bug-3"
    )
    assert git(repo, "rev-parse", "greenpatch/bug-3").strip() == theirs
    assert _branches(repo) == ["greenpatch/bug-1", "greenpatch/bug-3", "main"]
    # Nothing ran: no baseline was built, and no ticket was started in this run.
    assert not (tmp_path / "cache" / "greenpatch" / "baselines").exists()
    assert [(i, s) for i, s, _ in events if s == "running"] == [("bug-1", "running")]


def test_a_branch_on_another_base_is_not_taken_for_an_interrupted_attempt(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    ticket = _ticket(1)
    commit_on_branch(repo, base, {"calc.py": "A = 1\n"}, "greenpatch/bug-1", commit_message(ticket))
    r = gitpython.Repo(repo)
    assert existing_fix(r, "greenpatch/bug-1", ticket)[1] == "branch"
    assert existing_fix(r, "greenpatch/bug-1", ticket, base)[1] == "branch"
    with pytest.raises(AgentError, match="is not greenpatch's fix for bug-1"):
        existing_fix(r, "greenpatch/bug-1", ticket, "0" * 40)
    assert existing_fix(r, "greenpatch/bug-9", _ticket(9)) is None
    # The commit message must cite this very ticket, not another one.
    with pytest.raises(AgentError):
        existing_fix(r, "greenpatch/bug-1", _ticket(2))
