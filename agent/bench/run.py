"""Running a fixer (`agent fix` by default) over tasks, one subprocess per task and configuration,
then judging its result against the task's own suite and the hidden reference fix."""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from greenpatch.agent.bench.inject import same_code
from greenpatch.agent.bench.libraries import get_library, git, pristine_repo
from greenpatch.agent.bench.suite import run_pytest
from greenpatch.agent.bench.tasks import Task, build_task_repo
from greenpatch.agent.config import load_settings
from greenpatch.agent.errors import AgentError

STATUS_BY_EXIT = {0: "green", 1: "no_fix", 3: "cannot_reproduce"}


@dataclass(frozen=True)
class Config:
    """One configuration of the fixer: a name and extra flags passed through to it."""

    name: str
    flags: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Config:
        name, sep, flags = text.partition("=")
        if not sep or not name.strip():
            raise AgentError(f"--compare wants NAME=FLAGS, got '{text}'")
        try:
            return cls(name.strip(), tuple(shlex.split(flags)))
        except ValueError as exc:
            raise AgentError(f"--compare {name}: cannot split flags: {exc}") from None

    @classmethod
    def parse_all(cls, texts: list[str]) -> list[Config]:
        """The --compare configurations (one named "default" without any), distinct names."""
        configs = [cls.parse(text) for text in texts] or [cls("default")]
        names = [c.name for c in configs]
        if len(set(names)) != len(names):
            raise AgentError("--compare names must be distinct")
        return configs


def hard_timeout(budget: float) -> float:
    """A fixer gets its budget plus slack for start-up and the final confirmation run."""
    return budget * 1.25 + 15


def fixer_command(spec: str) -> list[str]:
    """The fixer command line. A bare `agent` is the one installed next to this interpreter
    before any on PATH: the bench records its own checkout's commit as the code measured."""
    try:
        argv = shlex.split(spec)
    except ValueError as exc:
        raise AgentError(f"--fixer: cannot split '{spec}': {exc}") from None
    if not argv:
        raise AgentError("--fixer is empty")
    local = Path(sys.executable).parent / argv[0]
    found = str(local) if "/" not in argv[0] and local.exists() else shutil.which(argv[0])
    if found is None:
        raise AgentError(f"--fixer: command not found: {argv[0]}")
    argv[0] = os.path.abspath(found)
    return argv


def _run_fixer(
    argv: list[str], timeout: float, log_path: Path, env: dict[str, str] | None = None
) -> tuple[int | None, str, float]:
    """Exit code (None on timeout), the tail of its output and wall seconds."""
    started = time.monotonic()
    with open(log_path, "w+b") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            env=env,
        )  # fmt: skip
        try:
            code: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
        log.seek(0)
        tail = log.read()[-4000:].decode("utf-8", "replace")
    return code, tail, time.monotonic() - started


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _apply_fix(repo: Path, report: dict) -> str | None:
    """Put the fixer's result in `repo`'s working tree; returns why not, or None when done."""
    commit = report.get("commit")
    if isinstance(commit, str) and commit:
        try:
            git(repo, "checkout", "-q", "--detach", commit)
        except AgentError as exc:
            return f"cannot check out the fix commit: {exc}"
        return None
    diff = report.get("diff")
    if isinstance(diff, str) and diff.strip():
        (repo.parent / "fix.diff").write_text(diff if diff.endswith("\n") else diff + "\n")
        try:
            git(repo, "apply", "--whitespace=nowarn", str(repo.parent / "fix.diff"))
        except AgentError as exc:
            return f"the fix diff does not apply: {exc}"
        return None
    return "reported green without a commit or a diff"


