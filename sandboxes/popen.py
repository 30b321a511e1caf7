"""A worker that is a local child process (the `process` and `bwrap` backends)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Mapping

from greenpatch.sandboxes.base import Limits, SandboxError
from greenpatch.sandboxes.streams import StreamWorker, fd_reader


class PopenWorker(StreamWorker):
    """A child process in a session (and process group) of its own, killed as a group.

    `status_offset_signals`: the child reports a signal death as exit code 128+N (as bwrap does for
    the process it supervises), so such codes are read back as signal N.
    """

    def __init__(
        self,
        argv: list[str],
        env: Mapping[str, str],
        cwd: str,
        limits: Limits,
        pass_fds: tuple[int, ...] = (),
        status_offset_signals: bool = False,
        after_kill: Callable[[], None] | None = None,
    ) -> None:
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
                pass_fds=pass_fds,
                close_fds=True,
            )
        except OSError as exc:
            raise SandboxError(f"cannot start {argv[0]}: {exc.strerror}") from None
        self.pid = self._proc.pid
        self._offset_signals = status_offset_signals
        self._after_kill = after_kill
        assert self._proc.stdin and self._proc.stdout and self._proc.stderr
        super().__init__(limits, self._proc.stdin)
        # The pumps own these descriptors and close them at end of stream.
        for stream, pipe in ((1, self._proc.stdout), (2, self._proc.stderr)):
            fd = os.dup(pipe.fileno())
            pipe.close()
            self.start_pump(fd_reader(fd, stream), f"pump{stream}-{self.pid}")

    def _kill(self) -> None:
        # The group id is the child's pid (new session); it stays reserved while any member lives.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        if self._after_kill is not None:
            self._after_kill()

    def _status(self, timeout: float | None) -> int | None:
        try:
            code = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        if self._offset_signals and code > 128:
            return -(code - 128)
        return code
