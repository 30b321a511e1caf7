"""The one interface every sandbox backend implements.

A backend starts a long-lived worker process in an isolated environment. The worker talks over
its stdin/stdout pipes. Its worktree is mounted read-write at the same absolute path it has on the
host (so file paths in tracebacks and coverage data mean the same thing inside and out); everything
else it sees is read-only or absent.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


class SandboxError(Exception):
    """A sandbox cannot be set up (backend missing, engine unreachable, bad spec)."""


@dataclass(frozen=True)
class Limits:
    """Resource limits applied to a worker and everything it spawns."""

    memory_mb: int = 2048
    cpu_seconds: int | None = None
    processes: int = 256
    file_size_mb: int = 256
    wall_seconds: float | None = None
    output_bytes: int = 16 * 1024 * 1024
    # What the worktree (the one host directory a worker can write) may grow to in all.
    disk_mb: int | None = 1024


@dataclass(frozen=True)
class WorkerSpec:
    """What to run, where, and with what.

    `argv[0]` is normally the target repository's interpreter; `readonly` lists extra host paths the
    worker needs to read (its script, the interpreter's prefix, site-packages).
    """

    argv: list[str]
    worktree: Path
    env: dict[str, str] = field(default_factory=dict)
    readonly: tuple[Path, ...] = ()
    limits: Limits = Limits()


class Worker(abc.ABC):
    """A running sandboxed process with pipes to its stdin and stdout.

    `stdout` carries only what the worker wrote to its standard output, capped at
    `limits.output_bytes` (past that the worker is killed and `stdout` reaches EOF). Standard error
    is drained by the backend; its last few KiB are kept for `stderr_tail()`.
    """

    stdin: IO[bytes]
    stdout: IO[bytes]

    @abc.abstractmethod
    def alive(self) -> bool: ...

    @abc.abstractmethod
    def stop(self) -> None:
        """Kill the worker and everything it started; idempotent."""

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the worker to exit; its exit status, or None if still running at `timeout`."""

    @abc.abstractmethod
    def exit_reason(self) -> str | None:
        """Why the worker ended, None while it runs.

        One of: "timeout" (wall clock), "output limit", "disk quota", "memory", "cpu time",
        "file size",
        "stopped" (by `stop()`), "killed by signal N", "exit N". "memory" and "file size" are
        also read from a Python traceback (MemoryError, "File too large") on standard error.
        """

    @abc.abstractmethod
    def stderr_tail(self) -> str:
        """The last few KiB the worker wrote to standard error (diagnostics only)."""

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Backend(abc.ABC):
    """A way of isolating workers; registered by name."""

    name: str
    isolated: bool = True
    # One line to show the user (and put in JSON reports) when this backend is chosen, if any.
    warning: str | None = None

    @abc.abstractmethod
    def start(self, spec: WorkerSpec) -> Worker: ...

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release backend-wide resources (containers, images kept warm)."""
