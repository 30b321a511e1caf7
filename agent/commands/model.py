"""`agent model corpus|train|eval`: build the training corpus, train the embedded default model,
evaluate a model's infilling on the held-out package or the validation split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from greenpatch.agent.commands.common import JsonOpt, ModelOpt, QuietOpt, VerboseOpt, run
from greenpatch.agent.errors import AgentError
from greenpatch.agent.output import Reporter
from greenpatch.sandboxes.cacheroot import cache_root

app = typer.Typer(
    help="Build the corpus, train and evaluate the embedded default model.",
    no_args_is_help=True,
)

DEFAULT_CACHE = cache_root() / "corpus"
# In a checkout: what evaluation reserves (an installed package has neither; then they are named).
CHECKOUT = Path(__file__).resolve().parents[2]


@app.command("corpus")
def corpus(
    out: Annotated[Path, typer.Option("--out", help="Corpus directory to write.")] = (
        DEFAULT_CACHE / "out"
    ),
    wheels: Annotated[
        Path,
        typer.Option("--wheels", help="Directory of downloaded wheels (pip download --no-deps)."),
    ] = DEFAULT_CACHE / "wheels",
    heldout: Annotated[
        str, typer.Option("--heldout", help="Package kept out of training as the test set.")
    ] = "click",
    manifest: Annotated[
        Path | None,
        typer.Option("--manifest", help="Also copy the manifest here (e.g. "
                     "model/corpus_manifest.json)."),
    ] = None,
    reserved: Annotated[
        Path,
        typer.Option("--reserved", help="Packages kept out of training for evaluation, one a "
                     "line (the checkout's benchmarks/reserved.txt)."),
    ] = CHECKOUT / "benchmarks" / "reserved.txt",
    exclude: Annotated[
        list[Path] | None,
        typer.Option("--exclude", help="A directory whose code is kept out (repeatable; "
                     "default: the checkout's examples/)."),
    ] = None,
    json_out: JsonOpt = None,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Gather permissively licensed Python (stdlib + wheels), filter, deduplicate, split."""
    from greenpatch.model.data import build_corpus, read_reserved

    def body() -> int:
        rep = Reporter(json_out, verbose, quiet)
        if not reserved.is_file():
            # Without it benchmark libraries could leak into training: refuse, do not guess.
            raise AgentError(f"reserved package list not found: {reserved} (pass --reserved)")
        excluded = exclude if exclude is not None else [CHECKOUT / "examples"]
        missing = [str(d) for d in excluded if not d.is_dir()]
        if missing:
            raise AgentError(f"--exclude: not a directory: {', '.join(missing)}")
        if not wheels.is_dir():
            raise AgentError(f"wheel directory not found: {wheels} (pip download --no-deps "
                             f"-d {wheels} PACKAGE...)")
        count = len(list(wheels.glob("*.whl"))) + 1
        with rep.progress() as progress:
            task = progress.add_task("corpus", total=count)

            def advance(name: str) -> None:
                progress.update(task, advance=1, description=name)

            result = build_corpus(wheels, out, read_reserved(reserved), heldout=heldout,
                                  excluded_dirs=excluded, on_source=advance)
        data = result.to_json()
        if manifest is not None:
            manifest.write_text(json.dumps(data, indent=2) + "\n")
        used = [s for s in data["sources"] if s["status"] == "used"]
        for split, c in data["splits"].items():
            rep.out.print(f"{split:>10}: {c['files']:>6} files {c['bytes'] / 1e6:8.1f} MB")
        rep.out.print(f"{len(used)} sources used, {len(data['sources']) - len(used)} excluded; "
                      f"dropped {data['dropped']}; written to {out}")
        rep.write_json(data)
        return 0

    run(verbose, body)


