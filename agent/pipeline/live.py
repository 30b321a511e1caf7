"""The live view of a fix: round, candidates drafted/validated, best so far, tests run, time."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.live import Live
from rich.table import Table


@dataclass
class FixState:
    ticket: str
    targets: int = 0
    stage: str = "starting"
    round: int = 0
    drafted: int = 0
    validated: int = 0
    tests_run: int = 0
    best: str = "-"
    best_passing: int = 0
    started: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.started


class LiveView:
    """Renders a FixState on stderr a few times a second; a no-op when quiet."""

    def __init__(self, state: FixState, console: Console, enabled: bool = True) -> None:
        self.state = state
        self._live = Live(
            get_renderable=self._render,
            console=console,
            refresh_per_second=4,
            transient=True,
        ) if enabled and not console.quiet else None  # fmt: skip

    def _render(self) -> Table:
        s = self.state
        table = Table.grid(padding=(0, 2))
        table.add_row("[bold]ticket[/bold]", s.ticket, "[bold]stage[/bold]", s.stage)
        table.add_row(
            "[bold]round[/bold]", str(s.round),
            "[bold]candidates[/bold]", f"{s.drafted} drafted / {s.validated} validated",
        )  # fmt: skip
        table.add_row(
            "[bold]best[/bold]", f"{s.best} ({s.best_passing}/{s.targets} target tests pass)",
            "[bold]tests run[/bold]", f"{s.tests_run}  [dim]{s.elapsed():.1f}s[/dim]",
        )  # fmt: skip
        return table

    def __enter__(self) -> LiveView:
        if self._live is not None:
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
