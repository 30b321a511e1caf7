"""Test results keyed by what they depend on, so identical content is never run twice.

A key is the test id, the environment hash, the commit, and the content hashes of the candidate's
files that the test can see (those it executed or imports, per the baseline); a test's result for
one candidate answers for every candidate that agrees on those files.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from greenpatch.runner.results import TestResult

# Results that say more about the machine's load than about the code are never reused.
_UNSTABLE_PREFIXES = ("timeout:", "crashed:", "not run:")


def content_hash(text: str | None) -> str:
    if text is None:
        return "deleted"
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:20]


def changes_digest(files: Mapping[str, str | None]) -> str:
    """One hash for a whole change set (used to collapse duplicate candidates)."""
    items = sorted((path, content_hash(text)) for path, text in files.items())
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:24]


def result_key(
    test_id: str,
    env_hash: str,
    commit: str,
    files: Mapping[str, str | None],
    visible: Iterable[str],
) -> str:
    """The cache key of `test_id` run on `commit` with `files` replaced; `visible` are the paths
    the test depends on (a changed file outside them cannot change its result)."""
    seen = set(visible)
    parts = sorted((p, content_hash(t)) for p, t in files.items() if p in seen)
    raw = json.dumps([test_id, env_hash, commit, parts])
    return hashlib.sha256(raw.encode()).hexdigest()


class ResultCache:
    """A SQLite table of results by key; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, outcome TEXT, "
            "seconds REAL, message TEXT, frames TEXT)"
        )

    def get(self, key: str) -> tuple[str, float, str, tuple] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT outcome, seconds, message, frames FROM results WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        return row[0], row[1], row[2], tuple(tuple(f) for f in json.loads(row[3]))

    def put(self, key: str, result: TestResult) -> None:
        if result.message.startswith(_UNSTABLE_PREFIXES):
            return
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?)",
                (key, result.outcome, result.seconds, result.message, json.dumps(result.frames)),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()