@app.command("train")
def train_cmd(
    corpus_dir: Annotated[Path, typer.Option("--corpus", help="Corpus directory.")] = (
        DEFAULT_CACHE / "out"
    ),
    out: Annotated[Path, typer.Option("--out", help="Run directory (checkpoints, log).")] = (
        Path("runs/default")
    ),
    size: Annotated[
        str, typer.Option("--config", help="Model size: tiny, mini, small, base.")
    ] = "mini",
    minutes: Annotated[
        float, typer.Option("--minutes", min=0.01, help="Training time budget (total).")
    ] = 60.0,
    resume: Annotated[
        bool, typer.Option("--resume/--fresh", help="Continue from OUT/last.pt if present.")
    ] = True,
    vocab: Annotated[int, typer.Option("--vocab", help="Tokenizer vocabulary size.")] = 4096,
    seq_len: Annotated[int, typer.Option("--seq-len", help="Training window in tokens.")] = 256,
    batch: Annotated[int, typer.Option("--batch", help="Windows per step.")] = 8,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate.")] = 3e-3,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", help="Stop after this many steps.")
    ] = None,
    stream_max_rate: Annotated[
        float,
        typer.Option(
            "--stream-max-rate", min=0.01, max=1.0,
            help="Highest masking rate of text rows (canvas rows go to 1); may change on resume.",
        ),
    ] = 1.0,
    canvas_rows: Annotated[
        int, typer.Option("--canvas-rows", min=0, help="Infill canvas rows per step.")
    ] = 8,
    bug_rows: Annotated[
        int,
        typer.Option("--bug-rows", min=0,
                     help="Rows of bug noise per step (0: no repair head on a new model)."),
    ] = 4,
    threads: Annotated[
        int, typer.Option("--threads", min=1,
                          help="Torch threads (may change on resume; 1 when other jobs share "
                               "the cores: a thread that waits for a busy core stalls the "
                               "other).")
    ] = 2,
    init: Annotated[
        Path | None,
        typer.Option(
            "--init",
            help="Warm start: a new run from this exported model directory's weights and "
                 "tokenizer (new optimizer and schedule); --config and --vocab are then unused.",
        ),
    ] = None,
    json_out: JsonOpt = None,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train (or resume) the default model; checkpoints every few minutes to OUT/last.pt."""
    from greenpatch.model.train import TrainConfig, train

    def body() -> int:
        rep = Reporter(json_out, verbose, quiet)
        if not resume and (out / "last.pt").exists():
            raise AgentError(f"{out}/last.pt exists: use --resume or another --out")
        if init is not None and not (init / "config.json").is_file():
            raise AgentError(f"--init {init}: not a model directory (no config.json)")
        cfg = TrainConfig(minutes=minutes, seq_len=seq_len, batch_size=batch, lr=lr,
                          stream_max_rate=stream_max_rate, canvas_rows=canvas_rows,
                          bug_rows=bug_rows, threads=threads)
        summary = train(corpus_dir, out, size=size, cfg=cfg, vocab_size=vocab, resume=resume,
                        echo=not quiet, max_steps=max_steps, init=init)
        rep.write_json(summary)
        return 0

    run(verbose, body)


def pct(value: float) -> str:
    return f"{100 * value:5.1f}%"


@app.command("export")
def export_cmd(
    run_dir: Annotated[Path, typer.Option("--run", help="Training run directory (last.pt).")],
    out: Annotated[Path, typer.Option("--out", help="Model directory to write.")],
    verbose: VerboseOpt = False,
) -> None:
    """Write a run's last checkpoint as a model directory (fp16 safetensors + tokenizer)."""
    from greenpatch.model.train import export_weights

    def body() -> int:
        if not (run_dir / "last.pt").is_file():
            raise AgentError(f"no checkpoint at {run_dir}/last.pt")
        export_weights(run_dir, out)
        Reporter(None, verbose).out.print(f"wrote {out}")
        return 0

    run(verbose, body)


