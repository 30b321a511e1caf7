#!/usr/bin/env python3
"""Throughput of `agent batch` against `agent fix` run on each ticket one after another.

The backlog: every example project (examples/) prepared `--copies` times into separate repos,
plus bug benchmark tasks rebuilt from their recipes (agent.bench.tasks). Each mode gets its own
fresh copies of every repo and its own cache directory (baselines, results), so neither mode
profits from the other's work; each repo's commit is distinct, so copies share nothing either.
Same budget per ticket, same drafter, same sandbox, same machine, one run:

    .venv/bin/python benchmarks/batch_throughput.py [--budget 60] [--parallel 2]

Prints both wall times, the throughput ratio (sequential wall / batch wall, for the same number
of tickets) and the tickets fixed by each. The drafter is the embedded model when
model/weights/config.json exists, else the model-free drafter `edits` (said in the output).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from greenpatch.agent.bench.tasks import build_task_repo, load_tasks  # noqa: E402

from examples.prepare import prepare, projects  # noqa: E402

# Two bug benchmark tasks that the model-free drafter can fix (their repos rebuild in seconds).
DEFAULT_TASKS = ("toolz-functoolz-arithmetic-L114-e830dc94",
                 "boltons-mathutils-arithmetic-L214-601d5d75")  # fmt: skip


def _tickets(names: list[str], copies: int, tasks: list[str], where: Path, mode: int) -> list[dict]:
    """Fresh repos for one mode; a distinct commit date per repo keeps every commit distinct."""
    by_id = {t.id: t for t in load_tasks()}
    items = []
    stamp = 1_700_000_000 + mode * 100_000
    for copy in range(1, copies + 1):
        for name in names:
            stamp += 1
            os.environ["GIT_AUTHOR_DATE"] = os.environ["GIT_COMMITTER_DATE"] = f"{stamp} +0000"
            repo = prepare(name, where / f"{name}-{copy}")
            text = (ROOT / "examples" / "tickets" / f"{name}.md").read_text()
            items.append({"id": f"{name}-{copy}", "body": text, "repo": str(repo)})
    for task_id in tasks:
        stamp += 1
        os.environ["GIT_AUTHOR_DATE"] = os.environ["GIT_COMMITTER_DATE"] = f"{stamp} +0000"
        repo = build_task_repo(by_id[task_id], where / task_id)
        items.append({"id": task_id, "body": by_id[task_id].ticket, "repo": str(repo)})
    for key in ("GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE"):
        os.environ.pop(key, None)
    for item in items:
        item["title"] = item["body"].strip().splitlines()[0].lstrip("# ").strip()
    return items


def _agent(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    return subprocess.run([sys.executable, "-m", "greenpatch.agent",
                           *args], env=env, capture_output=True,
                          text=True, cwd=ROOT)  # fmt: skip


def run_sequential(items: list[dict], common: list[str], work: Path) -> tuple[float, dict]:
    results = {}
    started = time.monotonic()
    for item in items:
        ticket = work / f"{item['id']}.md"
        ticket.write_text(item["body"])
        out = work / f"{item['id']}.json"
        began = time.monotonic()
        done = _agent("fix", str(ticket), "--repo", item["repo"], "--json", str(out), "-q",
                      *common, cache=work / "cache")  # fmt: skip
        status = (
            json.loads(out.read_text())["status"] if out.exists() else f"exit {done.returncode}"
        )
        results[item["id"]] = (status, time.monotonic() - began)
        print(f"  sequential {item['id']:<45} {status:<10} {time.monotonic() - began:6.1f}s",
              flush=True)  # fmt: skip
    return time.monotonic() - started, results


def run_batch(
    items: list[dict], common: list[str], parallel: int, work: Path
) -> tuple[float, dict]:
    backlog = work / "backlog.jsonl"
    backlog.write_text("".join(json.dumps(item) + "\n" for item in items))
    out = work / "batch.json"
    started = time.monotonic()
    done = _agent("batch", str(backlog), "--journal", str(work / "journal.sqlite"),
                  "--parallel", str(parallel), "--json", str(out), "-q", *common,
                  cache=work / "cache")  # fmt: skip
    wall = time.monotonic() - started
    if not out.exists():
        raise SystemExit(f"agent batch wrote no report (exit {done.returncode}): {done.stderr}")
    report = json.loads(out.read_text())
    results = {t["id"]: (t["status"], t["seconds"]) for t in report["tickets"]}
    for ticket_id, (status, seconds) in results.items():
        print(f"  batch      {ticket_id:<45} {status:<10} {seconds:6.1f}s")
    return wall, results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per ticket")
    parser.add_argument("--copies", type=int, default=2, help="copies of each example project")
    parser.add_argument("--projects", nargs="*", default=projects(), help="example projects")
    parser.add_argument("--tasks", nargs="*", default=list(DEFAULT_TASKS),
                        help="bug benchmark task ids to add")  # fmt: skip
    parser.add_argument("--parallel", type=int, default=2, help="agent batch --parallel")
    parser.add_argument("--sandbox", default="bwrap", help="bwrap | docker | process")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--drafter", choices=("model", "edits"), default=None)
    parser.add_argument("--json", dest="json_out", help="write the figures as JSON here")
    args = parser.parse_args()
    drafter = args.drafter or (
        "model" if (ROOT / "model" / "weights" / "config.json").is_file() else "edits"
    )
    common = ["--budget", str(args.budget), "--drafter", drafter, "--sandbox", args.sandbox,
              "--workers", str(args.workers)]  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="greenpatch-batch-bench-"))
    try:
        (work / "seq").mkdir()
        (work / "batch").mkdir()
        seq_items = _tickets(args.projects, args.copies, args.tasks, work / "seq", 1)
        batch_items = _tickets(args.projects, args.copies, args.tasks, work / "batch", 2)
        n = len(seq_items)
        why = "" if drafter == "model" else " (no embedded model in model/weights: model-free)"
        print(f"backlog: {n} tickets ({args.copies} x {len(args.projects)} example projects + "
              f"{len(args.tasks)} bug benchmark tasks); budget {args.budget:.0f}s per ticket; "
              f"drafter {drafter}{why}; sandbox {args.sandbox}; workers {args.workers}",
              flush=True)  # fmt: skip
        seq_wall, seq = run_sequential(seq_items, common, work / "seq")
        batch_wall, batch = run_batch(batch_items, common, args.parallel, work / "batch")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seq_fixed = sum(1 for s, _ in seq.values() if s == "green")
    batch_fixed = sum(1 for s, _ in batch.values() if s == "green")
    ratio = seq_wall / batch_wall
    print(f"sequential agent fix: {seq_wall:7.1f}s wall, {seq_fixed}/{n} fixed, "
          f"{n / seq_wall * 3600:6.1f} tickets/hour")  # fmt: skip
    print(f"agent batch ({args.parallel} in flight): {batch_wall:7.1f}s wall, {batch_fixed}/{n} "
          f"fixed, {n / batch_wall * 3600:6.1f} tickets/hour")  # fmt: skip
    print(f"throughput ratio (batch / sequential): {ratio:.2f}x; fixed: {batch_fixed} vs "
          f"{seq_fixed}")  # fmt: skip
    if args.json_out:
        figures = {"tickets": n, "budget": args.budget, "drafter": drafter,
                   "sandbox": args.sandbox, "parallel": args.parallel,
                   "sequential": {"wall": seq_wall, "fixed": seq_fixed, "tickets": seq},
                   "batch": {"wall": batch_wall, "fixed": batch_fixed, "tickets": batch},
                   "ratio": ratio}  # fmt: skip
        Path(args.json_out).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
