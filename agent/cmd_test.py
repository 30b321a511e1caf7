"""`agent test`: the runner alone: affected tests of a change, sharded across sandboxed workers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agent.cli_common import JsonOpt, QuietOpt, RepoOpt, SandboxOpt, VerboseOpt, WorkersOpt, run
from agent.config import load_settings
from agent.errors import AgentError
from agent.repo import resolve_repo


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
    json_out: JsonOpt = None,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run the tests a change can affect, sharded across warm sandboxed workers, cached."""

    def body() -> int:
        git_repo = resolve_repo(repo)
        load_settings(Path(git_repo.working_tree_dir), sandbox=sandbox, workers=workers)
        if sum([changed is not None, patch is not None, all_tests]) > 1:
            raise AgentError("give at most one of --changed, --patch, --all")
        if patch is not None and not patch.is_file():
            raise AgentError(f"patch file not found: {patch}")
        raise AgentError("the test runner is not built yet: agent test cannot run tests")

    run(verbose, body)
