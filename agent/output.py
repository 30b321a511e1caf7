"""Where output goes: human text and progress to the terminal, `--json OUT` to a file or stdout."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from greenpatch.agent.errors import AgentError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)


class Reporter:
    """One per command run. Progress and warnings go to stderr; results go to stdout unless
    `--json -` claims stdout, in which case everything human goes to stderr."""

    def __init__(self, json_out: str | None = None, verbose: bool = False, quiet: bool = False):
        self.json_out = json_out
        self.verbose = verbose
        self.quiet = quiet
        self.err = Console(stderr=True, quiet=quiet)
        self.out = self.err if json_out == "-" else Console(quiet=quiet)

    def info(self, message: str) -> None:
        self.err.print(message)

    def debug(self, message: str) -> None:
        if self.verbose:
            self.err.print(f"[dim]{message}[/dim]")

    def warn(self, message: str) -> None:
        Console(stderr=True).print(f"[yellow]warning:[/yellow] {message}")

    @contextmanager
    def progress(self, transient: bool = True) -> Iterator[Progress]:
        columns = (
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.err, transient=transient) as progress:
            yield progress

    def write_json(self, data: Any) -> None:
        if self.json_out is None:
            return
        text = json.dumps(data, indent=2, default=str)
        if self.json_out == "-":
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
            return
        try:
            Path(self.json_out).write_text(text + "\n")
        except OSError as exc:
            raise AgentError(
                f"cannot write JSON report to {self.json_out}: {exc.strerror}"
            ) from None
