"""One ticket, end to end: reproduce, fix loop, confirm, commit on a branch, optionally a PR."""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import git
from greenpatch.agent.config import MODEL_FREE, Settings
from greenpatch.agent.errors import AgentError
from greenpatch.agent.pipeline.draft import Drafter
from greenpatch.agent.pipeline.fix_report import FixReport, FixView, Reproduced, Warned
from greenpatch.agent.pipeline.harness import load_model, target_python
from greenpatch.agent.pipeline.live import FixState
from greenpatch.agent.pipeline.loop import FixLoop, Options, candidate_pool
from greenpatch.agent.pipeline.remote_draft import is_remote, remote_drafter
from greenpatch.agent.pipeline.reproduce import reproduce
from greenpatch.agent.pipeline.timeline import CONFIRM, DRAFTER, SETUP, Timeline
from greenpatch.agent.publish.branch import (
    check_branch_name,
    commit_fix,
    commit_message,
    default_branch_name,
    minimal_diff,
)
from greenpatch.agent.publish.pull_request import publish_fix
from greenpatch.agent.tickets import Ticket


@dataclass
class FixRequest:
    ticket: Ticket
    repo: git.Repo
    settings: Settings
    model: Path | None = None
    drafter: str = "model"  # one of agent.config.DRAFTERS
    branch: str | None = None
    pr: bool = False
    options: Options | None = None
    # A model already loaded (batch shares one across tickets); else loaded from `model`.
    lm: object | None = None
    # The report as it stands, filled in by run_fix: what the caller writes when it fails midway.
    report: FixReport = field(default_factory=lambda: FixReport(ticket=""))


def _drafter(request: FixRequest, repro, lm: object | None) -> Drafter:
    seed = request.options.seed if request.options else 0  # the model's sampling seed
    if request.drafter in MODEL_FREE:
        return Drafter(None, request.settings.never_edit, mode=request.drafter)
    if is_remote(request.lm):  # a model server (remote_draft): same loop, same checks
        return remote_drafter(request.lm, request, repro)
    return Drafter(lm, request.settings.never_edit, seed=seed, mode=request.drafter)


def run_fix(request: FixRequest, view: FixView) -> FixReport:
    """One fix, reported as it goes into `request.report` (what a caller writes if it stops)."""
    started = time.monotonic()
    repo = request.repo
    root = Path(repo.working_tree_dir)
    base = repo.head.commit.hexsha
    settings = request.settings
    branch = request.branch or default_branch_name(request.ticket)
    report = request.report
    report.ticket, report.branch_requested = request.ticket.id, branch
    check_branch_name(repo, branch)
    python = target_python(settings, root)
    if not Path(python).exists():
        raise AgentError(f"python interpreter not found: {python}")
    if settings.sandbox == "process":
        view.event(Warned("sandbox 'process' does not isolate candidate code from this machine"))
    state = FixState(ticket=request.ticket.id)
    phases = report.phases
    timeline = Timeline(started)  # who was busy when: the run report page's data
    # The embedded model loads while the baseline runs and the test workers start.
    loading = None
    if request.drafter not in MODEL_FREE and request.lm is None:
        load = partial(load_model, request.model, settings.workers)
        loading = ThreadPoolExecutor(1, thread_name_prefix="gp-model").submit(
            timeline.timed(DRAFTER, "model", "loading the model", load)
        )
    options = request.options or Options(budget=settings.budget)
    # The candidates' test workers: open from their start (beside the model's loading) to the
    # loop's end, and closed whatever happens between.
    workers = contextlib.ExitStack()
    with workers:
        with view.progress() as progress:
            repro = reproduce(root, python, settings, request.ticket, progress,
                              deadline=started + settings.budget)  # fmt: skip
            phases["reproduce"] = time.monotonic() - started
            timeline.add(SETUP, started, time.monotonic(), "baseline",
                         "reproduce: the baseline run")  # fmt: skip
            # The test workers start while the model thread still loads: the first candidate
            # waits for the slower of the two, not for both in turn.
            mark = time.monotonic()
            progress.add_task("starting the test workers", total=None)
            pool = workers.enter_context(candidate_pool(root, python, settings, repro,
                                                        options.cold_full_suite))  # fmt: skip
            phases["pool_start"] = time.monotonic() - mark
            timeline.add(SETUP, mark, time.monotonic(), "pool", "starting the test workers")
            progress.add_task("loading the model", total=None)
            drafter = _drafter(request, repro, loading.result() if loading else request.lm)
            phases["model"] = time.monotonic() - mark - phases["pool_start"]
        state.targets = len(repro.targets)
        view.event(Reproduced(len(repro.targets), base, drafter.name))
        options.budget = max(1.0, options.budget - (time.monotonic() - started))
        loop = FixLoop(root, python, settings, repro, drafter, options, state, timeline)
        report.failing_before = report.failing_after = repro.failing_before
        report.targets, report.model, report.sandbox = repro.targets, drafter.name, settings.sandbox
        with view.live(state):
            mark = time.monotonic()
            outcome = loop.run(pool)
            workers.close()  # before the confirmation run starts a fresh sandbox
            phases["loop"] = time.monotonic() - mark
            report.rounds, report.candidates, report.busy = (
                outcome.rounds, outcome.candidates, outcome.busy)  # fmt: skip
            report.localization = [{"path": s.path, "line": s.line, "score": round(s.score, 4)}
                                   for s in outcome.localization[:20]]  # fmt: skip
            winner = outcome.green
            if winner is not None:
                state.stage = "confirming in a fresh sandbox"
                mark = time.monotonic()
                ok, confirmed = loop.confirm(winner)
                phases["confirm"] = time.monotonic() - mark
                timeline.add(CONFIRM, mark, time.monotonic(), "confirm",
                             f"{winner.id}: {'confirmed' if ok else 'failed'}")  # fmt: skip
                state.tests_run += sum(1 for r in confirmed.results if not r.cached)
                if ok:
                    outcomes = {r.test_id: r.outcome for r in confirmed.results}
                    report.failing_after = [
                        t for t in repro.failing_before if outcomes.get(t) != "passed"
                    ]
                    report.diff = minimal_diff(repo, base, winner.files)
                    # Under another name if `branch` was taken meanwhile: the fix is never lost.
                    report.commit, report.branch = commit_fix(
                        repo, base, winner.files, branch, commit_message(request.ticket)
                    )
                    report.status, report.tests_confirmed = "green", outcomes
                else:
                    report.reason = "the winning candidate failed its confirmation run"
    if repro.build is not None:
        repro.build.close()
        timeline.baseline(repro.build.spans)
    if loop.first_tested is not None:
        report.first_candidate_seconds = round(loop.first_tested - started, 3)
    report.baseline_complete = repro.baseline.complete
    report.collect_errors = repro.baseline.collect_errors
    report.tests_run, report.validated = state.tests_run, state.validated
    if is_remote(request.lm):
        report.model_server = drafter.report()  # requests, retries, tokens of this fix
    if report.green and request.pr:
        report.seconds = round(time.monotonic() - started, 3)  # the PR body states it
        publish_fix(repo, request.ticket, report, view)
    report.seconds = round(time.monotonic() - started, 3)
    # Where the time went: the budget covers all of it, so each phase is worth knowing.
    report.phases = {name: round(value, 3) for name, value in phases.items()}
    report.timeline = timeline.spans()  # [{lane, start, end, kind, label}], s since start
    report.attempts = timeline.attempts()  # every candidate: round, origin, site, outcome
    return report
