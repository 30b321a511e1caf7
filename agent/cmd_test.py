"""`agent test`: the runner alone: affected tests of a change, sharded across sandboxed workers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from agent.cli_common import (
    ClusterOpt,
    JsonOpt,
    PythonOpt,
    QuietOpt,
    RayAddressOpt,
    RepoOpt,
    SandboxOpt,
    VerboseOpt,
    WorkersOpt,
    check_cluster,
    run,
)
from agent.config import load_settings, sandbox_options
from agent.errors import AgentError
from agent.harness import result_cache, target_python, test_pool
from agent.output import Reporter
from agent.repo import resolve_repo
from agent.reproduce import settings_baseline
from runner.changes import patch_changes, working_changes
from runner.junit import write_junit
from runner.pool import DEFAULT_LIMITS, Job
from runner.results import TestResult
from runner.selection import select_tests
from sandboxes import Limits


def test(
    repo: RepoOpt = None,
    changed: Annotated[
        str | None,
        typer.Option(
            "--changed", metavar="REF", help="Run the tests affected by changes since REF."
        ),
    ] = None,
    patch: Annotated[
        Path | None,
        typer.Option("--patch", metavar="FILE", help="Run the tests affected by a unified diff."),
    ] = None,
    all_tests: Annotated[bool, typer.Option("--all", help="Run the whole suite.")] = False,
    sandbox: SandboxOpt = None,
    workers: WorkersOpt = None,
    python: PythonOpt = None,
    cluster: ClusterOpt = None,
    ray_address: RayAddressOpt = None,
    json_out: JsonOpt = None,
    junit: Annotated[
        Path | None,
        typer.Option("--junit", metavar="OUT", help="Also write the results as JUnit XML to OUT."),
    ] = None,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run the tests a change can affect, sharded across warm sandboxed workers, cached.

    Without --changed/--patch/--all: the uncommitted changes of the working tree. With
    --cluster ray the selected tests are sharded over the cluster's nodes (--workers per node).
    Exit 0 all selected tests pass, 1 some fail, 2 bad input.
    """

    def body() -> int:
        git_repo = resolve_repo(repo)
        root = Path(git_repo.working_tree_dir)
        out = Reporter(json_out, verbose, quiet)
        settings = load_settings(root, warn=out.warn, sandbox=sandbox, workers=workers,
                                 python=str(python.absolute()) if python else None)  # fmt: skip
        if sum([changed is not None, patch is not None, all_tests]) > 1:
            raise AgentError("give at most one of --changed, --patch, --all")
        check_cluster(cluster, ray_address)
        if patch is not None and not patch.is_file():
            raise AgentError(f"patch file not found: {patch}")
        interpreter = target_python(settings, root)
        started = time.monotonic()

        # What to run against: the baseline's commit, the candidate files for a HEAD worktree,
        # and the change that selection reasons about (relative to the baseline's commit).
        base = changed or "HEAD"
        if patch is not None:
            try:
                text = patch.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise AgentError(f"cannot read patch {patch}: {exc}") from None
            files = patch_changes(root, text)
            selection_changes = files
        else:
            files = working_changes(root, "HEAD")
            selection_changes = working_changes(root, base) if base != "HEAD" else files

        if cluster is not None:
            # On the cluster; only a selection needs the baseline (built here, cached per
            # commit), --all is collected and run on the nodes alone.
            return _on_cluster(out, root, interpreter, settings, ray_address, started, junit,
                               None if all_tests else (base, selection_changes), files)  # fmt: skip
        with out.progress() as progress:
            baseline = settings_baseline(root, interpreter, settings, progress, commit=base)
        _warn_collect_errors(out, baseline.collect_errors)
        if all_tests and not files and base == "HEAD":
            # The baseline ran exactly this: the whole suite on the pristine tree.
            tests, reason = baseline.tests, "--all"
            results = [
                TestResult("agent-test", r.id, r.outcome, r.seconds, r.message, r.frames, True)
                for r in (baseline.records[t] for t in tests)
            ]
        elif all_tests:
            tests, reason = baseline.tests, "--all"
        else:
            selection = select_tests(baseline, selection_changes)
            tests, reason = selection.tests, selection.conservative
        out.info(
            f"{len(tests)} of {len(baseline.tests)} tests selected"
            + (f" (everything: {reason})" if reason else "")
        )
        if not (all_tests and not files and base == "HEAD"):
            results = _run(out, root, interpreter, settings, baseline, files, tests)
        return _report(out, settings, junit, started, tests, reason, results,
                       baseline.collect_errors)  # fmt: skip

    run(verbose, body)


def _warn_collect_errors(out: Reporter, errors: list[dict]) -> None:
    if errors:
        out.warn(
            f"{len(errors)} file(s) did not collect and are out of selection:"
            f" {', '.join(e['id'] or '?' for e in errors[:5])}"
        )


