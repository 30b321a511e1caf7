"""What the denoiser costs the fix loop: ms per candidate ranked and per span sampled.

For buggy lines of the bug benchmark (the first `--lines` tasks of a split, their buggy file):
every model-free candidate of the line (`agent.pipeline.draft.line_candidates`) is ranked by the
repair head two ways, measured side by side in this run: one pass per site (`model.repair.
quick_scores`, the drafter's "repair" stage) against one row per candidate (`model.repair.
rank_candidates`, batched), printing ms per candidate and their ratio. Then the line is
sampled as the drafter's "sample" stage does with a repair head (`agent.pipeline.draft.
edit_candidates`: sampling that edits, every re-masked run of the line in one batch): ms per
span sampled (one canvas, all its samples) and per line; beside it the blank-canvas samples of
a model without a repair head (`Drafter._samples`: 3 span lengths x 4 samples). Last, the
line as `agent infill` fills it (`model.sampler.infill_site`, 3 span lengths x 6 samples)
with `INTERACTIVE` against the sampler's defaults, and, with `--baseline-sampler FILE` (a
sampler.py of an earlier commit, e.g. `git show 6f4ab6d:model/sampler.py > /tmp/old.py`),
against that code with the same options; the runs of one line alternate, so load hits them
alike. Each infill variant also reports how often the fixed line is among its first 5 fills
(recovery) and how close its best fill is (character similarity), so speed is not bought
with worse fills. `--threads 1,2` repeats the INTERACTIVE fill with 2 threads.

    .venv/bin/python benchmarks/repair_speed.py [--split test] [--lines 8] [--threads 1,2]
        [--baseline-sampler /tmp/old.py] [--no-defaults]
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from greenpatch.agent.bench.libraries import get_library, pristine_repo  # noqa: E402
from greenpatch.agent.bench.tasks import buggy_source, load_tasks  # noqa: E402
from greenpatch.agent.pipeline.draft import Drafter, edit_candidates, line_candidates  # noqa: E402
from greenpatch.agent.pipeline.localize import SuspiciousLine  # noqa: E402
from greenpatch.agent.pipeline.sites import sites_for  # noqa: E402
from greenpatch.model.checkpoint import load_model  # noqa: E402
from greenpatch.model.repair import quick_scores, rank_candidates  # noqa: E402
from greenpatch.model.sampler import (  # noqa: E402
    INTERACTIVE,
    DecodeStats,
    infill_site,
    span_lengths,
)

# Samples per span length of `agent infill` (its default --n 5, plus one).
INFILL_SAMPLES = 6


def load_sampler(path: str):
    """An earlier sampler.py as a module of its own (it imports the rest from greenpatch)."""
    spec = importlib.util.spec_from_file_location("baseline_sampler", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_sampler"] = module
    spec.loader.exec_module(module)
    return module


class Infill:
    """One way of filling a line: its times, recoveries and best-fill similarities."""

    def __init__(self, name: str, fill) -> None:
        self.name, self.fill = name, fill
        self.ms: list[float] = []
        self.recovered = 0
        self.similarity: list[float] = []

    def run(self, prefix: str, suffix: str, lengths: list[int], want: str) -> None:
        began = time.perf_counter()
        fills = [c.text for c in self.fill(prefix, suffix, lengths)][:5]
        self.ms.append((time.perf_counter() - began) * 1000)
        self.recovered += any(f.strip() == want.strip() for f in fills)
        self.similarity.append(max((difflib.SequenceMatcher(None, f.strip(), want.strip())
                                    .ratio() for f in fills), default=0.0))

    def line(self, reference: Infill | None) -> str:
        ratio = "" if reference is None or reference is self else (
            f" ({statistics.median(a / b for a, b in zip(self.ms, reference.ms, strict=True)):.2f}x"
            f" {reference.name})")
        return (f"  {self.name:42s} median {statistics.median(self.ms):7.0f} ms{ratio}; fixed "
                f"line among the first 5: {self.recovered}/{len(self.ms)}; best-fill similarity "
                f"{statistics.mean(self.similarity):.3f}")


def infills(lm, args) -> list[Infill]:
    def with_threads(n: int, fill):
        def run(*a):
            before = torch.get_num_threads()
            torch.set_num_threads(n)
            try:
                return fill(*a)
            finally:
                torch.set_num_threads(before)
        return run

    def sampler_fill(module, options):
        return lambda prefix, suffix, lengths: module.infill_site(
            lm, prefix, suffix, lengths, samples=INFILL_SAMPLES, **options)

    threads = [int(t) for t in args.threads.split(",")]
    out = [Infill(f"INTERACTIVE, {threads[0]} thread(s)", sampler_fill(sys.modules[
        infill_site.__module__], INTERACTIVE))]
    if args.baseline_sampler:
        old = load_sampler(args.baseline_sampler)
        out.append(Infill("INTERACTIVE, --baseline-sampler code", sampler_fill(
            old, getattr(old, "INTERACTIVE", INTERACTIVE))))
    for n in threads[1:]:
        out.append(Infill(f"INTERACTIVE, {n} threads", with_threads(n, sampler_fill(
            sys.modules[infill_site.__module__], INTERACTIVE))))
    if args.defaults:
        out.append(Infill("the sampler's defaults", sampler_fill(
            sys.modules[infill_site.__module__], {})))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="test")
    parser.add_argument("--lines", type=int, default=8)
    parser.add_argument("--threads", default="1", help="e.g. 1,2: the first for everything")
    parser.add_argument("--baseline-sampler", help="an earlier model/sampler.py to compare")
    parser.add_argument("--defaults", action=argparse.BooleanOptionalAction, default=True,
                        help="also fill with the sampler's defaults (slow)")
    args = parser.parse_args()
    torch.set_num_threads(int(args.threads.split(",")[0]))
    lm = load_model(None)
    drafter = Drafter(lm, [], mode="model-repair")
    ways = infills(lm, args)
    tasks = [t for t in load_tasks() if t.split == args.split and not t.more_sites]
    quick_ms, full_ms, ratios, blank_ms, edit_span_ms, edit_line_ms = [], [], [], [], [], []
    for task in tasks[: args.lines]:
        pristine = (pristine_repo(get_library(task.library)) / task.file).read_bytes()
        source = buggy_source(task, task.file, pristine).decode()
        edits = line_candidates(source, task.start_line, task.file)
        if not edits:
            continue
        began = time.perf_counter()
        quick_scores(lm, source, edits)
        quick = (time.perf_counter() - began) * 1000 / len(edits)
        began = time.perf_counter()
        rank_candidates(lm, source, edits)
        full = (time.perf_counter() - began) * 1000 / len(edits)
        quick_ms.append(quick)
        full_ms.append(full)
        ratios.append(full / quick)
        stats = DecodeStats()
        began = time.perf_counter()
        edit_candidates(lm, source, task.start_line, task.file, stats=stats)
        elapsed = (time.perf_counter() - began) * 1000
        edit_line_ms.append(elapsed)
        edit_span_ms.append(elapsed / max(1, stats.spans))
        line = SuspiciousLine(task.file, task.start_line, 1.0, 1.0, False, 0.0)
        found = sites_for({task.file: source}, [line], count_tokens=drafter.count_tokens)
        sites = [s for s in found if s.kind == "line"][:1]
        if sites:
            began = time.perf_counter()
            drafter._samples({task.file: source}, sites, "", 0)
            blank_ms.append((time.perf_counter() - began) * 1000 / len(sites[0].span_lengths))
            site = sites[0]
            prefix, suffix = source[: site.start_char], source[site.end_char :]
            want = pristine.decode()[site.start_char:].split("\n", 1)[0]
            lengths = span_lengths(lm, site.original_text)
            for way in ways:
                way.run(prefix, suffix, lengths, want)
        print(f"{task.id[:55]:55s} {len(edits):4d} candidates: quick {quick:6.2f} ms, "
              f"per-candidate pass {full:6.2f} ms ({full / quick:.1f}x); sampling that edits "
              f"{edit_line_ms[-1]:.0f} ms ({stats.spans} spans)", flush=True)
    print()
    print(f"ms per candidate ranked (median of {len(quick_ms)} lines, {args.threads} thread(s)):"
          f" one pass per site {statistics.median(quick_ms):.2f}, one row per candidate "
          f"{statistics.median(full_ms):.2f}; ratio {statistics.median(ratios):.1f}x")
    print(f"sampling that edits (the sample stage with a repair head): median "
          f"{statistics.median(edit_span_ms):.0f} ms per span sampled, "
          f"{statistics.median(edit_line_ms):.0f} ms per line")
    if blank_ms:
        print(f"blank-canvas samples (the sample stage without a repair head; one line site, 4 "
              f"samples): median {statistics.median(blank_ms):.0f} ms per span sampled")
        print(f"`agent infill` of one line (3 span lengths x {INFILL_SAMPLES} samples, "
              f"{len(ways[0].ms)} lines):")
        for way in ways:
            print(way.line(ways[0]))


if __name__ == "__main__":
    main()
