"""`steal`: jobs split into chunks that idle workers take, oldest job first.

The first chunk of a job is its target tests; with fail fast the job's other chunks wait until it
is over, so a candidate that does not fix the ticket is rejected after running only those. The
regression tests follow in an even share per worker, so a lone big job spreads across every
worker; a job with less than `min_seconds` of expected work stays in one fork (splitting it would
cost more than it saves).
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque

from greenpatch.runner.scheduling.base import Chunk, Scheduler, regression_order, worker_fail_fast


class StealingScheduler(Scheduler):
    min_seconds = 0.5

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._jobs: OrderedDict[str, deque[Chunk]] = OrderedDict()
        self._gates: dict[str, Chunk] = {}  # job -> its target chunk, while that runs

    def add(self, job_id: str, targets: list[str], tests: list[str], fail_fast: bool) -> None:
        chunks: deque[Chunk] = deque()
        if targets:
            gate = Chunk(job_id, list(targets), worker_fail_fast(targets, fail_fast))
            chunks.append(gate)
            if fail_fast:
                self._gates[job_id] = gate
        ordered = regression_order(tests, self.stats, fail_fast)
        expected = sum(self.stats.duration(t) for t in ordered)
        parts = self.workers if expected >= self.min_seconds else 1
        share = max(1, math.ceil(len(ordered) / parts))
        for start in range(0, len(ordered), share):
            chunks.append(Chunk(job_id, ordered[start : start + share], fail_fast))
        if chunks:
            self._jobs.setdefault(job_id, deque()).extend(chunks)

    def next_chunk(self) -> Chunk | None:
        for job_id, chunks in self._jobs.items():
            gate = self._gates.get(job_id)
            if gate is not None and chunks[0] is not gate:
                continue  # its targets are still running
            chunk = chunks.popleft()
            if not chunks:
                del self._jobs[job_id]
            return chunk
        return None

    def finished(self, chunk: Chunk) -> None:
        if self._gates.get(chunk.job_id) is chunk:
            del self._gates[chunk.job_id]

    def drop(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)
        self._gates.pop(job_id, None)

    def has_pending(self, job_id: str) -> bool:
        return job_id in self._jobs
