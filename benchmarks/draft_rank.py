"""Where the right fix lands in the drafting order, per drafter, without running a test.

For each task (the example tickets and a sample of the bug benchmark): reproduce (the baseline
with per-test coverage), localize, and list the first round's drafts in the order the fix loop
submits them before any feedback (the one-shot order), once per drafter mode. Printed per task
and mode: the 1-based rank of the first draft equal to the reference fix (same AST), and the
drafting seconds spent until then. In one budget a lower rank is found sooner: ranks show what
the model adds, apart from test timing.

Mode `model-repair` ranks every substitution and edit of a line by the model's repair head
(`agent.pipeline.draft`'s "repair" stage). With a repair model, every model mode localizes with the
denoiser's disbelief too (`FixLoop.localize`); each task is reproduced once and shared by the
modes. For benchmark tasks it also prints where the buggy line is in the localization of
each mode (`benchmarks/localize_rank.py` measures that alone, on a whole split).

    .venv/bin/python benchmarks/draft_rank.py [--sample 12] [--seed 0] [--split test]
        [--limit 3000] [--modes model-repair,model,edits,mutations] [--examples/--no-examples]
        [--kinds KIND,KIND] [--task ID ...]
        [--model DIR] [--json OUT] [--shard K/N] [--reverse] [--sharpness 1,2,3]
        [--evidence 1,1.25] [--guess 0.15,0.4]
    .venv/bin/python benchmarks/draft_rank.py --report OUT1 OUT2[:TAG] ... [--modes ...]
        [--limit N]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from greenpatch.agent.bench.inject import same_code  # noqa: E402
from greenpatch.agent.bench.libraries import get_library, pristine_repo  # noqa: E402
from greenpatch.agent.bench.splits import sample  # noqa: E402
from greenpatch.agent.bench.tasks import build_task_repo, load_tasks  # noqa: E402
from greenpatch.agent.config import MODEL_FREE, load_settings  # noqa: E402
from greenpatch.agent.pipeline.draft import Drafter  # noqa: E402
from greenpatch.agent.pipeline.harness import target_python  # noqa: E402
from greenpatch.agent.pipeline.live import FixState  # noqa: E402
from greenpatch.agent.pipeline.loop import FixLoop, Options  # noqa: E402
from greenpatch.agent.pipeline.reproduce import reproduce  # noqa: E402
from greenpatch.agent.tickets import load_ticket, parse_ticket  # noqa: E402
from greenpatch.model.checkpoint import load_model  # noqa: E402
from greenpatch.runner.blocks import shared_ends  # noqa: E402

EXAMPLES = ("stockroom", "slugkit", "timespan", "confparse")


@dataclass
class Case:
    name: str
    kind: str
    repo: Path
    ticket: object
    fixed: dict[str, str]  # relpath -> the reference fix's text of each file it changes
    lines: tuple[int, ...] = ()  # lines of the buggy file a fix may be localized at


def example_case(name: str, work: Path) -> Case:
    repo, fixed_copy = work / name, work / f"{name}-fixed"
    for dest in (repo, fixed_copy):
        subprocess.run([sys.executable, str(REPO / "examples" / "prepare.py"), name, str(dest)],
                       check=True, capture_output=True)  # fmt: skip
    patch = REPO / "examples" / "fixes" / f"{name}.patch"
    subprocess.run(["git", "apply", str(patch)], cwd=fixed_copy, check=True)
    changed = subprocess.run(["git", "diff", "--name-only"], cwd=fixed_copy, check=True,
                             capture_output=True, text=True).stdout.split()  # fmt: skip
    fixed = {path: (fixed_copy / path).read_text() for path in changed}
    ticket = load_ticket(str(REPO / "examples" / "tickets" / f"{name}.md"))
    return Case(name, "example", repo, ticket, fixed)


def task_case(task, work: Path) -> Case:
    repo = build_task_repo(task, work / task.id)
    pristine = (pristine_repo(get_library(task.library)) / task.file).read_text()
    # A deleted statement is put back after the line before it (or before the line after).
    lines = (
        (task.start_line - 1, task.start_line)
        if task.kind == "deleted_statement"
        else (task.start_line,)
    )
    return Case(
        task.id, task.kind, repo, parse_ticket(task.ticket, task.id), {task.file: pristine}, lines
    )


# Lines a run of differing lines may span in each text, and the lines both must agree on after
# it for the run to end there.
RUN_LINES = 12
ANCHOR_LINES = 3


def _hunks(a: str, b: str) -> list[tuple[str, str]]:
    """Where `a` and `b` differ: each run of differing lines on its own (a draft changes one
    site, the bug is at another: two runs, not everything between them). A run ends where
    both texts agree again for ANCHOR_LINES lines, found within RUN_LINES of its start, the
    shortest first; past that, the rest is one run."""
    x, y = a.splitlines(), b.splitlines()
    runs = []
    while True:
        head, tail = shared_ends(x, y)
        x, y = x[head:len(x) - tail], y[head:len(y) - tail]
        if not x and not y:
            return runs
        ends = [(i, j) for i in range(min(len(x), RUN_LINES) + 1)
                for j in range(min(len(y), RUN_LINES) + 1)
                if i + j and x[i:i + ANCHOR_LINES] == y[j:j + ANCHOR_LINES]]  # fmt: skip
        i, j = min(ends, key=sum, default=(len(x), len(y)))
        runs.append(("\n".join(x[:i]), "\n".join(y[:j])))
        x, y = x[i:], y[j:]


def is_fix(draft: str, want: str) -> bool:
    """`same_code(draft, want)` without parsing the whole file for each of up to a thousand
    drafts. Where the two differ, programs that are the same differ only in layout,
    parentheses and commas, unless a comment, a string or a line continuation is in the way
    (or a number spelled otherwise, which no draft does); a run of lines differing otherwise
    is a different program, without a parse."""
    if draft == want:
        return True
    for a, b in _hunks(draft, want):
        if not re.search(r"[#'\"\\]", a + b) and re.sub(r"[\s(),;]", "", a) != re.sub(
            r"[\s(),;]", "", b
        ):
            return False
    return same_code(draft, want)


def line_rank(case: Case, localization: list) -> int | None:
    """1-based rank of the first suspicious line where the fix belongs."""
    path = next(iter(case.fixed))
    return next(
        (i + 1 for i, s in enumerate(localization) if s.path == path and s.line in case.lines), None
    )


def prepare(case: Case):
    """The task's reproduction (baseline with coverage), shared by every mode."""
    settings = load_settings(case.repo)
    python = target_python(settings, case.repo)
    return settings, python, reproduce(case.repo, python, settings, case.ticket, None)


