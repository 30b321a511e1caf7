"""The baseline: the whole suite once on the pristine commit, with per-test line coverage.

Recorded per test: outcome, duration, message, traceback frames and the lines it executed in the
project's files. Failures are re-run to tell flaky tests from failing ones. Stored in SQLite under
the user's cache, keyed by the commit's tree (its content, so every clone and copy of the same
code shares one), environment (interpreter, installed packages) and pytest arguments, so the
second ticket on the same code pays nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from runner.collect import WORKER_DIR, collect, run_pytest
from runner.env import PythonEnv, probe
from runner.errors import RunnerError
from runner.imports import closure, import_graph
from sandboxes.worktree import Worktree

FLAKY_RERUNS = 2
SCHEMA = 2

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
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "greenpatch" / "baselines"


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        line = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise RunnerError(f"git {args[0]} in {repo}: {line}")
    return done.stdout


class Baseline:
    """A stored baseline; read-only. Paths are relative to the repository root."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(str(path), check_same_thread=False)
        meta = dict(self._db.execute("SELECT key, value FROM meta"))
        self.commit: str = meta["commit"]
        self.env_hash: str = meta["env_hash"]
        self.seconds: float = float(meta["seconds"])
        rows = self._db.execute(
            "SELECT nodeid, outcome, seconds, message, frames, flaky FROM tests ORDER BY id"
        )
        self.records: dict[str, TestRecord] = {
            r[0]: TestRecord(
                r[0], r[1], r[2], r[3], tuple(map(tuple, json.loads(r[4]))), bool(r[5])
            )
            for r in rows
        }
        self.files: set[str] = set(json.loads(meta["files"]))
        self._graph: dict[str, set[str]] = {
            k: set(v) for k, v in json.loads(meta["imports"]).items()
        }
        self._file_ids = dict(self._db.execute("SELECT path, id FROM files"))
        self._test_ids = dict(self._db.execute("SELECT nodeid, id FROM tests"))
        self._test_names = {v: k for k, v in self._test_ids.items()}
        self._by_file: dict[str, dict[int, set[str]]] = {}
        self._deps: dict[str, frozenset[str]] = {}

    # --- what the suite looks like at this commit ----------------------------------------------

    @property
    def tests(self) -> list[str]:
        return list(self.records)

    @property
    def failing(self) -> list[str]:
        return [
            t for t, r in self.records.items() if r.outcome in ("failed", "error") and not r.flaky
        ]

    @property
    def passing(self) -> list[str]:
        return [t for t, r in self.records.items() if r.outcome == "passed" and not r.flaky]

    @property
    def flaky(self) -> list[str]:
        return [t for t, r in self.records.items() if r.flaky]

    @property
    def durations(self) -> dict[str, float]:
        return {t: r.seconds for t, r in self.records.items()}

    # --- coverage ------------------------------------------------------------------------------

    def coverage(self, test_id: str) -> dict[str, set[int]]:
        """{relpath: executed lines} of one test (empty if unknown)."""
        tid = self._test_ids.get(test_id)
        if tid is None:
            return {}
        names = {v: k for k, v in self._file_ids.items()}
        rows = self._db.execute("SELECT file, lines FROM coverage WHERE test = ?", (tid,))
        return {names[f]: set(json.loads(lines)) for f, lines in rows}

    def _line_index(self, path: str) -> dict[int, set[str]]:
        if path not in self._by_file:
            index: dict[int, set[str]] = {}
            fid = self._file_ids.get(path)
            if fid is not None:
                rows = self._db.execute("SELECT test, lines FROM coverage WHERE file = ?", (fid,))
                for tid, lines in rows:
                    name = self._test_names[tid]
                    for line in json.loads(lines):
                        index.setdefault(line, set()).add(name)
            self._by_file[path] = index
        return self._by_file[path]

    def tests_covering(self, path: str, lines: Iterable[int] | None = None) -> set[str]:
        """Tests that executed any of `lines` of `path` (any line at all when `lines` is None)."""
        index = self._line_index(path)
        wanted = index.keys() if lines is None else lines
        found: set[str] = set()
        for line in wanted:
            found |= index.get(line, set())
        return found

    def importers(self, path: str) -> set[str]:
        """Tests whose test module (or a conftest.py above it) imports `path`, transitively."""
        return {t for t in self.records if path in self.import_closure(t)}

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
        if test_id not in self.records:
            return None
        tid = self._test_ids[test_id]
        names = {v: k for k, v in self._file_ids.items()}
        executed = {
            names[f]
            for (f,) in self._db.execute("SELECT file FROM coverage WHERE test = ?", (tid,))
        }
        return executed | set(self.import_closure(test_id))

    def source(self, path: str) -> str | None:
        """A Python file's text at the baseline's commit; None if it had no such file."""
        row = self._db.execute("SELECT text FROM sources WHERE path = ?", (path,)).fetchone()
        return None if row is None else row[0]

    def close(self) -> None:
        self._db.close()


