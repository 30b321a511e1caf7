"""The warm test worker: runs in the TARGET project's interpreter, inside a sandbox.

Standalone: the standard library, the target's pytest and the sibling `gp_plugin` only; it never
imports greenpatch, so a project's own `runner` or `model` package cannot collide with ours.

    python worker.py WORKTREE [PYTEST_ARG ...]

Start-up: pre-imports pytest and the third-party modules the suite imports (found by a collection
run in a throw-away child) but none of the project's own modules, then prints
`{"event": "ready", ...}`. Then, for each job line on stdin
`{"job", "files": {relpath: text | null}, "tests": [...], "fail_fast", "test_timeout",
"job_timeout"}` it forks a child that writes the candidate's files into the worktree and runs the
tests in-process, streaming `{"event": "start"|"result", "job", ...}` lines; then the parent
restores the worktree and prints `{"event": "done", "job", "reason"}`. While a job runs,
`{"cancel": JOB}` on stdin stops it.
A test that outlives `test_timeout`, or a job that outlives `job_timeout`, gets its child's process
group killed, after the stack of the test it was running is asked for (`stack_of`); a child
that dies (signal, `os._exit`) has its current test reported as crashed and the remaining tests
go on in a new child.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import re
import select
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence

# Our tools (coverage.py) for an interpreter that lacks them: appended, so the project's own
# copy, if it has one, wins.
if os.environ.get("GP_OVERLAY"):
    sys.path.append(os.environ["GP_OVERLAY"])
ROOT = os.path.realpath(sys.argv[1])
PYTEST_ARGS = sys.argv[2:]
# pytest options whose value is the next argument (a value is never a test path).
VALUE_OPTIONS = {"-k", "-m", "-p", "-c", "-o", "-W", "--rootdir", "--deselect", "--ignore",
                 "--ignore-glob", "--confcutdir", "--basetemp", "--import-mode", "--tb",
                 "--override-ini", "--maxfail", "--durations", "--junitxml", "-r"}  # fmt: skip


def options_only(args: list[str]) -> list[str]:
    """`args` without the test paths in it: a job names its own tests, and paths given too
    would run their whole trees again beside them."""
    kept = []
    for index, arg in enumerate(args):
        after_option = index > 0 and args[index - 1] in VALUE_OPTIONS
        path = arg.split("::", 1)[0]
        if not (arg.startswith("-") or after_option) and os.path.exists(os.path.join(ROOT, path)):
            continue
        kept.append(arg)
    return kept


JOB_ARGS = options_only(PYTEST_ARGS)
# What the start-up collection covers when not the whole suite (JSON list of paths).
STARTUP_ARGS = json.loads(os.environ.get("GP_STARTUP_ARGS") or "null")


# GP_COLD=1: every job runs in a fresh `python -m pytest` process, nothing pre-imported or
# parsed once: the baseline that warm workers are measured against (same protocol, same limits).
COLD = os.environ.get("GP_COLD") == "1"
BASE_ARGS = [
    "-p",
    "no:cacheprovider",
    "-q",
    "--tb=short",
    "-o",
    "console_output_style=classic",
    # Plugins are imported before pytest can mark them for assertion rewriting (that is the point
    # of a warm worker); the warning says so, and `filterwarnings = error` would make it fatal.
    "-W",
    "ignore::pytest.PytestAssertRewriteWarning",
]
LOG_TAIL = 3000
# Set by isolated backends, where /tmp (also HOME) is this worker's own tmpfs: nothing a job's
# tests leave there may reach the next job.
PRIVATE_TMP = os.environ.get("GP_PRIVATE_TMP") == "1"
# Why every job runs in a fresh pytest process although this worker is warm ("" if it does not).
FRESH_WHY = ""


def fresh_process() -> bool:
    return COLD or bool(FRESH_WHY)


class Stdin:
    """Lines from fd 0 read unbuffered, so `select` on the descriptor never misses one."""

    def __init__(self) -> None:
        self.buffer = b""
        self.eof = False

    def pending(self) -> bool:
        return b"\n" in self.buffer

    def fill(self) -> None:
        chunk = os.read(0, 1 << 16)
        self.buffer += chunk
        self.eof = not chunk

    def readline(self) -> str | None:
        """The next line (blocking); None at end of input."""
        while not self.pending() and not self.eof:
            self.fill()
        if not self.pending():
            return None
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode("utf-8")


STDIN = Stdin()


def emit(record: dict) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def under_root(path: str | None) -> bool:
    return bool(path) and os.path.realpath(path).startswith(ROOT + os.sep)


def project_top_names() -> set[str]:
    """Top-level module names the project itself defines (in the root and in src/)."""
    names = set()
    for base in (ROOT, os.path.join(ROOT, "src")):
        with contextlib.suppress(OSError):
            for entry in os.listdir(base):
                full = os.path.join(base, entry)
                if entry.endswith(".py"):
                    names.add(entry[:-3])
                elif os.path.isfile(os.path.join(full, "__init__.py")):
                    names.add(entry)
    return names


def is_project_module(name: str, module, tops: set[str]) -> bool:
    return name.split(".")[0] in tops or under_root(getattr(module, "__file__", None))


# --- start-up ----------------------------------------------------------------------------------


def collect_suite() -> dict:
    """A collection of the suite, run in a child so the parent stays clean: which modules it
    imports ("modules"), and the test ids and collection errors pytest found ("tests", "errors";
    tests is None when collection did not finish).

    The child also leaves bytecode caches behind (project modules, rewritten test modules), so
    jobs import from .pyc instead of compiling.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        code = 1
        try:
            import gp_plugin
            import pytest

            # Whatever the environment says (PYTHONDONTWRITEBYTECODE is common in images): the
            # worktree is ours, and its bytecode is what spares every job compiling the project.
            sys.dont_write_bytecode = False
            found = {"tests": None, "errors": []}
            grab = gp_plugin.Collector(lambda line: found.update(json.loads(line)))
            # Only what the first jobs need when the pool says so (a ticket's test files).
            args = PYTEST_ARGS if STARTUP_ARGS is None else [*JOB_ARGS, *STARTUP_ARGS]
            pytest.main([*BASE_ARGS, "--collect-only", *args], plugins=[grab])
            names = [n for n, m in list(sys.modules.items()) if m is not None]
            found = {"modules": names, "tests": found["tests"], "errors": found["errors"]}
            os.write(write_fd, json.dumps(found).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 1 << 16):
        chunks.append(chunk)
    os.close(read_fd)
    os.waitpid(pid, 0)
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        return {"modules": [], "tests": None, "errors": []}


