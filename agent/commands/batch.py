"""`agent batch BACKLOG`: many tickets with one shared model, resumable from a durable journal."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from greenpatch.agent.commands.common import (
    BudgetOpt,
    ClusterOpt,
    DrafterOpt,
    JsonOpt,
    ModelNameOpt,
    ModelOpt,
    QuietOpt,
    RayAddressOpt,
    RepoOpt,
    SandboxOpt,
    VerboseOpt,
    WorkersOpt,
    run,
)
from greenpatch.agent.errors import EXIT_GREEN, EXIT_NO_FIX, AgentError
from greenpatch.agent.output import Reporter
from greenpatch.agent.signals import terminate_as_interrupt

EXIT_INTERRUPTED = 130


def batch(
    backlog: Annotated[
        str | None,
        typer.Argument(
            help="A folder of ticket files (with --repo), a .jsonl file (one ticket per line: "
            "id, title, body, optional tests and repo), or 'gh:OWNER/REPO label:NAME'. "
            "Optional with --resume."
        ),
    ] = None,
    repo: RepoOpt = None,
    budget: BudgetOpt = None,
    model: ModelOpt = None,
    model_name: ModelNameOpt = None,
    drafter: DrafterOpt = None,
    sandbox: SandboxOpt = None,
    workers: WorkersOpt = None,
    parallel: Annotated[
        int | None,
        typer.Option(
            "--parallel",
            min=1,
            help="Tickets in flight at once (default 2; with --cluster, as many as the "
            "cluster's CPUs hold).",
        ),
    ] = None,
    time_limit: Annotated[
        float | None,
        typer.Option(
            "--time-limit",
            metavar="SECONDS",
            min=1,
            help="Whole batch: no ticket starts after it, and running ones get budgets that end "
            "by it (each at most its fair share of the time left).",
        ),
    ] = None,
    json_out: JsonOpt = None,
    markdown_out: Annotated[
        Path | None,
        typer.Option("--markdown", metavar="OUT", help="Write a markdown report (CI job summary)."),
    ] = None,
    pr: Annotated[
        bool | None,
        typer.Option("--pr", help="Push each green ticket's branch and open one pull request."),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the interrupted batch in the journal: finished tickets stay done, "
            "new backlog tickets are added, flags not given are those it started with.",
        ),
    ] = False,
    journal: Annotated[
        Path | None,
        typer.Option(
            "--journal",
            metavar="PATH",
            help="The batch's journal (default: one per working directory in the user's cache).",
        ),
    ] = None,
    cluster: ClusterOpt = None,
    ray_address: RayAddressOpt = None,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Process an issue backlog with one loaded model; a journal lets an interrupted batch resume.

    With --cluster ray each ticket runs as a Ray task on a node of the cluster (the commit
    shipped as a git bundle, the fix branch brought back); the journal, branches and pull
    requests stay with this process.

    Exit codes: 0 every ticket green, 1 some ticket not green (or not finished), 2 bad input or
    usage, 130 interrupted (resume with --resume).
    """

    def body() -> int:
        # The batch machinery imports torch: only a real run pays for it, not --help.
        from greenpatch.agent.batch.report import markdown, summary_table
        from greenpatch.agent.batch.run import Batch, BatchRequest

        reporter = Reporter(json_out, verbose=verbose, quiet=quiet)
        flags = {
            "budget": budget, "time_limit": time_limit, "parallel": parallel,
            "drafter": drafter, "model": model, "sandbox": sandbox, "workers": workers, "pr": pr,
            "model_name": model_name, "cluster": cluster, "ray_address": ray_address,
        }  # fmt: skip
        request = BatchRequest(backlog, repo, flags, journal, resume)
        runner = Batch(request, reporter)
        try:
            report = runner.run()
        finally:
            runner.close()
        reporter.write_json(report)
        if markdown_out is not None:
            try:
                markdown_out.write_text(markdown(report), encoding="utf-8")
            except OSError as exc:
                raise AgentError(
                    f"cannot write the markdown report to {markdown_out}: {exc.strerror}"
                ) from None
        reporter.out.print(summary_table(report))
        if report["interrupted"]:
            reporter.info(f"interrupted: continue with {runner.resume_hint}")
            return EXIT_INTERRUPTED
        return EXIT_GREEN if report["counts"]["green"] == len(report["tickets"]) else EXIT_NO_FIX

    with terminate_as_interrupt():
        run(verbose, body)