def remembered(drafter: Drafter) -> Drafter:
    """`drafter` with its stages remembered: ranking again under other line weights, evidence
    weights or guesses drafts nothing twice, and a draft keeps its id. A stage replays what it
    drafted the first time (a repair draft's score moved by the change of
    `drafter.evidence_weight` since), so a draft dropped then as a repeat of another line's
    stays dropped: a later column's order can differ from a fresh run's by those repeats."""
    stage, kept = drafter.stage, {}

    def once(sources, sites, name, cond="", parent=None, seed=0, missing=()):
        key = (name, tuple(sites), parent.id if parent else None, seed, cond)
        if key not in kept:
            kept[key] = (stage(sources, sites, name, cond, parent, seed, missing),
                         drafter.evidence_weight)  # fmt: skip
        drafts, weight = kept[key]
        change = drafter.evidence_weight - weight
        if not change or name != "repair":
            return drafts
        return [replace(d, score=d.score + change * d.evidence) for d in drafts]

    drafter.stage = once
    return drafter


@dataclass(frozen=True)
class Variant:
    """A column: the line weights' power, the repair evidence's weight and the guess of an
    undrafted repair line's worth, each None for the loop's own."""

    sharpness: float | None = None
    evidence: float | None = None
    guess: float | None = None

    def column(self, mode: str) -> str:
        name = mode if self.sharpness is None else f"{mode}^{self.sharpness:g}"
        if self.evidence is not None:
            name += f"~e{self.evidence:g}"
        return name if self.guess is None else f"{name}~g{self.guess:g}"


