"""The batch journal: every ticket's state, written durably the moment it changes.

SQLite in WAL mode with `synchronous=FULL`: each state change is one transaction, fsync'd before
the call returns, so a batch killed at any moment (Ctrl-C, SIGKILL, a power cut) finds every
result it reported. An advisory lock on `PATH.lock` keeps two batches off one journal; the kernel
drops it when the holder dies, however it dies.

States: queued -> running -> green | failed | cannot-reproduce | error. A ticket left `running` by
a killed batch is decided on resume (see agent.batch.recover); a final state is never left.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from greenpatch.agent.batch.sources import BatchTicket
from greenpatch.agent.errors import AgentError

FINAL = ("green", "failed", "cannot-reproduce", "error")
STATES = ("queued", "running", *FINAL)
SCHEMA = 1

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tickets (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    record TEXT NOT NULL,
    state TEXT NOT NULL,
    base TEXT,
    branch TEXT,
    sha TEXT,
    reason TEXT NOT NULL DEFAULT '',
    seconds REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    report TEXT,
    pull_request TEXT,
    compare_url TEXT,
    pr_error TEXT,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    pid INTEGER NOT NULL,
    id TEXT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
"""


@dataclass
class Entry:
    item: BatchTicket
    state: str
    base: str | None
    branch: str | None
    commit: str | None
    reason: str
    seconds: float
    attempts: int
    report: dict[str, Any] | None
    pull_request: str | None
    compare_url: str | None
    pr_error: str | None

    @property
    def id(self) -> str:
        return self.item.id

    @property
    def final(self) -> bool:
        return self.state in FINAL


