"""Shared plumbing of every worker: capped stdout pipe, stderr tail, wall clock, exit reasons.

The backend's raw output is copied by pump threads into a pipe of our own, whose read end is the
worker's `stdout`. Counting there (not in the caller's reads) enforces `output_bytes` however the
caller reads, and a flood on stderr counts too.
"""

from __future__ import annotations

import abc
import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from greenpatch.sandboxes.base import Limits, Worker

STDERR_TAIL_BYTES = 16 * 1024
PUMP_GRACE_SECONDS = 0.5
# How long the cause of a failed exit waits for the end of standard error: the traceback that
# names it can still be in the pipe when the exit status is (a reader thread on a busy CPU).
# Only a leftover child holding the pipe open makes it wait this long.
STDERR_DRAIN_SECONDS = 2.0
DISK_POLL = 0.5  # the longest pause between two looks at a worktree's size
DISK_POLL_MIN = 0.02  # the shortest (and the first: a burst at start is the worst case)
DISK_POLL_SHARE = 0.05  # of a core that looking may take (a look is a scan of the tree)
_SIGNAL_REASONS = {signal.SIGXCPU: "cpu time", signal.SIGXFSZ: "file size"}

# A pump source: returns (1 for stdout or 2 for stderr, data); empty data at end of stream.
Reader = Callable[[], tuple[int, bytes]]


