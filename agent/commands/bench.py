"""`agent bench`: the fixer over a split of the bug benchmark, as a JSON report and a markdown
table (fixed/total, time to green, candidates and tests per bug, by bug kind)."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer
from greenpatch.agent.bench.merge import code_commit, merge_reports, parse_shard
from greenpatch.agent.bench.run import Config, fixer_command, markdown_table, report, run_bench
from greenpatch.agent.bench.splits import choose
from greenpatch.agent.bench.tasks import TASKS_FILE, load_tasks
from greenpatch.agent.commands.common import JsonOpt, QuietOpt, VerboseOpt, run
from greenpatch.agent.errors import AgentError
from greenpatch.agent.output import Reporter


def bench(
    split: Annotated[
        str, typer.Option("--split", metavar="dev|test|all", help="Which tasks to run.")
    ] = "dev",
    sample_n: Annotated[
        int | None,
        typer.Option("--sample", metavar="N", min=1, help="Run N tasks drawn with --seed."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of --sample.")] = 0,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            metavar="K/N",
            help="Run only the K-th of N slices of the chosen tasks (join with --merge).",
        ),
    ] = None,
    merge: Annotated[
        list[Path] | None,
        typer.Option(
            "--merge",
            metavar="JSON",
            help="Run nothing: join these shards' --json reports (same code, fixer, budget "
            "and configurations) into one report (repeat).",
        ),
    ] = None,
    task_ids: Annotated[
        list[str] | None, typer.Option("--task", metavar="ID", help="Run only these task ids.")
    ] = None,
    kinds: Annotated[
        list[str] | None,
        typer.Option("--kinds", metavar="KIND", help="Run only tasks of these bug kinds (repeat)."),
    ] = None,
    budget: Annotated[
        float, typer.Option("--budget", metavar="SECONDS", min=1, help="Budget per bug.")
    ] = 60.0,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            min=1,
            help="Kill a fixer after this long (default: budget x 1.25 + 15 s).",
        ),
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="Tasks run in parallel.")] = 1,
    compare: Annotated[
        list[str] | None,
        typer.Option(
            "--compare",
            metavar="NAME=FLAGS",
            help="A configuration to run side by side: extra flags for the fixer "
            "(repeat; e.g. --compare full= --compare one-shot='--max-rounds 1').",
        ),
    ] = None,
    fixer: Annotated[
        str,
        typer.Option(
            "--fixer",
            metavar="CMD",
            help="Fixer command, called as CMD TICKET --repo R --budget S --json OUT.",
        ),
    ] = "agent fix",
    tasks_file: Annotated[
        Path, typer.Option("--tasks", metavar="PATH", help="Task list (JSONL).")
    ] = TASKS_FILE,
    workdir: Annotated[
        Path | None,
        typer.Option("--workdir", metavar="DIR", help="Keep task repos and fixer logs here."),
    ] = None,
    prewarm: Annotated[
        bool,
        typer.Option(
            "--prewarm/--no-prewarm",
            help="Build each task's baseline before timing the fixers (reported apart).",
        ),
    ] = True,
    json_out: JsonOpt = None,
    markdown_out: Annotated[
        Path | None, typer.Option("--markdown", metavar="OUT", help="Write the table here too.")
    ] = None,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run the fixer on every task of a split and report how many it fixed, and how fast.

    Exit codes: 0 the bench ran (whatever the fixer scored), 2 bad input.
    """

    def publish(reporter: Reporter, by_config: dict, record: dict) -> None:
        table = markdown_table(by_config)
        reporter.out.print(table, markup=False, highlight=False, soft_wrap=True)
        if markdown_out is not None:
            try:
                markdown_out.write_text(table)
            except OSError as exc:
                raise AgentError(f"cannot write {markdown_out}: {exc.strerror}") from None
        reporter.write_json(record)

    def joined() -> int:
        record = merge_reports(merge or [])
        publish(Reporter(json_out, verbose=verbose, quiet=quiet), record["configs"], record)
        return 0

    def body() -> int:
        configs = Config.parse_all(compare or [])
        argv = fixer_command(fixer)
        chosen = choose(load_tasks(tasks_file), split, task_ids, sample_n, seed, kinds)
        if shard is not None:
            k, n = parse_shard(shard)
            chosen = chosen[k - 1 :: n]
            if not chosen:
                raise AgentError(f"shard {shard} of {n} holds no task")
        reporter = Reporter(json_out, verbose=verbose, quiet=quiet)
        root = workdir or Path(tempfile.mkdtemp(prefix="gp-bench-"))
        root.mkdir(parents=True, exist_ok=True)
        reporter.info(
            f"bench: {len(chosen)} tasks x {len(configs)} config(s), budget {budget:g} s, "
            f"{jobs} job(s), fixer: {fixer}"
        )
        started = time.monotonic()
        code = code_commit()  # before the run: a commit made meanwhile is not what ran
        try:
            with reporter.progress() as progress:
                warm = progress.add_task("baselines", total=len(chosen) if prewarm else 0)
                bar = progress.add_task("fixing", total=len(chosen) * len(configs))

                def warmed(task, seconds: float | None) -> None:
                    progress.advance(warm)
                    reporter.debug(f"baseline {task.id}: {seconds} s")

                def done(result: dict) -> None:
                    progress.advance(bar)
                    note = f" ({result['reason']})" if result.get("reason") else ""
                    reporter.debug(f"{result['config']} {result['task']}: {result['status']}{note}")

                results = run_bench(
                    chosen, configs, argv, budget, jobs, root, done, timeout,
                    prewarm=prewarm, on_prewarm=warmed,
                )  # fmt: skip
        finally:
            if workdir is None:
                shutil.rmtree(root, ignore_errors=True)
        by_config = report(results, configs)
        publish(reporter, by_config, {
            "split": split if not task_ids else "tasks",
            "tasks": [t.id for t in chosen],
            "shard": shard,
            "budget": budget,
            "jobs": jobs,
            "fixer": fixer,
            "code": code,
            "seconds": round(time.monotonic() - started, 2),
            "configs": by_config,
        })
        return 0

    run(verbose, joined if merge else body)