def baseline_key(tree: str, env: PythonEnv, pytest_args: Iterable[str]) -> str:
    raw = json.dumps([SCHEMA, tree, env.hash, list(pytest_args)])
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def build_baseline(
    repo_root: Path,
    python: str,
    *,
    pytest_args: Iterable[str] = (),
    workers: int = 2,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
    commit: str = "HEAD",
) -> Baseline:
    """The baseline of `commit` (default HEAD) of the repository at `repo_root`, from the cache
    if it was built before in the same environment, else by running the suite now."""
    repo_root = Path(repo_root).resolve()
    env = probe(python)
    sha = git(repo_root, "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}").strip()
    tree = git(repo_root, "rev-parse", f"{sha}^{{tree}}").strip()
    args = list(pytest_args)
    target = Path(cache_dir or default_cache_dir()) / f"{baseline_key(tree, env, args)}.sqlite"
    if target.exists():
        try:
            return Baseline(target)
        except (sqlite3.Error, KeyError, ValueError):
            target.unlink()  # an interrupted or older store: build it again
    if not env.has_coverage:
        raise RunnerError(
            f"coverage is not installed for {env.python}: the baseline needs it "
            "(pip install coverage)"
        )
    report = progress or (lambda stage, done, total: None)
    tree = Worktree.create(repo_root)
    try:
        if sha != git(repo_root, "rev-parse", "HEAD").strip():
            tree.git("checkout", "--quiet", "--detach", sha)
        _run(tree.path, env, args, workers, target, sha, report)
    finally:
        tree.remove()
    return Baseline(target)


