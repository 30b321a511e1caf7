"""The fix loop: localize, draft, validate, feed back, until a candidate is green and confirmed.

Drafting runs on this thread; the test pool runs candidates in sandboxed workers meanwhile, and a
consumer thread reads its results as they stream in. Drafts come from the explorer
(`agent.pipeline.explore`), most valuable first across every suspicious line. A candidate that makes
progress (more target tests pass) has work on top of it join the exploration: the tests it
still fails localized again, new sites drawn on its version of the code (keeping its change,
so a second bug is fixed on top of the first), its fill re-noised and re-denoised.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from greenpatch.agent.config import Settings
from greenpatch.agent.pipeline.draft import Draft, Drafter
from greenpatch.agent.pipeline.explore import LINE_SHARPNESS, Explorer, Step
from greenpatch.agent.pipeline.harness import result_cache, test_pool
from greenpatch.agent.pipeline.live import FixState
from greenpatch.agent.pipeline.localize import (
    DENOISER_WEIGHT,
    SuspiciousLine,
    denoiser_disbelief,
    rank_lines,
)
from greenpatch.agent.pipeline.mutations import missing_names
from greenpatch.agent.pipeline.reproduce import Reproduction
from greenpatch.agent.pipeline.sites import sites_for
from greenpatch.agent.pipeline.timeline import DRAFTER, Timeline
from greenpatch.model.repair import has_repair_head
from greenpatch.runner.baseline import Baseline
from greenpatch.runner.cache import ResultCache
from greenpatch.runner.pool import Job, Pool
from greenpatch.runner.results import JobDone, TestResult
from greenpatch.runner.selection import select_tests

# Candidates queued ahead of the pool: enough to keep the workers busy, few enough that a
# progressing candidate's follow-up is not stuck behind a long queue.
MAX_QUEUED_JOBS = 24
# A progressing candidate's follow-up: the lines localized again with its failure, what each
# is worth against a first-round line of the same score (the candidate passes more targets
# than anything before it), and the share of its line's weight that re-noising its fill is worth.
FOLLOW_UP_LINES = 40
FOLLOW_UP_BOOST = 4.0
FOLLOW_UP_SHARE = 0.5
# What one candidate of a line is expected to cost in test-seconds (the explorer orders by value
# per test-second): a fixed overhead (fork, files written, results back), the targets (every
# candidate runs them first and most stop at their first failure), and this share of the
# passing tests that cover the line (the regression tests it selects; only a candidate that
# passes the targets runs them). Estimates, not measured per project.
CANDIDATE_OVERHEAD = 0.2
REGRESSION_SHARE = 0.2
# Candidates per worker in flight for the model to sample: below that, testers would wait.
FED_QUEUE = 4
# A green candidate that leaves other tests failing that failed before and cover its change
# (the same bug, most likely: the ticket named one of them) is kept while the search goes on
# for as long again as finding it took (at least this many seconds, within the budget), for a
# candidate that turns those green too. 5 s stopped the toolz join task of the bug benchmark
# with its fix queued behind the partial one's follow-ups.
OTHERS_MIN_SEARCH = 15.0
FAILURE_TEXT_CHARS = 600


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
    passed_targets: frozenset[str]
    failure: TestResult | None

    @property
    def targets_passed(self) -> int:
        return len(self.passed_targets)

    @property
    def green(self) -> bool:
        return self.done.green


@dataclass
class Outcome:
    green: Draft | None
    rounds: int
    candidates: int
    localization: list[SuspiciousLine]
    busy: dict[str, float]


def _frames(results: Sequence[TestResult]) -> dict[str, list[tuple[str, int]]]:
    return {r.test_id: list(r.frames) for r in results if r.failed}


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
        timeline: Timeline | None = None,
    ) -> None:
        self.root = repo_root
        self.timeline = timeline or Timeline()  # who was busy when, for the run report
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
        self._results: dict[str, list[TestResult]] = {}
        self._verdicts: deque[Verdict] = deque()
        self._green: Verdict | None = None
        # Green candidates that leave affected failing-before tests failing: the best so far
        # (most of them passing), since when one is known, and the probes still running.
        self._partial: tuple[int, Verdict] | None = None
        self._partial_since: float | None = None
        self._probes: dict[str, Verdict] = {}
        self._partials: deque[Verdict] = deque()  # partial greens to follow up
        self._started = 0.0  # when `run` began
        self._testing_busy = 0.0
        self._busy_since = 0.0
        self._localization: list[SuspiciousLine] = []
        self.first_tested: float | None = None  # when the first candidate's tests were over
        self._stop = threading.Event()
        self._texts: dict[str, str] = {}
        self._disbelief: dict[tuple[str, int], float] = {}  # the denoiser's, per baseline line
        self.denoiser_weight = DENOISER_WEIGHT
        self.sharpness = LINE_SHARPNESS.get(drafter.stages[0], 1.0)
        self._coverage = {t: self.baseline.coverage(t) for t in self.baseline.tests}
        self._base_frames = {t: list(self.baseline.records[t].frames) for t in self.targets}
        self.missing = list(dict.fromkeys(
            name for t in self.targets for name in missing_names(self.baseline.records[t].message)
        ))  # fmt: skip

    # --- localization ------------------------------------------------------------------------

    def localize(
        self,
        frames: dict[str, list[tuple[str, int]]] | None = None,
        failing: Sequence[str] | None = None,
    ) -> list[SuspiciousLine]:
        """Lines ranked by the baseline's coverage; `failing`: the tests still failing (default:
        every target), the targets not among them count as passing."""
        failing = list(failing or self.targets)
        tracebacks = {t: f for t, f in self._base_frames.items() if t in failing}
        tracebacks.update(frames or {})
        rank = partial(
            rank_lines,
            self._coverage,
            failing=failing,
            passing=self.passing | (set(self.targets) - set(failing)),
            tracebacks=tracebacks,
            never_edit=self.settings.never_edit,
        )
        plain = rank()
        if not has_repair_head(self.drafter.lm):
            return plain
        # With a repair head, the denoiser's disbelief in each line joins spectrum and
        # traceback (one pass per suspicious function, cached: the baseline code never changes).
        return rank(disbelief=self.disbelief(plain), disbelief_weight=self.denoiser_weight)

    def disbelief(self, lines: Sequence[SuspiciousLine]) -> dict[tuple[str, int], float]:
        """The denoiser's disbelief in the baseline's lines, for the functions of `lines`."""
        began = time.monotonic()
        todo = [(s.path, s.line) for s in lines if (s.path, s.line) not in self._disbelief]
        if todo:
            assert self.drafter.lm is not None
            fresh = denoiser_disbelief(self.drafter.lm, self._sources(lines), todo)
            for key in todo:  # lines outside any function read stay 0, and are not read again
                self._disbelief.setdefault(key, 0.0)
            self._disbelief.update(fresh)
            self.drafter.busy += time.monotonic() - began
        return self._disbelief

    def _sources(self, lines: Sequence[SuspiciousLine]) -> dict[str, str]:
        for path in dict.fromkeys(s.path for s in lines):
            if path in self._texts:
                continue
            # The commit's own Python files only (read from git's objects): a path the tests
            # report is never opened on the host.
            text = self.baseline.source(path)
            if text is not None:
                self._texts[path] = text
        return {s.path: self._texts[s.path] for s in lines if s.path in self._texts}

    # --- validation --------------------------------------------------------------------------

    def _job(self, draft: Draft, unmapped: bool = False) -> Job:
        """The candidate's job: targets first, then the affected tests that pass at baseline
        (the map grows while the loop runs); with `unmapped`, also the affected tests the map
        does not hold yet (confirmation: their baseline outcome is unknown, so they must pass)."""
        passing = set(self.baseline.passing)
        if unmapped:
            passing |= self.baseline.not_yet_mapped()
        regression = [t for t in self._affected(draft) if t in passing and t not in self.targets]
        return Job(draft.id, draft.files, [*self.targets, *regression], True, tuple(self.targets),
                   timeout=self.settings.candidate_timeout)  # fmt: skip

    def _affected(self, draft: Draft) -> list[str]:
        """The tests the candidate's change can affect (every test with `cold_full_suite`)."""
        if self.options.cold_full_suite:
            return list(self.baseline.collected)
        return select_tests(self.baseline, draft.files).tests

    def _consume(self, pool: Pool) -> None:
        while not self._stop.is_set():
            got = False
            for event in pool.events(timeout=0.1):
                got = True
                self._handle(event, pool)
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

    def _handle(self, event: TestResult | JobDone, pool: Pool) -> None:
        if isinstance(event, TestResult):
            if not event.cached:
                self.state.tests_run += 1
            return
        with self._lock:
            probed = self._probes.pop(event.job_id, None)
        if probed is not None:
            self._settle(probed, event)
            return
        with self._lock:
            before = len(self._inflight)
            draft = self._inflight.pop(event.job_id, None)
            self._busy_change(before)
        if draft is None:
            return
        if self.first_tested is None:
            self.first_tested = time.monotonic()
        results = list(event.results)
        passed_targets = frozenset(
            r.test_id for r in results if r.test_id in self.targets and r.outcome == "passed"
        )
        failure = next((r for r in results if r.failed), None)
        verdict = Verdict(draft, event, passed_targets, failure)
        self.timeline.tested(event, len(passed_targets), failure)
        passed = verdict.targets_passed
        self.state.validated += 1
        if passed > self.state.best_passing or self.state.best == "-":
            self.state.best, self.state.best_passing = draft.id, passed
        with self._lock:
            self._verdicts.append(verdict)
        if not verdict.green or self._green is not None:
            return
        # Selected again for the rare green: the map has grown since its job was made.
        failing = set(self.repro.failing_before) - set(self.targets)
        others = [t for t in self._affected(draft) if t in failing]
        if not others:
            with self._lock:
                self._green = verdict
            return
        probe = Job(f"{draft.id}-others", draft.files, others, False,
                    timeout=self.settings.candidate_timeout)  # fmt: skip
        with self._lock:
            self._probes[probe.id] = verdict
        pool.submit(probe)

    def _settle(self, verdict: Verdict, probe: JobDone) -> None:
        """A green candidate's other failing-before tests have run: all pass, and it is the
        fix; else it is kept if it passes more of them than any such candidate before."""
        passed = probe.count("passed")
        with self._lock:
            if self._green is not None:
                return
            if probe.reason == "ok" and not probe.failed:
                self._green = verdict
                return
            if self._partial is None or passed > self._partial[0]:
                self._partial = (passed, verdict)
                self._partial_since = self._partial_since or time.monotonic()
            # What it still fails is looked for on top of it, as a second bug would be.
            still = next((r for r in probe.results if r.failed), None)
            if still is not None:
                self._partials.append(Verdict(verdict.draft, probe, verdict.passed_targets,
                                              still))

    def _settled(self) -> bool:
        """A partial green was kept and the extra search for a better one is over."""
        with self._lock:
            since = self._partial_since
        if since is None:
            return False
        found_after = since - self._started
        return time.monotonic() - since >= max(OTHERS_MIN_SEARCH, found_after)

    @staticmethod
    def _progress(verdict: Verdict, followed: list[frozenset[str]]) -> bool:
        """Target tests pass that no candidate followed up so far passed together (with one
        target: it passes, and a regression test fails; with two bugs: either one fixed, each
        a way in). A failure that merely moves (another error, or deeper into the test) is not
        progress: measured on the bug benchmark's dev split, following those up cost
        candidates (a change that hides a crash's symptom moves the crash)."""
        passed = verdict.passed_targets
        return bool(passed) and not any(passed <= earlier for earlier in followed)

    # --- the loop ----------------------------------------------------------------------------

    def _plan(self, index: int) -> list[Step]:
        """The drafting stages of the index-th suspicious line."""
        return self._steps(self._localization[index], seed=1000 + index)

    def _steps(
        self, line: SuspiciousLine, seed: int, cond: str = "", parent: Draft | None = None
    ) -> list[Step]:
        """The drafting stages of a suspicious line, on `parent`'s version of the code if any."""
        sources = {**self._sources([line]), **(parent.files if parent else {})}
        sites = sites_for(sources, [line], count_tokens=self.drafter.count_tokens)
        if not sites:
            return []
        return [
            Step(stage, self.timeline.timed(
                DRAFTER, stage, f"{stage} {line.path}:{line.line}",
                partial(self.drafter.stage, sources, sites, stage, cond, parent, seed=seed,
                        missing=self.missing)))  # fmt: skip
            for stage in self.drafter.stages
        ]

    def first_round(self) -> tuple[list[SuspiciousLine], Explorer]:
        """Localization from the baseline, and the first round's drafts in order of value."""
        self._localization = self.localize()
        scores = [self._weight(s) for s in self._localization]
        keys = [(s.path, s.line) for s in self._localization]
        durations = self.baseline.durations  # built per call: once for every line
        costs = [self.test_seconds(s, durations) for s in self._localization]
        return self._localization, Explorer(scores, self._plan, self._testers_fed, keys, costs)

    def _weight(self, line: SuspiciousLine) -> float:
        return line.score ** self.sharpness

    def test_seconds(self, line: SuspiciousLine, durations: dict[str, float] | None = None
                     ) -> float:
        """Expected test-seconds of one candidate at `line` (see CANDIDATE_OVERHEAD)."""
        durations = self.baseline.durations if durations is None else durations
        targets = sum(durations.get(t, 0.0) for t in self.targets)
        covering = self.baseline.tests_covering(line.path, [line.line])
        regression = sum(durations.get(t, 0.0) for t in covering
                         if t in self.passing and t not in self.targets)  # fmt: skip
        return CANDIDATE_OVERHEAD + targets + REGRESSION_SHARE * regression

    def _follow_up(self, explore: Explorer, verdict: Verdict, depth: int) -> None:
        """A candidate made progress: work on top of it joins the exploration. The tests it
        still fails are localized again (the targets it passes count as passing), and each of
        the top lines drafts on its version of the code, worth FOLLOW_UP_BOOST times its new
        score: a second bug is looked for where the remaining failure points, before the
        first round's long tail. Its own fill is re-noised by the model. A near miss (every
        target passes, a regression fails) also raises its line and the lines next to it."""
        draft, failure = verdict.draft, verdict.failure
        results = verdict.done.results
        failing = [t for t in self.targets if t not in verdict.passed_targets]
        if not failing:
            explore.progress(draft.id)
            # Every target passes: what it fails is a regression test, or (a green's probe)
            # another test that failed before.
            failing = [failure.test_id] if failure is not None else list(self.targets)
        failures = [r for r in results if r.failed and r.test_id in failing]
        cond = (failures[0].message or "")[-FAILURE_TEXT_CHARS:] if failures else ""
        refine = [Step("sample", self.timeline.timed(DRAFTER, "remask", f"re-noise {draft.id}",
                                                     partial(self.drafter.refine, draft, cond)))]
        explore.add(explore.weight(draft.id) * FOLLOW_UP_SHARE, lambda: refine, depth,
                    explore.cost(draft.id))  # fmt: skip
        durations = self.baseline.durations
        for rank, line in enumerate(self.localize(_frames(failures), failing)[:FOLLOW_UP_LINES]):
            steps = partial(self._steps, line, depth * 1000 + rank, cond, draft)
            explore.add(self._weight(line) * FOLLOW_UP_BOOST, steps, depth,
                        self.test_seconds(line, durations))

    def _submit(self, pool: Pool, draft: Draft) -> None:
        with self._lock:
            before = len(self._inflight)
            self._inflight[draft.id] = draft
            self._busy_change(before)
        self.state.drafted += 1
        pool.submit(self._job(draft))

    def _testers_fed(self) -> bool:
        """Enough candidates queued that the workers stay busy while the model samples."""
        with self._lock:
            return len(self._inflight) >= FED_QUEUE * self.settings.workers

    def _time_left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, pool: Pool) -> Outcome:
        started = self._started = time.monotonic()
        localization, explore = self.first_round()
        consumer = threading.Thread(target=self._consume, args=(pool,), daemon=True)
        consumer.start()
        followed: list[frozenset[str]] = []
        rounds = 1
        try:
            while self._time_left() > 0 and self._green is None and not self._settled():
                with self._lock:
                    fresh = list(self._verdicts)
                    partials = list(self._partials)
                    self._verdicts.clear()
                    self._partials.clear()
                # A green is followed up only when its probe says other tests still fail.
                ranked = sorted((v for v in fresh if not v.green), key=lambda v: -v.targets_passed)
                for verdict, partial in [*((v, False) for v in ranked),
                                         *((v, True) for v in partials)]:
                    depth = explore.depth(verdict.draft.id)
                    if (
                        self.options.feedback
                        and depth < self.options.max_rounds
                        and (partial or self._progress(verdict, followed))
                    ):
                        followed.append(verdict.passed_targets)
                        rounds = max(rounds, depth + 1)
                        self._follow_up(explore, verdict, depth + 1)
                with self._lock:
                    inflight = len(self._inflight) + len(self._probes)
                exhausted = self.state.drafted >= self.options.max_candidates
                if exhausted or not explore:
                    if inflight == 0:
                        break  # everything drafted has been validated: the search is over
                    time.sleep(0.05)
                    continue
                if inflight >= MAX_QUEUED_JOBS:
                    time.sleep(0.02)
                    continue
                room = min(MAX_QUEUED_JOBS - inflight,
                           self.options.max_candidates - self.state.drafted)  # fmt: skip
                for draft in explore.take(room):
                    if self._time_left() <= 0:
                        break  # each job's test selection takes time: a batch can outlast it
                    depth = explore.depth(draft.id)
                    self.state.round = max(self.state.round, depth)
                    self.state.stage = "drafting" if depth == 1 else "feedback"
                    self.timeline.submitted(draft, depth)
                    self._submit(pool, draft)
        finally:
            self._stop.set()
            consumer.join(timeout=5)
            with self._lock:
                leftover = list(self._inflight)
                if leftover:
                    self._testing_busy += time.monotonic() - self._busy_since
            for job_id in [*leftover, *self._probes]:
                pool.cancel(job_id)
        wall = max(time.monotonic() - started, 1e-9)
        busy = {
            "drafting": round(self.drafter.busy / wall, 3),
            "testing": round(min(self._testing_busy, wall) / wall, 3),
        }
        chosen = self._green or (self._partial[1] if self._partial else None)
        green = chosen.draft if chosen else None
        return Outcome(green, rounds, self.state.drafted, localization, busy)

    # --- confirmation ------------------------------------------------------------------------

    def confirm(self, draft: Draft) -> tuple[bool, JobDone]:
        """Run the winner again in a fresh sandbox on a clean worktree, without the cache:
        targets, every affected test, and the other failing tests (to report what still fails)."""
        build = self.repro.build
        if build is not None:
            # The whole map if it can be had within the budget: selection is exact then.
            build.finish(timeout=max(1.0, self.deadline - time.monotonic()))
        job = self._job(draft, unmapped=True)
        others = [t for t in self.repro.failing_before if t not in self.targets]
        job = Job(job.id + "-confirm", job.files, [*job.tests, *others], False, job.targets)
        # Its workers start on the job's test files alone, not the whole suite.
        files = sorted({t.split("::", 1)[0] for t in job.tests})
        with candidate_pool(self.root, self.python, self.settings, self.repro,
                            self.options.cold_full_suite, workers=1, cache=None,
                            startup=files) as fresh:  # fmt: skip
            done = fresh.run(job)
        outcome = {r.test_id: r.outcome for r in done.results}
        required = [t for t in job.tests if t not in others]
        # Judged from outside the tests' process too: the worker saw pytest end as it reported
        # (done.reason "ok", not "unverified"), and each required test reported exactly once.
        reported = [r.test_id for r in done.results if r.test_id in set(required)]
        ok = (
            done.reason == "ok"
            and len(reported) == len(set(reported)) == len(set(required))
            and all(outcome.get(t) == "passed" for t in required)
        )
        return ok, done


def candidate_pool(
    root: Path,
    python: str,
    settings: Settings,
    repro: Reproduction,
    cold: bool = False,
    workers: int | None = None,
    cache: ResultCache | None | bool = True,
    startup: list[str] | None = None,
) -> AbstractContextManager[Pool]:
    """The candidates' pool: the baseline's own warm workers while it fills in behind
    (no second start-up), else a new pool (started on entry, closed on exit). It needs no
    drafter: `run_fix` starts it while the model is still loading."""
    if cache is True:
        cache = result_cache()
    build = repro.build
    if workers is None and not cold and build is not None:
        shared = build.running_pool()
        if shared is not None:
            shared.cache = cache or None
            shared.dependencies = repro.baseline.dependencies
            shared.stats.durations.update(repro.baseline.durations)
            return contextlib.nullcontext(shared)  # the build closes it
    return test_pool(
        root, python, settings, repro.baseline, workers=workers,
        # Python's own traceback format: pytest's (source excerpts, module lookups for every
        # frame) were most of a failing candidate's job; the loop needs only the
        # innermost frames and the error, which both carry.
        pytest_args=[*settings.pytest_args, "--tb=native"],
        cache=cache or None, cold=cold, startup=startup,
    )
