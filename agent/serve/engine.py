"""Dynamic batching: one thread owns the model; concurrent requests share its forward passes.

Requests (an infill canvas with `n` samples, or fills to score) are queued. The engine thread
runs continuous batching (`model.continuous`): between two denoising passes, queued requests
join the running batch while it has room (`max_batch` rows, requests x samples; a request is
never split, so one larger than that runs alone), and a request whose fill is complete leaves
it and is answered at once. When the engine is idle, the first request waits `window` seconds
for others, so a burst starts together. With `max_batch=1` every request runs alone: the
one-request-at-a-time baseline the throughput benchmark compares against, on the same code.
Scoring is one forward pass per request already and runs between passes.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from greenpatch.model.checkpoint import LoadedModel
from greenpatch.model.continuous import ContinuousDecoder, Prepared
from greenpatch.model.sampler import Candidate, Canvas, score_fills

# Denoising passes per request at most: threshold decoding needs fewer when the model is
# confident; the cap bounds the cost of long spans (a chat reply of hundreds of tokens).
MAX_STEPS = 8
TOP_K = 40


@dataclass(frozen=True)
class Sampling:
    """What a request asks of the sampler (requests with different settings share passes)."""

    n: int
    temperature: float


@dataclass
class InfillJob:
    canvas: Prepared
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


@dataclass
class EngineStats:
    passes: int = 0  # forward passes of the decoder (each over every live request)
    requests: int = 0  # infill requests answered
    largest_batch: int = 0  # requests sharing one pass, at most
    row_passes: int = 0  # rows run through the network, summed over passes


class Engine:
    """The model behind a queue; `submit` from any thread, results through futures."""

    def __init__(
        self,
        lm: LoadedModel,
        max_batch: int = 64,
        window: float = 0.004,
        context: int = 256,
        cache_every: int | None = None,
        seed: int = 0,
    ) -> None:
        self.lm = lm
        # A span must leave room for context in the model's window.
        self.max_span = lm.config.max_seq_len // 2
        self.max_batch = max_batch
        self.window = window
        self.context = context
        self.stats = EngineStats()
        self._decoder = ContinuousDecoder(lm, steps=MAX_STEPS, top_k=TOP_K, top_p=None,
                                          context=context, cache_every=cache_every,
                                          seed=seed)  # fmt: skip
        self._queue: queue.Queue[InfillJob | ScoreJob | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="engine", daemon=True)
        self._thread.start()

    def count_tokens(self, text: str) -> int:
        return len(self.lm.tokenizer.encode(text))

    def infill(self, canvas: Canvas, sampling: Sampling) -> Future:
        """A future of the canvas's distinct fills, best first (at most `sampling.n`). The
        canvas is tokenized here, on the caller's thread (a ModelError if it cannot fit)."""
        job = InfillJob(self._decoder.prepare(canvas), sampling)
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

    def _run(self) -> None:
        waiting: collections.deque[InfillJob] = collections.deque()
        live: dict[int, InfillJob] = {}
        stopping = False
        while True:
            if not live and not waiting:
                if stopping:
                    return
                # Idle: block for the next request, then give a burst `window` to arrive
                # (not when the batch is full already: with max_batch 1, never).
                stopping = self._take(self._queue.get(), waiting)
                deadline = time.monotonic() + self.window
                while (not stopping and sum(j.rows for j in waiting) < self.max_batch
                       and (left := deadline - time.monotonic()) > 0):
                    try:
                        stopping = self._take(self._queue.get(timeout=left), waiting)
                    except queue.Empty:
                        break
            else:
                # Between passes: whatever has arrived joins, without waiting for more.
                while not stopping:
                    try:
                        stopping = self._take(self._queue.get_nowait(), waiting)
                    except queue.Empty:
                        break
            self._admit(waiting, live)
            if live:
                self._step(live)

    def _take(self, job: InfillJob | ScoreJob | None, waiting: collections.deque) -> bool:
        """Queue an infill, run a scoring (one pass, between decoding passes); True: stop."""
        if job is None:
            return True
        if isinstance(job, ScoreJob):
            self._score(job)
        else:
            waiting.append(job)
        return False

    def _admit(self, waiting: collections.deque[InfillJob], live: dict[int, InfillJob]) -> None:
        """Queued requests join the running batch in arrival order while they fit."""
        while waiting:
            job = waiting[0]
            if live and self._decoder.rows + job.rows > self.max_batch:
                return
            waiting.popleft()
            # A request whose client went away (or a shutdown that ran out of time)
            # cancelled its future: it is not decoded.
            if job.future.set_running_or_notify_cancel():
                live[id(job)] = job
                self._decoder.join(id(job), job.canvas, job.sampling.n, job.sampling.temperature)

    def _step(self, live: dict[int, InfillJob]) -> None:
        try:
            finished, step = self._decoder.step()
        except Exception as exc:  # noqa: BLE001 - every request in the pass must hear of it
            for key in self._decoder.abandon():
                live.pop(key).future.set_exception(exc)
            return
        self.stats.passes += 1
        self.stats.row_passes += step.computed
        self.stats.largest_batch = max(self.stats.largest_batch, step.requests)
        for key, candidates in finished:
            self.stats.requests += 1
            live.pop(key).future.set_result(candidates)

    def _score(self, job: ScoreJob) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            job.future.set_result(score_fills(self.lm, job.prefix, job.suffix, job.fills,
                                              context=self.context))  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - handed to the request that asked
            job.future.set_exception(exc)


def finish_reason(engine: Engine, candidate: Candidate) -> str:
    """OpenAI's finish_reason: "stop" when the fill ended before its span did."""
    return "stop" if engine.count_tokens(candidate.text) < candidate.span_len else "length"
