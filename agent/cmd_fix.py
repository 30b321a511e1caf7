"""`agent fix TICKET`: turn one ticket into a green branch (and optionally a pull request)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agent.cli_common import (
    BudgetOpt,
    JsonOpt,
    ModelOpt,
    QuietOpt,
    RepoOpt,
    SandboxOpt,
    VerboseOpt,
    WorkersOpt,
    run,
)
from agent.config import load_settings
from agent.errors import AgentError
from agent.repo import resolve_repo
from agent.tickets import load_ticket


def fix(
    ticket: Annotated[
        str,
        typer.Argument(
            help="Ticket: a markdown/text file, '-' for stdin, gh:OWNER/REPO#N or an issue URL."
        ),
    ],
    repo: RepoOpt = None,
    budget: BudgetOpt = None,
    model: ModelOpt = None,
    sandbox: SandboxOpt = None,
    workers: WorkersOpt = None,
    json_out: JsonOpt = None,
    branch: Annotated[
        str | None,
        typer.Option(
            "--branch", help="Branch to commit the fix on (default: greenpatch/<ticket>)."
        ),
    ] = None,
    pr: Annotated[
        bool, typer.Option("--pr", help="Push the branch and open a pull request.")
    ] = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Fix a ticket: reproduce, localize, draft, validate until green, then commit on a branch.

    Exit codes: 0 green (branch committed), 1 no fix within budget, 2 bad input or usage,
    3 cannot reproduce (nothing fails).
    """

    def body() -> int:
        git_repo = resolve_repo(repo)
        load_settings(
            Path(git_repo.working_tree_dir),
            sandbox=sandbox,
            workers=workers,
            budget=budget,
        )
        load_ticket(ticket)
        raise AgentError(
            "the fix loop is not built yet: agent fix cannot draft or validate patches"
        )

    run(verbose, body)
