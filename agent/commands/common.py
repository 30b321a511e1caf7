"""Options every command shares, and the one error convention: a line, then an exit code."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from greenpatch.agent.errors import EXIT_USAGE, USER_ERRORS
from greenpatch.agent.publish import github
from rich.console import Console
from rich.markup import escape

RepoOpt = Annotated[
    Path | None,
    typer.Option(
        "--repo",
        help="Target git repository (default: the repository around the current directory).",
    ),
]
JsonOpt = Annotated[
    str | None,
    typer.Option(
        "--json",
        metavar="OUT",
        help="Write machine-readable results to OUT ('-' for standard output, then nothing else "
        "goes there).",
    ),
]
VerboseOpt = Annotated[
    bool, typer.Option("-v", "--verbose", help="More detail; show tracebacks on errors.")
]
QuietOpt = Annotated[bool, typer.Option("-q", "--quiet", help="No progress or human output.")]
SandboxOpt = Annotated[
    str | None,
    typer.Option(
        "--sandbox",
        metavar="bwrap|docker|process",
        help="Isolation for candidate code (default from config: bwrap); 'process' = none.",
    ),
]
PythonOpt = Annotated[
    Path | None,
    typer.Option(
        "--python",
        metavar="PATH",
        help="Interpreter of the target project's environment (its venv's python); it runs only "
        "inside the sandbox. Default: [tool.greenpatch] python, else greenpatch's own.",
    ),
]
WorkersOpt = Annotated[
    int | None, typer.Option("--workers", min=1, help="Parallel sandboxed test workers.")
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        metavar="PATH|URL",
        help="Model directory (ours, or a local Dream/DiffuCoder/LLaDA checkpoint), or an "
        "OpenAI-compatible server's http(s)://HOST[:PORT]/v1 (key: GREENPATCH_API_KEY); "
        "default: the embedded model.",
    ),
]
ModelNameOpt = Annotated[
    str | None,
    typer.Option(
        "--model-name",
        metavar="NAME",
        help="With --model URL: which of the server's models (default: its only one).",
    ),
]
DrafterOpt = Annotated[
    str | None,
    typer.Option(
        "--drafter",
        metavar="model|model-only|model-repair|edits|mutations",
        help="Who drafts: the model (default: model-free fills, then its samples), its samples "
        "alone, every fill ranked by the model's repair head (opt-in), model-free "
        "substitutions and edits, or substitutions alone (the mutation baseline); all but the "
        "default are ablations.",
    ),
]
ClusterOpt = Annotated[
    str | None,
    typer.Option(
        "--cluster",
        metavar="ray",
        help="Run on a Ray cluster's nodes instead of this machine (pip install "
        "'ray==2.60.0', the [ray] extra).",
    ),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        metavar="auto|HOST:PORT|ray://HOST:PORT",
        help="With --cluster ray: the cluster to use (default: auto, the one this machine "
        "belongs to, or RAY_ADDRESS).",
    ),
]
BudgetOpt = Annotated[
    float | None,
    typer.Option("--budget", metavar="SECONDS", min=1, help="Wall-clock budget per ticket."),
]


def run(verbose: bool, body: Callable[[], int]) -> NoReturn:
    """Run a command body; user errors become one line on stderr and their exit code."""
    try:
        with github.tokens_hidden():
            code = body()
    except USER_ERRORS as exc:
        if verbose:
            traceback.print_exc()
        # Escaped: a message may hold brackets (`.[ray]`) that are not markup.
        Console(stderr=True).print(f"[red]error:[/red] {escape(str(exc))}", highlight=False,
                                   soft_wrap=True)  # fmt: skip
        raise typer.Exit(getattr(exc, "code", EXIT_USAGE)) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise typer.Exit(130) from None
    raise typer.Exit(code)
