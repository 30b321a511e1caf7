"""POSIX resource limits for a worker and everything it forks."""

from __future__ import annotations

import resource

from greenpatch.sandboxes.base import Limits

MB = 1024 * 1024


def rlimit_values(limits: Limits, nproc: bool = True) -> dict[int, tuple[int, int]]:
    """(soft, hard) per resource. CPU gets a one-second grace so SIGXCPU comes before SIGKILL.

    `nproc=False` leaves RLIMIT_NPROC alone (where a cgroup counts processes instead).
    """
    values = {
        resource.RLIMIT_AS: (limits.memory_mb * MB,) * 2,
        resource.RLIMIT_FSIZE: (limits.file_size_mb * MB,) * 2,
        resource.RLIMIT_CORE: (0, 0),
    }
    if nproc:
        values[resource.RLIMIT_NPROC] = (limits.processes,) * 2
    if limits.cpu_seconds is not None:
        values[resource.RLIMIT_CPU] = (limits.cpu_seconds, limits.cpu_seconds + 1)
    return values


def prlimit_argv(limits: Limits, nproc: bool = True) -> list[str]:
    """The same limits as a `prlimit` (util-linux) command prefix."""
    names = {
        resource.RLIMIT_AS: "--as",
        resource.RLIMIT_NPROC: "--nproc",
        resource.RLIMIT_FSIZE: "--fsize",
        resource.RLIMIT_CORE: "--core",
        resource.RLIMIT_CPU: "--cpu",
    }
    return [
        "prlimit",
        *(f"{names[r]}={soft}:{hard}" for r, (soft, hard) in rlimit_values(limits, nproc).items()),
        "--",
    ]
