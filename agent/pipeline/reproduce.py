"""Reproduce: the baseline run of the pristine tree, and the ticket's failing tests in it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from greenpatch.agent.config import Settings
from greenpatch.agent.errors import EXIT_CANNOT_REPRODUCE, EXIT_NO_FIX, EXIT_USAGE, AgentError
from greenpatch.agent.pipeline.harness import baseline_options
from greenpatch.agent.tickets import Ticket
from greenpatch.runner.baseline import Baseline, BaselineBuild, git, matches_name
from greenpatch.runner.errors import OutOfTime, RunnerError
from rich.progress import Progress


@dataclass
class Reproduction:
    baseline: Baseline
    targets: list[str]  # failing tests the fix must turn green, in suite order
    failing_before: list[str]  # every test failing at the base commit (flaky ones excluded)
    # The rest of the coverage map, filling in behind; None when the baseline came whole.
    build: BaselineBuild | None = None


STAGES = {"collect": "collecting tests", "run": "running the tests with coverage",
          "fill": "mapping the rest of the suite", "rerun": "re-running failures",
          "store": "storing"}  # fmt: skip


def _reporter(progress: Progress | None) -> Callable[[str, int, int], None] | None:
    if progress is None:
        return None
    task = progress.add_task("baseline", total=None)

    def report(stage: str, done: int, total: int) -> None:
        label = f"baseline: {STAGES.get(stage, stage)}"
        progress.update(task, description=label, completed=done, total=total)

    return report


def start_baseline(
    repo_root: Path,
    python: str,
    settings: Settings,
    progress: Progress | None = None,
    *,
    commit: str = "HEAD",
    cache_dir: Path | None = None,
    first: list[str] | None = None,
    deadline: float | None = None,
) -> BaselineBuild:
    """A baseline build for these settings (from the cache if it was built before)."""
    report = _reporter(progress)
    try:
        return BaselineBuild(
            repo_root, python, baseline_options(settings), commit=commit, cache_dir=cache_dir,
            first=first or [], progress=report, deadline=deadline,
        )  # fmt: skip
    except RunnerError as exc:
        raise AgentError(str(exc)) from None


def settings_baseline(
    repo_root: Path,
    python: str,
    settings: Settings,
    progress: Progress | None = None,
    commit: str = "HEAD",
    cache_dir: Path | None = None,
) -> Baseline:
    """The whole baseline of `commit` for these settings; its stages show as a task of
    `progress`."""
    build = start_baseline(repo_root, python, settings, progress, commit=commit,
                           cache_dir=cache_dir)  # fmt: skip
    try:
        baseline = build.finish()
    finally:
        build.close()
    if not baseline.complete:
        raise AgentError(build.error or "the baseline did not finish")
    return baseline


def reproduce(
    repo_root: Path,
    python: str,
    settings: Settings,
    ticket: Ticket,
    progress: Progress | None,
    deadline: float | None = None,
) -> Reproduction:
    """The ticket's failing tests on the pristine tree. When the ticket names its tests, those
    (and their files) run first and the rest of the baseline fills in behind: the caller owns
    `Reproduction.build` and closes it."""
    build = start_baseline(repo_root, python, settings, progress, first=list(ticket.tests),
                           deadline=deadline)  # fmt: skip
    try:
        baseline = build.first()
        failing = baseline.failing
        if ticket.tests:
            named: list[str] = []
            for name in ticket.tests:
                found = [t for t in baseline.tests if matches_name(name, t)]
                if not found:
                    raise AgentError(f"the ticket names a test that does not exist: {name}")
                named += found
            targets = [t for t in dict.fromkeys(named) if t in set(failing)]
            ran = ", ".join(dict.fromkeys(named))
        else:
            targets = list(failing)
            ran = f"the whole suite ({len(baseline.tests)} tests)"
        if not targets:
            raise AgentError(
                f"cannot reproduce: nothing fails at {git(repo_root, 'rev-parse', 'HEAD')[:10]}; "
                f"ran {ran}",
                code=EXIT_CANNOT_REPRODUCE,
            )
    except RunnerError as exc:
        build.close()
        # Out of budget is "no fix within the budget", not bad input.
        code = EXIT_NO_FIX if isinstance(exc, OutOfTime) else EXIT_USAGE
        raise AgentError(str(exc), code=code) from None
    except BaseException:
        build.close()
        raise
    return Reproduction(baseline, targets, failing, build)