@app.command("eval")
def eval_cmd(
    model: ModelOpt = None,
    corpus_dir: Annotated[Path, typer.Option("--corpus", help="Corpus directory.")] = (
        DEFAULT_CACHE / "out"
    ),
    split: Annotated[
        str, typer.Option("--split", help="heldout (the held-out package) or validation.")
    ] = "heldout",
    sites: Annotated[int, typer.Option("--sites", min=1, help="Line sites and mutants.")] = 50,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the site sample.")] = 0,
    bugs: Annotated[
        int, typer.Option("--bugs", min=1, help="Injected bugs for the repair metrics.")
    ] = 100,
    repair_only: Annotated[
        bool, typer.Option("--repair-only",
                           help="Masked-token top-1 and the repair metrics only (no sampling).")
    ] = False,
    sampled: Annotated[
        bool, typer.Option("--sampled/--no-sampled",
                           help="With a repair head: fix recovery with the fills of sampling "
                                "that edits added to the line's candidates.")
    ] = True,
    threads: Annotated[int, typer.Option("--threads", min=1, help="Torch threads.")] = 2,
    json_out: JsonOpt = None,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Masked-token top-1, whole-line exact match, mutant recovery@k and decoding speed; with
    a repair head, corruption-detection AUC, bug-line localization and fix recovery (with and
    without the fills of sampling that edits)."""
    import torch
    from greenpatch.agent.pipeline.draft import edit_candidates, line_candidates
    from greenpatch.model.checkpoint import load_model
    from greenpatch.model.evaluate import LINE_BEAM, TOP_K, EvalConfig, evaluate

    def body() -> int:
        if split not in ("heldout", "validation"):
            raise AgentError(f"--split must be heldout or validation, got '{split}'")
        rep = Reporter(json_out, verbose, quiet)
        torch.set_num_threads(threads)
        lm = load_model(model, device="cpu")

        def sampled_edits(text: str, line: int, stats) -> list[tuple[int, int, str]]:
            return [(site.start_char, site.end_char, site.lead + fill + site.trail)
                    for site, fill, _ in edit_candidates(lm, text, line, seed=seed, stats=stats)]

        cfg = EvalConfig(line_sites=sites, mutant_sites=sites, seed=seed, bug_sites=bugs)
        with rep.progress() as progress:
            tasks: dict[str, int] = {}

            def tick(stage: str, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = progress.add_task(stage, total=total)
                progress.update(tasks[stage], advance=1)

            result = evaluate(lm, corpus_dir, split, cfg, tick, candidates=line_candidates,
                              repair_only=repair_only,
                              sampled=sampled_edits if sampled else None)
        rep.out.print(f"model {result['model']} ({result['parameters']:,} parameters), "
                      f"split {split}, seed {seed}")
        rep.out.print(f"masked-token top-1 ({cfg.mask_rate:.0%} masked, "
                      f"{result['masked_tokens']} tokens): {pct(result['masked_token_top1'])}")
        if "detect_auc" in result:
            print_repair(rep, result)
        if repair_only:
            rep.write_json(result)
            return 0
        rep.out.print(f"whole-line exact match ({result['line_sites']} lines): top-1 "
                      f"{pct(result['line_exact_top1'])}, top-10 "
                      f"{pct(result['line_exact_top10'])}")
        for variant in ("line", "token", "line_beam", "token_beam"):
            recall = ", ".join(f"@{k} {pct(result[f'mutant_recovery_{variant}@{k}'])}"
                               for k in TOP_K if f"mutant_recovery_{variant}@{k}" in result)
            masked, _, beam = variant.partition("_")
            width = LINE_BEAM if masked == "line" else max(TOP_K)
            decoder = f"beam of {width}" if beam else "default sampler"
            rep.out.print(f"mutant recovery, {masked} masked, {decoder} "
                          f"({result['mutant_sites']} mutants): {recall}")
        rep.out.print(f"decoding (default sampler): {result['decode_tokens_per_s']:.0f} tokens/s, "
                      f"{result['decode_candidates_per_s']:.1f} candidates/s; total "
                      f"{result['seconds']:.0f} s")
        rep.write_json(result)
        return 0

    run(verbose, body)


def print_repair(rep: Reporter, result: dict) -> None:
    rep.out.print(f"corruption detection AUC (tokens of bug windows): {result['detect_auc']:.3f}")
    kinds = ", ".join(f"{k} {pct(v).strip()}" for k, v in result["localize_top1_by_kind"].items())
    rep.out.print(f"bug-line localization top-1 in its function ({result['bug_sites']} bugs): "
                  f"{pct(result['localize_top1'])} (chance {pct(result['localize_chance'])}); "
                  f"{kinds}")
    rep.out.print(f"fix recovery given the line: @1 {pct(result['fix_recovery@1'])}, @10 "
                  f"{pct(result['fix_recovery@10'])} ranked by the model with the fixed order as "
                  f"a prior; fixed order @1 "
                  f"{pct(result['fix_recovery_fixed_order@1'])}, @10 "
                  f"{pct(result['fix_recovery_fixed_order@10'])}; the fix among the "
                  f"candidates: {pct(result['fix_reachable'])}; "
                  f"{result['ms_per_candidate_ranked']:.1f} ms per candidate ranked")
    sweep = "; ".join(f"{w}: @1 {pct(v['at1']).strip()}, @10 {pct(v['at10']).strip()}, median "
                      f"rank {v['median_rank']}" for w, v in result["prior_sweep"].items())
    rep.out.print(f"by prior weight (reachable bugs; 0 = the model alone): {sweep}")
    if "sampled_reachable" not in result:
        return
    from greenpatch.model.evaluate import HEADLINE_OFFSET, SAMPLED_OFFSETS

    key = "fix_recovery_with_sampled_offset_{:g}@{}"
    joined = "; ".join(f"offset {w:g}: @1 {pct(result[key.format(w, 1)])}, @10 "
                       f"{pct(result[key.format(w, 10)])}" for w in SAMPLED_OFFSETS)
    rep.out.print(f"sampling that edits: the fix among its fills "
                  f"{pct(result['sampled_reachable'])} (@1 {pct(result['sampled_recovery@1'])}, "
                  f"@10 {pct(result['sampled_recovery@10'])}; "
                  f"{result['sampled_fills_per_bug']:.1f} fills per line); among the candidates "
                  f"or its fills {pct(result['reachable_with_sampled'])}; ranked with the "
                  f"candidates by the repair head (quick scores, an offset in nats): {joined}; "
                  f"{result['ms_per_span_sampled']:.0f} ms per span sampled, "
                  f"{result['ms_per_line_sampled']:.0f} ms per line")
    for label, name in (
            ("the fix among the sampled fills", "sampled_by_kind"),
            ("among the candidates or fills", "reachable_with_sampled_by_kind"),
            (f"recovered @10 (offset {HEADLINE_OFFSET:g})",
             f"fix_recovery_with_sampled_offset_{HEADLINE_OFFSET:g}@10_by_kind")):
        kinds = ", ".join(f"{k} {pct(v).strip()} of {n}" for k, (v, n) in result[name].items())
        rep.out.print(f"{label}, by kind: {kinds}")
