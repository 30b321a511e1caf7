"""The `agent` command: one typer app, one module per subcommand."""

from __future__ import annotations

import sys

import typer

try:  # typer vendors click since 0.2x; before, it used click itself
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer
    from click import exceptions as click_errors

from greenpatch.agent.commands import (
    batch as cmd_batch,
)
from greenpatch.agent.commands import (
    bench as cmd_bench,
)
from greenpatch.agent.commands import (
    fix as cmd_fix,
)
from greenpatch.agent.commands import (
    infill as cmd_infill,
)
from greenpatch.agent.commands import (
    model as cmd_model,
)
from greenpatch.agent.commands import (
    report as cmd_report,
)
from greenpatch.agent.commands import (
    serve as cmd_serve,
)
from greenpatch.agent.commands import (
    test as cmd_test,
)

app = typer.Typer(
    name="agent",
    help="greenpatch: a diffusion model drafts patches, a sandboxed test runner validates them, "
    "until the ticket's tests are green.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("fix")(cmd_fix.fix)
app.command("batch")(cmd_batch.batch)
app.command("test")(cmd_test.test)
app.command("infill")(cmd_infill.infill)
app.add_typer(cmd_model.app, name="model")
app.command("bench")(cmd_bench.bench)
app.command("serve")(cmd_serve.serve)
app.command("report")(cmd_report.report)


def main() -> None:
    """Run the CLI; a bad flag or argument is one line on stderr and exit 2, like every other
    usage error (click would print a usage block, typer a box)."""
    try:
        code = app(standalone_mode=False)
    except click_errors.NoArgsIsHelpError as exc:
        if exc.format_message().strip():  # typer's rich help is printed already, as before
            exc.show()
        sys.exit(exc.exit_code)
    except click_errors.ClickException as exc:
        message = " ".join(exc.format_message().split())
        print(f"error: {message}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
