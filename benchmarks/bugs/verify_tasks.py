"""Re-verify the frozen bug tasks from their recipes: rebuild each task repo (pristine commit,
buggy commit), run the library's full suite (it must fail, including the ticket's test), apply the
hidden reference fix with `git apply`, run the full suite again (it must pass).

    .venv/bin/python benchmarks/bugs/verify_tasks.py [--jobs 2] [--library NAME] [--split dev]
        [--kinds KIND ...] [--real-bugs]

Every test runs under pytest-timeout (10 s). A task tagged `extra.hangs` must hang again: some
test stopped by that timeout with the bug, none with the fix (the fixed suite runs in normal time).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from greenpatch.agent.bench.inject import KINDS, REAL_BUG_KINDS
from greenpatch.agent.bench.suite import run_pytest
from greenpatch.agent.bench.tasks import TASKS_FILE, Task, build_task_repo, load_tasks


def verify(task: Task, workdir: Path) -> str:
    """'' when the task holds, else what is wrong. A hanging task prints the seconds of its
    suite with the bug and with the fix."""
    repo = build_task_repo(task, workdir / task.id)
    try:
        started = time.monotonic()
        buggy = run_pytest(repo, timeout=300)
        with_bug = time.monotonic() - started
        failing = {f.nodeid for f in buggy.failures}
        if not buggy.failed_tests or task.ticket_test not in failing:
            return f"bug not detected (exit {buggy.returncode}, timeout {buggy.timed_out})"
        if task.extra.get("hangs") and not buggy.slow_tests:
            return "tagged as hanging, but no test timed out with the bug"
        patch = workdir / f"{task.id}.diff"
        patch.write_text(task.reference_fix)
        applied = subprocess.run(["git", "-C", str(repo), "apply", str(patch)],
                                 capture_output=True, text=True, check=False)
        if applied.returncode != 0:
            return f"reference fix does not apply: {applied.stderr.strip()}"
        started = time.monotonic()
        fixed = run_pytest(repo, timeout=300)
        if task.extra.get("hangs"):
            print(f"hangs {task.id}: suite {with_bug:.0f} s with the bug, "
                  f"{time.monotonic() - started:.0f} s with the fix", flush=True)
        if not fixed.passed:
            return f"suite fails with the reference fix (exit {fixed.returncode})"
        return ""
    finally:
        shutil.rmtree(repo, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--library")
    parser.add_argument("--split")
    parser.add_argument("--tasks", type=Path, default=TASKS_FILE)
    kinds = parser.add_mutually_exclusive_group()
    kinds.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    kinds.add_argument("--real-bugs", action="store_true", help="only " + ", ".join(REAL_BUG_KINDS))
    args = parser.parse_args()
    wanted = REAL_BUG_KINDS if args.real_bugs else args.kinds
    tasks = [t for t in load_tasks(args.tasks)
             if (args.library in (None, t.library)) and (args.split in (None, t.split))
             and t.kind in wanted]
    workdir = Path(tempfile.mkdtemp(prefix="gp-bench-verify-"))
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            problems = list(pool.map(lambda t: verify(t, workdir), tasks))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    bad = [(t.id, p) for t, p in zip(tasks, problems, strict=True) if p]
    for task_id, problem in bad:
        print(f"FAIL {task_id}: {problem}")
    print(f"{len(tasks) - len(bad)}/{len(tasks)} tasks verified "
          f"({time.monotonic() - started:.0f} s, {args.jobs} jobs)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
