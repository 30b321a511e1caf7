"""Running a task repo's pytest suite in a plain subprocess and reading which tests failed."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from greenpatch.sandboxes import safegit

_FRAME = re.compile(r"^([^\s:][^:]*\.py):(\d+): ", re.M)
MEMORY_LIMIT = 2 << 30


@dataclass
class Failure:
    nodeid: str
    message: str
    frames: list[tuple[str, int]] = field(default_factory=list)  # (path, line), outermost first

    @property
    def timed_out(self) -> bool:
        """Stopped by pytest-timeout: the test ran longer than the run's `test_timeout`."""
        return "Timeout" in self.message


@dataclass
class SuiteRun:
    returncode: int
    failures: list[Failure]
    timed_out: bool = False
    output: str = ""

    @property
    def passed(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    @property
    def slow_tests(self) -> bool:
        return any(f.timed_out for f in self.failures)

    @property
    def failed_tests(self) -> bool:
        """pytest ran and some tests failed (exit 1), as opposed to an error or a timeout."""
        return self.returncode == 1 and not self.timed_out and bool(self.failures)


def _nodeid(case: ET.Element, repo: Path) -> str:
    """The pytest node id of a junit testcase. `classname` is the collecting module's dotted path
    plus the class; `file` is where the function is defined, which for a test inherited from a
    base class in another module is not where pytest collected it."""
    parts = case.get("classname", "").split(".")
    for end in range(len(parts), 0, -1):
        path = "/".join(parts[:end]) + ".py"
        if (repo / path).is_file():
            return "::".join([path, *parts[end:], case.get("name", "")])
    return "::".join([case.get("file", ""), case.get("name", "")])


def _parse_junit(path: Path, repo: Path) -> list[Failure]:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return []
    failures: dict[str, Failure] = {}
    for case in root.iter("testcase"):
        for problem in list(case.findall("failure")) + list(case.findall("error")):
            nodeid = _nodeid(case, repo)
            if nodeid in failures or not case.get("file"):
                continue
            text = problem.text or ""
            frames = [(m.group(1), int(m.group(2))) for m in _FRAME.finditer(text)]
            failures[nodeid] = Failure(nodeid, problem.get("message", ""), frames)
    return list(failures.values())


def run_pytest(
    repo: Path,
    targets: list[str] | None = None,
    *,
    exitfirst: bool = False,
    timeout: float = 120.0,
    test_timeout: float = 10.0,
    python: str | None = None,
) -> SuiteRun:
    """`python -m pytest` in `repo` (its pytest.ini names the suite); a test slower than
    `test_timeout` fails, and a run slower than `timeout` is killed with its whole process group
    and reported as timed out."""
    with tempfile.TemporaryDirectory(prefix="gp-junit-") as tmp:
        junit = Path(tmp) / "junit.xml"
        # prlimit rather than preexec_fn: callers run suites from several threads.
        limit = ["prlimit", f"--as={MEMORY_LIMIT}", "--"] if shutil.which("prlimit") else []
        cmd = [
            *limit,
            python or sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "--tb=short", "-o", "junit_family=xunit1", f"--junitxml={junit}",
            # pytest-timeout: one slow test must not stall the whole run.
            f"--timeout={test_timeout:g}",
            *(["-x"] if exitfirst else []), *(targets or []),
        ]
        # A library's suite on the host: it gets no credential of ours (safegit.scrub).
        env = {**safegit.scrub(os.environ), "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}
        env.pop("PYTHONPATH", None)
        proc = subprocess.Popen(
            cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            return SuiteRun(proc.returncode, [], timed_out=True, output=output[-2000:])
        return SuiteRun(proc.returncode, _parse_junit(junit, repo), output=output[-2000:])
