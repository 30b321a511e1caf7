"""What the denoiser costs the fix loop: ms per candidate ranked and per span sampled.

For buggy lines of the bug benchmark (the first `--lines` tasks of a split, their buggy file):
every model-free candidate of the line (`agent.pipeline.draft.line_candidates`) is ranked by the
repair head two ways, measured side by side in this run: one pass per site (`model.repair.
quick_scores`, the drafter's "repair" stage) against one row per candidate (`model.repair.
rank_candidates`, batched), printing ms per candidate and their ratio. Then the line is
sampled as the drafter's "sample" stage does (`agent.pipeline.draft.Drafter._samples`: 3 span
lengths x 4 samples, threshold decoding, at most MAX_STEPS passes): ms per span sampled (one span
length of one site, all its samples); and as `agent infill` does (`model.sampler.infill_site` with
`INTERACTIVE`, 3 span lengths x 5 samples) against the sampler's defaults, side by side: ms per
line, after the model is loaded.

    .venv/bin/python benchmarks/repair_speed.py [--split test] [--lines 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from greenpatch.agent.bench.libraries import get_library, pristine_repo  # noqa: E402
from greenpatch.agent.bench.tasks import buggy_source, load_tasks  # noqa: E402
from greenpatch.agent.pipeline.draft import Drafter, line_candidates  # noqa: E402
from greenpatch.agent.pipeline.localize import SuspiciousLine  # noqa: E402
from greenpatch.agent.pipeline.sites import sites_for  # noqa: E402
from greenpatch.model.checkpoint import load_model  # noqa: E402
from greenpatch.model.repair import quick_scores, rank_candidates  # noqa: E402
from greenpatch.model.sampler import INTERACTIVE, infill_site, span_lengths  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="test")
    parser.add_argument("--lines", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_model(None)
    drafter = Drafter(lm, [], mode="model-repair")
    tasks = [t for t in load_tasks() if t.split == args.split and not t.more_sites]
    quick_ms, full_ms, ratios, sample_ms, infill_ms, default_ms = [], [], [], [], [], []
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
        line = SuspiciousLine(task.file, task.start_line, 1.0, 1.0, False, 0.0)
        found = sites_for({task.file: source}, [line], count_tokens=drafter.count_tokens)
        sites = [s for s in found if s.kind == "line"][:1]
        if sites:
            began = time.perf_counter()
            drafter._samples({task.file: source}, sites, "", 0)
            sample_ms.append((time.perf_counter() - began) * 1000 / len(sites[0].span_lengths))
            site = sites[0]
            prefix, suffix = source[: site.start_char], source[site.end_char :]
            lengths = span_lengths(lm, site.original_text)
            began = time.perf_counter()
            infill_site(lm, prefix, suffix, lengths, samples=5)
            default_ms.append((time.perf_counter() - began) * 1000)
            began = time.perf_counter()
            infill_site(lm, prefix, suffix, lengths, samples=5, **INTERACTIVE)
            infill_ms.append((time.perf_counter() - began) * 1000)
        print(f"{task.id[:55]:55s} {len(edits):4d} candidates: quick {quick:6.2f} ms, "
              f"per-candidate pass {full:6.2f} ms ({full / quick:.1f}x)", flush=True)
    print()
    print(f"ms per candidate ranked (median of {len(quick_ms)} lines, {args.threads} thread(s)):"
          f" one pass per site {statistics.median(quick_ms):.2f}, one row per candidate "
          f"{statistics.median(full_ms):.2f}; ratio {statistics.median(ratios):.1f}x")
    if sample_ms:
        print(f"ms per span sampled (one line site, 4 samples, the drafter's settings): median "
              f"{statistics.median(sample_ms):.0f} ({len(sample_ms)} lines)")
        ratio = statistics.median(d / i for d, i in zip(default_ms, infill_ms, strict=True))
        print(f"ms per `agent infill` of one line (3 span lengths, 5 samples): median "
              f"{statistics.median(infill_ms):.0f} with model.sampler.INTERACTIVE, "
              f"{statistics.median(default_ms):.0f} with the sampler's defaults ({ratio:.1f}x)")


if __name__ == "__main__":
    main()
