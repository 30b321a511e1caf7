"""The fix loop: localize, draft, validate, feed back, until a candidate is green and confirmed.

Drafting runs on this thread; the test pool runs candidates in sandboxed workers meanwhile, and a
consumer thread reads its results as they stream in. The first round's drafts come from the
explorer (`agent.explore`), most valuable first across every suspicious line, and every result
re-weights the line it was drafted for. A candidate that makes progress (more target tests
pass, or the failure moves deeper into the test) gets drafting turns alternating with
exploration: its neighbourhood first, its fill re-noised and re-denoised, and new sites drawn on
its version of the file, localized again with the frames of its remaining failure.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from agent.canvases import Site, sites_for
from agent.config import Settings
from agent.draft import Draft, Drafter
from agent.explore import Explorer, Step, effect
from agent.live import FixState
from agent.localize import SuspiciousLine, rank_lines
from agent.mutations import missing_names
from agent.reproduce import Reproduction
from runner.baseline import Baseline
from runner.cache import ResultCache
from runner.pool import Job, Pool
from runner.results import JobDone, TestResult
from runner.selection import select_tests
from sandboxes import Limits

# Suspicious lines turned into sites per work unit, and units queued ahead of the pool: enough
# to keep the workers busy, few enough that a feedback round is not stuck behind a long queue.
LINES_PER_UNIT = 3
MAX_QUEUED_JOBS = 24
# Lines either side of a progressing candidate's site that feedback drafts first.
FOCUS_LINES = 2
# Candidates per worker in flight for the model to sample: below that, testers would wait.
FED_QUEUE = 4
FAILURE_TEXT_CHARS = 600
PRISTINE = "pristine"


@dataclass
class Options:
    budget: float
    max_rounds: int = 4
    max_candidates: int = 2000
    seed: int = 0
    # Ablation: every candidate runs the whole suite in a fresh pytest process (no test
    # selection, no warm workers).
    cold_full_suite: bool = False

    @property
    def feedback(self) -> bool:
        """Results feed back into drafting (one round = one-shot: the order is fixed)."""
        return self.max_rounds > 1


@dataclass
class Verdict:
    draft: Draft
    done: JobDone
    targets_passed: int
    failure: TestResult | None

    @property
    def green(self) -> bool:
        return self.done.green


@dataclass
class Outcome:
    green: Draft | None
    confirmed: JobDone | None
    rounds: int
    candidates: int
    tests_run: int
    localization: list[SuspiciousLine]
    busy: dict[str, float]
    failing_after: list[str] = field(default_factory=list)


def _frames(results: Sequence[TestResult]) -> dict[str, list[tuple[str, int]]]:
    return {r.test_id: list(r.frames) for r in results if r.failed}


@dataclass
class _Unit:
    """One piece of drafting work: sites on a version of the files, or a draft to refine."""

    sources: dict[str, str]
    sites: list[Site]
    depth: int
    parent: Draft | None = None
    cond: str = ""


class _Stream:
    """Units drafted lazily, handed out a few drafts at a time, each with its round."""

    def __init__(self, batches: Callable[[_Unit], Iterator[list[Draft]]],
                 units: Iterable[_Unit] = ()) -> None:  # fmt: skip
        self.batches = batches
        self.units: deque[_Unit] = deque(units)
        self.pending: deque[tuple[Draft, int]] = deque()
        self.current: Iterator[list[Draft]] | None = None
        self.depth = 1

    def __bool__(self) -> bool:
        return bool(self.pending or self.units or self.current is not None)

    def take(self, n: int) -> list[tuple[Draft, int]]:
        """Up to `n` (draft, round) pairs, fewer when the stream runs dry."""
        while len(self.pending) < n and (self.current is not None or self.units):
            if self.current is None:
                unit = self.units.popleft()
                self.current, self.depth = self.batches(unit), unit.depth
            batch = next(self.current, None)
            if batch is None:
                self.current = None
                continue
            self.pending.extend((draft, self.depth) for draft in batch)
        return [self.pending.popleft() for _ in range(min(n, len(self.pending)))]


class FixLoop:
    def __init__(
        self,
        repo_root: Path,
        python: str,
        settings: Settings,
        reproduction: Reproduction,
        drafter: Drafter,
        options: Options,
        state: FixState,
    ) -> None:
        self.root = repo_root
        self.python = python
        self.settings = settings
        self.repro = reproduction
        self.baseline: Baseline = reproduction.baseline
        self.drafter = drafter
        self.options = options
        self.state = state
        self.targets = reproduction.targets
        self.passing = set(self.baseline.passing)
        self.deadline = time.monotonic() + options.budget
        self._lock = threading.Lock()
        self._inflight: dict[str, Draft] = {}
        self._depth_of: dict[str, int] = {}
        self._results: dict[str, list[TestResult]] = {}
        self._verdicts: deque[Verdict] = deque()
        self._green: Verdict | None = None
        self._testing_busy = 0.0
        self._busy_since = 0.0
        self._localization: list[SuspiciousLine] = []
        self.validated = 0
        self._stop = threading.Event()
        self._reference: TestResult | None = None  # the pristine code's first failure, as run
        self._texts: dict[str, str] = {}
        self._coverage = {t: self.baseline.coverage(t) for t in self.baseline.tests}
        self._base_frames = {t: list(self.baseline.records[t].frames) for t in self.targets}
        self.missing = list(dict.fromkeys(
            name for t in self.targets for name in missing_names(self.baseline.records[t].message)
        ))  # fmt: skip

    # --- localization ------------------------------------------------------------------------

    def localize(
        self, frames: dict[str, list[tuple[str, int]]] | None = None
    ) -> list[SuspiciousLine]:
        tracebacks = dict(self._base_frames)
        tracebacks.update(frames or {})
        return rank_lines(
            self._coverage,
            failing=self.targets,
            passing=self.passing,
            tracebacks=tracebacks,
            never_edit=self.settings.never_edit,
        )

    def _sources(self, lines: Sequence[SuspiciousLine]) -> dict[str, str]:
        for path in dict.fromkeys(s.path for s in lines):
            if path in self._texts:
                continue
            text = self.baseline.source(path)
            if text is None and (self.root / path).is_file():
                text = (self.root / path).read_text(encoding="utf-8")
            if text is not None:
                self._texts[path] = text
        return {s.path: self._texts[s.path] for s in lines if s.path in self._texts}

    # --- validation --------------------------------------------------------------------------

    def _job(self, draft: Draft) -> Job:
        if self.options.cold_full_suite:
            regression = [t for t in self.baseline.tests if t in self.passing]
        else:
            selection = select_tests(self.baseline, draft.files)
            regression = [t for t in selection.tests if t in self.passing]
        regression = [t for t in regression if t not in self.targets]
        return Job(draft.id, draft.files, [*self.targets, *regression], True, tuple(self.targets))

    def _consume(self, pool: Pool) -> None:
        while not self._stop.is_set():
            got = False
            for event in pool.events(timeout=0.1):
                got = True
                self._handle(event)
            if not got:
                time.sleep(0.02)

    def _busy_change(self, before: int) -> None:
        """Testing is busy while any candidate is in flight; call with the lock held, after
        `_inflight` changed from `before` entries."""
        now = time.monotonic()
        if before == 0 and self._inflight:
            self._busy_since = now
        elif before and not self._inflight:
            self._testing_busy += now - self._busy_since

    def _handle(self, event: TestResult | JobDone) -> None:
        if isinstance(event, TestResult):
            if not event.cached:
                self.state.tests_run += 1
            return
        if event.job_id == PRISTINE:
            self._reference = next((r for r in event.results if r.failed), None)
            return
        with self._lock:
            before = len(self._inflight)
            draft = self._inflight.pop(event.job_id, None)
            self._busy_change(before)
        if draft is None:
            return
        results = list(event.results)
        passed = sum(1 for r in results if r.test_id in self.targets and r.outcome == "passed")
        failure = next((r for r in results if r.failed), None)
        verdict = Verdict(draft, event, passed, failure)
        self.state.validated += 1
        self.validated += 1
        if passed > self.state.best_passing or self.state.best == "-":
            self.state.best, self.state.best_passing = draft.id, passed
        with self._lock:
            self._verdicts.append(verdict)
            if verdict.green and self._green is None:
                self._green = verdict

    def _progress(self, verdict: Verdict, best: int) -> bool:
        """More target tests pass than the best so far, or the same number with the first
        failure moved past the frame where the pristine code failed (deeper into the test: the
        candidate got further). A merely different error is not progress: most wrong edits
        produce one, and chasing them starves the search."""
        if verdict.targets_passed > best:
            return True
        failure = verdict.failure
        if failure is None or verdict.targets_passed < best:
            return False
        base = self._base_frames.get(failure.test_id)
        if not base or not failure.frames:
            return False
        test_path = base[0][0]
        line_of = {path: line for path, line in base if path == test_path}
        moved = [line for path, line in failure.frames if path == test_path]
        return bool(moved) and test_path in line_of and moved[0] > line_of[test_path]

    # --- the loop ----------------------------------------------------------------------------

    def _units(self, lines: Sequence[SuspiciousLine], depth: int, parent: Draft | None,
               cond: str) -> list[_Unit]:  # fmt: skip
        sources = dict(parent.files) if parent else {}
        sources = {**self._sources(lines), **sources}
        units = []
        for start in range(0, len(lines), LINES_PER_UNIT):
            chunk = lines[start : start + LINES_PER_UNIT]
            sites = sites_for(sources, chunk, count_tokens=self.drafter.count_tokens)
            if sites:
                units.append(_Unit(sources, sites, depth, parent, cond))
        return units

    def _plan(self, index: int) -> list[Step]:
        """The drafting stages of the index-th suspicious line."""
        line = self._localization[index]
        sources = self._sources([line])
        sites = sites_for(sources, [line], count_tokens=self.drafter.count_tokens)
        if not sites:
            return []
        return [
            Step(stage, partial(self.drafter.stage, sources, sites, stage, seed=1000 + index,
                                missing=self.missing))  # fmt: skip
            for stage in self.drafter.stages
        ]

    def first_round(self) -> tuple[list[SuspiciousLine], Explorer]:
        """Localization from the baseline, and the first round's drafts in order of value."""
        self._localization = self.localize()
        scores = [s.score for s in self._localization]
        return self._localization, Explorer(scores, self._plan, self._testers_fed)

    def _focus_units(self, verdict: Verdict, depth: int) -> list[_Unit]:
        """The neighbourhood of a candidate that made progress, on the original code: its
        site's line and the suspicious lines around it, nearest first. A near miss usually
        sits at or next to the bug; without this, those sites wait for their turn in the
        suspiciousness order. Fills already drafted are not drafted again."""
        site = verdict.draft.site
        near = [
            s for s in self._localization
            if s.path == site.path and abs(s.line - site.line) <= FOCUS_LINES
        ]  # fmt: skip
        near.sort(key=lambda s: (abs(s.line - site.line), -s.score))
        return self._units(near, depth, None, "")

    def _feedback_units(self, verdict: Verdict, depth: int) -> list[_Unit]:
        failure = verdict.failure
        cond = ""
        frames: dict[str, list[tuple[str, int]]] = {}
        if failure is not None:
            cond = (failure.message or "")[-FAILURE_TEXT_CHARS:]
            frames = _frames([failure])
        lines = self.localize(frames)[: 2 * LINES_PER_UNIT]
        refine = _Unit({}, [], depth, verdict.draft, cond)
        return [
            *self._focus_units(verdict, depth),
            refine,
            *self._units(lines, depth, verdict.draft, cond),
        ]

    def _submit(self, pool: Pool, drafts: list[Draft], depth: int) -> None:
        for draft in drafts:
            if self.state.drafted >= self.options.max_candidates:
                return
            with self._lock:
                before = len(self._inflight)
                self._inflight[draft.id] = draft
                self._busy_change(before)
                self._depth_of[draft.id] = depth
            self.state.drafted += 1
            pool.submit(self._job(draft))

    def _testers_fed(self) -> bool:
        """Enough candidates queued that the workers stay busy while the model samples."""
        with self._lock:
            return len(self._inflight) >= FED_QUEUE * self.settings.workers

    def _time_left(self) -> float:
        return self.deadline - time.monotonic()

    def _batches(self, unit: _Unit) -> Iterator[list[Draft]]:
        """A unit's drafts, batch by batch."""
        self.state.stage = "feedback"
        if unit.parent is not None and not unit.sites:
            yield self.drafter.refine(unit.parent, unit.cond)
            return
        yield from self.drafter.draft(
            unit.sources, unit.sites, unit.cond, unit.parent and unit.parent.id,
            round_seed=unit.depth * 1000, missing=self.missing, sample_now=self._testers_fed,
        )  # fmt: skip

    def run(self, pool: Pool) -> Outcome:
        started = time.monotonic()
        localization, explore = self.first_round()
        # The pristine code's failure as the candidates' runs report it: what their failures
        # are compared with (feedback).
        pool.submit(Job(PRISTINE, {}, list(self.targets), True, tuple(self.targets)))
        # Feedback alternates with exploration, a few candidates at a time, so that neither
        # starves the other and a near miss is followed up while the pool is still busy.
        feedback = _Stream(self._batches)
        take_feedback = True
        consumer = threading.Thread(target=self._consume, args=(pool,), daemon=True)
        consumer.start()
        best = 0
        rounds = 1
        try:
            while self._time_left() > 0 and self._green is None:
                with self._lock:
                    fresh = list(self._verdicts)
                    self._verdicts.clear()
                for verdict in sorted(fresh, key=lambda v: -v.targets_passed):
                    depth = self._depth_of.get(verdict.draft.id, 1)
                    if (
                        self.options.feedback
                        and depth < self.options.max_rounds
                        and self._progress(verdict, best)
                    ):
                        best = max(best, verdict.targets_passed)
                        rounds = max(rounds, depth + 1)
                        feedback.units.extend(self._feedback_units(verdict, depth + 1))
                    if self.options.feedback and self._reference is not None:
                        seen = effect(self._reference, verdict.failure, verdict.draft.files)
                        explore.observe(verdict.draft.id, seen)
                with self._lock:
                    inflight = len(self._inflight)
                exhausted = self.state.drafted >= self.options.max_candidates
                if exhausted or not (explore or feedback):
                    if inflight == 0:
                        break  # everything drafted has been validated: the search is over
                    time.sleep(0.05)
                    continue
                if inflight >= MAX_QUEUED_JOBS:
                    time.sleep(0.02)
                    continue
                room = MAX_QUEUED_JOBS - inflight
                if (take_feedback and feedback) or not explore:
                    taken = feedback.take(room)
                else:
                    self.state.stage = "drafting"
                    taken = [(draft, 1) for draft in explore.take(room)]
                take_feedback = not take_feedback
                for draft, depth in taken:
                    self.state.round = max(self.state.round, depth)
                    self._submit(pool, [draft], depth)
        finally:
            self._stop.set()
            consumer.join(timeout=5)
            with self._lock:
                leftover = list(self._inflight)
                if leftover:
                    self._testing_busy += time.monotonic() - self._busy_since
            for job_id in leftover:
                pool.cancel(job_id)
        wall = max(time.monotonic() - started, 1e-9)
        busy = {
            "drafting": round(self.drafter.busy / wall, 3),
            "testing": round(min(self._testing_busy, wall) / wall, 3),
        }
        green = self._green.draft if self._green else None
        return Outcome(green, None, rounds, self.state.drafted, self.state.tests_run,
                       localization, busy)  # fmt: skip

    # --- confirmation ------------------------------------------------------------------------

    def confirm(self, draft: Draft) -> tuple[bool, JobDone]:
        """Run the winner again in a fresh sandbox on a clean worktree, without the cache:
        targets, every affected test, and the other failing tests (to report what still fails)."""
        job = self._job(draft)
        others = [t for t in self.repro.failing_before if t not in self.targets]
        job = Job(job.id + "-confirm", job.files, [*job.tests, *others], False, job.targets)
        with self.pool(workers=1, cache=None) as fresh:
            done = fresh.run(job)
        outcome = {r.test_id: r.outcome for r in done.results}
        required = [t for t in job.tests if t not in others]
        ok = all(outcome.get(t) == "passed" for t in required)
        return ok, done

    def pool(self, workers: int | None = None, cache: ResultCache | None | bool = True) -> Pool:
        if cache is True:
            cache = ResultCache(self.baseline.path.parent / "results.sqlite")
        return Pool(
            self.root,
            self.python,
            self.settings.sandbox,
            workers=workers or self.settings.workers,
            limits=Limits(memory_mb=self.settings.memory_mb, output_bytes=1 << 30),
            test_timeout=self.settings.test_timeout,
            job_timeout=self.settings.candidate_timeout,
            # Python's own traceback format: pytest's (source excerpts, module lookups for every
            # frame) were most of a failing candidate's job; the loop needs only the
            # innermost frames and the error, which both carry.
            pytest_args=[*self.settings.pytest_args, "--tb=native"],
            cache=cache or None,
            dependencies=self.baseline.dependencies,
            durations=self.baseline.durations,
            cold=self.options.cold_full_suite,
        )