def cache_entry_points() -> None:
    """Scan installed distributions for plugin entry points once, not in every job.

    pytest asks pluggy to load its `pytest11` entry points at every `pytest.main`; walking all
    distributions' metadata costs tens of milliseconds a time. Same semantics, scanned once.
    """
    from importlib import metadata

    import pluggy

    found: dict[str, list] = {}
    for dist in list(metadata.distributions()):
        for ep in dist.entry_points:
            found.setdefault(ep.group, []).append((dist, ep))

    def load_setuptools_entrypoints(self, group: str, name: str | None = None) -> int:
        count = 0
        for dist, ep in found.get(group, ()):
            if (name is not None and ep.name != name) or self.has_plugin(ep.name):
                continue
            if self.is_blocked(ep.name):
                continue
            plugin = ep.load()
            self.register(plugin, name=ep.name)
            self._plugin_distinfo.append((plugin, dist))
            count += 1
        return count

    pluggy.PluginManager.load_setuptools_entrypoints = load_setuptools_entrypoints


def preload() -> tuple[int, dict]:
    """Import what every job needs; (modules imported, the start-up collection)."""
    if COLD:
        return 0, {"tests": None, "errors": []}
    import gp_plugin  # noqa: F401
    import pytest  # noqa: F401 - the point is to have it imported before any fork

    global FRESH_WHY
    tops = project_top_names()
    own = sorted(n for n, m in sys.modules.items() if m and is_project_module(n, m, tops))
    if own:
        # The project is something pytest itself runs on (pluggy, iniconfig...): a warm pytest
        # would run on one copy while the tests import the candidate's. Fresh processes then.
        FRESH_WHY = f"pytest itself imports the project's {', '.join(own[:3])}"
        return 0, collect_suite()
    cache_entry_points()
    loaded = 0
    suite = collect_suite()
    for name in suite["modules"]:
        if name in sys.modules or name.split(".")[0] in tops or name.startswith("__main__"):
            continue
        if name.startswith(("conftest", "test_")) or "." not in name and name.endswith("_test"):
            continue
        spec = None
        with contextlib.suppress(Exception):
            spec = importlib.util.find_spec(name)
        if spec is None or under_root(spec.origin):
            continue
        try:
            importlib.import_module(name)
            loaded += 1
        except BaseException:  # noqa: BLE001 - a module that will not import warm imports later
            continue
    WARM.prepare(tops)
    # A third-party module may have pulled in project code (a plugin, a dependency cycle): drop it
    # so every job imports the project fresh from its worktree.
    for name, module in list(sys.modules.items()):
        if module is not None and is_project_module(name, module, tops):
            del sys.modules[name]
    # Objects that exist now live for the worker's lifetime: keeping them out of the collector
    # spares every child pytest's gc.collect() calls over them (and copy-on-write of their pages).
    gc.collect()
    gc.freeze()
    return loaded, suite


