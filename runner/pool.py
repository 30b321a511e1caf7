"""The controller: warm sandboxed workers, one worktree each, many candidates in flight at once.

    with Pool(repo, python, "bwrap", workers=2) as pool:
        pool.submit(Job("c1", {"pkg/mod.py": text}, tests, fail_fast=True, targets=failing))
        for event in pool.events():      # TestResult as they arrive, JobDone when a job is over
            ...

All bookkeeping happens under one lock, from whichever thread has news: a reader thread per
worker (results), or the caller (submit, cancel). Idle workers take the next chunk from the
scheduling policy as soon as they report a chunk done, so work flows to whoever is free.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from greenpatch.runner.cache import ResultCache, changes_digest, result_key
from greenpatch.runner.env import probe, source_path
from greenpatch.runner.errors import OutOfTime, RunnerError
from greenpatch.runner.overlay import ensure_overlay
from greenpatch.runner.results import OUTCOMES, JobDone, TestCoverage, TestResult
from greenpatch.runner.scheduling import POLICIES, Chunk, Scheduler, Stats
from greenpatch.runner.tree import regular_files
from greenpatch.sandboxes import Limits, SandboxError, WorkerSpec, get_backend, safegit
from greenpatch.sandboxes.worktree import Worktree

WORKER_DIR = Path(__file__).resolve().parent / "worker"
RESTARTS_PER_WORKER = 5
# A long-lived worker streams every result it ever produces; the per-worker output cap of the
# sandbox must allow for a long session, not one job.
DEFAULT_LIMITS = Limits(output_bytes=1 << 30)

Event = TestResult | JobDone | TestCoverage
COLLECT_TIMEOUT = 600.0
TRACING_SLOWDOWN = 3
# Worker job ends that stop the whole job (its other chunks are dropped).
STOPPING = ("timeout", "unverified", "tool error")
# What the host keeps of a worker's word: a message's length, a traceback's depth.
MESSAGE_CHARS = 4000
MAX_FRAMES = 30


@dataclass(frozen=True)
class Job:
    """One candidate: files to replace (relpath -> text, None deletes) and the tests to run.

    `targets` (the ticket's failing tests) run first; with `fail_fast` the job stops at its first
    failing test, once every target has run: how many targets a candidate passes is how the
    caller tells a partial fix (one of two bugs) from a miss.
    """

    id: str
    files: dict[str, str | None]
    tests: list[str]
    fail_fast: bool = True
    targets: tuple[str, ...] = ()
    # Per-test line coverage (a TestCoverage event per test): what the baseline runs with.
    coverage: bool = False
    # Background work (the baseline filling in): its own events (`background_events`), never
    # cached, and workers take it only when no candidate waits, keeping one for candidates.
    background: bool = False
    timeout: float | None = None  # this job's time limit instead of the pool's job_timeout


@dataclass
class _JobState:
    job: Job
    started: float
    digest: str
    results: list[TestResult] = field(default_factory=list)
    inflight: int = 0
    aliases: list[str] = field(default_factory=list)
    stopped: str | None = None  # "fail_fast", "cancelled", "timeout"
    cpu: float = 0.0
    failed: bool = False
    unreported: set[str] = field(default_factory=set)  # targets without a result yet
    tool_error: str = ""  # our own tools failed in the worker (not the project's tests)
    scheduler: Scheduler | None = None
    queue: queue.Queue | None = None
    spans: list[tuple[int, float, float]] = field(default_factory=list)  # JobDone.spans


@dataclass
class _Slot:
    index: int
    tree: Worktree
    worker: object = None
    ready: threading.Event = field(default_factory=threading.Event)
    chunk: Chunk | None = None
    chunk_id: str = ""
    chunk_started: float = 0.0
    current: str | None = None
    reported: set[str] = field(default_factory=set)
    restarts: int = 0
    alive: bool = False
    error: str = ""
    parsed_once: bool = False  # the worker parsed pytest's configuration once for all jobs
    collecting: dict | None = None  # a collection in progress: its id, event and findings
    suite: tuple[list[str], list[dict]] | None = None  # what its start-up collection found


class Pool:
    def __init__(
        self,
        repo_root: Path,
        python: str,
        backend_name: str = "process",
        workers: int = 2,
        limits: Limits = DEFAULT_LIMITS,
        test_timeout: float = 30.0,
        job_timeout: float = 300.0,
        *,
        pytest_args: Iterable[str] = (),
        policy: str = "steal",
        cache: ResultCache | None = None,
        dependencies: Callable[[str], Iterable[str] | None] | None = None,
        durations: dict[str, float] | None = None,
        start_timeout: float = 180.0,
        cold: bool = False,
        commit: str = "HEAD",
        tools_cache: Path | None = None,
        backend_options: dict | None = None,
        startup_args: Iterable[str] | None = None,
    ) -> None:
        if policy not in POLICIES:
            raise RunnerError(
                f"unknown scheduling policy '{policy}' (known: {', '.join(POLICIES)})"
            )
        self.repo_root = Path(repo_root).resolve()
        self.backend_name = backend_name
        try:
            self.backend = get_backend(backend_name, **(backend_options or {}))
        except SandboxError as exc:
            raise RunnerError(str(exc)) from None
        self.warning: str | None = getattr(self.backend, "warning", None)
        self.env = probe(python, self.backend)
        # Our coverage.py for interpreters without one (see runner.overlay).
        self.tools = None if tools_cache is None else ensure_overlay(self.env, tools_cache)
        self.n_workers = workers
        self.limits = limits
        self.test_timeout = test_timeout
        self.job_timeout = job_timeout
        self.pytest_args = list(pytest_args)
        self.cache = cache
        self.dependencies = dependencies
        self.start_timeout = start_timeout
        # A fresh pytest process per job instead of a warm fork: the ablation of warm workers.
        self.cold = cold
        self.stats = Stats(durations=dict(durations or {}))
        self.scheduler = POLICIES[policy](workers, self.stats)
        self._filler = POLICIES["steal"](workers, self.stats)  # background jobs
        self._background: queue.Queue[Event] = queue.Queue()
        self.commit = _head(self.repo_root, commit)
        # What the host may read on a worker's word: tracked regular files, never symlinks.
        self.files = regular_files(self.repo_root, self.commit)
        self.tracked = frozenset(self.files)
        self._slots: list[_Slot] = []
        self._lock = threading.RLock()
        self._events: queue.Queue[Event] = queue.Queue()
        self._jobs: dict[str, _JobState] = {}
        self._by_digest: dict[str, str] = {}
        self._finished: dict[str, JobDone] = {}
        self._open = 0
        self._chunk_ids = itertools.count()
        self._chunks: dict[str, tuple[_Slot, Chunk]] = {}
        self.startup_args = None if startup_args is None else list(startup_args)
        self._closed = False

    # --- life cycle --------------------------------------------------------------------------

    def __enter__(self) -> Pool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Create the worktrees, start the workers, wait until every one is warm."""
        try:
            for index in range(self.n_workers):
                tree = Worktree.create(self.repo_root)
                if self.commit != _head(tree.path):
                    tree.git("checkout", "--quiet", "--detach", self.commit)
                self._slots.append(_Slot(index, tree))
            for slot in self._slots:
                self._launch(slot)
            deadline = time.monotonic() + self.start_timeout
            for slot in self._slots:
                if not slot.ready.wait(max(0.0, deadline - time.monotonic())):
                    raise OutOfTime(
                        f"test worker {slot.index} was not ready after {self.start_timeout:.0f} s "
                        "(collecting the suite)"
                    )
                if not slot.alive:
                    raise RunnerError(f"test worker {slot.index} did not start: {slot.error}")
        except BaseException:
            self.close()
            raise

    def _launch(self, slot: _Slot) -> None:
        spec = WorkerSpec(
            argv=[self.env.python, str(WORKER_DIR / "worker.py"), str(slot.tree.path)]
            + self.pytest_args,
            worktree=slot.tree.path,
            env={
                "PYTHONPATH": source_path(slot.tree.path),
                **({"GP_COLD": "1"} if self.cold else {}),
                **({"GP_OVERLAY": str(self.tools)} if self.tools else {}),
                # The sandbox's /tmp is the worker's own: emptied between jobs. Never the host's.
                **({"GP_PRIVATE_TMP": "1"} if self.backend.isolated else {}),
                **({"GP_STARTUP_ARGS": json.dumps(self.startup_args)}
                   if self.startup_args is not None else {}),  # fmt: skip
            },
            readonly=(WORKER_DIR, *((self.tools,) if self.tools else ())),
            limits=self.limits,
        )
        slot.ready.clear()
        slot.error = ""
        slot.worker = self.backend.start(spec)
        slot.alive = True
        reader = threading.Thread(
            target=self._read, args=(slot, slot.worker), name=f"gp-worker-{slot.index}", daemon=True
        )
        reader.start()

    def close(self) -> None:
        """Stop the workers and remove their worktrees; idempotent."""
        with self._lock:
            self._closed = True
            slots, self._slots = self._slots, []
        for slot in slots:
            if slot.worker is not None:
                with contextlib.suppress(Exception):
                    slot.worker.stop()
            slot.tree.remove()
        if self.backend is not None:
            with contextlib.suppress(Exception):
                self.backend.close()
            self.backend = None

    @property
    def running(self) -> bool:
        """Started and not closed."""
        return bool(self._slots) and not self._closed

    @property
    def parsed_once(self) -> bool:
        """Whether every worker runs its jobs on a configuration pytest parsed once."""
        return bool(self._slots) and all(slot.parsed_once for slot in self._slots)

    # --- the caller's side -------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Queue a candidate. Cached results and duplicates are answered without running."""
        with self._lock:
            if self._closed:
                raise RunnerError("the test pool is closed")
            if job.id in self._jobs or job.id in self._finished:
                raise RunnerError(f"duplicate job id: {job.id}")
            digest = changes_digest(job.files) + json.dumps(
                [sorted(job.tests), list(job.targets), job.fail_fast, job.coverage]
            )
            if job.background:
                state = _JobState(job, time.monotonic(), digest, scheduler=self._filler,
                                  queue=self._background)  # fmt: skip
                self._jobs[job.id] = state
                self._filler.add(job.id, [], list(dict.fromkeys(job.tests)), False)
                self._dispatch()
                self._maybe_finish(state)
                return
            self._open += 1
            original = self._by_digest.get(digest)
            if original in self._finished:
                self._replay(self._finished[original], job.id)
                return
            if original in self._jobs:
                self._jobs[original].aliases.append(job.id)
                return
            state = _JobState(job, time.monotonic(), digest, unreported=set(job.targets),
                              scheduler=self.scheduler, queue=self._events)  # fmt: skip
            self._jobs[job.id] = state
            self._by_digest[digest] = job.id
            targets = [t for t in dict.fromkeys(job.targets) if not self._answer(state, t)]
            tests = [
                t
                for t in dict.fromkeys(job.tests)
                if t not in set(job.targets) and not self._answer(state, t)
            ]
            if state.stopped is None and (targets or tests):
                self.scheduler.add(job.id, targets, tests, job.fail_fast)
            self._dispatch()
            self._maybe_finish(state)

    def cancel(self, job_id: str) -> None:
        """Stop a job: pending tests are dropped, running ones killed; its JobDone follows."""
        with self._lock:
            state = self._jobs.get(job_id)
            if state is not None:
                self._stop(state, "cancelled")

    def background_events(self, timeout: float) -> Iterator[Event]:
        """Events of background jobs as they arrive; stops after `timeout` s without news."""
        while True:
            try:
                yield self._background.get(timeout=timeout)
            except queue.Empty:
                self._check_workers()
                return

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Results and job completions as they arrive, until every submitted job is done.

        With `timeout`, stops after that many seconds without news.
        """
        while True:
            with self._lock:
                if self._open == 0 and self._events.empty():
                    return
            try:
                event = self._events.get(timeout=timeout if timeout is not None else 1.0)
            except queue.Empty:
                if timeout is not None:
                    return
                self._check_workers()
                continue
            if isinstance(event, JobDone):
                with self._lock:
                    self._open -= 1
            yield event

    def run(self, job: Job) -> JobDone:
        """Submit one job and wait for it (other jobs' events are consumed too)."""
        self.submit(job)
        for event in self.events():
            if isinstance(event, JobDone) and event.job_id == job.id:
                return event
        raise RunnerError(
            f"job {job.id} vanished"
        )  # pragma: no cover - events() ends only when done

    # --- bookkeeping (under the lock) ---------------------------------------------------------

    def _cache_key(self, job: Job, test: str) -> str:
        visible = self.dependencies(test) if self.dependencies is not None else None
        return result_key(
            test, self.env.hash, self.commit, job.files, job.files if visible is None else visible
        )

    def _answer(self, state: _JobState, test: str) -> bool:
        """Answer `test` from the cache; True if it was."""
        if self.cache is None or state.stopped is not None or state.job.coverage:
            return False
        hit = self.cache.get(self._cache_key(state.job, test))
        if hit is None:
            return False
        outcome, seconds, message, frames = hit
        self._record(state, TestResult(state.job.id, test, outcome, seconds, message, frames, True))
        return True

    def _record(self, state: _JobState, result: TestResult) -> None:
        state.results.append(result)
        if result.failed:
            self.stats.failures[result.test_id] += 1
        if self.cache is not None and not result.cached and not state.job.background:
            self.cache.put(self._cache_key(state.job, result.test_id), result)
        state.queue.put(result)
        for alias in state.aliases:
            self._events.put(_renamed(result, alias))
        state.failed = state.failed or result.failed
        state.unreported.discard(result.test_id)
        if state.failed and state.job.fail_fast and not state.unreported:
            self._stop(state, "fail_fast")

    def _stop(self, state: _JobState, reason: str) -> None:
        if state.stopped is not None:
            return
        state.stopped = reason
        state.scheduler.drop(state.job.id)
        for chunk_id, (slot, chunk) in list(self._chunks.items()):
            if chunk.job_id == state.job.id and slot.alive:
                self._send(slot, {"cancel": chunk_id})
        self._maybe_finish(state)

    def _maybe_finish(self, state: _JobState) -> None:
        job_id = state.job.id
        if job_id not in self._jobs or state.inflight or state.scheduler.has_pending(job_id):
            return
        del self._jobs[job_id]
        done = JobDone(
            job_id,
            state.stopped or "ok",
            tuple(state.results),
            time.monotonic() - state.started,
            state.cpu,
            state.tool_error,
            tuple(state.spans),
        )
        if state.job.background:
            state.queue.put(done)
            return
        self._finished[job_id] = done
        self._events.put(done)
        for alias in state.aliases:
            self._replay(done, alias, results=False)

    def _replay(self, done: JobDone, job_id: str, results: bool = True) -> None:
        renamed = tuple(_renamed(r, job_id) for r in done.results)
        if results:
            for result in renamed:
                self._events.put(result)
        self._finished[job_id] = JobDone(job_id, done.reason, renamed, 0.0)
        self._events.put(self._finished[job_id])

    def _dispatch(self) -> None:
        for slot in self._slots:
            busy = slot.chunk is not None or slot.collecting is not None
            if busy or not slot.alive or not slot.ready.is_set():
                continue
            chunk = self.scheduler.next_chunk()
            if chunk is None and self._background_room():
                chunk = self._filler.next_chunk()
            if chunk is None:
                return
            state = self._jobs[chunk.job_id]
            chunk_id = f"{chunk.job_id}#{next(self._chunk_ids)}"
            slot.chunk, slot.chunk_id, slot.current, slot.reported = chunk, chunk_id, None, set()
            slot.chunk_started = time.monotonic()
            self._chunks[chunk_id] = (slot, chunk)
            state.inflight += 1
            self._send(
                slot,
                {
                    "job": chunk_id,
                    "files": state.job.files,
                    "tests": chunk.tests,
                    "fail_fast": chunk.fail_fast,
                    # Tracing slows a CPU-bound test down severalfold; its limit grows alike.
                    "test_timeout": self.test_timeout * (TRACING_SLOWDOWN if state.job.coverage
                                                         else 1),  # fmt: skip
                    "job_timeout": state.job.timeout or self.job_timeout,
                    "coverage": state.job.coverage,
                },
            )

    def _send(self, slot: _Slot, message: dict) -> None:
        try:
            slot.worker.stdin.write((json.dumps(message) + "\n").encode())
            slot.worker.stdin.flush()
        except (OSError, ValueError):
            pass  # the reader thread sees the worker's end and requeues its chunk

    # --- worker side --------------------------------------------------------------------------

    def _read(self, slot: _Slot, worker: object) -> None:
        for raw in worker.stdout:
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(record, dict):
                continue
            if record.get("event") == "ready":
                # The bytecode the worker's start-up wrote is every job's to reuse; reset()
                # keeps it only while untouched.
                with contextlib.suppress(SandboxError, OSError):
                    slot.tree.keep_untracked()
            if record.get("event") == "done":
                # Whatever the job's tests left in the worktree goes before the next job starts
                # (the worker restores only the job's own files), so every job, and every result
                # cached from it, starts from exactly the candidate's tree.
                with contextlib.suppress(SandboxError, OSError):
                    slot.tree.reset()
            with self._lock:
                try:
                    self._handle(slot, record)
                except (KeyError, TypeError, ValueError, AttributeError):
                    continue  # a malformed record from the sandbox: ignored, never trusted
        with self._lock:
            if slot.worker is worker:
                self._worker_died(slot)

    def _handle(self, slot: _Slot, record: dict) -> None:
        event = record.get("event")
        if event == "ready":
            slot.parsed_once = bool(record.get("parsed_once"))
            if isinstance(record.get("tests"), list):
                slot.suite = self._collected(record["tests"], record.get("collect_errors"))
            slot.ready.set()
            self._dispatch()
            return
        if slot.collecting is not None and record.get("job") == slot.collecting["id"]:
            self._collect_event(slot, record)
            return
        entry = self._chunks.get(record.get("job", ""))
        if entry is None:
            return
        chunk = entry[1]
        state = self._jobs.get(chunk.job_id)
        if event == "start":
            slot.current = record["id"]
        elif event == "result" and state is not None:
            slot.current = None
            slot.reported.add(record["id"])
            if state.stopped in ("cancelled",):
                return
            outcome = record["outcome"] if record.get("outcome") in OUTCOMES else "error"
            self._record(
                state,
                TestResult(
                    chunk.job_id,
                    str(record["id"]),
                    outcome,
                    float(record.get("seconds") or 0.0),
                    str(record.get("message") or "")[:MESSAGE_CHARS],
                    self._frames(slot, record.get("frames")),
                ),
            )
        elif event == "tool_error" and state is not None:
            state.tool_error = str(record.get("message") or "")[:MESSAGE_CHARS]
        elif event == "coverage" and state is not None and state.job.coverage:
            lines = {
                rel: tuple(int(n) for n in numbers)
                for rel, numbers in (record.get("lines") or {}).items()
                if rel in self.tracked and isinstance(numbers, list)
            }
            state.queue.put(TestCoverage(chunk.job_id, str(record["id"]), lines))
        elif event == "done":
            if state is not None:
                state.cpu += float(record.get("cpu") or 0.0)
            self._chunk_over(slot)
            if state is not None and record.get("reason") in STOPPING:
                self._stop(state, record["reason"])
            if state is not None:
                self._maybe_finish(state)
            self._dispatch()

    def _background_room(self) -> bool:
        """Background chunks run on idle workers while no candidate waits, and then on all but
        one worker while any candidate job is open (a candidate never waits long for a slot)."""
        if not any(not s.job.background for s in self._jobs.values()):
            return True
        running = sum(1 for slot, chunk in self._chunks.values()
                      if chunk.job_id in self._jobs and self._jobs[chunk.job_id].job.background)
        return running < max(1, self.n_workers - 1)  # fmt: skip

    def _frames(self, slot: _Slot, frames: object) -> tuple[tuple[str, int], ...]:
        """Frames name files in the worker's worktree; callers want repository paths, and read
        them: only tracked regular files of the repository pass, anything else is dropped."""
        prefix = os.path.realpath(slot.tree.path) + os.sep
        kept = []
        for path, line in list(frames or ())[-MAX_FRAMES:]:
            rel = os.path.normpath(str(path).removeprefix(prefix))
            if rel in self.tracked:
                kept.append((rel, int(line)))
        return tuple(kept)

    # --- collection ----------------------------------------------------------------------------

    def collect(self, args: Iterable[str] = ()) -> tuple[list[str], list[dict]]:
        """Test ids pytest collects for `args` (default: the configured suite) in a worker's
        sandbox, and the collection errors ({"id", "message"}); RunnerError if it cannot."""
        args = list(args)
        with self._lock:
            started = next((s.suite for s in self._slots if s.suite is not None), None)
        if args == (self.startup_args or []) and started is not None:
            return list(started[0]), list(started[1])
        event = threading.Event()
        deadline = time.monotonic() + COLLECT_TIMEOUT
        while True:  # the first worker to be idle collects
            with self._lock:
                slot = next((s for s in self._slots if s.alive and s.ready.is_set()
                             and s.chunk is None and s.collecting is None), None)  # fmt: skip
                if slot is not None:
                    break
                if self._closed or not any(s.alive for s in self._slots):
                    raise RunnerError("no test worker left to collect with")
            if time.monotonic() > deadline:
                raise OutOfTime("no test worker was free to collect the suite")
            time.sleep(0.05)
        with self._lock:
            job_id = f"collect#{next(self._chunk_ids)}"
            slot.collecting = {"id": job_id, "event": event, "tests": None, "errors": []}
            self._send(slot, {"job": job_id, "collect": args, "tests": [], "files": {},
                              "job_timeout": COLLECT_TIMEOUT})  # fmt: skip
        finished = event.wait(COLLECT_TIMEOUT + 30)
        with self._lock:
            found, slot.collecting = slot.collecting, None
            self._dispatch()
        if not finished or found is None:
            raise RunnerError(f"pytest did not finish collecting within {COLLECT_TIMEOUT:g} s")
        if found["tests"] is None:
            why = found.get("why") or "pytest could not collect"
            raise RunnerError(f"pytest cannot collect in {self.repo_root}: {why}")
        return found["tests"], found["errors"]

    @staticmethod
    def _collected(tests: object, errors: object) -> tuple[list[str], list[dict]]:
        return [str(t) for t in tests or ()], [
            {"id": str(e.get("id", "")), "message": str(e.get("message", ""))[:MESSAGE_CHARS]}
            for e in errors or ()
            if isinstance(e, dict)
        ]

    def _collect_event(self, slot: _Slot, record: dict) -> None:
        found = slot.collecting
        if record.get("event") == "collected":
            found["tests"], found["errors"] = self._collected(record.get("tests"),
                                                              record.get("errors"))  # fmt: skip
        elif record.get("event") == "result":  # the child died before collection finished
            found["why"] = str(record.get("message") or "")[-MESSAGE_CHARS:]
        elif record.get("event") == "done":
            found["event"].set()

    def _chunk_over(self, slot: _Slot) -> None:
        self._chunks.pop(slot.chunk_id, None)
        state = self._jobs.get(slot.chunk.job_id) if slot.chunk is not None else None
        if state is not None:
            state.scheduler.finished(slot.chunk)
            state.inflight -= 1
            state.spans.append((slot.index, slot.chunk_started, time.monotonic()))
        slot.chunk, slot.chunk_id, slot.current = None, "", None

    def _worker_died(self, slot: _Slot) -> None:
        worker = slot.worker
        slot.alive = False
        with contextlib.suppress(Exception):
            worker.wait(5)
        why = _exit_reason(worker)
        if slot.collecting is not None:
            slot.collecting["why"] = f"the worker {why}"
            slot.collecting["event"].set()
        if not slot.ready.is_set():
            slot.error = f"{why}: {_tail(worker)}"
            slot.ready.set()  # wake start(); it reads slot.error
        chunk, current, reported = slot.chunk, slot.current, slot.reported
        state = self._jobs.get(chunk.job_id) if chunk is not None else None
        if chunk is not None:
            self._chunk_over(slot)
        if state is not None and state.stopped is None:
            if current is not None:
                self._record(
                    state,
                    TestResult(
                        chunk.job_id, current, "failed", 0.0, f"crashed: worker died ({why})"
                    ),
                )
            rest = [t for t in chunk.tests if t not in reported and t != current]
            if rest and state.stopped is None:
                state.scheduler.add(chunk.job_id, [], rest, chunk.fail_fast)
        if state is not None:
            self._maybe_finish(state)
        if self._closed:
            return
        if slot.restarts >= RESTARTS_PER_WORKER:
            slot.error = f"worker {slot.index} died {slot.restarts + 1} times (last: {why})"
            if not any(s.alive for s in self._slots):
                self._fail_everything(slot.error)
            return
        slot.restarts += 1
        threading.Thread(target=self._restart, args=(slot,), daemon=True).start()
        self._dispatch()

    def _restart(self, slot: _Slot) -> None:
        with contextlib.suppress(Exception):
            slot.worker.stop()
        try:
            slot.tree.reset()
            with self._lock:
                if self._closed:
                    return
                self._launch(slot)
        except (SandboxError, RunnerError, OSError) as exc:
            with self._lock:
                slot.error = str(exc)
                if not any(s.alive for s in self._slots):
                    self._fail_everything(slot.error)

    def _fail_everything(self, why: str) -> None:
        for state in list(self._jobs.values()):
            state.scheduler.drop(state.job.id)
            state.inflight = 0
            state.stopped = state.stopped or "error"
            state.queue.put(
                TestResult(state.job.id, "<pool>", "error", 0.0, f"no test worker left: {why}")
            )
            self._maybe_finish(state)

    def _check_workers(self) -> None:
        with self._lock:
            if self._slots and not any(s.alive for s in self._slots) and self._jobs:
                self._fail_everything(self._slots[0].error or "all workers died")


def _renamed(result: TestResult, job_id: str) -> TestResult:
    return TestResult(
        job_id, result.test_id, result.outcome, result.seconds, result.message, result.frames, True
    )


def _exit_reason(worker: object) -> str:
    with contextlib.suppress(Exception):
        return worker.exit_reason() or "running"
    return "unknown"


def _tail(worker: object) -> str:
    with contextlib.suppress(Exception):
        lines = worker.stderr_tail().strip().splitlines()
        return lines[-1] if lines else "no output"
    return "no output"


def _head(repo_root: Path, commit: str = "HEAD") -> str:
    # The repository is untrusted: no hooks, fsmonitor or filters of its config run.
    done = safegit.run(repo_root, "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}")
    if done.returncode != 0:
        raise RunnerError(f"not a commit of {repo_root}: {commit}")
    return done.stdout.strip()
