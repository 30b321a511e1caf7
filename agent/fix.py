"""One ticket, end to end: reproduce, fix loop, confirm, commit on a branch, optionally a PR."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import git

from agent.branch import (
    check_branch_name,
    commit_fix,
    commit_message,
    default_branch_name,
    minimal_diff,
)
from agent.config import MODEL_FREE, Settings, target_python
from agent.draft import Drafter
from agent.errors import AgentError
from agent.github import pr_body, publish_branch, token_from_env
from agent.live import FixState, LiveView
from agent.loop import FixLoop, Options
from agent.output import Reporter
from agent.remote_draft import is_remote, remote_drafter
from agent.reproduce import reproduce
from agent.tickets import Ticket
from agent.timeline import CONFIRM, DRAFTER, SETUP, Timeline


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
    report: dict = field(default_factory=dict)


def _load_model(request: FixRequest) -> object:
    import torch  # heavy: imported only when drafting

    from model.checkpoint import load_model

    # Drafting overlaps with the test workers: it gets the cores they leave, at least one
    # (oversubscribed torch threads spin and slow both sides down).
    torch.set_num_threads(max(1, (os.cpu_count() or 1) - request.settings.workers))
    return load_model(request.model)


def _drafter(request: FixRequest, repro, lm: object | None) -> Drafter:
    if request.drafter in MODEL_FREE:
        return Drafter(None, request.settings.never_edit, mode=request.drafter)
    if is_remote(request.lm):  # a model server (agent.remote_draft): same loop, same checks
        return remote_drafter(request.lm, request, repro)
    return Drafter(lm, request.settings.never_edit, mode=request.drafter)


def run_fix(request: FixRequest, reporter: Reporter) -> dict:
    """The JSON report of one fix (the CLI contract's fields and a few more)."""
    started = time.monotonic()
    repo = request.repo
    root = Path(repo.working_tree_dir)
    base = repo.head.commit.hexsha
    settings = request.settings
    branch = request.branch or default_branch_name(request.ticket)
    request.report.update(ticket=request.ticket.id, branch_requested=branch)
    check_branch_name(repo, branch)
    python = target_python(settings, root)
    if not Path(python).exists():
        raise AgentError(f"python interpreter not found: {python}")
    if settings.sandbox == "process":
        reporter.warn("sandbox 'process' does not isolate candidate code from this machine")
    state = FixState(ticket=request.ticket.id)
    phases: dict[str, float] = {}
    timeline = Timeline(started)  # who was busy when: the run report page's data
    # The embedded model loads while the baseline runs (the first candidate waits for both).
    loading = None
    if request.drafter not in MODEL_FREE and request.lm is None:
        loading = ThreadPoolExecutor(1, thread_name_prefix="gp-model").submit(
            timeline.timed(DRAFTER, "model", "loading the model", partial(_load_model, request))
        )
    with reporter.progress() as progress:
        repro = reproduce(root, python, settings, request.ticket, progress,
                          deadline=started + settings.budget)  # fmt: skip
        phases["reproduce"] = time.monotonic() - started
        timeline.add(SETUP, started, time.monotonic(), "baseline", "reproduce: the baseline run")
        progress.add_task("loading the model", total=None)
        drafter = _drafter(request, repro, loading.result() if loading else request.lm)
        phases["model"] = time.monotonic() - started - phases["reproduce"]
    state.targets = len(repro.targets)
    reporter.info(
        f"reproduced: {len(repro.targets)} target test(s) fail at {base[:10]}; "
        f"drafting with {drafter.name}"
    )
    options = request.options or Options(budget=settings.budget)
    options.budget = max(1.0, options.budget - (time.monotonic() - started))
    loop = FixLoop(root, python, settings, repro, drafter, options, state, timeline)
    report = request.report
    report.update({
        "status": "no-fix",
        "ticket": request.ticket.id,
        "branch": None,
        "branch_requested": branch,
        "commit": None,
        "diff": "",
        "rounds": 0,
        "candidates": 0,
        "tests_run": 0,
        "seconds": 0.0,
        "failing_before": repro.failing_before,
        "failing_after": repro.failing_before,
        "targets": repro.targets,
        "model": drafter.name,
        "sandbox": settings.sandbox,
    })
    with LiveView(state, reporter.err, enabled=not reporter.quiet):
        mark = time.monotonic()
        with loop.pool() as pool:
            phases["pool_start"] = time.monotonic() - mark
            timeline.add(SETUP, mark, time.monotonic(), "pool", "starting the test workers")
            outcome = loop.run(pool)
        phases["loop"] = time.monotonic() - mark - phases["pool_start"]
        report.update(
            rounds=outcome.rounds,
            candidates=outcome.candidates,
            busy=outcome.busy,
            localization=[
                {"path": s.path, "line": s.line, "score": round(s.score, 4)}
                for s in outcome.localization[:20]
            ],
        )
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
                failing_after = [t for t in repro.failing_before if outcomes.get(t) != "passed"]
                diff = minimal_diff(repo, base, winner.files)
                # Under another name if `branch` was taken meanwhile: the fix is never lost.
                commit, committed = commit_fix(
                    repo, base, winner.files, branch, commit_message(request.ticket)
                )
                report.update(
                    status="green", branch=committed, commit=commit, diff=diff,
                    failing_after=failing_after, tests_confirmed=outcomes,
                )  # fmt: skip
            else:
                report["reason"] = "the winning candidate failed its confirmation run"
    if repro.build is not None:
        repro.build.close()
    if loop.first_tested is not None:
        report["first_candidate_seconds"] = round(loop.first_tested - started, 3)
    report["baseline_complete"] = repro.baseline.complete
    report["collect_errors"] = repro.baseline.collect_errors
    report["tests_run"] = state.tests_run
    report["validated"] = state.validated  # candidates whose tests finished (drafted: candidates)
    if report["status"] == "green" and request.pr:
        body = pr_body(
            request.ticket, report["diff"], report["tests_confirmed"], repro.failing_before,
            report["tests_run"], report["rounds"], report["candidates"],
            time.monotonic() - started, drafter.name,
        )  # fmt: skip
        published = publish_branch(
            repo, report["branch"], f"Fix: {request.ticket.title}", body, token=token_from_env()
        )
        report["pull_request"] = published.pull_request_url
        report["compare_url"] = published.compare_url
        report["pr_body"] = body
        if published.pull_request_url is None:
            reporter.out.print(body, markup=False)
    if is_remote(request.lm):
        report["model_server"] = drafter.report()  # requests, retries, tokens of this fix
    report["seconds"] = round(time.monotonic() - started, 3)
    # Where the time went: the budget covers all of it, so each phase is worth knowing.
    report["phases"] = {name: round(value, 3) for name, value in phases.items()}
    report["timeline"] = timeline.spans()  # [{lane, start, end, kind, label}], s since start
    report["attempts"] = timeline.attempts()  # every candidate: round, origin, site, outcome
    return report
