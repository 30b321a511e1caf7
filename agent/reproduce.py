"""Reproduce: the baseline run of the pristine tree, and the ticket's failing tests in it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.progress import Progress

from agent.config import Settings
from agent.errors import EXIT_CANNOT_REPRODUCE, AgentError
from agent.tickets import Ticket
from runner.baseline import Baseline, build_baseline, git


@dataclass
class Reproduction:
    baseline: Baseline
    targets: list[str]  # failing tests the fix must turn green, in suite order
    failing_before: list[str]  # every test failing at the base commit (flaky ones excluded)


def _matches(named: str, test_id: str) -> bool:
    """A named id matches itself, its parametrizations, and (for a file or class) its tests."""
    return test_id == named or test_id.startswith((named + "::", named + "["))


STAGES = {"collect": "collecting tests", "run": "running the suite with coverage",
          "rerun": "re-running failures", "store": "storing"}  # fmt: skip


def settings_baseline(
    repo_root: Path,
    python: str,
    settings: Settings,
    progress: Progress | None = None,
    commit: str = "HEAD",
    cache_dir: Path | None = None,
) -> Baseline:
    """The baseline of `commit` for these settings; its stages show as a task of `progress`."""
    if progress is None:
        return build_baseline(
            repo_root, python, pytest_args=settings.pytest_args, workers=settings.workers,
            commit=commit, cache_dir=cache_dir,
        )  # fmt: skip
    task = progress.add_task("baseline", total=None)

    def report(stage: str, done: int, total: int) -> None:
        label = f"baseline: {STAGES.get(stage, stage)}"
        progress.update(task, description=label, completed=done, total=total)

    try:
        return build_baseline(
            repo_root, python, pytest_args=settings.pytest_args, workers=settings.workers,
            progress=report, commit=commit, cache_dir=cache_dir,
        )  # fmt: skip
    finally:
        progress.remove_task(task)


def reproduce(
    repo_root: Path, python: str, settings: Settings, ticket: Ticket, progress: Progress | None
) -> Reproduction:
    baseline = settings_baseline(repo_root, python, settings, progress)
    failing = baseline.failing
    if ticket.tests:
        named: list[str] = []
        for name in ticket.tests:
            found = [t for t in baseline.tests if _matches(name, t)]
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
    return Reproduction(baseline, targets, failing)