class Journal:
    """One batch's durable state; safe to share between the scheduler's threads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(f"{self.path}.lock", "a+")  # noqa: SIM115 - held for the run
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise AgentError(
                f"another agent batch is using the journal {self.path}; wait for it to finish"
            ) from None
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False,
                                       isolation_level=None, timeout=30)  # fmt: skip
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_TABLES)
            version = self.meta().get("schema")
        except sqlite3.DatabaseError as exc:
            self.close()
            raise AgentError(f"the journal {self.path} is not readable: {exc}") from None
        if version is None:
            self.set_meta({"schema": SCHEMA})
        elif version != SCHEMA:
            self.close()
            raise AgentError(f"the journal {self.path} is from another version (schema {version})")

    # --- plumbing ----------------------------------------------------------------------------

    def _write(self, statements: Iterable[tuple[str, tuple]]) -> None:
        """One durable transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, args in statements:
                    self._db.execute(sql, args)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _transition(self, sql: str, args: tuple, ticket_id: str, state: str, detail: str) -> bool:
        """One durable transaction: the update, and its event if it changed the ticket."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                changed = self._db.execute(sql, args).rowcount > 0
                if changed:
                    self._db.execute(*self._event(ticket_id, state, detail))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return changed

    def _event(self, ticket_id: str, state: str, detail: str = "") -> tuple[str, tuple]:
        return ("INSERT INTO events (at, pid, id, state, detail) VALUES (?, ?, ?, ?, ?)",
                (time.time(), os.getpid(), ticket_id, state, detail))  # fmt: skip

    def close(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()
            self._db = None
        if not self._lock_file.closed:
            self._lock_file.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- meta --------------------------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        with self._lock:
            rows = self._db.execute("SELECT key, value FROM meta").fetchall()
        return {k: json.loads(v) for k, v in rows}

    def set_meta(self, values: dict[str, Any]) -> None:
        self._write(
            ("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (k, json.dumps(v)))
            for k, v in values.items()
        )

    def reset(self) -> None:
        """Forget a finished batch, to start a new one in the same journal."""
        self._write([("DELETE FROM tickets", ()), ("DELETE FROM events", ()),
                     ("DELETE FROM meta WHERE key != 'schema'", ())])  # fmt: skip

    # --- tickets -----------------------------------------------------------------------------

    def add(self, items: Iterable[BatchTicket]) -> list[str]:
        """Queue tickets the journal does not know yet; known ones keep their state."""
        known = {e.id for e in self.entries()}
        fresh = [item for item in items if item.id not in known]
        now = time.time()
        with self._lock:
            start = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM tickets").fetchone()[0]
        statements = []
        for offset, item in enumerate(fresh, 1):
            statements.append((
                "INSERT INTO tickets (id, seq, record, state, updated) VALUES (?, ?, ?, ?, ?)",
                (item.id, start + offset, json.dumps(item.to_record()), "queued", now),
            ))  # fmt: skip
            statements.append(self._event(item.id, "queued"))
        self._write(statements)
        return [item.id for item in fresh]

    _COLUMNS = ("SELECT record, state, base, branch, sha, reason, seconds, attempts, report, "
                "pull_request, compare_url, pr_error, id FROM tickets")

    def entries(self) -> list[Entry]:
        with self._lock:
            rows = self._db.execute(f"{self._COLUMNS} ORDER BY seq").fetchall()
        return [self._entry(r) for r in rows]

    def _entry(self, r: tuple) -> Entry:
        # A row only this code writes: a damaged one (edited by hand, a broken disk) stops
        # the batch with one line rather than be skipped, which would run or lose a ticket.
        try:
            return Entry(
                BatchTicket.from_record(json.loads(r[0])), r[1], r[2], r[3], r[4], r[5],
                r[6], r[7], json.loads(r[8]) if r[8] else None, r[9], r[10], r[11],
            )  # fmt: skip
        except (ValueError, KeyError, TypeError) as exc:
            raise AgentError(
                f"the journal {self.path} is damaged: ticket {r[12]!r} has an unreadable "
                f"record ({type(exc).__name__}: {exc}); move the journal away to start over"
            ) from None

    def get(self, ticket_id: str) -> Entry:
        """One ticket, read by its key (a batch of 10,000 reads it per ticket published)."""
        with self._lock:
            row = self._db.execute(f"{self._COLUMNS} WHERE id=?", (ticket_id,)).fetchone()
        if row is None:
            raise KeyError(ticket_id)
        return self._entry(row)

    def events(self, ticket_id: str | None = None) -> list[tuple[str, str, str]]:
        """(id, state, detail) in the order they were written."""
        with self._lock:
            rows = self._db.execute("SELECT id, state, detail FROM events ORDER BY seq").fetchall()
        return [r for r in rows if ticket_id is None or r[0] == ticket_id]

    def start(self, ticket_id: str, base: str, branch: str) -> None:
        """Running now, on `base`, to commit on `branch` if green."""
        self._transition(
            "UPDATE tickets SET state='running', base=?, branch=?, attempts=attempts+1, "
            "updated=? WHERE id=? AND state IN ('queued', 'running')",
            (base, branch, time.time(), ticket_id), ticket_id, "running", base,
        )  # fmt: skip

    def finish(
        self,
        ticket_id: str,
        state: str,
        *,
        branch: str | None = None,
        commit: str | None = None,
        reason: str = "",
        seconds: float = 0.0,
        report: dict[str, Any] | None = None,
    ) -> bool:
        """A final state; a ticket already final keeps its first one (and False is returned)."""
        if state not in FINAL:
            raise ValueError(f"not a final state: {state}")
        return self._transition(
            "UPDATE tickets SET state=?, branch=COALESCE(?, branch), sha=?, reason=?, "
            "seconds=seconds+?, report=?, updated=? WHERE id=? AND state IN ('queued', 'running')",
            (state, branch, commit, reason, seconds,
             json.dumps(report, default=str) if report is not None else None,
             time.time(), ticket_id),
            ticket_id, state, reason or commit or "",
        )  # fmt: skip

    def requeue(self, ticket_id: str, reason: str, seconds: float = 0.0) -> None:
        """Back to queued (an interrupted attempt): the next run does it again."""
        self._transition(
            "UPDATE tickets SET state='queued', reason=?, seconds=seconds+?, updated=? "
            "WHERE id=? AND state='running'", (reason, seconds, time.time(), ticket_id),
            ticket_id, "queued", reason,
        )  # fmt: skip

    def note(self, ticket_id: str, what: str, detail: str = "") -> None:
        """An event that changes nothing of the ticket (where an attempt runs, a node lost)."""
        if what in STATES:
            raise ValueError(f"a state, not a note: {what}")
        self._write([self._event(ticket_id, what, detail)])

    def record_pr(
        self, ticket_id: str, url: str | None, compare_url: str | None, error: str | None
    ) -> None:
        self._transition(
            "UPDATE tickets SET pull_request=?, compare_url=?, pr_error=?, updated=? WHERE id=?",
            (url, compare_url, error, time.time(), ticket_id), ticket_id,
            "published" if error is None else "publish-failed", url or compare_url or error or "",
        )  # fmt: skip
