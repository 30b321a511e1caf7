"""Running pytest as a subprocess of the target's interpreter: collection and plain runs."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from runner.env import PythonEnv, source_path
from runner.errors import RunnerError

WORKER_DIR = Path(__file__).resolve().parent / "worker"
BASE_ARGS = ("-p", "no:cacheprovider", "-p", "gp_plugin", "-q", "--tb=short")


def pytest_env(root: Path, **extra: str) -> dict[str, str]:
    """The environment for a pytest subprocess in `root`: our plugin importable, the tree first."""
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    env["PYTHONPATH"] = os.pathsep.join([str(WORKER_DIR), source_path(root)])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def run_pytest(
    env: PythonEnv,
    root: Path,
    args: Iterable[str],
    extra_env: dict[str, str],
    timeout: float | None = None,
    poll: Callable[[], None] | None = None,
) -> tuple[int, str]:
    """pytest in `root`; (exit code, tail of its output). `poll` is called every half second."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [env.python, "-m", "pytest", *BASE_ARGS, *args],
            cwd=root,
            env=pytest_env(root, **extra_env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            while True:
                try:
                    code = proc.wait(0.5)
                    break
                except subprocess.TimeoutExpired:
                    if poll is not None:
                        poll()
                    if timeout is not None:
                        timeout -= 0.5
                        if timeout <= 0:
                            raise RunnerError("pytest ran out of time") from None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        log.seek(0, os.SEEK_END)
        log.seek(max(0, log.tell() - 4000))
        return code, log.read().decode("utf-8", "replace")


def collect(env: PythonEnv, root: Path, pytest_args: Iterable[str] = ()) -> list[str]:
    """The suite's test ids in collection order; RunnerError for no tests or collection errors."""
    with tempfile.TemporaryDirectory(prefix="gp-collect-") as tmp:
        out = Path(tmp) / "collected.json"
        code, tail = run_pytest(
            env, root, ["--collect-only", *pytest_args], {"GP_COLLECT_OUT": str(out)}, timeout=600
        )
        data = json.loads(out.read_text()) if out.exists() else None
    if data and data["errors"]:
        first = data["errors"][0]
        last = first["message"].strip().splitlines()[-1:] or ["?"]
        more = f" (and {len(data['errors']) - 1} more)" if len(data["errors"]) > 1 else ""
        raise RunnerError(f"collection error in {first['id'] or root}: {last[0].strip()}{more}")
    if code == 5 or (data is not None and not data["tests"]):
        raise RunnerError(f"no tests found in {root}: not a pytest project?")
    if data is None or code not in (0, 5):
        lines = [ln for ln in tail.strip().splitlines() if ln.strip()]
        raise RunnerError(f"pytest cannot collect in {root}: {lines[-1] if lines else 'no output'}")
    return list(dict.fromkeys(data["tests"]))
