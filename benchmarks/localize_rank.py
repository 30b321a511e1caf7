"""Where the buggy line lands in the localization, with and without the denoiser.

For each single-bug task of a split: reproduce (the baseline with per-test coverage), rank the
suspicious lines by spectrum + traceback alone (`agent.pipeline.localize.rank_lines`), then again
with the repair head's disbelief in each line (`FixLoop.localize` with a repair model: one pass per
suspicious function) at each weight of `--weights`. Printed: top-1 / top-5 of the buggy line
and its median rank, per weight and per kind, and the seconds the denoiser took per task.
`--split dev` chooses the weight; the test split measures it.

    .venv/bin/python benchmarks/localize_rank.py [--split test] [--sample 0] [--seed 0]
        [--weights 0.5] [--json OUT] [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import torch  # noqa: E402
from draft_rank import line_rank, task_case  # noqa: E402
from greenpatch.agent.bench.splits import sample  # noqa: E402
from greenpatch.agent.bench.tasks import load_tasks  # noqa: E402
from greenpatch.agent.config import load_settings  # noqa: E402
from greenpatch.agent.pipeline.draft import Drafter  # noqa: E402
from greenpatch.agent.pipeline.harness import target_python  # noqa: E402
from greenpatch.agent.pipeline.live import FixState  # noqa: E402
from greenpatch.agent.pipeline.localize import (  # noqa: E402
    DENOISER_WEIGHT,
    TRACEBACK_WEIGHT,
    _line_start,
)
from greenpatch.agent.pipeline.loop import FixLoop, Options  # noqa: E402
from greenpatch.agent.pipeline.reproduce import reproduce  # noqa: E402
from greenpatch.model.bugs import enclosing_function  # noqa: E402
from greenpatch.model.checkpoint import load_model  # noqa: E402
from greenpatch.model.repair import LineSuspicion, line_suspicion  # noqa: E402

# Lines of the spectrum order whose signals go into the JSON rows.
DUMPED_LINES = 80


def measure(case, lm, weights: list[float]) -> dict:
    settings = load_settings(case.repo)
    python = target_python(settings, case.repo)
    repro = reproduce(case.repo, python, settings, case.ticket, None)
    plain_loop = FixLoop(case.repo, python, settings, repro, Drafter(None, [], mode="edits"),
                         Options(budget=1e9), FixState(ticket=case.name))  # fmt: skip
    plain = plain_loop.localize()
    row = {"task": case.name, "kind": case.kind, "plain": line_rank(case, plain)}
    loop = FixLoop(case.repo, python, settings, repro, Drafter(lm, [], mode="model"),
                   Options(budget=1e9), FixState(ticket=case.name))  # fmt: skip
    began = time.monotonic()
    loop.localize()  # the loop's own path: reads the functions, caches the disbelief
    row["denoiser_seconds"] = round(time.monotonic() - began, 2)
    for weight in weights:
        loop.denoiser_weight = weight  # the same cached disbelief, another weight
        row[f"w{weight:g}"] = line_rank(case, loop.localize())
    row["lines"] = dump_lines(case, lm, plain[:DUMPED_LINES])
    return row


def dump_lines(case, lm, lines: list) -> list[list]:
    """Each signal of `lines` (spectrum order), to study other ways to combine them: ochiai,
    traceback, the head's corrupted and missing probabilities, the enclosing function's index
    (lines of one function share it) and whether the fix belongs there."""
    path = next(iter(case.fixed))
    functions: dict[tuple[str, int, int], dict[int, LineSuspicion]] = {}
    texts = {p: (case.repo / p).read_text() for p in {s.path for s in lines}}
    out = []
    for s in lines:
        text = texts[s.path]
        at = _line_start(text, s.line)
        span = enclosing_function(text, at) if at is not None else (0, 0)
        key = (s.path, *span)
        if key not in functions:
            functions[key] = {x.line: x for x in line_suspicion(lm, text, *span)} if at else {}
        head = functions[key].get(s.line, LineSuspicion(s.line, 0.0, 0.0))
        out.append([s.ochiai, round((s.score - s.ochiai) / TRACEBACK_WEIGHT, 6),
                    round(head.corrupted, 6), round(head.missing, 6), list(functions).index(key),
                    s.path == path and s.line in case.lines])
    return out


def summary(rows: list[dict], key: str) -> str:
    ranks = [r[key] for r in rows]
    top1 = sum(1 for x in ranks if x == 1)
    top5 = sum(1 for x in ranks if x is not None and x <= 5)
    med = statistics.median([x or 10**6 for x in ranks]) if ranks else "-"
    return (f"top-1 {top1}/{len(ranks)} ({100 * top1 / max(1, len(ranks)):.1f}%), "
            f"top-5 {top5}/{len(ranks)}, median rank {med:g}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="test")
    parser.add_argument("--sample", type=int, default=0, help="tasks drawn (0: every one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights", default=str(DENOISER_WEIGHT))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--model", type=Path, help="model directory (default: the embedded one)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    weights = [float(w) for w in args.weights.split(",")]
    lm = load_model(args.model)
    tasks = [t for t in load_tasks() if t.split == args.split and not t.more_sites]
    chosen = set(sample([t.id for t in tasks], args.sample or None, args.seed))
    rows = []
    work = Path(tempfile.mkdtemp(prefix="gp-loc-"))
    try:
        for task in (t for t in tasks if t.id in chosen):
            try:
                row = measure(task_case(task, work), lm, weights)
            except Exception as exc:  # noqa: BLE001 - one broken task must not end the run
                print(f"{task.id}: {type(exc).__name__}: {exc}"[:200], flush=True)
                continue
            finally:
                shutil.rmtree(work / task.id, ignore_errors=True)
            rows.append(row)
            cells = "  ".join(f"w{w:g}={row[f'w{w:g}']}" for w in weights)
            print(f"{task.id[:60]:60s} {task.kind:18s} plain={row['plain']}  {cells}  "
                  f"({row['denoiser_seconds']} s)", flush=True)  # fmt: skip
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"spectrum + traceback:        {summary(rows, 'plain')}")
    for w in weights:
        print(f"with the denoiser, weight {w:g}: {summary(rows, f'w{w:g}')}")
    for kind in sorted({r["kind"] for r in rows}):
        mine = [r for r in rows if r["kind"] == kind]
        cells = "  ".join(f"w{w:g} {sum(r[f'w{w:g}'] == 1 for r in mine)}" for w in weights)
        print(f"  {kind:18s} top-1 of {len(mine)}: plain {sum(r['plain'] == 1 for r in mine)}  "
              f"{cells}")  # fmt: skip
    if rows:
        print(f"denoiser seconds per task: median "
              f"{statistics.median(r['denoiser_seconds'] for r in rows):g}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main()