class StreamWorker(Worker):
    """A worker whose output the backend feeds in through pump threads (`start_pump`)."""

    def __init__(self, limits: Limits, stdin: IO[bytes]) -> None:
        self.limits = limits
        self.stdin = stdin
        read_fd, self._out_fd = os.pipe()
        self.stdout = os.fdopen(read_fd, "rb")
        self._lock = threading.Lock()
        self._written = 0
        self._open_streams = 0
        self._stderr = bytearray()
        self._reason: str | None = None
        self._pumps: list[threading.Thread] = []
        self._timer: threading.Timer | None = None
        if limits.wall_seconds is not None:
            self._timer = threading.Timer(limits.wall_seconds, self._expire)
            self._timer.daemon = True
            self._timer.start()

    # --- what backends implement -------------------------------------------------------------

    @abc.abstractmethod
    def _kill(self) -> None:
        """Kill the worker and everything it started (no bookkeeping)."""

    @abc.abstractmethod
    def _status(self, timeout: float | None) -> int | None:
        """The worker's raw exit status (negative: killed by that signal), None if running."""

    def _memory_killed(self) -> bool:
        """Whether the backend itself killed the worker for memory (e.g. the cgroup OOM killer)."""
        return False

    # --- pumps -------------------------------------------------------------------------------

    def start_pump(self, read: Reader, name: str, close: Callable[[], None] | None = None) -> None:
        """Copy from `read` until end of stream, in a thread.

        Past the output limit the source is closed with `close` if given, else drained (and
        discarded) until the killed worker's end of stream.
        """
        with self._lock:
            self._open_streams += 1
        thread = threading.Thread(target=self._pump, args=(read, close), name=name, daemon=True)
        self._pumps.append(thread)
        thread.start()

    def _pump(self, read: Reader, close: Callable[[], None] | None) -> None:
        cut = False
        try:
            while True:
                try:
                    stream, data = read()
                except OSError:
                    break
                if not data:
                    break
                if cut:
                    continue
                if not self._account(len(data)):
                    fit = len(data) - (self._written - self.limits.output_bytes)
                    if stream == 1:
                        self._deliver(data[: max(fit, 0)])
                    cut = True
                    self._limit_exceeded()
                    if close is not None:
                        close()
                        break
                elif stream == 1:
                    self._deliver(data)
                else:
                    self._keep_stderr(data)
        finally:
            self._stream_closed()

    def _account(self, n: int) -> bool:
        with self._lock:
            self._written += n
            return self._written <= self.limits.output_bytes

    def _deliver(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._out_fd, view)
            except OSError:  # the caller closed its end; drop the rest
                return
            view = view[n:]

    def _keep_stderr(self, data: bytes) -> None:
        with self._lock:
            self._stderr += data
            del self._stderr[:-STDERR_TAIL_BYTES]

    def _stream_closed(self) -> None:
        with self._lock:
            self._open_streams -= 1
            last = self._open_streams == 0
        if last:
            with contextlib.suppress(OSError):
                os.close(self._out_fd)

    # --- limits ------------------------------------------------------------------------------

    def _stop_with(self, reason: str) -> None:
        with self._lock:
            if self._reason is None and self._status(0) is None:
                self._reason = reason
        self._kill()

    def _expire(self) -> None:
        if self._status(0) is None:  # after a natural exit, leftovers wait for stop()
            self._stop_with("timeout")

    def watch_disk(self, path: Path) -> None:
        """Kill the worker once the files under `path` exceed `limits.disk_mb` (polled).

        RLIMIT_FSIZE caps one file; this caps them all. Between two polls a worker can overshoot
        by what it writes in one pause (DISK_POLL_MIN to DISK_POLL seconds, by the tree's size),
        each file still capped by RLIMIT_FSIZE.
        """
        if self.limits.disk_mb is None:
            return
        limit = self.limits.disk_mb * 1024 * 1024

        def watch() -> None:
            # The overshoot is what is written between two looks, so look as often as the
            # scan's cost allows (DISK_POLL_SHARE of a core), and ten times as often near the
            # limit: a small tree is looked at every DISK_POLL_MIN seconds.
            pause = DISK_POLL_MIN
            while self._status(0) is None:
                time.sleep(pause)
                began = time.monotonic()
                used = tree_bytes(path, limit)
                if used > limit:
                    self._stop_with("disk quota")
                    return
                cost = time.monotonic() - began
                pause = min(DISK_POLL, max(DISK_POLL_MIN, cost / DISK_POLL_SHARE))
                if used >= limit // 2:
                    pause = max(DISK_POLL_MIN, pause / 10)

        threading.Thread(target=watch, name=f"disk-{path.name}", daemon=True).start()

    def _limit_exceeded(self) -> None:
        # Killed from another thread: a backend may need this one to keep reading meanwhile.
        threading.Thread(target=self._stop_with, args=("output limit",), daemon=True).start()

    # --- Worker ------------------------------------------------------------------------------

    def alive(self) -> bool:
        return self._status(0) is None

    def wait(self, timeout: float | None = None) -> int | None:
        return self._status(timeout)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._stop_with("stopped")
        self._status(None)
        with contextlib.suppress(OSError):
            self.stdin.close()
        for thread in self._pumps:
            thread.join(PUMP_GRACE_SECONDS)
        if any(thread.is_alive() for thread in self._pumps):
            # A pump blocked on a full pipe nobody reads: closing our end unblocks it (EPIPE).
            with contextlib.suppress(OSError):
                self.stdout.close()

    def exit_reason(self) -> str | None:
        status = self._status(0)
        if status is None:
            return None
        if self._reason is not None:
            return self._reason
        # Python turns the memory and file size rlimits into exceptions (it ignores SIGXFSZ).
        tail = b""
        if status != 0:
            deadline = time.monotonic() + STDERR_DRAIN_SECONDS
            for thread in self._pumps:
                thread.join(max(0.0, deadline - time.monotonic()))
            tail = self.stderr_tail_bytes()
        if self._memory_killed() or b"MemoryError" in tail:
            return "memory"
        if b"File too large" in tail:
            return "file size"
        if status < 0:
            return _SIGNAL_REASONS.get(-status, f"killed by signal {-status}")
        return f"exit {status}"

    def stderr_tail_bytes(self) -> bytes:
        with self._lock:
            return bytes(self._stderr)

    def stderr_tail(self) -> str:
        return self.stderr_tail_bytes().decode("utf-8", "replace")


def tree_bytes(path: Path, stop_at: int) -> int:
    """Bytes of the regular files under `path`, symlinks not followed; stops counting past
    `stop_at` (the caller only needs to know that it was exceeded)."""
    total = 0
    pending = [str(path)]
    while pending:
        with contextlib.suppress(OSError), os.scandir(pending.pop()) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_blocks * 512
        if total > stop_at:
            break
    return total


def fd_reader(fd: int, stream: int) -> Reader:
    """A pump source reading a file descriptor, tagged as stream 1 (stdout) or 2 (stderr)."""

    def read() -> tuple[int, bytes]:
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if not data:
            os.close(fd)
        return stream, data

    return read
