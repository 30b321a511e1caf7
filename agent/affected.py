"""`agent test`'s work: the tests a change can affect (or the whole suite), run on warm sandboxed
workers here or sharded over a Ray cluster's nodes, reported as one `TestRun`."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greenpatch.agent.config import Settings
from greenpatch.agent.output import Reporter
from greenpatch.agent.pipeline.harness import pool_options, result_cache, test_pool
from greenpatch.agent.pipeline.reproduce import settings_baseline
from greenpatch.agent.repo import resolve_repo
from greenpatch.runner.baseline import Baseline
from greenpatch.runner.changes import patch_changes, working_changes
from greenpatch.runner.pool import Job
from greenpatch.runner.results import TestResult
from greenpatch.runner.selection import select_tests
from rich.progress import Progress

# `agent test` may run a whole suite: only the per-test limit applies.
SUITE_TIMEOUT = 24 * 3600.0


@dataclass
class TestRequest:
    root: Path
    settings: Settings
    python: str
    changed: str | None = None  # the tests affected by changes since this ref
    patch: str | None = None  # ... by this unified diff (its text)
    all_tests: bool = False
    cluster: str | None = None  # "ray"
    ray_address: str | None = None


@dataclass
class TestRun:
    tests: list[str]  # selected
    reason: str | None  # why everything was selected, if it was
    results: list[TestResult]
    collect_errors: list[dict[str, Any]]
    sandbox: str
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the cluster's figures

    def count(self, outcome: str) -> int:
        return sum(r.outcome == outcome for r in self.results)

    @property
    def exit_code(self) -> int:
        return 1 if self.count("failed") or self.count("error") else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "selected": len(self.tests),
            "passed": self.count("passed"),
            "failed": self.count("failed"),
            "errors": self.count("error"),
            "skipped": self.count("skipped"),
            "seconds": round(self.seconds, 3),
            "conservative": self.reason,
            "sandbox": self.sandbox,
            "collect_errors": self.collect_errors,
            "tests": [{"id": r.test_id, "outcome": r.outcome, "seconds": r.seconds,
                       "message": r.message, "cached": r.cached} for r in self.results],
            **self.extra,
        }  # fmt: skip


def run_tests(request: TestRequest, out: Reporter) -> TestRun:
    started = time.monotonic()
    root, settings = request.root, request.settings
    # What to run against: the baseline's commit, the candidate files for a HEAD worktree,
    # and the change that selection reasons about (relative to the baseline's commit).
    base = request.changed or "HEAD"
    if request.patch is not None:
        files = patch_changes(root, request.patch)
        selection_changes = files
    else:
        files = working_changes(root, "HEAD")
        selection_changes = working_changes(root, base) if base != "HEAD" else files
    if request.cluster is not None:
        # Only a selection needs the baseline (built here, cached per commit); --all is
        # collected and run on the nodes alone.
        selection = None if request.all_tests else (base, selection_changes)
        run = _on_cluster(request, out, selection, files)
    else:
        with out.progress() as progress:
            baseline = settings_baseline(root, request.python, settings, progress, commit=base)
        warn_collect_errors(out, baseline.collect_errors)
        run = _locally(request, out, baseline, base, files, selection_changes)
    run.seconds = time.monotonic() - started
    return run


def warn_collect_errors(out: Reporter, errors: list[dict]) -> None:
    if errors:
        out.warn(
            f"{len(errors)} file(s) did not collect and are out of selection:"
            f" {', '.join(e['id'] or '?' for e in errors[:5])}"
        )


def _locally(request: TestRequest, out: Reporter, baseline: Baseline, base: str, files: dict,
             selection_changes: dict) -> TestRun:  # fmt: skip
    settings = request.settings
    pristine = request.all_tests and not files and base == "HEAD"
    if pristine:
        # The baseline ran exactly this: the whole suite on the pristine tree.
        tests, reason = baseline.tests, "--all"
        results = [
            TestResult("agent-test", r.id, r.outcome, r.seconds, r.message, r.frames, True)
            for r in (baseline.records[t] for t in tests)
        ]
    elif request.all_tests:
        tests, reason = baseline.tests, "--all"
    else:
        selection = select_tests(baseline, selection_changes)
        tests, reason = selection.tests, selection.conservative
    out.info(
        f"{len(tests)} of {len(baseline.tests)} tests selected"
        + (f" (everything: {reason})" if reason else "")
    )
    if not pristine:
        results = _run_pool(request, out, baseline, files, tests)
    return TestRun(tests, reason, results, baseline.collect_errors, settings.sandbox)


def _run_pool(request: TestRequest, out: Reporter, baseline: Baseline, files: dict,
              tests: list[str]) -> list[TestResult]:  # fmt: skip
    if not tests:
        return []
    settings = request.settings
    cache = result_cache()
    try:
        with out.progress() as progress:
            task = progress.add_task(f"starting {settings.workers} {settings.sandbox} workers")
            pool = test_pool(request.root, request.python, settings, baseline,
                             job_timeout=SUITE_TIMEOUT, cache=cache)  # fmt: skip
            with pool:
                if pool.warning:
                    out.warn(pool.warning)
                progress.update(task, description="running tests", total=len(tests))
                pool.submit(Job("agent-test", files, tests, fail_fast=False))
                found = (e for e in pool.events() if isinstance(e, TestResult))
                return list(_shown(progress, task, found))
    finally:
        cache.close()


def _shown(progress: Progress, task: Any, results: Iterable[TestResult]) -> Iterator[TestResult]:
    """The results as they come, each advancing the bar; a failure's last line printed."""
    for result in results:
        progress.update(task, advance=1)
        if result.failed:
            first = (result.message.strip().splitlines() or [""])[-1]
            progress.console.print(f"[red]{result.outcome.upper()}[/red] {result.test_id}: "
                                   f"{first}", highlight=False)  # fmt: skip
        yield result