def rank(case: Case, prepared, drafter: Drafter, limit: int,
         variant: Variant = Variant()) -> dict:
    """Where the reference fix comes in the first round's order, under `variant`."""
    settings, python, repro = prepared
    loop = FixLoop(case.repo, python, settings, repro, drafter, Options(budget=1e9),
                   FixState(ticket=case.name))  # fmt: skip
    if variant.sharpness is not None:
        loop.sharpness = variant.sharpness
    if variant.evidence is not None:
        drafter.evidence_weight = variant.evidence
    localization, explorer = loop.first_round()
    if variant.guess is not None:
        explorer.guess["repair"] = variant.guess
    where = {"line_rank": line_rank(case, localization)} if case.lines else {}
    explorer.sample_now = lambda: True  # no testers to keep fed here
    fix_lines = [s for s in localization if s.path in case.fixed]
    count = 0
    while batch := explorer.take(64):
        for draft in batch:
            count += 1
            want = case.fixed.get(draft.path)
            if want is not None and len(case.fixed) == 1 and is_fix(draft.source, want):
                return {"rank": count, "seconds": round(drafter.busy, 2),
                        "site": draft.site.kind, "origin": draft.origin,
                        "localized_lines": len(localization), **where}  # fmt: skip
            if count >= limit:
                return {"rank": None, "seconds": round(drafter.busy, 2),
                        "why": f"not in the first {limit}", **where}  # fmt: skip
    return {"rank": None, "seconds": round(drafter.busy, 2), "why": "never drafted",
            "drafted": count, "localized_lines": len(localization),
            "fix_file_lines": len(fix_lines), **where}  # fmt: skip


