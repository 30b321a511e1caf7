"""`whole`: each job is one chunk, first come first served.

Cheapest per job (one fork): the right policy when many candidates are in flight and there are
more jobs than workers.
"""

from __future__ import annotations

from collections import deque

from greenpatch.runner.scheduling.base import Chunk, Scheduler, regression_order, worker_fail_fast


class WholeJobScheduler(Scheduler):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._queue: deque[Chunk] = deque()

    def add(self, job_id: str, targets: list[str], tests: list[str], fail_fast: bool) -> None:
        order = [*targets, *regression_order(tests, self.stats, fail_fast)]
        self._queue.append(Chunk(job_id, order, worker_fail_fast(targets, fail_fast)))

    def next_chunk(self) -> Chunk | None:
        return self._queue.popleft() if self._queue else None

    def drop(self, job_id: str) -> None:
        self._queue = deque(c for c in self._queue if c.job_id != job_id)

    def has_pending(self, job_id: str) -> bool:
        return any(c.job_id == job_id for c in self._queue)
