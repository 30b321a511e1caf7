"""`agent infill FILE --lines A:B`: the model alone: K candidate rewrites of a line range."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from greenpatch.agent.commands.common import (
    JsonOpt,
    ModelNameOpt,
    ModelOpt,
    QuietOpt,
    VerboseOpt,
    run,
)
from greenpatch.agent.errors import AgentError
from greenpatch.agent.output import Reporter
from greenpatch.agent.pipeline.remote_setup import check_model_name, connect_remote, remote_infill
from greenpatch.model.remote import is_url

# Torch threads of an interactive fill (see `infill`).
INFILL_THREADS = 1


def parse_lines(spec: str) -> tuple[int, int]:
    """`A:B` (1-based, inclusive) or a single line `A`."""
    first, _, last = spec.partition(":")
    try:
        a, b = int(first), int(last or first)
    except ValueError:
        raise AgentError(f"--lines must look like A:B with line numbers, got '{spec}'") from None
    if a < 1 or b < a:
        raise AgentError(f"--lines {spec}: need 1 <= A <= B")
    return a, b


def read_source(path: Path, lines: tuple[int, int]) -> list[str]:
    """The file's lines, checked: exists, is text, is not empty, and holds the range."""
    if not path.exists():
        raise AgentError(f"file not found: {path}")
    if not path.is_file():
        raise AgentError(f"not a file: {path}")
    data = path.read_bytes()
    if b"\0" in data:
        raise AgentError(f"binary file, not source: {path}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise AgentError(f"not UTF-8 text: {path}") from None
    if not text.strip():
        raise AgentError(f"file is empty: {path}")
    source_lines = text.splitlines(keepends=True)
    if lines[1] > len(source_lines):
        raise AgentError(
            f"--lines {lines[0]}:{lines[1]} is beyond the end of {path} ({len(source_lines)} lines)"
        )
    return source_lines


def infill(
    file: Annotated[Path, typer.Argument(help="Python source file to rewrite part of.")],
    lines: Annotated[
        str,
        typer.Option("--lines", metavar="A:B", help="Line range to rewrite (1-based, inclusive)."),
    ],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of candidates to return.")] = 5,
    model: ModelOpt = None,
    model_name: ModelNameOpt = None,
    json_out: JsonOpt = None,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Draft K candidate rewrites of lines A..B with the diffusion model, best first (score: mean
    log-likelihood per token)."""

    def body() -> int:
        span = parse_lines(lines)
        source_lines = read_source(file, span)
        reporter = Reporter(json_out, verbose, quiet)
        a, b = span
        prefix = "".join(source_lines[: a - 1])
        middle = "".join(source_lines[a - 1 : b])
        suffix = "".join(source_lines[b:])
        check_model_name(model, model_name)
        if is_url(model):
            remote = connect_remote(model, model_name)
            fills, usage = remote_infill(remote, prefix, middle, suffix, n)
            report = {
                "file": str(file), "lines": [a, b], "model": remote.name,
                "candidates": [{"text": t, "score": None if s is None else round(s, 4)}
                               for t, s in fills],
                "usage": usage.as_dict(),
            }  # fmt: skip
            reporter.write_json(report)
            if json_out != "-":
                for rank, (text, score) in enumerate(fills, 1):
                    shown = "" if score is None else f"  score {score:.3f}"
                    reporter.out.rule(f"#{rank}{shown}")
                    reporter.out.print(text, markup=False, highlight=False, end="")
            return 0
        with reporter.progress() as progress:
            task = progress.add_task("loading the model", total=None)
            import torch
            from greenpatch.model.checkpoint import load_model  # torch is heavy: import it only now
            from greenpatch.model.sampler import INTERACTIVE, infill_site, span_lengths

            # One thread: a fill of one line is ~20 rows of at most 128 tokens, too small to
            # share out; a second thread waiting on a busy core made it several times slower
            # (benchmarks/repair_speed.py --threads 1,2, model card).
            threads = torch.get_num_threads()
            torch.set_num_threads(INFILL_THREADS)
            try:
                lm = load_model(model)
                progress.update(task, description=f"drafting {n} rewrites of lines {a}:{b}")
                lengths = span_lengths(lm, middle)
                # A few more samples than asked for: duplicates collapse.
                candidates = infill_site(lm, prefix, suffix, lengths, samples=n + 1,
                                         **INTERACTIVE)[:n]
            finally:  # in-process callers (tests, serve) keep their own setting
                torch.set_num_threads(threads)
        report = {
            "file": str(file),
            "lines": [a, b],
            "model": "embedded" if model is None else str(model),
            "candidates": [{"text": c.text, "score": round(c.score, 4)} for c in candidates],
        }
        reporter.write_json(report)
        if json_out != "-":
            for rank, c in enumerate(candidates, 1):
                reporter.out.rule(f"#{rank}  score {c.score:.3f}")
                reporter.out.print(c.text, markup=False, highlight=False, end="")
        return 0

    run(verbose, body)
