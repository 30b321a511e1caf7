"""`process`: no isolation at all; only on explicit request.

The worker is a plain child process. What this backend still does: its own session and process
group (killed as a whole), rlimits (memory, CPU, processes, file size), a reduced environment with
HOME pointing at a private temporary directory, the wall clock and output caps, and, on stop,
killing processes that left the group (daemonized) but still carry this worker's marker variable.
What it cannot do: hide files, block the network, or protect other processes of the same user.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import uuid
from pathlib import Path

from greenpatch.sandboxes import rlimits
from greenpatch.sandboxes.base import Backend, SandboxError, Worker, WorkerSpec
from greenpatch.sandboxes.environment import worker_env
from greenpatch.sandboxes.popen import PopenWorker

MARKER = "GREENPATCH_SANDBOX_ID"


def kill_marked(marker_value: str, rounds: int = 20) -> None:
    """SIGKILL every process whose environment carries MARKER=marker_value (Linux /proc).

    Scans again until one finds nothing: a process may fork while a scan runs.
    """
    needle = f"{MARKER}={marker_value}".encode() + b"\0"
    me = os.getpid()
    for _ in range(rounds):
        killed = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            with contextlib.suppress(OSError):
                if needle in (entry / "environ").read_bytes() + b"\0":
                    os.kill(int(entry.name), signal.SIGKILL)
                    killed += 1
        if not killed:
            return


class ProcessBackend(Backend):
    name = "process"
    isolated = False
    warning = (
        "sandbox 'process' does not isolate candidate code: it can read your files, use the "
        "network and touch other processes"
    )

    def __init__(self) -> None:
        if shutil.which("prlimit") is None:
            raise SandboxError("prlimit is not installed: apt-get install util-linux")

    def start(self, spec: WorkerSpec) -> Worker:
        if not spec.worktree.is_dir():
            raise SandboxError(f"worktree {spec.worktree} does not exist")
        home = tempfile.mkdtemp(prefix="greenpatch-home-")
        marker = uuid.uuid4().hex
        env = worker_env(spec.env, home)
        env[MARKER] = marker

        def after_kill() -> None:
            kill_marked(marker)
            shutil.rmtree(home, ignore_errors=True)

        return PopenWorker(
            [*rlimits.prlimit_argv(spec.limits), *spec.argv],
            env,
            str(spec.worktree),
            spec.limits,
            after_kill=after_kill,
        )
