"""The baseline: the suite once on the pristine commit, with per-test line coverage.

Recorded per test: outcome, duration, message, traceback frames and the lines it executed in the
project's files. Everything runs in the chosen sandbox, through the same warm workers as
candidates (collection included): the repository at HEAD is untrusted too. Failures are re-run
to tell flaky tests from failing ones. Stored in SQLite under the user's cache, keyed by the
commit's tree (its content, so every clone and copy of the same code shares one), environment
(interpreter, installed packages, isolation) and pytest arguments, so the second ticket on the
same code pays nothing.

The tests a ticket names run first: `BaselineBuild.first()` answers as soon as they and the tests
of their files have run, while the rest of the map fills in behind (`finish()`); a baseline with
tests not yet run (`unmapped`) makes selection run those conservatively.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from greenpatch.runner.errors import OutOfTime, RunnerError
from greenpatch.runner.imports import closure, import_graph
from greenpatch.runner.pool import Job, Pool
from greenpatch.runner.results import JobDone, TestCoverage, TestResult
from greenpatch.runner.tree import read_texts
from greenpatch.sandboxes import Limits, safegit
from greenpatch.sandboxes.cacheroot import cache_root

FLAKY_RERUNS = 2
# 4: a test killed at its timeout records its stack as frames.
SCHEMA = 4
MAX_SOURCE_BYTES = 4 * 1024 * 1024
# Baseline jobs per worker: enough that a worker done early takes another, few enough that
# each fork and coverage start-up is spread over many tests.
JOBS_PER_WORKER = 4
UNVERIFIED = "unverified: pytest did not end the way the job's reports say (a forged result?)"

# progress(stage, done, total): stage is "collect", "run", "rerun" or "store".
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TestRecord:
    __test__ = False

    id: str
    outcome: str
    seconds: float
    message: str
    frames: tuple[tuple[str, int], ...]
    flaky: bool = False


def default_cache_dir() -> Path:
    return cache_root() / "baselines"


def git(repo: Path, *args: str) -> str:
    # The repository is untrusted: no hooks, fsmonitor or filters of its config run.
    done = safegit.run(repo, *args)
    if done.returncode != 0:
        line = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise RunnerError(f"git {args[0]} in {repo}: {line}")
    return done.stdout


class Baseline:
    """The suite at one commit: records, per-test coverage, sources and the import graph.

    Paths are relative to the repository root. Read-only for callers; a build in progress adds
    to it (`unmapped` shrinks) under its own lock.
    """

    def __init__(
        self,
        commit: str,
        env_hash: str,
        sources: dict[str, str],
        tests: Sequence[str],
        path: Path | None = None,
    ) -> None:
        self.commit = commit
        self.env_hash = env_hash
        self.path = path
        self.seconds = 0.0
        self.records: dict[str, TestRecord] = {}
        self.collected: list[str] = list(dict.fromkeys(tests))
        self.unmapped: set[str] = set(self.collected)
        self.collect_errors: list[dict] = []
        # False while only the named tests' files are collected (the suite follows).
        self.collection_complete = True
        self._sources = sources
        self.files: set[str] = set(sources)
        self._graph = import_graph(sources)
        self._coverage: dict[str, dict[str, tuple[int, ...]]] = {}
        self._by_file: dict[str, dict[int, set[str]]] = {}
        self._deps: dict[str, frozenset[str]] = {}
        # A fill in progress adds from its own thread; every read of the maps holds this.
        self._lock = threading.RLock()

    # --- what the suite looks like at this commit ----------------------------------------------

    @property
    def complete(self) -> bool:
        return self.collection_complete and not self.unmapped

    def extend_collected(self, tests: Sequence[str], errors: list[dict]) -> None:
        """The whole suite's collection, after a first one of the named tests' files alone."""
        with self._lock:
            known = set(self.collected)
            ordered = list(dict.fromkeys([*tests, *self.collected]))
            self.unmapped |= {t for t in tests if t not in known and t not in self.records}
            self.collected = ordered
            seen = {e["id"] for e in self.collect_errors}
            self.collect_errors += [e for e in errors if e["id"] not in seen]
            self.collection_complete = True

    def not_yet_mapped(self) -> set[str]:
        with self._lock:
            return set(self.unmapped)

    def _records(self) -> list[TestRecord]:
        with self._lock:
            return list(self.records.values())

    @property
    def tests(self) -> list[str]:
        with self._lock:
            return [t for t in self.collected if t in self.records]

    @property
    def failing(self) -> list[str]:
        return [r.id for r in self._records() if r.outcome in ("failed", "error") and not r.flaky]

    @property
    def passing(self) -> list[str]:
        return [r.id for r in self._records() if r.outcome == "passed" and not r.flaky]

    @property
    def flaky(self) -> list[str]:
        return [r.id for r in self._records() if r.flaky]

    @property
    def durations(self) -> dict[str, float]:
        return {r.id: r.seconds for r in self._records()}

    def add(self, record: TestRecord, lines: dict[str, tuple[int, ...]] | None) -> None:
        """A test's result (and its lines, when measured) joins the map."""
        with self._lock:
            self.records[record.id] = record
            self.unmapped.discard(record.id)
            if lines is None:
                return
            self._coverage[record.id] = lines
            for path, numbers in lines.items():
                index = self._by_file.get(path)
                if index is not None:
                    for line in numbers:
                        index.setdefault(line, set()).add(record.id)

    # --- coverage ------------------------------------------------------------------------------

    def coverage(self, test_id: str) -> dict[str, set[int]]:
        """{relpath: executed lines} of one test (empty if unknown)."""
        with self._lock:
            return {p: set(lines) for p, lines in self._coverage.get(test_id, {}).items()}

    def _line_index(self, path: str) -> dict[int, set[str]]:
        if path not in self._by_file:
            index: dict[int, set[str]] = {}
            for test, files in self._coverage.items():
                for line in files.get(path, ()):
                    index.setdefault(line, set()).add(test)
            self._by_file[path] = index
        return self._by_file[path]

    def tests_covering(self, path: str, lines: Iterable[int] | None = None) -> set[str]:
        """Tests that executed any of `lines` of `path` (any line at all when `lines` is None)."""
        with self._lock:
            index = self._line_index(path)
            wanted = list(index) if lines is None else lines
            found: set[str] = set()
            for line in wanted:
                found |= index.get(line, set())
            return found

    def importers(self, path: str, among: Iterable[str] | None = None) -> set[str]:
        """Tests (of `among`, default every recorded one) whose test module (or a conftest.py
        above it) imports `path`, transitively."""
        candidates = [r.id for r in self._records()] if among is None else list(among)
        return {t for t in candidates if path in self.import_closure(t)}

    def import_closure(self, test_id: str) -> frozenset[str]:
        """Project files the test's module and its conftest files import, transitively."""
        module = test_id.split("::", 1)[0]
        if module not in self._deps:
            starts = [module] + [
                str(Path(parent, "conftest.py")).removeprefix("./")
                for parent in Path(module).parents
            ]
            seen: set[str] = set()
            for start in starts:
                if start in self.files:
                    seen |= closure(self._graph, start)
            self._deps[module] = frozenset(seen)
        return self._deps[module]

    def dependencies(self, test_id: str) -> set[str] | None:
        """Every project file a test's result can depend on (executed or imported); None if the
        test is unknown here."""
        with self._lock:
            if test_id not in self.records or test_id not in self._coverage:
                return None
            executed = set(self._coverage[test_id])
        return executed | set(self.import_closure(test_id))

    def source(self, path: str) -> str | None:
        """A Python file's text at the baseline's commit; None if it had no such file."""
        return self._sources.get(path)

    def close(self) -> None:
        """Nothing to release: kept for callers that close what they open."""

    # --- storage -------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path) -> Baseline:
        db = sqlite3.connect(str(path))
        try:
            meta = dict(db.execute("SELECT key, value FROM meta"))
            sources = dict(db.execute("SELECT path, text FROM sources"))
            rows = db.execute(
                "SELECT nodeid, outcome, seconds, message, frames, flaky, lines FROM tests "
                "ORDER BY id"
            ).fetchall()
        finally:
            db.close()
        baseline = cls(meta["commit"], meta["env_hash"], sources, [r[0] for r in rows], path)
        baseline.seconds = float(meta["seconds"])
        baseline.collect_errors = json.loads(meta["collect_errors"])
        for nodeid, outcome, seconds, message, frames, flaky, lines in rows:
            record = TestRecord(
                nodeid, outcome, seconds, message, tuple(map(tuple, json.loads(frames))),
                bool(flaky),
            )  # fmt: skip
            baseline.add(record, {p: tuple(v) for p, v in json.loads(lines).items()})
        return baseline

    def store(self, target: Path) -> None:
        """Write a complete baseline to `target` atomically."""
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.partial")
        partial.unlink(missing_ok=True)
        db = sqlite3.connect(str(partial))
        with db:
            db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
            db.execute(
                "CREATE TABLE tests (id INTEGER PRIMARY KEY, nodeid TEXT UNIQUE, outcome TEXT, "
                "seconds REAL, message TEXT, frames TEXT, flaky INTEGER, lines TEXT)"
            )
            db.execute("CREATE TABLE sources (path TEXT PRIMARY KEY, text TEXT)")
            db.executemany("INSERT INTO sources VALUES (?, ?)", self._sources.items())
            meta = {
                "commit": self.commit,
                "env_hash": self.env_hash,
                "seconds": str(self.seconds),
                "collect_errors": json.dumps(self.collect_errors),
            }
            db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
            db.executemany(
                "INSERT INTO tests VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (n, r.id, r.outcome, r.seconds, r.message, json.dumps(r.frames), int(r.flaky),
                     json.dumps(self._coverage.get(r.id, {})))
                    for n, r in enumerate(self.records[t] for t in self.tests)
                ),
            )  # fmt: skip
        db.close()
        os.replace(partial, target)
        self.path = target