def _judge(task: Task, repo: Path, report: dict) -> dict:
    """plausible: the task's full suite (its own, untouched test files) passes on the fix;
    exact: the only changed files are the bugs', and each equals the pristine one as an AST."""
    buggy = git(repo, "rev-parse", "HEAD").strip()
    problem = _apply_fix(repo, report)
    if problem:
        return {"plausible": False, "exact": False, "judge": problem}
    lib = get_library(task.library)
    git(repo, "checkout", "-q", buggy, "--", *lib.tests, "pytest.ini")
    changed = set(git(repo, "diff", "--name-only", buggy).split())
    suite = run_pytest(repo, timeout=300)
    files = {site["file"] for site in task.sites()}
    exact = changed == files and all(
        (repo / path).exists()
        and same_code((repo / path).read_bytes(), (pristine_repo(lib) / path).read_bytes())
        for path in files
    )
    judge = "" if suite.passed else f"suite after the fix: {len(suite.failures)} failing"
    if suite.timed_out:
        judge = "suite after the fix timed out"
    return {"plausible": suite.passed, "exact": suite.passed and exact, "judge": judge,
            "changed_files": sorted(changed)}


def run_task(
    task: Task,
    config: Config,
    fixer: list[str],
    budget: float,
    workdir: Path,
    timeout: float | None = None,
    baseline: Path | None = None,
) -> dict:
    """Rebuild the task, run the fixer on it under a hard timeout, judge what it returns. Any
    failure of the fixer becomes a recorded status, never an exception."""
    base = workdir / config.name / task.id
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    repo = build_task_repo(task, base / "repo")
    ticket = base / "ticket.md"
    ticket.write_text(task.ticket)
    out = base / "fix.json"
    argv = [*fixer, str(ticket), "--repo", str(repo), "--budget", f"{budget:g}",
            "--json", str(out), *config.flags]
    limit = timeout or hard_timeout(budget)
    try:
        code, tail, wall = _run_fixer(
            argv, limit, base / "fixer.log", isolated_cache(base, baseline)
        )
    except OSError as exc:
        raise AgentError(f"cannot start the fixer: {exc}") from None
    result = {
        "task": task.id, "config": config.name, "library": task.library, "kind": task.kind,
        "difficulty": task.difficulty, "hangs": bool(task.extra.get("hangs")),
        "exit_code": code, "wall_seconds": round(wall, 2),
        "plausible": False, "exact": False, "candidates": None, "tests_run": None,
        "seconds": None, "rounds": None, "reason": "",
    }
    if code is None:
        return {**result, "status": "timeout",
                "reason": f"killed after {limit:g} s (budget {budget:g} s)"}
    status = STATUS_BY_EXIT.get(code)
    try:
        report = json.loads(out.read_text())
        if not isinstance(report, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        why = _last_line(tail) or str(exc)
        # Exit 3 is a deliberate answer; exit 1 without a report is how Python dies of a crash.
        if status == "cannot_reproduce":
            return {**result, "status": status, "reason": why}
        return {**result, "status": "error", "reason": f"exit {code}, no JSON report: {why}"}
    for key in ("candidates", "tests_run", "seconds", "rounds"):
        value = report.get(key)
        result[key] = value if isinstance(value, int | float) and not isinstance(value, bool) \
            else None
    if status is None:
        return {**result, "status": "error", "reason": f"exit {code}: {_last_line(tail)}"}
    result["status"] = status
    if status == "no_fix" and report.get("localization") == []:
        # A test killed by its timeout leaves no traceback into the code (and no coverage):
        # a hanging bug can end here, with nothing tried.
        result["reason"] = "nothing localized: no candidate tried"
    if status == "green":
        result.update(_judge(task, repo, report))
        result["reason"] = result.pop("judge")
    return result


def prewarm_baseline(task: Task, workdir: Path) -> tuple[float, Path]:
    """Build the baseline of the task's buggy code once, before any fixer runs; its seconds and
    its file. Every configuration's run of the task gets a copy (`isolated_cache`): what the
    fixers are timed on is the loop, not the one-time cost of a commit (reported apart, as
    `baseline_seconds`)."""
    from greenpatch.agent.pipeline.harness import (
        target_python,  # heavy imports stay out of `agent bench --help`
    )
    from greenpatch.agent.pipeline.reproduce import settings_baseline

    base = workdir / "_baselines" / "repos" / task.id
    if base.exists():
        shutil.rmtree(base)
    repo = build_task_repo(task, base / "repo")
    settings = load_settings(repo)
    started = time.monotonic()
    try:
        # A cache of the bench's own: the time is that of building the baseline, not reading it.
        own = workdir / "_baselines" / "cache"
        baseline = settings_baseline(repo, target_python(settings, repo), settings, cache_dir=own)
    except Exception as exc:  # noqa: BLE001 - the fixer will meet and report the same problem
        raise AgentError(f"baseline of {task.id}: {exc}") from None
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return round(time.monotonic() - started, 2), baseline.path


def isolated_cache(base: Path, baseline: Path | None) -> dict[str, str]:
    """The environment of one fixer run: its own cache directory (task repos are built
    deterministically, so every configuration's copy of a task has the same commit, and a
    shared result cache would hand later configurations the results of earlier ones), holding
    a copy of the task's prewarmed baseline."""
    cache = base / "cache"
    if baseline is not None:
        stored = cache / "greenpatch" / "baselines" / baseline.name
        stored.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(baseline, stored)
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    env.pop("GREENPATCH_CACHE", None)  # it would win over XDG_CACHE_HOME (sandboxes.cacheroot)
    return env


def run_bench(
    tasks: list[Task],
    configs: list[Config],
    fixer: list[str],
    budget: float,
    jobs: int,
    workdir: Path,
    on_result: Callable[[dict], None] | None = None,
    timeout: float | None = None,
    prewarm: bool = True,
    on_prewarm: Callable[[Task, float | None], None] | None = None,
) -> list[dict]:
    """Every task under every configuration, `jobs` at a time, in task-major order so that the
    configurations of one task run close together in time (side by side, same machine load).
    With `prewarm`, each task's baseline is built first (see `prewarm_baseline`)."""
    for lib in {task.library for task in tasks}:
        pristine_repo(get_library(lib))  # build caches once, before the threads race for them
    baselines: dict[str, tuple[float, Path] | None] = {}
    if prewarm:
        for task in tasks:
            try:
                baselines[task.id] = prewarm_baseline(task, workdir)
            except AgentError:
                baselines[task.id] = None
            if on_prewarm is not None:
                warmed = baselines[task.id]
                on_prewarm(task, warmed[0] if warmed else None)
    work = [(task, config) for task in tasks for config in configs]
    lock = threading.Lock()

    def one(item: tuple[Task, Config]) -> dict:
        task, config = item
        try:
            warmed = baselines.get(task.id)
            result = run_task(
                task, config, fixer, budget, workdir, timeout, warmed[1] if warmed else None
            )
        except AgentError as exc:  # the task itself could not be rebuilt or judged
            result = {"task": task.id, "config": config.name, "library": task.library,
                      "kind": task.kind, "difficulty": task.difficulty, "status": "error",
                      "reason": str(exc), "plausible": False, "exact": False}
        warmed = baselines.get(task.id)
        result["baseline_seconds"] = warmed[0] if warmed else None
        if on_result is not None:
            with lock:
                on_result(result)
        return result

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, work))


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return round(ordered[index], 2)