class WarmConfig:
    """pytest's configuration, parsed once in the parent instead of in every job.

    Parsing the command line and ini files, importing and registering ~40 plugins and loading the
    initial conftests is most of a small job's cost (~20 of ~38 ms). Each forked child takes the
    parent's parsed `Config`, sets its own test ids and options, and runs the session from
    `pytest_cmdline_main` on, exactly as `pytest.main` would after parsing. Not used (a job falls
    back to a full `pytest.main`) when parsing failed, when a conftest loaded during parsing
    pulled in project code (it would be stale under a candidate), when a job replaces a file
    parsing read, or when a test lives under a directory with its own ini file (pytest would pick
    a different rootdir/ini for those arguments).
    """

    INI_FILES = ("pytest.ini", ".pytest.ini", "tox.ini", "setup.cfg", "pyproject.toml")

    def __init__(self) -> None:
        self.config = None
        self.why = ""  # why jobs cannot use a configuration parsed once
        self.read: set[str] = set()
        self.maxfail = 0
        self.deselect: list[str] = []
        self._ini_dirs: dict[str, bool] = {}

    def prepare(self, tops: set[str]) -> None:
        import pytest
        from _pytest.config import Config, _prepareconfig

        if not hasattr(Config, "ArgsSource"):
            self.why = f"pytest {pytest.__version__} predates the session entry jobs reuse"
            return
        before = set(sys.modules)
        saved = [os.dup(fd) for fd in (0, 1, 2)]
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            # pytest's capture saves the descriptors it finds now and restores them in every
            # job: they must be the job log, never this worker's protocol pipes.
            os.dup2(devnull, 0)
            os.dup2(LOG.fd, 1)
            os.dup2(LOG.fd, 2)
            os.environ["PYTEST_VERSION"] = pytest.__version__
            config = _prepareconfig([*BASE_ARGS, *PYTEST_ARGS], None)
        except BaseException as exc:  # noqa: BLE001 - jobs run (and report) a full pytest.main
            self.why = f"parsing failed: {exc!r}"
            return
        finally:
            for fd, copy in zip((0, 1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)
            os.close(devnull)
        loaded = {n: m for n, m in sys.modules.items() if n not in before and m is not None}
        # Conftests and the test packages holding them are test code, not code under test.
        conftests = {n for n in loaded if n.rsplit(".", 1)[-1] == "conftest"}
        conftests |= {n for n in loaded if any(c.startswith(n + ".") for c in conftests)}
        project = [
            n for n, m in loaded.items() if n not in conftests and is_project_module(n, m, tops)
        ]
        if project:
            self.why = f"parsing imported project modules: {', '.join(sorted(project)[:5])}"
            return
        self.read = {
            os.path.realpath(m.__file__) for m in loaded.values() if under_root(m.__file__)
        }
        self.maxfail = config.option.maxfail
        self.deselect = list(config.option.deselect or [])
        self.config = config

    def _own_ini(self, test: str) -> bool:
        directory = os.path.dirname(os.path.join(ROOT, test.split("::")[0]))
        while directory.startswith(ROOT + os.sep):
            if directory not in self._ini_dirs:
                self._ini_dirs[directory] = any(
                    os.path.exists(os.path.join(directory, f)) for f in self.INI_FILES
                )
            if self._ini_dirs[directory]:
                return True
            directory = os.path.dirname(directory)
        return False

    def usable(self, files: Files, tests: list[str]) -> bool:
        if self.config is None:
            return False
        if any(files.path(rel) in self.read for rel in files.new):
            return False
        return not any(self._own_ini(t) for t in tests)

    def run(self, tests: list[str], fail_fast: bool, deselect: list[str], reporter) -> int:
        """In the child: the session of `pytest.main` on the parsed configuration."""
        from _pytest.config import Config

        config = self.config
        config.args = list(tests)
        config.args_source = Config.ArgsSource.ARGS
        config.option.file_or_dir = list(config.args)
        config.option.maxfail = 1 if fail_fast else self.maxfail
        config.option.deselect = [*self.deselect, *deselect]
        config.pluginmanager.register(reporter, "gp-reporter")
        try:
            return int(config.hook.pytest_cmdline_main(config=config))
        finally:
            config._ensure_unconfigure()


class JobLog:
    """One log file for the worker's jobs (pytest's own output), emptied before each job."""

    def __init__(self) -> None:
        self.fd, self.path = tempfile.mkstemp(prefix="gp-worker-", suffix=".log")
        os.close(self.fd)
        # Append mode: children share the descriptor, and writes land after a truncation.
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def clear(self) -> None:
        os.ftruncate(self.fd, 0)

    def tail(self) -> str:
        return self.since(max(0, self.size() - LOG_TAIL)).strip()

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def since(self, mark: int, limit: int = 1 << 16) -> str:
        """What was written after the log held `mark` bytes (at most `limit` bytes)."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(mark)
                return handle.read(limit).decode("utf-8", "replace")
        except OSError:
            return ""

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
            os.unlink(self.path)


LOG = JobLog()
WARM = WarmConfig()


# --- one job -----------------------------------------------------------------------------------


class Files:
    """The worktree files a job replaces, with their original bytes and times for restoring."""

    def __init__(self, files: dict[str, str | None]) -> None:
        self.new = files
        self.old: dict[str, tuple[bytes, int, int] | None] = {}
        for rel in files:
            path = self.path(rel)
            try:
                st = os.stat(path)
                with open(path, "rb") as handle:
                    self.old[rel] = (handle.read(), st.st_atime_ns, st.st_mtime_ns)
            except FileNotFoundError:
                self.old[rel] = None

    @staticmethod
    def path(rel: str) -> str:
        path = os.path.realpath(os.path.join(ROOT, rel))
        if not path.startswith(ROOT + os.sep):
            raise ValueError(f"path outside the worktree: {rel}")
        return path

    def write_candidate(self) -> None:
        for rel, text in self.new.items():
            path = self.path(rel)
            if text is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                continue
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
            # A .pyc is valid while the source's (mtime in seconds, size) match; a candidate of
            # the same size written within the same second must not pass for the original.
            old = self.old[rel]
            if old is not None:
                stamp = old[2] - 7_000_000_000
                os.utime(path, ns=(stamp, stamp))

    def restore(self) -> None:
        for rel, old in self.old.items():
            path = self.path(rel)
            if old is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                continue
            with open(path, "wb") as handle:
                handle.write(old[0])
            os.utime(path, ns=(old[1], old[2]))


def tmp_stamps() -> dict[str, tuple[int, int, int] | None]:
    """Every path under /tmp: files by (inode, size, ctime), directories as None."""
    stamps: dict[str, tuple[int, int, int] | None] = {}
    for top, dirs, files in os.walk("/tmp"):
        for name in dirs:
            stamps[os.path.join(top, name)] = None
        for name in files:
            path = os.path.join(top, name)
            with contextlib.suppress(OSError):
                st = os.lstat(path)
                stamps[path] = (st.st_ino, st.st_size, st.st_ctime_ns)
    return stamps


# What the start-up left in /tmp (HOME: a library's font or compile caches), kept while untouched.
TMP_KEPT: dict[str, tuple[int, int, int] | None] = {}


def clear_tmp() -> None:
    """Empty the private /tmp of what the last job left: anything new or touched goes; what the
    start-up made stays while its inode, size and ctime (which no process can set) are as then."""
    keep = os.path.realpath(LOG.path)
    now = tmp_stamps()
    for path in sorted(now, key=len, reverse=True):  # children before their directories
        if path == keep or (path in TMP_KEPT and now[path] == TMP_KEPT[path]):
            continue
        with contextlib.suppress(OSError):
            if now[path] is None and not os.path.islink(path):
                os.rmdir(path) if path in TMP_KEPT else shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)


def cold_exec(job: dict, tests: list[str], done: set[str], write_fd: int) -> None:
    """Replace the child by a fresh pytest process whose plugin writes to `write_fd`."""
    os.set_inheritable(write_fd, True)
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, GP_RESULTS_FD=str(write_fd), PYTHONDONTWRITEBYTECODE="1")
    if job.get("coverage"):
        env["GP_COVERAGE"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH", "")) if p)
    deselect = [a for d in done if d not in tests for a in ("--deselect", d)]
    fail_fast = ["-x"] if job.get("fail_fast") else []
    args = [*BASE_ARGS, "-p", "gp_plugin", *JOB_ARGS, *fail_fast, *deselect, *tests]
    os.execve(sys.executable, [sys.executable, "-m", "pytest", *args], env)


# How long a test's stack dump may take to reach the log after the signal (the child must be
# scheduled on a busy machine), and how long the log must stop growing for the dump to count
# as written.
STACK_WAIT = 2.0
STACK_SETTLE = 0.1
_FRAME = re.compile(r'^\s*File "(.+)", line (\d+) in ', re.M)


def stack_of(pid: int) -> list[list]:
    """The project frames, innermost last, of the test the child `pid` is running: it dumps
    its stack to the job log on gp_plugin.STACK_SIGNAL (SIGUSR1; `gp_plugin.arm_stack_dump`).
    Empty when it does not answer in time (a test may have replaced the handler)."""
    import gp_plugin  # imported at start-up (`preload`): it is the child's signal and frames

    mark = LOG.size()
    try:
        os.kill(pid, gp_plugin.STACK_SIGNAL)
    except ProcessLookupError:
        return []
    until, last, still = time.monotonic() + STACK_WAIT, mark, 0.0
    while time.monotonic() < until:
        time.sleep(0.02)
        size = LOG.size()
        still = still + 0.02 if size == last else 0.0
        if size > mark and still >= STACK_SETTLE:  # written, and no longer growing
            break
        last = size
    text = LOG.since(mark)
    block = text[text.rfind("(most recent call first):"):]
    prefix = ROOT + os.sep
    frames = [[path, int(n)] for path, n in _FRAME.findall(block) if path.startswith(prefix)]
    return frames[::-1][-gp_plugin.FRAMES:]


def run_child(job: dict, tests: list[str], done: set[str], files: Files, write_fd: int) -> None:
    """In the forked child: own process group, candidate files in place, pytest in-process."""
    code = 70
    try:
        os.setpgid(0, 0)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(LOG.fd, 1)
        os.dup2(LOG.fd, 2)
        sys.dont_write_bytecode = True
        files.write_candidate()
        if fresh_process() and job.get("collect") is None:
            cold_exec(job, tests, done, write_fd)
        importlib.invalidate_caches()
        out = os.fdopen(write_fd, "w", buffering=1, encoding="utf-8")

        import gp_plugin
        import pytest

        if job.get("collect") is not None:
            named = job["collect"]
            args = [*BASE_ARGS, *(JOB_ARGS if named else PYTEST_ARGS), "--collect-only", *named]
            code = int(pytest.main(args, plugins=[gp_plugin.Collector(out.write)]))
            out.write(json.dumps({"event": "exit", "code": code}) + "\n")
            out.flush()
            return
        cov = None
        if job.get("coverage"):
            try:
                import coverage
            except ImportError as exc:
                # Our tool, not the project's failure: the job reports it instead of results.
                out.write(json.dumps({"event": "tool_error", "message": repr(exc)}) + "\n")
                out.flush()
                return

            # In memory (no data file): the per-test lines go back over the result pipe.
            cov = coverage.Coverage(data_file=None, source=[ROOT], config_file=False)
            cov.start()
        # After a crash, a whole-file entry runs again without the tests already reported.
        deselect = [d for d in done if d not in tests]
        fail_fast = bool(job.get("fail_fast"))
        reporter = gp_plugin.ResultStream(out.write, cov)
        if WARM.usable(files, tests):
            code = WARM.run(tests, fail_fast, deselect, reporter)
        else:
            args = [
                *BASE_ARGS,
                *JOB_ARGS,
                *(["-x"] if fail_fast else []),
                *(a for d in deselect for a in ("--deselect", d)),
                *tests,
            ]
            code = int(pytest.main(args, plugins=[reporter]))
        if cov is not None:
            cov.stop()
            for test, lines in gp_plugin.per_test_lines(cov, ROOT).items():
                out.write(json.dumps({"event": "coverage", "id": test, "lines": lines}) + "\n")
        out.write(json.dumps({"event": "exit", "code": code}) + "\n")
        out.flush()
    except BaseException as exc:  # noqa: BLE001 - report whatever broke, then leave
        with contextlib.suppress(Exception):
            line = json.dumps({"event": "child_error", "message": repr(exc)}) + "\n"
            os.write(write_fd, line.encode())
    finally:
        os._exit(code)


def describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        with contextlib.suppress(ValueError):
            return f"killed by signal {sig} ({signal.Signals(sig).name})"
        return f"killed by signal {sig}"
    return f"exited with code {os.WEXITSTATUS(status)}"


class JobRun:
    """The parent's side of one job: children, watchdogs, cancellation, result relay."""

    def __init__(self, job: dict) -> None:
        self.job = job
        self.id = job["job"]
        self.test_timeout = float(job.get("test_timeout") or 60.0)
        self.deadline = time.monotonic() + float(job.get("job_timeout") or 600.0)
        self.fail_fast = bool(job.get("fail_fast"))
        self.done: set[str] = set()
        self.failed = False
        self.reason = "ok"
        self.cpu = 0.0  # CPU seconds of the forked children: the job's cost, whatever the load
        self.agrees = True  # the last child's exit agreed with what it reported

    def result(self, test: str, outcome: str, message: str, seconds: float = 0.0,
               frames: Sequence[list] = ()) -> None:
        self.done.add(test)
        self.failed = self.failed or outcome in ("failed", "error")
        emit(
            {
                "event": "result",
                "job": self.id,
                "id": test,
                "outcome": outcome,
                "seconds": round(seconds, 6),
                "message": message,
                "frames": list(frames),
            }
        )

    def run(self) -> None:
        try:
            files = Files(self.job.get("files") or {})
        except ValueError as exc:
            for test in self.job["tests"]:
                self.result(test, "error", str(exc))
            self.reason = "bad job"
            return
        tests = list(self.job["tests"])
        try:
            if self.job.get("collect") is not None:
                self.run_once([], files)
                return
            while tests and self.reason == "ok":
                if not self.run_once(tests, files):
                    break
                tests = [t for t in tests if t not in self.done]
                if self.fail_fast and self.failed:
                    self.reason = "fail_fast"
        finally:
            files.restore()

    def cancelled(self) -> bool:
        """Whether stdin asked to cancel this job (other lines wait for the main loop)."""
        keep = []
        found = False
        for line in STDIN.buffer.split(b"\n")[:-1]:
            with contextlib.suppress(ValueError):
                if json.loads(line).get("cancel") == self.id:
                    found = True
                    continue
            keep.append(line + b"\n")
        if found:
            STDIN.buffer = b"".join(keep) + STDIN.buffer.rsplit(b"\n", 1)[-1]
        return found

    def is_done(self, entry: str) -> bool:
        # A whole-file entry is done once any of its tests reported.
        if entry in self.done:
            return True
        return "::" not in entry and any(d.startswith(entry + "::") for d in self.done)

    def run_once(self, tests: list[str], files: Files) -> bool:
        """One child over `tests`; True if it died mid-test and the rest should go on."""
        read_fd, write_fd = os.pipe()
        LOG.clear()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            run_child(self.job, tests, self.done, files, write_fd)
        os.close(write_fd)
        current: str | None = None
        current_start = 0.0
        exit_code: int | None = None
        killed: str | None = None
        frames: list[list] = []
        child_error = ""
        child_failed = False
        child_reported = 0
        buffer = b""
        try:
            while True:
                now = time.monotonic()
                limit = self.deadline
                if current is not None:
                    limit = min(limit, current_start + self.test_timeout)
                if now >= limit:
                    killed = "test" if current is not None and limit < self.deadline else "job"
                    if current is not None:  # where it hung localizes the bug, either way
                        frames = stack_of(pid)
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
                    break
                watch = [read_fd] if STDIN.eof else [read_fd, 0]
                ready, _, _ = select.select(watch, [], [], limit - now)
                if 0 in ready:
                    STDIN.fill()
                if self.cancelled():
                    killed = "cancel"
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
                    break
                if read_fd not in ready:
                    continue
                chunk = os.read(read_fd, 1 << 16)
                if not chunk:
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for raw in lines:
                    record = json.loads(raw)
                    event = record.get("event")
                    if event == "start":
                        current, current_start = record["id"], time.monotonic()
                        emit({"event": "start", "job": self.id, "id": current})
                    elif event == "result":
                        current = None
                        self.done.add(record["id"])
                        child_failed = child_failed or record["outcome"] in ("failed", "error")
                        child_reported += 1
                        self.failed = self.failed or child_failed
                        emit({**record, "job": self.id})
                    elif event in ("collect_error", "collected", "coverage"):
                        emit({**record, "job": self.id})
                    elif event == "exit":
                        exit_code = record["code"]
                    elif event == "child_error":
                        child_error = record["message"]
                    elif event == "tool_error":
                        self.reason = "tool error"
                        emit({**record, "job": self.id})
        finally:
            os.close(read_fd)
            _, status, usage = os.wait4(pid, 0)
            self.cpu += usage.ru_utime + usage.ru_stime
            if fresh_process() and exit_code is None and os.WIFEXITED(status) and not killed:
                exit_code = os.WEXITSTATUS(status)  # a fresh pytest reports it by exiting
            # Whatever the child started in its group (subprocesses, forks) dies with it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            tail = LOG.tail()
        self.agrees = self.exit_agrees(exit_code, status, child_failed, child_reported)
        return self.settle(
            tests, current, current_start, killed, exit_code, status, child_error, tail, frames
        )

    @staticmethod
    def exit_agrees(exit_code: int | None, status: int, failed: bool, reported: int) -> bool:
        """pytest's own exit event, the child's real exit status and its outcomes agree (a
        child left with nothing to run, after a crash or timeout, reports none and exits 5)."""
        if exit_code is None or not os.WIFEXITED(status) or os.WEXITSTATUS(status) != exit_code:
            return False
        if reported == 0 and exit_code == 5:
            return True
        return exit_code == (1 if failed else 0)

    def settle(
        self, tests, current, current_start, killed, exit_code, status, child_error, tail, frames
    ) -> bool:
        """Account for tests the child did not report: timed out, crashed, or never reached."""
        elapsed = time.monotonic() - current_start
        if self.reason == "tool error":
            return False
        if killed == "cancel":
            self.reason = "cancelled"
            return False
        if killed == "test":
            self.result(
                current, "failed", f"timeout: test ran longer than {self.test_timeout:g} s",
                elapsed, frames,
            )
            return True
        if killed == "job":
            self.reason = "timeout"
            if current is not None:
                self.result(current, "failed", "timeout: the job ran out of time", elapsed, frames)
            return False
        if current is not None:
            self.result(
                current, "failed", f"crashed: the test process {describe_status(status)}", elapsed
            )
            return True
        remaining = [t for t in tests if not self.is_done(t)]
        if not remaining and tests and not self.agrees:
            # Every test reported, yet pytest did not end as a session that ran them ends: the
            # results may be the tests' own writing (a forged green). Nothing of it is trusted.
            self.reason = "unverified"
            return False
        if not remaining or (exit_code in (1, 2) and self.fail_fast and self.failed):
            if remaining:
                self.reason = "fail_fast"
            return False
        # pytest finished without running these: collection errors, usage errors, an import-time
        # crash. Each is an error with pytest's own words.
        why = child_error or (
            f"not run: pytest {describe_status(status)}"
            if exit_code is None
            else f"not run: pytest exit code {exit_code}"
        )
        message = why + ("\n" + tail if tail else "")
        for test in remaining:
            self.result(test, "error", message[-LOG_TAIL:])
        return False


def main() -> None:
    os.chdir(ROOT)
    started = time.monotonic()
    try:
        loaded, suite = preload()
        if PRIVATE_TMP:
            TMP_KEPT.update(tmp_stamps())
        emit(
            {
                "event": "ready",
                "pid": os.getpid(),
                "preloaded": loaded,
                # What pytest collects of the suite: the pool asks no second time.
                "tests": suite["tests"],
                "collect_errors": suite["errors"],
                "parsed_once": WARM.config is not None,
                "parsed_once_not_because": WARM.why,
                "fresh_processes_because": FRESH_WHY,
                "seconds": round(time.monotonic() - started, 3),
            }
        )
        while (line := STDIN.readline()) is not None:
            if not line.strip():
                continue
            job = json.loads(line)
            if "cancel" in job:
                continue  # for a job that already finished
            run = JobRun(job)
            run.run()
            if PRIVATE_TMP:
                clear_tmp()
            emit({"event": "done", "job": run.id, "reason": run.reason, "cpu": round(run.cpu, 6)})
    finally:
        LOG.remove()


if __name__ == "__main__":
    main()
