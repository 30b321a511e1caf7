"""Decoding benchmark: on one model, side by side in one run,

1. one-token-per-step decoding vs confidence-threshold parallel decoding: span tokens per second
   and exact-match infill accuracy (greedy fills of masked lines);
2. drafting 16 candidates of one site in one batch vs 16 sequential drafts: candidates per second.

The model: `--model PATH`, else the embedded model when `model/weights/` holds one, else (or with
`--synthetic`) a small model trained here in a minute or two on a synthetic language
(`model.synthetic`: runs of consecutive letters; a masked run of 4-10 letters is determined by
its neighbours). Tasks for a real code model are masked lines of this repository's own source
(never in its training corpus). Timings alternate the compared modes and repeat them, so that
load on a shared machine hits both alike; the figures that matter are the ratios.

    .venv/bin/python benchmarks/model_decoding.py [--model PATH] [--synthetic] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch
from greenpatch.model import checkpoint, synthetic
from greenpatch.model.checkpoint import LoadedModel, load_model, wrap
from greenpatch.model.network import ModelConfig
from greenpatch.model.sampler import Canvas, DecodeStats, infill

REPO = Path(__file__).resolve().parents[1]
LETTERS = 24


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def synthetic_model(steps: int, seed: int) -> LoadedModel:
    rng = random.Random(seed)
    texts = [synthetic.alphabet_run(rng, LETTERS) for _ in range(5000)]
    tok = synthetic.tokenizer_for(texts, 300)
    config = ModelConfig.tiny(vocab_size=tok.vocab_size, max_seq_len=64)
    log(f"training a {config.dim}x{config.n_layers} model for {steps} steps on the synthetic "
        "language...")
    began = time.perf_counter()
    net, losses = synthetic.train(tok, texts, config, steps=steps, batch=32, lr=1e-2, seed=seed)
    log(f"  trained in {time.perf_counter() - began:.0f} s, loss {losses[0]:.2f} -> "
        f"{statistics.mean(losses[-50:]):.2f}")
    return wrap(net, tok, name=f"synthetic ({steps} steps)")


def synthetic_tasks(n: int, masked: tuple[int, int], seed: int) -> list[tuple[str, str, str]]:
    return [(t.prefix, t.middle, t.suffix)
            for t in synthetic.alphabet_tasks(n, LETTERS, masked, seed=seed)]


def code_tasks(n: int, masked_lines: int, seed: int) -> list[tuple[str, str, str]]:
    """Masked runs of non-blank lines from this repository's own Python source."""
    files = sorted(p for d in ("agent", "runner", "sandboxes") for p in (REPO / d).glob("*.py"))
    rng = random.Random(seed)
    tasks = []
    while len(tasks) < n and files:
        lines = rng.choice(files).read_text().splitlines(keepends=True)
        if len(lines) < masked_lines + 2:
            continue
        a = rng.randrange(1, len(lines) - masked_lines)
        middle = "".join(lines[a:a + masked_lines])
        if middle.strip() and len(middle) < 160:
            tasks.append(("".join(lines[:a]), middle, "".join(lines[a + masked_lines:])))
    return tasks


def decode_all(lm: LoadedModel, tasks, batch: int, **options) -> tuple[float, float, DecodeStats]:
    """Greedy fills of every task, `batch` canvases per call: (seconds, accuracy, stats)."""
    stats, hits, seconds = DecodeStats(), 0, 0.0
    for i in range(0, len(tasks), batch):
        chunk = tasks[i:i + batch]
        canvases = [Canvas(p, s, len(lm.tokenizer.encode(m))) for p, m, s in chunk]
        began = time.perf_counter()
        results = infill(lm, canvases, samples=1, stats=stats, **options)
        seconds += time.perf_counter() - began
        hits += sum(r[0].text == m for r, (_, m, _) in zip(results, chunk, strict=True))
    return seconds, hits / len(tasks), stats


def compare_parallel(lm: LoadedModel, tasks, batch: int, repeats: int, threshold: float,
                     cache_every: int | None) -> dict:
    modes = {"one token per step": dict(threshold=None),
             f"threshold {threshold}": dict(threshold=threshold)}
    if cache_every:
        modes[f"threshold + cache/{cache_every}"] = dict(threshold=threshold,
                                                         cache_every=cache_every)
    times: dict[str, list[float]] = {m: [] for m in modes}
    result: dict[str, dict] = {}
    for _ in range(repeats):  # alternate modes so that machine load hits both alike
        for name, options in modes.items():
            seconds, acc, stats = decode_all(lm, tasks, batch, **options)
            times[name].append(seconds)
            result[name] = {"accuracy": acc, "tokens": stats.tokens, "passes": stats.passes}
    for name in modes:
        seconds = statistics.median(times[name])
        result[name].update(seconds=seconds, tokens_per_s=result[name]["tokens"] / seconds)
    return result