def _median(values: list) -> float | None:
    numbers = [v for v in values if isinstance(v, int | float)]
    return round(statistics.median(numbers), 2) if numbers else None


def _mean(values: list) -> float | None:
    numbers = [v for v in values if isinstance(v, int | float)]
    return round(statistics.fmean(numbers), 2) if numbers else None


def seconds_to_green(result: dict) -> float:
    """The fixer's `seconds` (else wall time) for a plausible fix; infinity for a miss."""
    if not result.get("plausible"):
        return math.inf
    return result.get("seconds") or result.get("wall_seconds") or 0.0


def summarize(results: list[dict]) -> dict:
    """fixed/total, time to green (fixer's `seconds`, else wall time) and cost per bug. The
    median over every task counts a miss as never green: a configuration that fixes more tasks
    is not charged for the slow ones only it fixes, and one that misses half has no median."""
    every = [seconds_to_green(r) for r in results]
    times = [t for t in every if math.isfinite(t)]
    everyone = statistics.median(every) if every else math.inf
    statuses: dict[str, int] = {}
    for r in results:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    median = statistics.median(times) if times else None
    return {
        "total": len(results),
        "plausible": len(times),
        "exact": sum(1 for r in results if r.get("exact")),
        "statuses": dict(sorted(statuses.items())),
        "median_seconds_to_green": round(median, 2) if median is not None else None,
        "p90_seconds_to_green": _percentile(times, 0.9),
        "median_seconds_all_tasks": round(everyone, 2) if math.isfinite(everyone) else None,
        "candidates_per_bug": _mean([r.get("candidates") for r in results]),
        "baseline_seconds_median": _median([r.get("baseline_seconds") for r in results]),
        "tests_run_per_bug": _mean([r.get("tests_run") for r in results]),
    }


