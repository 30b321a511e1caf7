"""The `agent` command: one typer app, one module per subcommand."""

from __future__ import annotations

import typer

from agent import cmd_batch, cmd_bench, cmd_fix, cmd_infill, cmd_model, cmd_serve, cmd_test

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


def main() -> None:
    app()
