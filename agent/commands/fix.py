"""`agent fix TICKET`: turn one ticket into a green branch (and optionally a pull request)."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated

import typer
from greenpatch.agent.commands.common import (
    BudgetOpt,
    DrafterOpt,
    JsonOpt,
    ModelNameOpt,
    ModelOpt,
    PythonOpt,
    QuietOpt,
    RepoOpt,
    SandboxOpt,
    VerboseOpt,
    WorkersOpt,
    run,
)
from greenpatch.agent.config import DRAFTERS, MODEL_FREE, load_settings
from greenpatch.agent.errors import (
    EXIT_CANNOT_REPRODUCE,
    EXIT_GREEN,
    EXIT_NO_FIX,
    USER_ERRORS,
    AgentError,
)
from greenpatch.agent.output import Reporter
from greenpatch.agent.pipeline.fix_report import (
    FixEvent,
    FixReport,
    Reproduced,
    Unpublished,
    Warned,
)
from greenpatch.agent.pipeline.live import FixState, LiveView
from greenpatch.agent.pipeline.remote_setup import check_model_name, connect_remote, remote_url
from greenpatch.agent.repo import resolve_repo
from greenpatch.agent.report_page import write_page
from greenpatch.agent.signals import terminate_as_interrupt
from greenpatch.agent.tickets import load_ticket
from rich.progress import Progress


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
    model_name: ModelNameOpt = None,
    sandbox: SandboxOpt = None,
    workers: WorkersOpt = None,
    python: PythonOpt = None,
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
    max_rounds: Annotated[
        int, typer.Option("--max-rounds", min=1, help="Feedback rounds at most (1 = one-shot).")
    ] = 4,
    max_candidates: Annotated[
        int, typer.Option("--max-candidates", min=1, help="Candidates validated at most.")
    ] = 2000,
    drafter: DrafterOpt = None,
    cold_full_suite: Annotated[
        bool,
        typer.Option(
            "--cold-full-suite",
            help="Ablation: every candidate runs the whole suite in a fresh pytest process "
            "(no test selection, no warm workers).",
        ),
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed.")] = 0,
    report_html: Annotated[
        Path | None,
        typer.Option("--report", metavar="OUT.html",
                     help="Also write the run report page (see agent report)."),
    ] = None,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Fix a ticket: reproduce, localize, draft, validate until green, then commit on a branch.

    Exit codes: 0 green (branch committed), 1 no fix within budget, 2 bad input or usage,
    3 cannot reproduce (nothing fails).
    """

    # The report as run_fix fills it in: what is written if the run stops.
    progress = FixReport(ticket=ticket)

    def body() -> int:
        chosen = drafter or "model"
        if chosen not in DRAFTERS:
            raise AgentError(f"--drafter must be one of {', '.join(DRAFTERS)}, got '{drafter}'")
        check_model_name(model, model_name)
        # The fix machinery imports torch: only a real run pays for it, not --help or bad input.
        from greenpatch.agent.pipeline.fix import FixRequest, run_fix
        from greenpatch.agent.pipeline.loop import Options

        git_repo = resolve_repo(repo)
        settings = load_settings(
            Path(git_repo.working_tree_dir), warn=Reporter(None, quiet=quiet).warn,
            sandbox=sandbox, workers=workers, budget=budget,
            python=str(python.absolute()) if python else None,
        )  # fmt: skip
        # A model server is checked before any work: unreachable, unknown model -> exit 2.
        remote = None
        url = remote_url(model, settings) if chosen not in MODEL_FREE else None
        if url is not None:
            remote = connect_remote(url, model_name, settings, from_flag=url == model)
        request = FixRequest(
            lm=remote,
            ticket=load_ticket(ticket),
            repo=git_repo,
            settings=settings,
            model=None if remote is not None or model is None else Path(model),
            drafter=chosen,
            branch=branch,
            pr=pr,
            options=Options(
                budget=settings.budget,
                max_rounds=max_rounds,
                max_candidates=max_candidates,
                seed=seed,
                cold_full_suite=cold_full_suite,
            ),
            report=progress,
        )
        reporter = Reporter(json_out, verbose=verbose, quiet=quiet)
        report = run_fix(request, TerminalView(reporter))
        data = report.to_json()  # every candidate's attempt: built once for both outputs
        reporter.write_json(data)
        if report_html is not None:
            write_page(data, report_html)
        show_summary(reporter, report)
        return EXIT_GREEN if report.green else EXIT_NO_FIX

    def reported() -> int:
        # The JSON is written whatever stops the run, a bad input or an error after the fix was
        # committed (the branch and commit are in it): CI reads it either way.
        started = time.monotonic()
        try:
            return body()
        except (*USER_ERRORS, KeyboardInterrupt) as exc:
            stopped = failed_report(progress, exc)
            stopped.seconds = round(time.monotonic() - started, 3)
            Reporter(json_out, quiet=True).write_json(stopped.to_json())
            raise

    with terminate_as_interrupt():
        run(verbose, reported)


def failed_report(report: FixReport, exc: BaseException) -> FixReport:
    """The report of a run stopped by `exc`: what was done so far (a fix already committed keeps
    its status, branch and commit), and the error."""
    if isinstance(exc, KeyboardInterrupt):
        report.status = "green" if report.green else "interrupted"
        report.error = "interrupted"
        return report
    if getattr(exc, "code", None) == EXIT_CANNOT_REPRODUCE:
        report.status = "cannot-reproduce"
    elif not report.green:
        report.status = "error"
    report.error = str(exc)
    return report


def show_summary(reporter: Reporter, report: FixReport) -> None:
    out = reporter.out
    if report.green:
        out.print(
            f"[green]green[/green]: {report.ticket} fixed on branch "
            f"[bold]{report.branch}[/bold] ({(report.commit or '')[:10]}) after "
            f"{report.candidates} candidates, {report.tests_run} tests, {report.seconds:.1f}s"
        )
        out.print(report.diff, markup=False, highlight=False)
    else:
        out.print(
            f"[red]no fix[/red] for {report.ticket} within the budget: "
            f"{report.candidates} candidates, {report.tests_run} tests, {report.seconds:.1f}s"
        )
    if reporter.verbose:
        for item in report.localization[:10]:
            reporter.info(f"  suspicious {item['path']}:{item['line']}  {item['score']:.3f}")


class TerminalView:
    """`agent fix` on a terminal: progress and the live table on stderr, events as lines."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter

    def progress(self) -> AbstractContextManager[Progress]:
        return self.reporter.progress()

    def live(self, state: FixState) -> LiveView:
        return LiveView(state, self.reporter.err, enabled=not self.reporter.quiet)

    def event(self, event: FixEvent) -> None:
        if isinstance(event, Reproduced):
            self.reporter.info(f"reproduced: {event.line()}")
        elif isinstance(event, Warned):
            self.reporter.warn(event.text)
        elif isinstance(event, Unpublished):  # no pull request: the body is for a person
            self.reporter.out.print(event.body, markup=False)
