"""`agent report FIX.json [-o run.html]`: the run report page of an `agent fix --json` report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from greenpatch.agent.commands.common import run
from greenpatch.agent.report_page import load_report, write_page


def report(
    fix_json: Annotated[
        Path, typer.Argument(metavar="FIX.json", help="A report written by agent fix --json.")
    ],
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", metavar="OUT.html",
                     help="Where the page goes (default: FIX.json's name with .html)."),
    ] = None,
) -> None:
    """Write one self-contained HTML page of a fix: who was busy when, the candidates of each
    round and their outcomes, the localization ranking, the final diff.

    Exit codes: 0 written, 2 bad input (not a fix report, unreadable, unwritable).
    """

    def body() -> int:
        out = output or fix_json.with_suffix(".html")
        write_page(load_report(fix_json), out)
        print(out)
        return 0

    run(False, body)
