"""What a run reports: one result per test, one summary per job."""

from __future__ import annotations

from dataclasses import dataclass, field

OUTCOMES = ("passed", "failed", "error", "skipped")
FAILING = ("failed", "error")


@dataclass(frozen=True)
class TestResult:
    """One test of one job. `frames` are (path, line) of the failure, innermost last."""

    __test__ = False  # not a pytest test class

    job_id: str
    test_id: str
    outcome: str
    seconds: float
    message: str = ""
    frames: tuple[tuple[str, int], ...] = ()
    cached: bool = False

    @property
    def failed(self) -> bool:
        return self.outcome in FAILING


@dataclass(frozen=True)
class TestCoverage:
    """The project lines one test of a coverage job executed: {relpath: lines}."""

    __test__ = False

    job_id: str
    test_id: str
    lines: dict[str, tuple[int, ...]]


@dataclass(frozen=True)
class JobDone:
    """A job is finished: every result it will produce has been delivered.

    `reason`: "ok" (all requested tests ran), "fail_fast" (stopped at the first failure),
    "cancelled", "timeout" (the job's time ran out), "duplicate" (answered by an identical job),
    "unverified" (pytest did not end as its reports say), "tool error" (our coverage.py failed).
    """

    job_id: str
    reason: str
    results: tuple[TestResult, ...] = field(default=())
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # CPU time the job's test processes used (not the pool's own)
    tool_error: str = ""  # reason "tool error": what of ours failed in the worker
    # When which worker ran the job's chunks: (worker index, start, end) in time.monotonic()
    # seconds of the caller's process (for reports of who was busy when).
    spans: tuple[tuple[int, float, float], ...] = ()

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    @property
    def failed(self) -> bool:
        return any(r.failed for r in self.results)

    @property
    def green(self) -> bool:
        return bool(self.results) and not self.failed and self.reason == "ok"