def report(results: list[dict], configs: list[Config]) -> dict:
    """Per configuration: overall and by bug kind, plus every task's result."""
    out: dict = {}
    for config in configs:
        mine = [r for r in results if r["config"] == config.name]
        kinds = sorted({r["kind"] for r in mine})
        out[config.name] = {
            "flags": list(config.flags),
            "summary": summarize(mine),
            "by_kind": {kind: summarize([r for r in mine if r["kind"] == kind]) for kind in kinds},
            "tasks": mine,
        }
    return out


def _cell(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:g}{unit}"


def paired(configs_report: dict) -> list[dict]:
    """Each configuration against the first on the tasks both fixed: how many, the median
    seconds to green of each, and on how many of them it was the faster."""
    names = list(configs_report)
    times = {name: {r["task"]: seconds_to_green(r) for r in data["tasks"]}
             for name, data in configs_report.items()}
    reference = times[names[0]] if names else {}
    rows = []
    for name in names[1:]:
        both = [t for t, s in times[name].items()
                if math.isfinite(s) and math.isfinite(reference.get(t, math.inf))]
        rows.append({
            "config": name,
            "against": names[0],
            "both_fixed": len(both),
            "median_seconds": _median([times[name][t] for t in both]),
            "median_seconds_against": _median([reference[t] for t in both]),
            "faster_on": sum(1 for t in both if times[name][t] < reference[t]),
        })
    return rows


def markdown_table(configs_report: dict) -> str:
    """The per-kind table, then each configuration paired with the first on the tasks both
    fixed (median seconds to green compared on the same tasks)."""
    header = (
        "| config | kind | fixed (plausible) | exact | errors | timeouts | median s to green "
        "| p90 s to green | median s, misses never green | candidates/bug | tests/bug |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for name, data in configs_report.items():
        for kind, summary in [*data["by_kind"].items(), ("**all**", data["summary"])]:
            statuses = summary["statuses"]
            rows.append(
                f"| {name} | {kind} | {summary['plausible']}/{summary['total']} "
                f"| {summary['exact']}/{summary['total']} | {statuses.get('error', 0)} "
                f"| {statuses.get('timeout', 0)} | {_cell(summary['median_seconds_to_green'])} "
                f"| {_cell(summary['p90_seconds_to_green'])} "
                f"| {_cell(summary.get('median_seconds_all_tasks'))} "
                f"| {_cell(summary['candidates_per_bug'])} "
                f"| {_cell(summary['tests_run_per_bug'])} |"
            )
    table = header + "\n".join(rows) + "\n"
    pairs = paired(configs_report)
    if pairs:
        table += (
            "\n| config | against | both fixed | median s to green | median s (against) "
            "| faster on |\n|---|---|---|---|---|---|\n"
        ) + "".join(
            f"| {p['config']} | {p['against']} | {p['both_fixed']} "
            f"| {_cell(p['median_seconds'])} | {_cell(p['median_seconds_against'])} "
            f"| {p['faster_on']}/{p['both_fixed']} |\n"
            for p in pairs
        )
    return table
