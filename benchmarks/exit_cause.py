"""Whether a worker's exit cause survives a busy CPU: workers that die of the memory limit (a
MemoryError traceback on standard error) are started one after another while busy loops load
every core; each must end as "memory", not "exit 1". With `--drain 0` the cause is read as soon
as the exit status is known (no wait for the end of standard error), for comparison.

    python benchmarks/exit_cause.py [--workers 40] [--busy 6] [--drain 0]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
from pathlib import Path

from greenpatch.sandboxes import streams
from greenpatch.sandboxes.base import Limits, WorkerSpec
from greenpatch.sandboxes.registry import get_backend


def spin() -> None:
    while True:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=40)
    parser.add_argument("--busy", type=int, default=6, help="busy loops beside the workers")
    parser.add_argument("--drain", type=float, default=streams.STDERR_DRAIN_SECONDS,
                        help="seconds the cause waits for the end of standard error")
    args = parser.parse_args()
    streams.STDERR_DRAIN_SECONDS = args.drain
    busy = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.busy)]
    for proc in busy:
        proc.start()
    backend = get_backend("process")
    misread = 0
    try:
        for _ in range(args.workers):
            with tempfile.TemporaryDirectory() as tmp:
                spec = WorkerSpec(argv=[sys.executable, "-c", "x = bytearray(8 * 1024**3)"],
                                  worktree=Path(tmp), limits=Limits(memory_mb=256,
                                                                    wall_seconds=30))
                with backend.start(spec) as worker:
                    worker.wait(20)
                    misread += worker.exit_reason() != "memory"
    finally:
        for proc in busy:
            proc.kill()
    print(f"drain {args.drain:g} s, {args.busy} busy loops: {misread}/{args.workers} exit causes "
          f"misread")
    return 0


if __name__ == "__main__":
    sys.exit(main())