def report(rows: list[dict], modes: list[str], limit: int) -> None:
    """Medians over every task (a fix not found in `limit` drafts counts as limit + 1), per
    kind, the first mode against each other one, and where each mode localized the bug."""
    unfound = limit + 1
    kinds = sorted({r["kind"] for r in rows})

    def ranks(mode: str, kind: str | None = None) -> list[int]:
        return [r[mode].get("rank") or unfound for r in rows if kind in (None, r["kind"])]

    for mode in modes:
        found = sum(1 for r in rows if r[mode].get("rank"))
        median = statistics.median(ranks(mode))
        print(f"{mode:12s} found {found}/{len(rows)}; median rank {median:g} (unfound = {unfound})")
    for mode in modes:
        cells = ", ".join(f"{k} {statistics.median(ranks(mode, k)):g} ({len(ranks(mode, k))})"
                          for k in kinds)  # fmt: skip
        print(f"{mode:12s} median rank by kind (tasks): {cells}")
    first = modes[0]
    for other in modes[1:]:
        ratio = statistics.median(ranks(first)) / statistics.median(ranks(other))
        worse = [k for k in kinds
                 if statistics.median(ranks(first, k)) > statistics.median(ranks(other, k))]
        earlier = sum(1 for a, b in zip(ranks(first), ranks(other), strict=True) if a < b)
        later = sum(1 for a, b in zip(ranks(first), ranks(other), strict=True) if a > b)
        neither = Counter(r["kind"] for r in rows
                          if not r[first].get("rank") and not r[other].get("rank"))
        print(f"{first} / {other}: median rank ratio {ratio:.3f}; earlier on {earlier} tasks, "
              f"later on {later}; kinds where {first} is worse: {', '.join(worse) or 'none'}; "
              f"found by neither: {neither.total()} "
              f"({', '.join(f'{k} {n}' for k, n in neither.most_common())})")
    for mode in modes:
        lines = [r[mode].get("line_rank") for r in rows if "line_rank" in r[mode]]
        if lines:
            top1 = sum(1 for x in lines if x == 1)
            print(f"{mode:12s} buggy line top-1 {top1}/{len(lines)}, median rank "
                  f"{statistics.median([x or 10**6 for x in lines]):g} (not localized: 10^6)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="test")
    parser.add_argument("--kinds", default="", help="only tasks of these kinds (comma-separated)")
    parser.add_argument("--task", action="append", default=[],
                        help="this task id instead of a draw (repeat); e.g. the tasks of a "
                             "--report's rows to measure again")
    parser.add_argument("--limit", type=int, default=3000)
    parser.add_argument("--modes", default="model-repair,model,edits,mutations")
    parser.add_argument("--examples", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--sharpness", default="",
                        help="rank each mode once per line-weight power (comma-separated; "
                             "columns MODE^POWER), reusing its drafts; default: the loop's own")
    parser.add_argument("--evidence", default="",
                        help="... and per weight of a repair draft's evidence (columns "
                             "MODE~eW); default: EVIDENCE_WEIGHT")
    parser.add_argument("--guess", default="",
                        help="... and per guess of an undrafted repair line's worth (columns "
                             "MODE~gG); default: GUESS")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--model", type=Path, help="model directory (default: the embedded one)")
    parser.add_argument("--shard", default="1/1",
                        help="K/N: every N-th chosen task from the K-th (side by side runs)")
    parser.add_argument("--reverse", action="store_true",
                        help="the shard's tasks last first (a second run meets the first)")
    parser.add_argument("--report", nargs="+",
                        help="print the summary of these --json files (shards) and exit; "
                        "FILE:TAG names its columns MODE@TAG (two runs side by side)")
    args = parser.parse_args()
    modes = args.modes.split(",")
    def values(text: str) -> list[float | None]:
        return [float(x) for x in text.split(",")] if text else [None]

    variants = [Variant(p, e, g) for p in values(args.sharpness) for e in values(args.evidence)
                for g in values(args.guess)]  # fmt: skip
    columns = [v.column(m) for m in modes for v in variants]
    if args.report:
        # FILE:TAG names the file's columns MODE@TAG, so two runs of one mode compare.
        named = [(Path(f), t) for f, _, t in (str(a).partition(":") for a in args.report)]
        missing = [str(path) for path, _ in named if not path.is_file()]
        if missing:
            sys.exit(f"no such --report file: {', '.join(missing)}")
        # Shards run forwards and backwards meet in the middle: one row per task.
        merged: dict[str, dict] = {}
        for path, tag in named:
            for row in json.loads(path.read_text()):
                cells = {f"{k}@{tag}" if tag and k not in ("task", "kind") else k: v
                         for k, v in row.items()}
                merged.setdefault(row["task"], {}).update(cells)
        rows = list(merged.values())
        print(f"{len(rows)} tasks")
        report(rows, modes, args.limit)
        return
    shard, shards = (int(x) for x in args.shard.split("/"))
    torch.set_num_threads(1)
    lm = load_model(args.model)
    kinds = set(filter(None, args.kinds.split(",")))
    tasks = [t for t in load_tasks() if t.split == args.split and (not kinds or t.kind in kinds)]
    chosen = sample([t.id for t in tasks], args.sample, args.seed) if args.sample else []
    if args.task:
        known = {t.id for t in tasks}
        unknown = [name for name in args.task if name not in known]
        if unknown:
            sys.exit(f"no such {args.split} task: {', '.join(unknown)}")
        chosen = list(args.task)
    chosen = chosen[shard - 1::shards]
    if args.reverse:
        chosen.reverse()
    by_id = {t.id: t for t in tasks}
    rows = []
    work = Path(tempfile.mkdtemp(prefix="gp-rank-"))
    try:
        cases = [example_case(n, work) for n in EXAMPLES] if args.examples else []
        cases += [task_case(by_id[i], work) for i in chosen]
        for case in cases:
            row = {"task": case.name, "kind": case.kind}
            try:
                prepared = prepare(case)
            except Exception as exc:  # noqa: BLE001 - one broken task must not end the run
                print(f"{case.name}: {type(exc).__name__}: {exc}"[:200], flush=True)
                continue
            for mode in modes:
                drafter = remembered(Drafter(None if mode in MODEL_FREE else lm, [], mode=mode))
                for variant in variants:
                    name = variant.column(mode)
                    started = time.monotonic()
                    try:
                        row[name] = rank(case, prepared, drafter, args.limit, variant)
                    except Exception as exc:  # noqa: BLE001 - one broken task must not end the run
                        row[name] = {"rank": None, "why": f"{type(exc).__name__}: {exc}"[:200]}
                    row[name]["wall"] = round(time.monotonic() - started, 1)
                    if variant != variants[0]:  # its drafts were mostly drafted before: no timing
                        row[name].pop("seconds", None)
                        row[name].pop("wall")
            shutil.rmtree(case.repo, ignore_errors=True)
            rows.append(row)
            cells = "  ".join(f"{m}={row[m].get('rank')} ({row[m].get('seconds')} s)"
                              for m in columns)  # fmt: skip
            print(f"{case.name[:60]:60s} {case.kind:18s} {cells}", flush=True)
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    report(rows, columns, args.limit)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main()
