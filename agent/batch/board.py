"""The live table of a batch: one row per ticket (state, what it is doing, time), on stderr.

A ticket's fix reports through a TicketView, which turns its progress and events into the
ticket's row instead of drawing its own live view (rich allows one live display at a
time, and several tickets run at once).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field

from greenpatch.agent.pipeline.fix_report import FixEvent, Reproduced, Warned
from greenpatch.agent.pipeline.live import FixState
from rich.console import Console
from rich.live import Live
from rich.table import Table

STYLE = {
    "queued": "dim",
    "running": "cyan",
    "green": "green",
    "failed": "red",
    "cannot-reproduce": "yellow",
    "error": "magenta",
}
MAX_ROWS = 30


@dataclass
class Row:
    id: str
    repo: str
    state: str
    stage: str = ""
    seconds: float = 0.0
    started: float | None = None
    order: int = 0

    def elapsed(self) -> float:
        running = time.monotonic() - self.started if self.started is not None else 0.0
        return self.seconds + running


@dataclass
class Board:
    rows: dict[str, Row] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    # Shown in the title: where the tickets run (a cluster's nodes), set while the batch runs.
    where: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, ticket_id: str, repo: str, state: str, stage: str = "", seconds: float = 0.0):
        with self._lock:
            self.rows[ticket_id] = Row(ticket_id, repo, state, stage, seconds, None, len(self.rows))

    def set(self, ticket_id: str, state: str | None = None, stage: str | None = None) -> None:
        with self._lock:
            row = self.rows[ticket_id]
            if state == "running" and row.started is None:
                row.started = time.monotonic()
            elif state is not None and state != "running" and row.started is not None:
                row.seconds += time.monotonic() - row.started
                row.started = None
            row.state = state or row.state
            row.stage = row.stage if stage is None else stage

    def counts(self) -> dict[str, int]:
        with self._lock:
            states = [r.state for r in self.rows.values()]
        return {s: states.count(s) for s in STYLE if states.count(s)}

    def render(self) -> Table:
        counts = ", ".join(f"{n} {s}" for s, n in self.counts().items())
        table = Table(
            title="  ".join(filter(None, ("agent batch", self.where,
                                          f"[dim]{time.monotonic() - self.started:.0f}s[/dim]"))),
            caption=counts, caption_justify="left", expand=False,
        )  # fmt: skip
        for name in ("ticket", "repo", "state", "doing", "time"):
            table.add_column(name, justify="right" if name == "time" else "left",
                             overflow="ellipsis", no_wrap=True, max_width=48)  # fmt: skip
        with self._lock:
            rows = sorted(
                self.rows.values(),
                key=lambda r: (r.state != "running", r.state == "queued", r.order),
            )
        for row in rows[:MAX_ROWS]:
            style = STYLE.get(row.state, "")
            table.add_row(row.id, row.repo, f"[{style}]{row.state}[/{style}]", row.stage,
                          f"{row.elapsed():.0f}s")  # fmt: skip
        if len(rows) > MAX_ROWS:
            table.add_row(f"... {len(rows) - MAX_ROWS} more", "", "", "", "")
        return table

    @contextmanager
    def live(self, console: Console, enabled: bool = True) -> Iterator[None]:
        if not enabled or console.quiet:
            yield
            return
        with Live(get_renderable=self.render, console=console, refresh_per_second=4,
                  transient=True):  # fmt: skip
            yield


class _RowProgress:
    """The two calls `agent fix` makes on its progress bar, shown as the row's stage."""

    def __init__(self, board: Board, ticket_id: str) -> None:
        self.board, self.ticket_id = board, ticket_id
        self._description = ""

    def add_task(self, description: str, total: float | None = None, **_: object) -> int:
        self._description = description
        self.board.set(self.ticket_id, stage=description)
        return 0

    def update(self, task: int, *, description: str | None = None, completed: float | None = None,
               total: float | None = None, **_: object) -> None:  # fmt: skip
        self._description = description or self._description
        count = f" {completed:.0f}/{total:.0f}" if completed is not None and total else ""
        self.board.set(self.ticket_id, stage=f"{self._description}{count}")


class TicketView:
    """A fix's view (agent.pipeline.fix_report.FixView) as one row of the board: its progress
    becomes the row's stage, its warnings go to `warn`, and it draws no live view of its own."""

    def __init__(self, board: Board, ticket_id: str, warn: Callable[[str], None]) -> None:
        self.board, self.ticket_id, self._warn = board, ticket_id, warn

    @contextmanager
    def progress(self) -> Iterator[_RowProgress]:
        yield _RowProgress(self.board, self.ticket_id)

    def live(self, state: FixState) -> AbstractContextManager[object]:
        return nullcontext()

    def event(self, event: FixEvent) -> None:
        if isinstance(event, Reproduced):
            self.board.set(self.ticket_id, stage=f"fixing: {event.line().split(';')[0]}")
        elif isinstance(event, Warned):
            self._warn(event.text)