def baseline_key(tree: str, env_hash: str, isolated: bool, pytest_args: Iterable[str]) -> str:
    raw = json.dumps([SCHEMA, tree, env_hash, isolated, list(pytest_args)])
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


@dataclass
class BaselineOptions:
    """How to run the suite for a baseline (the same sandbox and limits as candidates)."""

    sandbox: str = "bwrap"
    workers: int = 2
    pytest_args: Sequence[str] = ()
    test_timeout: float = 30.0
    limits: Limits = Limits(output_bytes=1 << 30)
    backend_options: dict | None = None
    # Worker arguments that change no outcome (not part of the baseline's key). Python's own
    # traceback format: the pool is the candidates' too, where pytest's (source excerpts,
    # module lookups for every frame) was most of a failing candidate's job.
    worker_args: Sequence[str] = ("--tb=native",)


def matches_name(name: str, test_id: str) -> bool:
    """A named id matches itself, its parametrizations, and (for a file or class) its tests."""
    return test_id == name or test_id.startswith((name + "::", name + "["))


class BaselineBuild:
    """A baseline on its way: the named tests first, then their files, then the rest behind.

        build = BaselineBuild(repo, python, options, first=ticket_tests)
        baseline = build.first()      # the named tests and their files have run
        ...                           # candidates run meanwhile; selection stays conservative
        build.finish()                # the whole map, stored in the cache; idempotent

    From the cache, both return at once. Every run of the repository's code happens in the
    sandbox, each test under `test_timeout`; `deadline` (time.monotonic()) bounds it all.
    """

    def __init__(
        self,
        repo_root: Path,
        python: str,
        options: BaselineOptions,
        *,
        commit: str = "HEAD",
        cache_dir: Path | None = None,
        first: Sequence[str] = (),
        progress: Progress | None = None,
        deadline: float | None = None,
    ) -> None:
        self.repo_root = Path(repo_root).resolve()
        self.options = options
        self.first_names = list(first)
        self.report = progress or (lambda stage, done, total: None)
        self.deadline = deadline
        self.started = time.monotonic()
        self.cache_dir = Path(cache_dir or default_cache_dir())
        self.pool = Pool(
            self.repo_root, python, options.sandbox, workers=options.workers,
            limits=options.limits, test_timeout=options.test_timeout, job_timeout=24 * 3600.0,
            pytest_args=[*options.pytest_args, *options.worker_args], commit=commit,
            tools_cache=self.cache_dir.parent, backend_options=options.backend_options,
            # A conftest that hangs at import holds the workers' start: it counts too.
            start_timeout=180.0 if deadline is None else max(5.0, deadline - time.monotonic()),
        )  # fmt: skip
        # Named tests: the workers start on their files (what the first jobs need), not the suite.
        files = sorted({n.split("::", 1)[0] for n in first} & set(self.pool.files))
        self.pool.startup_args = files or None
        sha = self.pool.commit
        tree = git(self.repo_root, "rev-parse", f"{sha}^{{tree}}").strip()
        # The overlay's name carries our coverage.py version: other tools, another map.
        tools = self.pool.tools.name if self.pool.tools else ""
        key = baseline_key(tree, f"{self.pool.env.hash}:{tools}", self.pool.backend.isolated,
                           options.pytest_args)  # fmt: skip
        self.target = self.cache_dir / f"{key}.sqlite"
        self.baseline: Baseline | None = None
        self._lock = threading.Lock()
        self._rest: list[str] = []
        self._thread: threading.Thread | None = None
        self._error: RunnerError | None = None
        self._begun = False
        # (job id, worker, start, end) of every baseline job: who ran what when, for reports.
        self.spans: list[tuple[str, int, float, float]] = []
        if self.target.exists():
            try:
                self.baseline = Baseline.load(self.target)
            except (sqlite3.Error, KeyError, ValueError):
                self.target.unlink()  # an interrupted or older store: build it again

    # --- the caller's side -------------------------------------------------------------------

    def first(self) -> Baseline:
        """The baseline as soon as the named tests (or, with none named, all) have run."""
        if self._begun:
            return self.baseline
        self._begun = True
        if self.baseline is not None:
            self.pool.close()
            return self.baseline
        try:
            self.pool.start()
            self._collect()
            first, related = self._order()
            self._run(first + related, "run")
        except BaseException:
            self.pool.close()
            raise
        if self._rest or not self.baseline.collection_complete:
            self._thread = threading.Thread(target=self._fill, name="gp-baseline", daemon=True)
            self._thread.start()
        else:
            self._complete()
        return self.baseline

    def finish(self, timeout: float | None = None) -> Baseline:
        """The map once the fill is over, or at `timeout`; complete (and stored in the cache)
        unless the fill was cut short (`error` says why) or is still going."""
        baseline = self.first()
        if self._thread is not None:
            self._thread.join(timeout)
        return baseline

    @property
    def error(self) -> str | None:
        return None if self._error is None else str(self._error)

    def running_pool(self) -> Pool | None:
        """The build's warm workers until it is closed (candidates may share them), else None
        (a baseline from the cache never started any)."""
        return self.pool if self._begun and self.pool.running else None

    def close(self) -> None:
        """Stop filling in (an incomplete map is not stored) and release the workers."""
        self.deadline = time.monotonic()
        self.pool.close()
        if self._thread is not None:
            self._thread.join(10)

    # --- building ----------------------------------------------------------------------------

    def _collect(self) -> None:
        self.report("collect", 0, 1)
        # With named tests, the workers start on their files alone; the suite is collected in
        # the background (`_fill`).
        tests, errors = self.pool.collect(self.pool.startup_args or [])
        named = [n for n in self.first_names if not any(matches_name(n, t) for t in tests)]
        if named:
            # A node id pytest runs when named, though whole-suite collection skips it (a file
            # outside `python_files`, an unrelated collection error): collect it by name.
            more, more_errors = self.pool.collect(named)
            tests += [t for t in more if t not in set(tests)]
            errors += more_errors
        if not tests and errors:
            first = errors[0]
            last = (first["message"].strip().splitlines() or ["?"])[-1].strip()
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise RunnerError(f"no tests: collection error in {first['id'] or '?'}: {last}{more}")
        if not tests:
            raise RunnerError(f"no tests found in {self.repo_root}: not a pytest project?")
        sources = _sources(self.pool)
        self.baseline = Baseline(self.pool.commit, self.pool.env.hash, sources, tests)
        self.baseline.collect_errors = errors
        self.baseline.collection_complete = self.pool.startup_args is None
        self.report("collect", 1, 1)

    def _order(self) -> tuple[list[str], list[str]]:
        """(named tests, the other tests of their files); the rest is left for the fill."""
        tests = self.baseline.collected
        if not self.first_names:
            return tests, []
        first = [t for t in tests if any(matches_name(n, t) for n in self.first_names)]
        files = {t.split("::", 1)[0] for t in first}
        related = [t for t in tests if t not in set(first) and t.split("::", 1)[0] in files]
        self._rest = [t for t in tests if t not in set(first) | set(related)]
        return first, related

    def _fill(self) -> None:
        """The rest of the map, behind the candidates (background jobs of the same pool)."""
        try:
            if not self.baseline.collection_complete:
                self.report("collect", 0, 1)
                tests, errors = self.pool.collect()
                self.baseline.extend_collected(tests, errors)
                left = self.baseline.not_yet_mapped()
                self._rest = [t for t in self.baseline.collected if t in left]
            self._run(self._rest, "fill")
            self._complete()
        except RunnerError as exc:
            self._error = exc

    def _run(self, tests: list[str], name: str) -> None:
        """Run `tests` with coverage, re-run the failures; results join the baseline."""
        if not tests:
            return
        results, lines = self._jobs(self._entries(tests), len(tests), name, coverage=True)
        missing = [t for t in tests if t not in results]
        if missing:
            # A crash mid-file ends that file's entry: its remaining tests run by their ids.
            more, more_lines = self._jobs(missing, len(missing), f"{name}-rest", coverage=True)
            results.update(more)
            lines.update(more_lines)
        failing = [t for t, r in results.items() if r.failed]
        flaky: set[str] = set()
        for attempt in range(FLAKY_RERUNS):
            todo = [t for t in failing if t not in flaky]
            if not todo:
                break
            self.report("rerun", attempt, FLAKY_RERUNS)
            again, _ = self._jobs(todo, len(todo), f"{name}-rerun{attempt}", coverage=False)
            for test, result in again.items():
                if result.outcome != "passed":
                    continue
                if attempt == 0 and results[test].message.startswith("timeout"):
                    # Only slow under tracing: it passes, as it does for plain pytest.
                    results[test] = result
                    failing.remove(test)
                else:
                    flaky.add(test)
        with self._lock:
            for test in tests:
                result = results.get(test)
                if result is None:  # pytest never reported it, even when named: an error
                    result = TestResult("", test, "error", 0.0, "not run: pytest did not report it")
                record = TestRecord(test, result.outcome, result.seconds, result.message,
                                    result.frames, test in flaky)  # fmt: skip
                self.baseline.add(record, lines.get(test, {}))

    def _entries(self, tests: list[str]) -> list[str]:
        """`tests` with every file whose collected tests are all among them given as the file:
        pytest resolves thousands of node ids one by one, a file at once."""
        by_file: dict[str, list[str]] = {}
        for test in self.baseline.collected:
            by_file.setdefault(test.split("::", 1)[0], []).append(test)
        wanted = set(tests)
        entries: list[str] = []
        whole: set[str] = set()
        for test in tests:
            path = test.split("::", 1)[0]
            if path in whole:
                continue
            if "::" in test and all(t in wanted for t in by_file.get(path, ())):
                whole.add(path)
                entries.append(path)
            else:
                entries.append(test)
        return entries

    def _jobs(
        self, entries: list[str], expected: int, name: str, coverage: bool
    ) -> tuple[dict[str, TestResult], dict[str, dict[str, tuple[int, ...]]]]:
        """Run `entries` (test ids and whole files) as several jobs, so that workers that finish
        early take more; the results and lines per test id."""
        results: dict[str, TestResult] = {}
        lines: dict[str, dict[str, tuple[int, ...]]] = {}
        parts = max(1, min(len(entries), JOBS_PER_WORKER * self.options.workers))
        size = -(-len(entries) // parts)
        jobs = {
            f"baseline-{name}-{n}": entries[start : start + size]
            for n, start in enumerate(range(0, len(entries), size))
        }
        for job_id, part in jobs.items():
            self.pool.submit(Job(job_id, {}, part, fail_fast=False, coverage=coverage,
                                 background=True))  # fmt: skip
        stage = "rerun" if "rerun" in name else "run"
        open_jobs = set(jobs)
        while open_jobs:
            if self.deadline is not None and time.monotonic() > self.deadline:
                for job_id in open_jobs:
                    self.pool.cancel(job_id)
                raise OutOfTime(
                    f"the baseline ran out of time after {len(results)} of {expected} tests"
                )
            # A second without news at most: the deadline holds while a test hangs.
            for event in self.pool.background_events(timeout=1.0):
                if isinstance(event, TestResult) and event.job_id in jobs:
                    results[event.test_id] = event
                    self.report(stage, len(results), expected)
                elif isinstance(event, TestCoverage) and event.job_id in jobs:
                    lines[event.test_id] = event.lines
                elif isinstance(event, JobDone) and event.job_id in jobs:
                    self.spans += [(event.job_id, *span) for span in event.spans]
                    if event.reason == "unverified":
                        # What that job reported may be a test's own writing: none of it is a
                        # baseline outcome (its tests count as errors, out of selection).
                        for result in event.results:
                            results[result.test_id] = TestResult(
                                event.job_id, result.test_id, "error", 0.0, UNVERIFIED)
                            lines.pop(result.test_id, None)
                    if event.reason == "tool error":
                        python = self.pool.env.python
                        raise RunnerError(
                            f"cannot measure coverage with {python}: {event.tool_error}"
                        )
                    open_jobs.discard(event.job_id)
                if not open_jobs or (
                    self.deadline is not None and time.monotonic() > self.deadline
                ):
                    break
        return results, lines

    def _complete(self) -> None:
        self.baseline.seconds = time.monotonic() - self.started
        if self.baseline.complete:
            self.report("store", 0, 1)
            self.baseline.store(self.target)
            self.report("store", 1, 1)


def _sources(pool: Pool) -> dict[str, str]:
    """The commit's tracked Python files, from git's objects (never from a worktree)."""
    blobs = {p: blob for p, (blob, size) in pool.files.items()
             if p.endswith(".py") and size <= MAX_SOURCE_BYTES}  # fmt: skip
    return read_texts(pool.repo_root, blobs)


def build_baseline(
    repo_root: Path,
    python: str,
    options: BaselineOptions | None = None,
    *,
    commit: str = "HEAD",
    cache_dir: Path | None = None,
    progress: Progress | None = None,
    deadline: float | None = None,
) -> Baseline:
    """The whole baseline of `commit` (default HEAD), from the cache if it was built before."""
    build = BaselineBuild(repo_root, python, options or BaselineOptions(), commit=commit,
                          cache_dir=cache_dir, progress=progress, deadline=deadline)  # fmt: skip
    try:
        baseline = build.finish()
    finally:
        build.close()
    if not baseline.complete:
        raise RunnerError(build.error or "the baseline did not finish")
    return baseline