def _on_cluster(request: TestRequest, out: Reporter, selection: tuple[str, dict] | None,
                files: dict) -> TestRun:  # fmt: skip
    """The tests sharded over the nodes' warm workers (runner.cluster); `selection` (base,
    changes) picks them from the baseline, None runs all."""
    from greenpatch.runner.cluster import ClusterPool

    root, settings = request.root, request.settings
    commit = resolve_repo(root).head.commit.hexsha
    baseline = None
    if selection is not None:
        with out.progress() as progress:
            baseline = settings_baseline(root, request.python, settings, progress,
                                         commit=selection[0])  # fmt: skip
        warn_collect_errors(out, baseline.collect_errors)
    pool_args = {"python": request.python, "backend_name": settings.sandbox,
                 **pool_options(settings, job_timeout=SUITE_TIMEOUT)}  # fmt: skip
    cluster = ClusterPool(root, commit, request.ray_address, pool_args,
                          workers_per_node=settings.workers)  # fmt: skip
    with out.progress() as progress:
        task = progress.add_task("starting the test workers of the cluster's nodes")
        with cluster:
            shown = len(cluster.warnings)
            for warning in cluster.warnings:
                out.warn(warning)
            if baseline is None:
                (tests, collect_errors), reason = cluster.collect(), "--all"
            else:
                chosen = select_tests(baseline, selection[1])
                tests, reason = chosen.tests, chosen.conservative
                collect_errors = baseline.collect_errors
            out.info(
                f"{len(tests)} tests selected" + (f" (everything: {reason})" if reason else "")
                + f"; {cluster.stats.nodes} nodes, {cluster.stats.workers} workers"
            )
            progress.update(task, description="running tests on the cluster", total=len(tests))
            results = list(_shown(progress, task, cluster.run(files, tests) if tests else ()))
    for warning in cluster.warnings[shown:]:  # nodes lost on the way
        out.warn(warning)
    stats = cluster.stats
    extra = {"cluster": {"nodes": stats.nodes, "workers": stats.workers, "chunks": stats.chunks,
                         "requeued": stats.requeued, "shipped_bytes": stats.shipped_bytes,
                         "lost": stats.lost}}  # fmt: skip
    return TestRun(tests, reason, results, collect_errors, settings.sandbox, extra=extra)
