"""The scheduling protocol: which tests an idle worker runs next.

A job (one candidate) arrives with its target tests (the ticket's failing tests) and its regression
tests. A policy turns jobs into chunks (tests of one job run in one forked child); the pool asks
for the next chunk whenever a worker is idle (so idle workers steal whatever is pending) and drops
a job's pending chunks when it fails fast or is cancelled. A job's targets all run even when one
fails (the caller counts how many a candidate passes): a chunk holding several targets is sent
without fail fast, and the pool stops the job once its targets are in.
"""

from __future__ import annotations

import abc
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Chunk:
    job_id: str
    tests: list[str]
    fail_fast: bool


@dataclass
class Stats:
    """What policies rank tests by: baseline durations, failures seen in this pool so far."""

    durations: dict[str, float] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)

    def duration(self, test: str) -> float:
        return self.durations.get(test, 0.05)


def worker_fail_fast(targets: list[str], fail_fast: bool) -> bool:
    """Whether a worker may stop a chunk holding these targets at its first failure: not with
    several (they all run; the pool stops the job once they are in)."""
    return fail_fast and len(targets) <= 1


def regression_order(tests: list[str], stats: Stats, fail_fast: bool = True) -> list[str]:
    """With fail fast: most likely to fail first (failed most often for other candidates), then
    the quickest, so a failing candidate is rejected as early as possible. Without: the suite's
    own order, which tests that depend on what ran before them (sys.modules, caches) expect."""
    if not fail_fast:
        return list(tests)
    return sorted(tests, key=lambda t: (-stats.failures[t], stats.duration(t)))


class Scheduler(abc.ABC):
    def __init__(self, workers: int, stats: Stats) -> None:
        self.workers = workers
        self.stats = stats

    @abc.abstractmethod
    def add(self, job_id: str, targets: list[str], tests: list[str], fail_fast: bool) -> None:
        """Queue a job (or more tests of a queued job); `targets` run before `tests`."""

    @abc.abstractmethod
    def next_chunk(self) -> Chunk | None:
        """Work for an idle worker, or None if nothing is pending."""

    @abc.abstractmethod
    def drop(self, job_id: str) -> None:
        """Forget a job's pending chunks (failed fast, cancelled)."""

    @abc.abstractmethod
    def has_pending(self, job_id: str) -> bool: ...

    def finished(self, chunk: Chunk) -> None:  # noqa: B027 - most policies need no news
        """A chunk handed out earlier is over (the job may still fail fast after this)."""