def _report(out: Reporter, settings, junit: Path | None, started: float, tests: list[str],
            reason: str | None, results: list[TestResult], collect_errors: list[dict],
            extra: dict | None = None) -> int:  # fmt: skip
    """The summary line, the JSON (and JUnit) of a run; the exit code."""
    seconds = time.monotonic() - started
    counts = {k: sum(r.outcome == k for r in results) for k in ("passed", "failed", "error")}
    skipped = sum(r.outcome == "skipped" for r in results)
    out.info(
        f"{counts['passed']} passed, {counts['failed']} failed, {counts['error']} errors, "
        f"{skipped} skipped, {sum(r.cached for r in results)} from cache in {seconds:.1f} s"
    )
    out.write_json(
        {
            "selected": len(tests),
            "passed": counts["passed"],
            "failed": counts["failed"],
            "errors": counts["error"],
            "skipped": skipped,
            "seconds": round(seconds, 3),
            "conservative": reason,
            "sandbox": settings.sandbox,
            "collect_errors": collect_errors,
            "tests": [
                {
                    "id": r.test_id,
                    "outcome": r.outcome,
                    "seconds": r.seconds,
                    "message": r.message,
                    "cached": r.cached,
                }  # fmt: skip
                for r in results
            ],
            **(extra or {}),
        }
    )
    if junit is not None:
        try:
            write_junit(junit, results, seconds)
        except OSError as exc:
            raise AgentError(f"cannot write JUnit XML to {junit}: {exc.strerror}") from None
    return 1 if counts["failed"] or counts["error"] else 0


def _on_cluster(out: Reporter, root: Path, python: str, settings, address: str | None,
                started: float, junit: Path | None, selection: tuple[str, dict] | None,
                files: dict) -> int:  # fmt: skip
    """`agent test --cluster ray`: the tests sharded over the nodes' warm workers (see
    runner.cluster); `selection` (base, changes) picks them from the baseline, None runs all."""
    from runner.cluster import ClusterPool

    commit = resolve_repo(root).head.commit.hexsha
    if selection is None:
        baseline = None
    else:
        with out.progress() as progress:
            baseline = settings_baseline(root, python, settings, progress, commit=selection[0])
        _warn_collect_errors(out, baseline.collect_errors)
    pool_args = {
        "python": python,
        "backend_name": settings.sandbox,
        "backend_options": sandbox_options(settings),
        "limits": Limits(memory_mb=settings.memory_mb, output_bytes=DEFAULT_LIMITS.output_bytes),
        "test_timeout": settings.test_timeout,
        "job_timeout": 24 * 3600.0,  # as a local run: only the per-test limit applies
        "pytest_args": settings.pytest_args,
    }
    cluster = ClusterPool(root, commit, address, pool_args, workers_per_node=settings.workers)
    results: list[TestResult] = []
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
            for result in cluster.run(files, tests) if tests else ():
                results.append(result)
                progress.update(task, advance=1)
                if result.failed:
                    first = (result.message.strip().splitlines() or [""])[-1]
                    progress.console.print(
                        f"[red]{result.outcome.upper()}[/red] {result.test_id}: {first}",
                        highlight=False,
                    )
    for warning in cluster.warnings[shown:]:  # nodes lost on the way
        out.warn(warning)
    stats = cluster.stats
    extra = {"cluster": {"nodes": stats.nodes, "workers": stats.workers, "chunks": stats.chunks,
                         "requeued": stats.requeued, "shipped_bytes": stats.shipped_bytes,
                         "lost": stats.lost}}  # fmt: skip
    return _report(out, settings, junit, started, tests, reason, results, collect_errors, extra)


def _run(out: Reporter, root, python, settings, baseline, files, tests) -> list[TestResult]:
    if not tests:
        return []
    cache = result_cache()
    results: list[TestResult] = []
    try:
        with out.progress() as progress:
            task = progress.add_task(f"starting {settings.workers} {settings.sandbox} workers")
            # `agent test` may run a whole suite: only the per-test limit applies.
            pool = test_pool(root, python, settings, baseline, job_timeout=24 * 3600.0, cache=cache)
            with pool:
                if pool.warning:
                    out.warn(pool.warning)
                progress.update(task, description="running tests", total=len(tests))
                pool.submit(Job("agent-test", files, tests, fail_fast=False))
                for event in pool.events():
                    if not isinstance(event, TestResult):
                        continue
                    results.append(event)
                    progress.update(task, advance=1)
                    if event.failed:
                        first = (event.message.strip().splitlines() or [""])[-1]
                        progress.console.print(
                            f"[red]{event.outcome.upper()}[/red] {event.test_id}: {first}",
                            highlight=False,
                        )
    finally:
        cache.close()
    return results
