"""`agent test`: the runner alone: affected tests of a change, sharded across sandboxed workers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from greenpatch.agent.affected import TestRequest, run_tests
from greenpatch.agent.commands.common import (
    ClusterOpt,
    JsonOpt,
    PythonOpt,
    QuietOpt,
    RayAddressOpt,
    RepoOpt,
    SandboxOpt,
    VerboseOpt,
    WorkersOpt,
    run,
)
from greenpatch.agent.config import check_cluster, load_settings
from greenpatch.agent.errors import AgentError
from greenpatch.agent.output import Reporter
from greenpatch.agent.pipeline.harness import target_python
from greenpatch.agent.repo import resolve_repo
from greenpatch.runner.junit import write_junit


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
        if sum([changed is not None, patch is not None, all_tests]) > 1:
            raise AgentError("give at most one of --changed, --patch, --all")
        check_cluster(cluster, ray_address)
        text = None
        if patch is not None:
            try:
                text = patch.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise AgentError(f"patch file not found: {patch}") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise AgentError(f"cannot read patch {patch}: {exc}") from None
        git_repo = resolve_repo(repo)
        root = Path(git_repo.working_tree_dir)
        out = Reporter(json_out, verbose, quiet)
        settings = load_settings(root, warn=out.warn, sandbox=sandbox, workers=workers,
                                 python=str(python.absolute()) if python else None)  # fmt: skip
        done = run_tests(TestRequest(root, settings, target_python(settings, root), changed, text,
                                     all_tests, cluster, ray_address), out)  # fmt: skip
        counts = {k: done.count(k) for k in ("passed", "failed", "error", "skipped")}
        out.info(
            f"{counts['passed']} passed, {counts['failed']} failed, {counts['error']} errors, "
            f"{counts['skipped']} skipped, {sum(r.cached for r in done.results)} from cache "
            f"in {done.seconds:.1f} s"
        )
        out.write_json(done.to_json())
        if junit is not None:
            try:
                write_junit(junit, done.results, done.seconds)
            except OSError as exc:
                raise AgentError(f"cannot write JUnit XML to {junit}: {exc.strerror}") from None
        return done.exit_code

    run(verbose, body)
