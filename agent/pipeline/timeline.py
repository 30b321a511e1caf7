"""What happened when in one fix, for the run report page (`agent.report_page`).

Two records, both in seconds since the run started:
- spans on lanes: the set-up (baseline, model loading), the drafter (each drafting stage), each
  test worker (the chunks of candidates it ran, from the runner's `JobDone.spans`), and the
  confirmation run;
- every candidate: its round, how it was drafted, where, and what its tests said.

The loop feeds it from events it already has (a stage drafted, a candidate submitted, its
`JobDone`); the runner knows nothing of it. Thread-safe: drafting, the model loader and the
pool's consumer thread all report here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from greenpatch.runner.results import JobDone, TestResult

SETUP = "set-up"
DRAFTER = "drafter"
CONFIRM = "confirm"
FILL_CHARS = 200  # what of a candidate's fill the report keeps (the diff shows the winner whole)
MESSAGE_CHARS = 300

T = TypeVar("T")


def worker_lane(index: int) -> str:
    return f"worker {index}"


@dataclass(frozen=True)
class Span:
    lane: str
    start: float
    end: float
    kind: str  # baseline | pool | model | <drafting stage> | candidate | confirm
    label: str = ""


@dataclass
class Attempt:
    """One candidate: drafted in `round` by `origin` at `path`:`line`, and its verdict."""

    id: str
    round: int
    origin: str
    path: str
    line: int
    fill: str
    score: float
    parent: str | None
    submitted: float
    tested: float | None = None
    outcome: str = "not run"  # green | partial | failed | timeout | cancelled | ... | not run
    targets_passed: int = 0
    tests: int = 0
    failure: str = ""  # the first failing test and its message's first line


def outcome_of(done: JobDone, targets_passed: int) -> str:
    """One word for a candidate's verdict: green; partial (some target tests pass); failed;
    or the job's own end when it stopped for another reason (timeout, cancelled, ...)."""
    if done.green:
        return "green"
    if done.reason not in ("ok", "fail_fast", "duplicate"):
        return done.reason
    return "partial" if targets_passed else "failed"


class Timeline:
    def __init__(self, origin: float | None = None) -> None:
        self.origin = time.monotonic() if origin is None else origin
        self._lock = threading.Lock()
        self._spans: list[Span] = []
        self._attempts: dict[str, Attempt] = {}

    def at(self, moment: float) -> float:
        """A time.monotonic() moment in seconds since the run started."""
        return round(moment - self.origin, 3)

    def add(self, lane: str, start: float, end: float, kind: str, label: str = "") -> None:
        """A span from monotonic `start` to `end`."""
        with self._lock:
            self._spans.append(Span(lane, self.at(start), self.at(max(start, end)), kind, label))

    @contextmanager
    def span(self, lane: str, kind: str, label: str = "") -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self.add(lane, began, time.monotonic(), kind, label)

    def timed(self, lane: str, kind: str, label: str, make: Callable[[], T]) -> Callable[[], T]:
        """`make`, recording a span whenever it is called (drafting stages run lazily)."""

        def run() -> T:
            with self.span(lane, kind, label):
                return make()

        return run

    def submitted(self, draft: Any, round_: int) -> None:
        """A candidate goes to the test pool (`draft`: an agent.pipeline.draft.Draft)."""
        site = draft.site
        attempt = Attempt(
            id=draft.id, round=round_, origin=draft.origin, path=draft.path, line=site.line,
            fill=draft.fill[:FILL_CHARS], score=round(float(draft.score), 4),
            parent=draft.parent, submitted=self.at(time.monotonic()),
        )  # fmt: skip
        with self._lock:
            self._attempts[draft.id] = attempt

    def tested(self, done: JobDone, targets_passed: int, failure: TestResult | None) -> None:
        """A candidate's tests are over: its verdict, and the workers' spans that ran it."""
        outcome = outcome_of(done, targets_passed)
        for worker, start, end in done.spans:
            self.add(worker_lane(worker), start, end, "candidate", f"{done.job_id}: {outcome}")
        with self._lock:
            attempt = self._attempts.get(done.job_id)
            if attempt is None:
                return
            attempt.tested = self.at(time.monotonic())
            attempt.outcome = outcome
            attempt.targets_passed = targets_passed
            attempt.tests = len(done.results)
            if failure is not None:
                first = (failure.message.strip().splitlines() or [""])[0]
                attempt.failure = f"{failure.test_id}: {first}"[:MESSAGE_CHARS]

    def baseline(self, jobs: list[tuple[str, int, float, float]]) -> None:
        """The baseline's jobs, (job id, worker, start, end): the workers' time before the
        first candidate, and the map filling in behind the candidates."""
        for job_id, worker, start, end in jobs:
            self.add(worker_lane(worker), start, end, "baseline", job_id)

    def spans(self) -> list[dict]:
        with self._lock:
            return [asdict(s) for s in sorted(self._spans, key=lambda s: (s.start, s.lane))]

    def attempts(self) -> list[dict]:
        with self._lock:
            return [asdict(a) for a in sorted(self._attempts.values(),
                                              key=lambda a: a.submitted)]  # fmt: skip
