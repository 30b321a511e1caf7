"""Run one command to its end in a sandbox and keep what it printed (probes, tool checks)."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

from greenpatch.sandboxes.base import Backend, Limits, WorkerSpec


def run_once(
    backend: Backend,
    argv: list[str],
    *,
    readonly: tuple[Path, ...] = (),
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
    output_bytes: int = 4 * 1024 * 1024,
) -> tuple[int | None, bytes, str]:
    """(exit status or None, standard output, exit reason) of `argv` run in a fresh, empty
    worktree of its own; killed at `timeout` seconds."""
    limits = Limits(wall_seconds=timeout, output_bytes=output_bytes, disk_mb=64)
    with tempfile.TemporaryDirectory(prefix="gp-oneshot-") as scratch:
        spec = WorkerSpec(list(argv), Path(scratch), dict(env or {}), readonly, limits)
        worker = backend.start(spec)
        try:
            worker.stdin.close()
            chunks: list[bytes] = []
            lines = iter(worker.stdout.readline, b"")
            reader = threading.Thread(target=lambda: chunks.extend(lines), daemon=True)
            reader.start()
            reader.join(timeout + 5)
            status = worker.wait(5)
            return status, b"".join(chunks), worker.exit_reason() or ""
        finally:
            worker.stop()
