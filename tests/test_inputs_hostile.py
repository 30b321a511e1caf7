"""Hostile or broken inputs end in one clear line and exit 2, before any work: flag values,
test paths a ticket names, oversized tickets, a damaged batch journal; the GitHub token goes
nowhere it should not (plain http, child processes)."""

from __future__ import annotations

import os
import resource
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from greenpatch.agent.batch.journal import Journal
from greenpatch.agent.batch.sources import BatchTicket, load_backlog
from greenpatch.agent.errors import AgentError
from greenpatch.agent.publish import github
from greenpatch.agent.tickets import Ticket, parse_ticket

from tests.conftest import make_repo


def one_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["fix", "t.md", "--budget", "-1"], "Invalid value for '--budget'"),
        (["fix", "t.md", "--budget", "soon"], "Invalid value for '--budget'"),
        (["fix", "t.md", "--workers", "0"], "Invalid value for '--workers'"),
        (["fix", "t.md", "--max-rounds", "-3"], "Invalid value for '--max-rounds'"),
        (["fix"], "Missing argument"),
        (["test", "--sandbox"], "Option '--sandbox' requires an argument"),
        (["batch", "b.jsonl", "--parallel", "0"], "Invalid value for '--parallel'"),
        (["fix", "t.md", "--no-such-flag"], "No such option: --no-such-flag"),
        (["frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(run_agent, tmp_path: Path, args, expected) -> None:
    line = one_line(run_agent(*args, cwd=tmp_path))
    assert line.startswith("error: ") and expected in line


@pytest.mark.parametrize(
    "named",
    ["../../etc/passwd", "/etc/passwd", "tests/../../../x.py::test_a", "/abs/test_x.py::t",
     "~/tests/test_x.py", "tests/"],
)  # fmt: skip
def test_a_ticket_naming_a_test_outside_the_repository_is_refused(named: str) -> None:
    with pytest.raises(AgentError, match="not a pytest node id inside the repository") as err:
        parse_ticket(f"# Bug\n\ntests: {named}\n", "t")
    assert err.value.code == 2
    with pytest.raises(AgentError):
        parse_ticket(f"---\ntests:\n  - {named}\n---\n# Bug\n", "t")


def test_tests_lines_in_prose_and_node_ids_still_read() -> None:
    ticket = parse_ticket(
        "# Bug\n\nTests: see https://ci.example.com/run/1/log for the output\n"
        "tests: `tests/test_cart.py::test_total[2+3]`, tests/test_cart.py::Cart::test_empty\n",
        "t",
    )
    assert ticket.tests == [
        "tests/test_cart.py::test_total[2+3]", "tests/test_cart.py::Cart::test_empty"
    ]


def test_agent_fix_refuses_a_ticket_naming_etc_passwd(run_agent, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    ticket = tmp_path / "t.md"
    ticket.write_text("# Bug\n\ntests: ../../etc/passwd\n")
    line = one_line(run_agent("fix", ticket, "--repo", repo, "--sandbox", "process"))
    assert line == (
        "error: the ticket names a test that is not a pytest node id inside the repository: "
        "../../etc/passwd"
    )


def test_a_backlog_line_naming_an_unsafe_test_is_skipped_as_a_problem(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    backlog = tmp_path / "b.jsonl"
    backlog.write_text(
        '{"id": "a", "title": "A", "body": "a", "tests": ["../../etc/passwd"]}\n'
        '{"id": "b", "title": "B", "body": "b", "tests": "tests/test_b.py::test_b"}\n'
        + '{"id": "c", "title": "C", "body": "' + "x" * (2 << 20) + '"}\n'
    )
    loaded = load_backlog(str(backlog), repo)
    assert [t.id for t in loaded.tickets] == ["b"]
    assert [str(p) for p in loaded.problems] == [
        f"{backlog}:1: the ticket names a test that is not a pytest node id inside the "
        "repository: ../../etc/passwd",
        f"{backlog}:3: line longer than 1 MB; skipped",
    ]


def _limited_memory() -> None:
    # Reading a 2 GB ticket whole would need more than this: the run must not try.
    resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))


def test_an_oversized_ticket_is_refused_without_reading_it(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    big = tmp_path / "big.md"
    with big.open("wb") as f:
        f.truncate(2 << 30)  # sparse: 2 GB that take no disk
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "greenpatch.agent",
         "fix", str(big), "--repo", str(repo), "--sandbox",
         "process"], capture_output=True, text=True, timeout=120, preexec_fn=_limited_memory,
    )  # fmt: skip
    assert one_line(result) == f"error: ticket {big} is larger than 1 MB"
    assert time.monotonic() - started < 60
    piped = subprocess.run(
        [sys.executable, "-m", "greenpatch.agent",
         "fix", "-", "--repo", str(repo), "--sandbox", "process"],
        input="# Bug\n" + "x" * (3 << 20), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert one_line(piped) == "error: the ticket on standard input is larger than 1 MB"


def test_a_damaged_journal_row_is_one_line(run_agent, tmp_path: Path) -> None:
    """The journal is only ever written by agent batch: a row it cannot read stops the batch
    (exit 2) rather than being skipped, which would run a ticket twice or lose it."""
    repo = make_repo(tmp_path / "repo")
    path = tmp_path / "journal.db"
    with Journal(path) as journal:
        journal.set_meta({"backlog": str(tmp_path / "b.jsonl"), "repo": str(repo)})
        journal.add([BatchTicket(Ticket("t1", "T", "body"), repo)])
    with sqlite3.connect(path) as db:
        db.execute("UPDATE tickets SET record = '{not json' WHERE id = 't1'")
    line = one_line(run_agent("batch", "--resume", "--journal", path, cwd=tmp_path))
    assert line.startswith(f"error: the journal {path} is damaged: ticket 't1' has an unreadable")
    assert line.endswith("move the journal away to start over")


def test_the_token_is_never_sent_over_plain_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_API_URL", "http://api.example.invalid")
    with pytest.raises(AgentError, match=r"^refusing to send the GitHub token to http://api\."):
        github.fetch_issue("acme", "lib", 1, "ghp_secret")
    with pytest.raises(AgentError, match="refusing to send the GitHub token"):
        github.open_pull_request("acme", "lib", "h", "main", "t", "b", "ghp_secret")


def test_the_token_leaves_the_environment_of_every_child(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret")
    monkeypatch.setenv("GH_TOKEN", "gho_secret")
    with github.tokens_hidden():  # what the CLI does around every command
        assert "GITHUB_TOKEN" not in os.environ and "GH_TOKEN" not in os.environ
        assert github.token_from_env() == "ghp_secret"  # this process still talks to GitHub
        child = subprocess.run(["env"], capture_output=True, text=True, check=True).stdout
        assert "_secret" not in child
    assert os.environ["GITHUB_TOKEN"] == "ghp_secret" and github.token_from_env() == "ghp_secret"