def compare_batching(lm: LoadedModel, tasks, repeats: int, threshold: float, n: int = 16
                     ) -> dict:
    sites = tasks[:4]
    canvases = [Canvas(p, s, len(lm.tokenizer.encode(m))) for p, m, s in sites]
    options = dict(threshold=threshold, temperature=0.8, greedy_first=False)
    times: dict[str, list[float]] = {"batch of 16": [], "16 sequential": []}
    for _ in range(repeats):
        began = time.perf_counter()
        for c in canvases:
            infill(lm, [c], samples=n, seed=0, **options)
        times["batch of 16"].append(time.perf_counter() - began)
        began = time.perf_counter()
        for c in canvases:
            for k in range(n):
                infill(lm, [c], samples=1, seed=k, **options)
        times["16 sequential"].append(time.perf_counter() - began)
    drafts = n * len(canvases)
    return {name: {"seconds": statistics.median(t), "drafts": drafts,
                   "drafts_per_s": drafts / statistics.median(t)} for name, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model directory (default: embedded, else "
                        "a synthetic model trained here)")
    parser.add_argument("--synthetic", action="store_true",
                        help="train and use the synthetic model even if an embedded one exists")
    parser.add_argument("--train-steps", type=int, default=500)
    parser.add_argument("--tasks", type=int, default=48)
    parser.add_argument("--masked-lines", type=int, default=1,
                        help="lines masked per task (code models)")
    parser.add_argument("--batch", type=int, default=8, help="canvases per decoding call")
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--cache-every", type=int, help="also time threshold decoding with the "
                        "approximate context cache, one full pass in K")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", dest="json_out", help="also write the figures to this file")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    embedded = (checkpoint.EMBEDDED_DIR / "config.json").is_file()
    if args.model is not None or (embedded and not args.synthetic):
        lm = load_model(args.model)
        tasks = code_tasks(args.tasks, args.masked_lines, args.seed)
        task_kind = f"{args.masked_lines} masked line(s) of this repository's source"
    else:
        lm = synthetic_model(args.train_steps, args.seed)
        tasks = synthetic_tasks(args.tasks, (4, 10), args.seed + 1)
        task_kind = "masked letter runs (4-10 letters)"
    span = statistics.mean(len(lm.tokenizer.encode(m)) for _, m, _ in tasks)
    params = lm.net.num_parameters() / 1e6
    print(f"model: {lm.name}, {params:.1f}M parameters, {lm.device}, "
          f"{torch.get_num_threads()} threads")
    print(f"tasks: {len(tasks)} x {task_kind}, mean span {span:.1f} tokens, "
          f"{args.batch} canvases per call, median of {args.repeats} alternated runs")

    parallel = compare_parallel(lm, tasks, args.batch, args.repeats, args.threshold,
                                args.cache_every)
    print("\n1. parallel decoding (greedy)")
    print(f"   {'mode':<22}{'passes':>8}{'tokens':>8}{'seconds':>9}{'tokens/s':>10}{'acc %':>8}")
    for name, r in parallel.items():
        print(f"   {name:<22}{r['passes']:>8}{r['tokens']:>8}{r['seconds']:>9.2f}"
              f"{r['tokens_per_s']:>10.1f}{100 * r['accuracy']:>8.1f}")
    base, fast = list(parallel.values())[:2]
    speedup = fast["tokens_per_s"] / base["tokens_per_s"]
    change = 100 * (fast["accuracy"] - base["accuracy"])
    print(f"   speed-up {speedup:.2f}x (target >= 3x), accuracy change {change:+.1f} points "
          f"(target within 2)")

    batching = compare_batching(lm, tasks, args.repeats, args.threshold)
    print("\n2. drafting 16 candidates per site (4 sites, sampled, threshold decoding)")
    for name, r in batching.items():
        print(f"   {name:<22}{r['seconds']:>9.2f} s{r['drafts_per_s']:>10.1f} drafts/s")
    ratio = batching["batch of 16"]["drafts_per_s"] / batching["16 sequential"]["drafts_per_s"]
    print(f"   batched / sequential {ratio:.2f}x (target >= 4x)")

    if args.json_out:
        Path(args.json_out).write_text(json.dumps({
            "model": lm.name, "parameters_m": params, "tasks": len(tasks),
            "parallel": parallel, "parallel_speedup": speedup, "accuracy_change_points": change,
            "batching": batching, "batching_speedup": ratio}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
