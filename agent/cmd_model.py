"""`agent model corpus|train|eval`: build the training corpus, train the embedded default model,
evaluate a model's infilling on the held-out package or the validation split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from agent.cli_common import JsonOpt, QuietOpt, VerboseOpt, run
from agent.errors import AgentError
from agent.output import Reporter

app = typer.Typer(
    help="Build the corpus, train and evaluate the embedded default model.",
    no_args_is_help=True,
)

DEFAULT_CACHE = Path.home() / ".cache" / "greenpatch" / "corpus"
REPO_ROOT = Path(__file__).resolve().parent.parent


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
    json_out: JsonOpt = None,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Gather permissively licensed Python (stdlib + wheels), filter, deduplicate, split."""
    from model.data import build_corpus, read_reserved

    def body() -> int:
        rep = Reporter(json_out, verbose, quiet)
        reserved = read_reserved(REPO_ROOT / "benchmarks" / "reserved.txt")
        excluded = [d for d in [REPO_ROOT / "examples"] if d.is_dir()]
        if not wheels.is_dir():
            raise AgentError(f"wheel directory not found: {wheels} (pip download --no-deps "
                             f"-d {wheels} PACKAGE...)")
        count = len(list(wheels.glob("*.whl"))) + 1
        with rep.progress() as progress:
            task = progress.add_task("corpus", total=count)

            def advance(name: str) -> None:
                progress.update(task, advance=1, description=name)

            result = build_corpus(wheels, out, reserved, heldout=heldout,
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
    json_out: JsonOpt = None,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train (or resume) the default model; checkpoints every few minutes to OUT/last.pt."""
    from model.train import TrainConfig, train

    def body() -> int:
        rep = Reporter(json_out, verbose, quiet)
        if not resume and (out / "last.pt").exists():
            raise AgentError(f"{out}/last.pt exists: use --resume or another --out")
        cfg = TrainConfig(minutes=minutes, seq_len=seq_len, batch_size=batch, lr=lr)
        summary = train(corpus_dir, out, size=size, cfg=cfg, vocab_size=vocab, resume=resume,
                        echo=not quiet, max_steps=max_steps)
        rep.write_json(summary)
        return 0

    run(verbose, body)
