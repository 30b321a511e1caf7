"""The batch journal: states, one final state per ticket, durability across SIGKILL, one owner."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from greenpatch.agent.batch.journal import Journal
from greenpatch.agent.batch.sources import BatchTicket
from greenpatch.agent.errors import AgentError
from greenpatch.agent.tickets import Ticket

ROOT = Path(__file__).resolve().parents[1]


def _item(ticket_id: str, repo: Path) -> BatchTicket:
    return BatchTicket(Ticket(ticket_id, f"title {ticket_id}", "body", ["t.py::x"], ""), repo)


def test_states_and_first_final_state_wins(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        assert journal.add([_item("a", tmp_path), _item("b", tmp_path)]) == ["a", "b"]
        assert journal.add([_item("b", tmp_path), _item("c", tmp_path)]) == ["c"]
        journal.start("a", "abc123", "greenpatch/a")
        journal.finish("a", "green", branch="greenpatch/a", commit="f00", seconds=2.5,
                       report={"diff": "x"})  # fmt: skip
        journal.finish("a", "failed", reason="late", seconds=1.0)  # ignored: a is final
        journal.start("b", "abc123", "greenpatch/b")
        journal.requeue("b", "interrupted", seconds=1.5)
        with pytest.raises(ValueError):
            journal.finish("c", "running")
        a, b, c = journal.entries()
        assert (a.state, a.branch, a.commit, a.seconds, a.report) == (
            "green", "greenpatch/a", "f00", 2.5, {"diff": "x"},
        )  # fmt: skip
        assert (b.state, b.reason, b.seconds, b.attempts, b.base) == (
            "queued", "interrupted", 1.5, 1, "abc123",
        )  # fmt: skip
        assert c.state == "queued" and not c.final
        assert [s for i, s, _ in journal.events() if i == "a"] == ["queued", "running", "green"]
        assert a.item == _item("a", tmp_path)


def test_settings_make_every_change_durable(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        db = journal._db
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_one_batch_per_journal(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal(path), pytest.raises(AgentError, match="another agent batch is using the journal"):
        Journal(path)
    with Journal(path):  # released on close
        pass


def test_a_killed_writer_loses_nothing_it_reported(tmp_path: Path) -> None:
    """A child writes states and says so after each; SIGKILL at any point; every state it
    reported is there, and the journal opens again (the kernel dropped the child's lock)."""
    path = tmp_path / "j.sqlite"
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        from greenpatch.agent.batch.journal import Journal
        from greenpatch.agent.batch.sources import BatchTicket
        from greenpatch.agent.tickets import Ticket
        j = Journal(Path({str(path)!r}))
        n = 0
        while True:
            tid = f"t{{n}}"
            j.add([BatchTicket(Ticket(tid, "t", "b"), Path("."))])
            j.start(tid, "base", "greenpatch/" + tid)
            j.finish(tid, "green", branch="greenpatch/" + tid, commit="c" + tid)
            print(tid, flush=True)
            n += 1
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    reported = [proc.stdout.readline().strip() for _ in range(25)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    with Journal(path) as journal:
        states = {e.id: (e.state, e.commit) for e in journal.entries()}
    for tid in reported:
        assert states[tid] == ("green", f"c{tid}")
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_reset_forgets_a_finished_batch(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        journal.set_meta({"backlog": "x"})
        journal.add([_item("a", tmp_path)])
        journal.reset()
        assert journal.entries() == [] and "backlog" not in journal.meta()
        assert journal.meta()["schema"] == 1


def test_a_file_that_is_not_a_journal(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    path.write_text("not a database, just text " * 100)
    with pytest.raises(AgentError, match="is not readable"):
        Journal(path)
