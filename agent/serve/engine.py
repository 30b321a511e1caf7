"""Dynamic batching: one thread owns the model; concurrent requests share its forward passes.

Requests (an infill canvas with `n` samples, or fills to score) are queued. The engine thread
takes the first one, waits up to `window` seconds for more to arrive, and decodes every queued
infill with the same sampling settings in ONE `infill` call: a batch of canvases x samples rows,
at most `max_batch` rows (a request is never split, so one larger than that runs alone).
With `max_batch=1` every request runs alone: the one-request-at-a-time baseline the throughput
benchmark compares against. Scoring is one forward pass per request already and runs between
batches.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from model.checkpoint import LoadedModel
from model.sampler import Candidate, Canvas, infill, score_fills

# Denoising passes per request at most: threshold decoding needs fewer when the model is
# confident; the cap bounds the cost of long spans (a chat reply of hundreds of tokens).
MAX_STEPS = 8
TOP_K = 40


@dataclass(frozen=True)
class Sampling:
    """What must be equal for requests to share one batch."""

    n: int
    temperature: float


@dataclass
class InfillJob:
    canvas: Canvas
    sampling: Sampling
    future: Future = field(default_factory=Future)

    @property
    def rows(self) -> int:
        return self.sampling.n


@dataclass
class ScoreJob:
    prefix: str
    suffix: str
    fills: list[str]
    future: Future = field(default_factory=Future)
    rows: int = 1


@dataclass
class EngineStats:
    batches: int = 0
    requests: int = 0
    largest_batch: int = 0  # requests in the largest batch so far


class Engine:
    """The model behind a queue; `submit` from any thread, results through futures."""

    def __init__(
        self,
        lm: LoadedModel,
        max_batch: int = 64,
        window: float = 0.004,
        context: int = 256,
        seed: int = 0,
    ) -> None:
        self.lm = lm
        # A span must leave room for context in the model's window.
        self.max_span = lm.config.max_seq_len // 2
        self.max_batch = max_batch
        self.window = window
        self.context = context
        self.stats = EngineStats()
        self._seed = seed
        self._queue: queue.Queue[InfillJob | ScoreJob | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="engine", daemon=True)
        self._thread.start()

    def count_tokens(self, text: str) -> int:
        return len(self.lm.tokenizer.encode(text))

    def infill(self, canvas: Canvas, sampling: Sampling) -> Future:
        """A future of the canvas's distinct fills, best first (at most `sampling.n`)."""
        job = InfillJob(canvas, sampling)
        self._queue.put(job)
        return job.future

    def score(self, prefix: str, suffix: str, fills: list[str]) -> Future:
        """A future of each fill's mean log-probability between prefix and suffix."""
        job = ScoreJob(prefix, suffix, fills)
        self._queue.put(job)
        return job.future

    def close(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    # -- the engine thread -------------------------------------------------------------------

    def _gather(self, first: InfillJob | ScoreJob) -> tuple[list, bool]:
        """`first` and whatever else arrives within the window, up to max_batch rows; the flag
        says a stop was seen."""
        jobs, rows = [first], first.rows
        deadline = time.monotonic() + self.window
        while rows < self.max_batch:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)  # one past the limit opens the next batch (see `_run`)
            rows += job.rows
        return jobs, False

    def _run(self) -> None:
        stopping = False
        pending: list = []
        while True:
            if not pending:
                if stopping:
                    return
                job = self._queue.get()
                if job is None:
                    return
                pending, stopping = self._gather(job)
            batch, rows, rest = [], 0, []
            for job in pending:
                if not batch or rows + job.rows <= self.max_batch:
                    batch.append(job)
                    rows += job.rows
                else:
                    rest.append(job)
            pending = rest
            self._execute(batch)

    def _execute(self, jobs: list) -> None:
        infills: dict[Sampling, list[InfillJob]] = {}
        # A request whose client went away (or a shutdown that ran out of time) cancelled its
        # future: it is not decoded.
        for job in [j for j in jobs if j.future.set_running_or_notify_cancel()]:
            if isinstance(job, ScoreJob):
                self._resolve(job, lambda j=job: score_fills(
                    self.lm, j.prefix, j.suffix, j.fills, context=self.context))
            else:
                infills.setdefault(job.sampling, []).append(job)
        for sampling, group in infills.items():
            self.stats.batches += 1
            self.stats.requests += len(group)
            self.stats.largest_batch = max(self.stats.largest_batch, len(group))
            self._seed += 1
            try:
                results = infill(
                    self.lm, [j.canvas for j in group], sampling.n, steps=MAX_STEPS,
                    temperature=sampling.temperature, top_k=TOP_K, top_p=None,
                    context=self.context, seed=self._seed,
                )  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - every waiting request must hear of it
                for j in group:
                    j.future.set_exception(exc)
                continue
            for j, candidates in zip(group, results, strict=True):
                j.future.set_result(candidates)

    @staticmethod
    def _resolve(job: ScoreJob, compute) -> None:
        try:
            job.future.set_result(compute())
        except Exception as exc:  # noqa: BLE001 - handed to the request that asked
            job.future.set_exception(exc)


def finish_reason(engine: Engine, candidate: Candidate) -> str:
    """OpenAI's finish_reason: "stop" when the fill ended before its span did."""
    return "stop" if engine.count_tokens(candidate.text) < candidate.span_len else "length"
