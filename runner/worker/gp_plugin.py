"""A pytest plugin that reports one JSON line per test, and optionally per-test line coverage.

Standalone on purpose: it is loaded by the TARGET project's interpreter (the warm worker and the
baseline run), so it imports only the standard library, pytest and, for coverage, coverage.py.

Each line is `{"event": "start", "id": ...}` when a test begins and
`{"event": "result", "id", "outcome", "seconds", "message", "frames"}` when it ends; collection
problems are `{"event": "collect_error", "id", "message"}`. Outcomes: passed, failed, error
(setup/teardown), skipped (xfail included: plain pytest counts it neither passed nor failed).
"""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import sys
import time

import pytest

MESSAGE_CHARS = 2000
FRAMES = 30
# The worker sends this before it kills a test for running too long: the test's stack is
# dumped to the job log (`arm_stack_dump`), and its frames localize a hang as a traceback
# would (the test's coverage dies with it).
STACK_SIGNAL = signal.SIGUSR1
_stack_out = None


def _trim(text: str) -> str:
    # The end of a traceback (the assertion, the innermost frames) is what localizes a failure.
    if len(text) <= MESSAGE_CHARS:
        return text
    return "...\n" + text[-MESSAGE_CHARS:]


def arm_stack_dump() -> None:
    """On STACK_SIGNAL, write the stack of the running code (faulthandler's format, from
    the signal handler itself, so a loop that never returns to Python code is caught too)
    to a copy of descriptor 2 as it is now: the job log (pytest's capture replaces 2 while a
    test runs)."""
    global _stack_out
    if _stack_out is None:
        _stack_out = os.fdopen(os.dup(2), "w")
        faulthandler.register(STACK_SIGNAL, file=_stack_out, all_threads=False)


class ResultStream:
    """Aggregates setup/call/teardown reports into one record per test and writes it out."""

    def __init__(self, write, coverage=None) -> None:
        arm_stack_dump()
        self._write = write
        self._coverage = coverage
        self._state: dict[str, dict] = {}

    def _emit(self, record: dict) -> None:
        self._write(json.dumps(record) + "\n")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        nodeid = item.nodeid
        self._state[nodeid] = {"outcome": "passed", "seconds": 0.0, "message": "", "frames": []}
        self._emit({"event": "start", "id": nodeid})
        if self._coverage is not None:
            self._coverage.switch_context(nodeid)
        start = time.perf_counter()
        yield
        if self._coverage is not None:
            self._coverage.switch_context("")
        state = self._state.pop(nodeid)
        state["seconds"] = round(time.perf_counter() - start, 6)
        self._emit({"event": "result", "id": nodeid, **state})

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        state = self._state.get(item.nodeid)
        if state is None or call.excinfo is None or state["frames"]:
            return
        # The project's frames of the failure, innermost last, for fault localization.
        root = str(item.config.rootpath) + os.sep
        frames = []
        for entry in call.excinfo.traceback:
            path = str(getattr(entry, "path", ""))
            if path.startswith(root):
                frames.append([path, entry.lineno + 1])
        state["frames"] = frames[-FRAMES:]
        del outcome

    def pytest_runtest_logreport(self, report) -> None:
        state = self._state.get(report.nodeid)
        if state is None:
            return
        if report.when == "call":
            if hasattr(report, "wasxfail"):
                state["outcome"] = "passed" if report.passed else "skipped"
                if report.skipped:
                    state["message"] = f"xfail: {report.wasxfail}"
                return
            if report.failed:
                state["outcome"] = "failed"
                state["message"] = _trim(report.longreprtext)
            elif report.skipped:
                state["outcome"] = "skipped"
                state["message"] = _skip_reason(report)
        elif report.failed and state["outcome"] != "failed":
            state["outcome"] = "error"
            state["message"] = _trim(f"error in {report.when}:\n{report.longreprtext}")
        elif report.skipped and report.when == "setup":
            state["outcome"] = "skipped"
            state["message"] = _skip_reason(report)

    def pytest_collectreport(self, report) -> None:
        if report.failed:
            message = _trim(report.longreprtext)
            self._emit({"event": "collect_error", "id": report.nodeid, "message": message})


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


class Collector:
    """Writes the collected test ids and collection errors as one JSON line."""

    def __init__(self, write) -> None:
        self._write = write
        self.errors: list[dict] = []

    def pytest_collectreport(self, report) -> None:
        if report.failed:
            self.errors.append({"id": report.nodeid, "message": _trim(report.longreprtext)})

    def pytest_collection_finish(self, session) -> None:
        record = {
            "event": "collected",
            "tests": [i.nodeid for i in session.items],
            "errors": self.errors,
        }
        self._write(json.dumps(record) + "\n")


def per_test_lines(cov, root: str) -> dict[str, dict[str, list[int]]]:
    """{test id: {relpath under root: executed lines}} from a stopped Coverage with contexts."""
    data = cov.get_data()
    prefix = root + os.sep
    per_test: dict[str, dict[str, list[int]]] = {}
    for measured in data.measured_files():
        real = os.path.realpath(measured)
        if not real.startswith(prefix):
            continue
        rel = real[len(prefix) :]
        for line, contexts in data.contexts_by_lineno(measured).items():
            for context in contexts:
                if context:
                    per_test.setdefault(context, {}).setdefault(rel, []).append(line)
    return per_test


# --- loaded with `-p gp_plugin`, configured through the environment: -------------------------
# GP_RESULTS_FD=n: results as JSON lines on descriptor n (a job in a fresh pytest process);
# GP_COVERAGE=1 as well: per-test lines too, from the root directory's files.


class SessionEnd:
    """Reports pytest's exit status as the session ends, and the per-test lines if measured."""

    def __init__(self, write, cov) -> None:
        self._write = write
        self._cov = cov

    def pytest_sessionfinish(self, session, exitstatus) -> None:
        if self._cov is not None:
            self._cov.stop()
            root = os.path.realpath(str(session.config.rootpath))
            for test, lines in per_test_lines(self._cov, root).items():
                self._write(json.dumps({"event": "coverage", "id": test, "lines": lines}) + "\n")
        self._write(json.dumps({"event": "exit", "code": int(exitstatus)}) + "\n")


def pytest_configure(config) -> None:
    results_fd = os.environ.get("GP_RESULTS_FD")
    if not results_fd or config.pluginmanager.hasplugin("gp-reporter"):
        return
    out = os.fdopen(int(results_fd), "w", buffering=1, encoding="utf-8")
    cov = None
    if os.environ.get("GP_COVERAGE") == "1":
        # Our overlay goes after the interpreter's own paths: a project's coverage.py wins.
        if os.environ.get("GP_OVERLAY"):
            sys.path.append(os.environ["GP_OVERLAY"])
        try:
            import coverage
        except ImportError as exc:
            out.write(json.dumps({"event": "tool_error", "message": repr(exc)}) + "\n")
            os._exit(70)
        root = os.path.realpath(str(config.rootpath))
        cov = coverage.Coverage(data_file=None, source=[root], config_file=False)
        cov.start()
    config.pluginmanager.register(ResultStream(out.write, cov), "gp-reporter")
    config.pluginmanager.register(SessionEnd(out.write, cov), "gp-session-end")