def _run(
    root: Path, env: PythonEnv, args: list[str], workers: int, target: Path, sha: str, report
) -> None:
    started = time.monotonic()
    report("collect", 0, 1)
    tests = collect(env, root, args)
    report("collect", 1, 1)
    with tempfile.TemporaryDirectory(prefix="gp-baseline-") as tmp:
        out = Path(tmp, "run")
        out.mkdir()
        xdist = ["-n", str(workers)] if env.has_xdist and workers > 1 else []

        def poll() -> None:
            done = sum(_count_lines(p) for p in out.glob("results.*.jsonl"))
            report("run", min(done, len(tests)), len(tests))

        run_pytest(
            env,
            root,
            [*xdist, *args],
            {"GP_BASELINE_DIR": str(out), "GP_COVERAGE_SOURCE": str(root)},
            poll=poll,
        )
        records = _read_results(out, root)
        missing = [t for t in tests if t not in records]
        if len(missing) == len(tests):
            raise RunnerError(f"the baseline run of {root} produced no results")
        report("run", len(tests), len(tests))
        cov_json = Path(tmp, "coverage.json")
        done = subprocess.run(
            [env.python, str(WORKER_DIR / "gp_covdump.py"), str(out), str(root), str(cov_json)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            line = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise RunnerError(f"cannot read the baseline's coverage data: {line}")
        coverage = json.loads(cov_json.read_text())
        flaky = _find_flaky(env, root, args, records, tmp, report)
    files = git(root, "ls-files", "-z").split("\0")
    sources = {}
    for path in files:
        if path.endswith(".py"):
            try:
                sources[path] = (root / path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
    report("store", 0, 1)
    _store(target, sha, env, tests, records, flaky, coverage, sources, time.monotonic() - started)
    report("store", 1, 1)


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as handle:
            return sum(
                chunk.count(b'"event": "result"')
                for chunk in iter(lambda: handle.read(1 << 16), b"")
            )
    except OSError:
        return 0


def _read_results(out: Path, root: Path) -> dict[str, TestRecord]:
    prefix = str(root) + os.sep
    records: dict[str, TestRecord] = {}
    for path in sorted(out.glob("results.*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("event") != "result":
                continue
            frames = tuple((p.removeprefix(prefix), int(n)) for p, n in rec.get("frames") or ())
            records[rec["id"]] = TestRecord(
                rec["id"], rec["outcome"], float(rec["seconds"]), rec["message"], frames
            )
    return records


def _find_flaky(env, root, args, records, tmp, report) -> set[str]:
    """Re-run the failures; a test that passes in any re-run is flaky, not failing."""
    failing = [t for t, r in records.items() if r.outcome in ("failed", "error")]
    flaky: set[str] = set()
    for attempt in range(FLAKY_RERUNS):
        todo = [t for t in failing if t not in flaky]
        if not todo:
            break
        report("rerun", attempt, FLAKY_RERUNS)
        out = Path(tmp, f"rerun{attempt}")
        out.mkdir()
        run_pytest(env, root, [*args, *todo], {"GP_BASELINE_DIR": str(out)})
        for test, rec in _read_results(out, root).items():
            if test in records and rec.outcome == "passed":
                flaky.add(test)
    report("rerun", FLAKY_RERUNS, FLAKY_RERUNS)
    return flaky


def _store(target, sha, env, tests, records, flaky, coverage, sources, seconds) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.partial")
    partial.unlink(missing_ok=True)
    db = sqlite3.connect(str(partial))
    with db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        db.execute(
            "CREATE TABLE tests (id INTEGER PRIMARY KEY, nodeid TEXT UNIQUE, outcome TEXT, "
            "seconds REAL, message TEXT, frames TEXT, flaky INTEGER)"
        )
        db.execute("CREATE TABLE files (id INTEGER PRIMARY KEY, path TEXT UNIQUE)")
        db.execute("CREATE TABLE coverage (test INTEGER, file INTEGER, lines TEXT)")
        db.execute("CREATE TABLE sources (path TEXT PRIMARY KEY, text TEXT)")
        db.executemany("INSERT INTO sources VALUES (?, ?)", sources.items())
        graph = import_graph(sources)
        meta = {
            "commit": sha,
            "env_hash": env.hash,
            "python": env.python,
            "seconds": str(seconds),
            "files": json.dumps(sorted(sources)),
            "imports": json.dumps({k: sorted(v) for k, v in graph.items()}),
        }
        db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
        file_ids: dict[str, int] = {}
        for number, test in enumerate(t for t in tests if t in records):
            rec = records[test]
            db.execute(
                "INSERT INTO tests VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    number,
                    test,
                    rec.outcome,
                    rec.seconds,
                    rec.message,
                    json.dumps(rec.frames),
                    int(test in flaky),
                ),
            )
            for path, lines in coverage.get(test, {}).items():
                if path not in file_ids:
                    file_ids[path] = len(file_ids)
                    db.execute("INSERT INTO files VALUES (?, ?)", (file_ids[path], path))
                db.execute(
                    "INSERT INTO coverage VALUES (?, ?, ?)",
                    (number, file_ids[path], json.dumps(lines)),
                )
        db.execute("CREATE INDEX coverage_file ON coverage (file)")
        db.execute("CREATE INDEX coverage_test ON coverage (test)")
    db.close()
    os.replace(partial, target)
