"""Time to the first candidate tested, from an empty cache, on a 5,000+ test suite.

networkx's suite (the `[big_suite]` of benchmarks/compat/packages.toml) with one injected
single-site bug, committed as the user's HEAD: `density()` doubles the density of directed
graphs instead of undirected ones (`if not G.is_directed():` flipped to `if G.is_directed():`),
which `networkx/classes/tests/test_function.py::TestFunction::test_density` catches. A ticket
names that test. In one run, side by side:
1. plain `python -m pytest NODEID` in the buggy repository (the user's venv): the time the
   ticket's target test takes on its own, whole process included (it must fail);
2. `agent fix TICKET --repo REPO --python VENV/bin/python --json - --budget 120` with an empty
   cache (fresh XDG_CACHE_HOME; the overlay for the interpreter built beforehand by a warm-up
   run on a one-test repository and reported apart): `first_candidate_seconds` from its JSON
   (or, when the JSON has no such field, said so and the phases it has);
3. plain `python -m pytest NODEID` again (the mean of the two is the reference).
Issue 20's bound: first candidate <= 3 x target-test time + 30 s. /proc/loadavg before and after.

    .venv/bin/python benchmarks/first_candidate.py [--json OUT] [--budget 120]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import compat
from rich.console import Console

BUG_FILE = "networkx/classes/function.py"
ORIGINAL = "    if not G.is_directed():\n        d *= 2\n"
BUGGY = "    if G.is_directed():\n        d *= 2\n"
TARGET = "networkx/classes/tests/test_function.py::TestFunction::test_density"
TICKET = f"""# density() is wrong for undirected and directed graphs

`nx.density` of a path graph on three nodes should be 2/3 and is 1/3; a directed graph gets
twice its density.

tests: {TARGET}
"""


def buggy_repo(repo: Path) -> Path:
    """A clone of the suite's repository with the bug committed at HEAD (the user's repo)."""
    bug = repo.parent / f"{repo.name}-density-bug"
    marker = bug / ".git" / "compat-bug"
    if marker.exists():
        return bug
    shutil.rmtree(bug, ignore_errors=True)
    compat.git(repo.parent, "clone", "-q", str(repo), str(bug))
    source = bug / BUG_FILE
    text = source.read_text()
    if text.count(ORIGINAL) != 1:
        raise RuntimeError(f"{BUG_FILE}: the bug site is not there exactly once")
    source.write_text(text.replace(ORIGINAL, BUGGY))
    ident = ["-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    compat.git(bug, *ident, "commit", "-qam", "density: refactor")
    (bug / ".git" / "info" / "exclude").write_text((repo / ".git" / "info" / "exclude").read_text())
    marker.write_text("")
    return bug


def plain_target(python: Path, repo: Path) -> tuple[float, int]:
    """Wall seconds and exit code of `python -m pytest NODEID`, the tree left as it was."""
    before = compat.untracked(repo)
    started = time.monotonic()
    done = subprocess.run(
        [str(python), "-m", "pytest", "-q", TARGET],
        cwd=repo,
        capture_output=True,
        env={k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"},
        timeout=600,
    )
    seconds = time.monotonic() - started
    for name in compat.untracked(repo) - before:
        (repo / name).unlink(missing_ok=True)
    return seconds, done.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="write the figures as JSON")
    parser.add_argument("--budget", type=int, default=120)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds for agent fix")
    args = parser.parse_args(argv)
    say = Console(stderr=True)
    spec = compat.big_suite()
    repo = compat.prepare_repo(spec, compat.fetch_sdist(spec))
    python = compat.prepare_venv(spec, repo)
    bug = buggy_repo(repo)
    # The user's venv has networkx installed in editable mode from the pristine repository:
    # plain pytest in the clone must import the clone's code (the current directory comes
    # first with `python -m`), else the benchmark would time the wrong tree.
    where = subprocess.run(
        [str(python), "-c", "import networkx; print(networkx.__file__)"],
        cwd=bug,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not where.startswith(str(bug)):
        raise RuntimeError(f"plain pytest in {bug} would import networkx from {where}")

    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    commit = compat.git(compat.HERE.parent, "rev-parse", "--short", "HEAD").strip()
    with tempfile.TemporaryDirectory(prefix="first-candidate-") as tmp:
        say.log("overlay warm-up on a one-test repository (same interpreter)")
        xdg, overlay_seconds = compat.fresh_cache(python, Path(tmp))
        ticket = Path(tmp) / "density.md"
        ticket.write_text(TICKET)
        load_before = compat.loadavg()

        plain1, code1 = plain_target(python, bug)
        say.log(f"plain pytest {TARGET}: {plain1:.1f} s, exit {code1}")
        if code1 != 1:
            raise RuntimeError(f"the target test does not fail on the bug (exit {code1})")

        say.log(f"agent fix, empty cache, budget {args.budget} s")
        cmd = [
            str(compat.AGENT),
            "fix",
            str(ticket),
            "--repo",
            str(bug),
            "--python",
            str(python),
            "--json",
            "-",
            "--budget",
            str(args.budget),
            # A branch of its own per run: the repository is reused across runs.
            "--branch",
            f"greenpatch/bench-{stamp.lower()}",
        ]
        started = time.monotonic()
        try:
            done = subprocess.run(
                cmd,
                env={**os.environ, "XDG_CACHE_HOME": str(xdg)},
                capture_output=True,
                text=True,
                timeout=args.timeout,
            )
            code: int | None = done.returncode
            stdout, stderr = done.stdout, done.stderr
        except subprocess.TimeoutExpired as exc:
            code, stdout, stderr = None, "", str(exc.stderr or "")
        fix_seconds = time.monotonic() - started

        plain2, code2 = plain_target(python, bug)
        say.log(f"plain pytest {TARGET}: {plain2:.1f} s, exit {code2}")
        load_after = compat.loadavg()

    # The whole fix report and the agent's log stay for a look at what it did.
    out_dir = compat.CACHE / "runs" / f"first-candidate-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "fix.json").write_text(stdout)
    (out_dir / "fix.log").write_text(stderr)
    try:
        report = json.loads(stdout)
    except ValueError:
        report = {}
    first = report.get("first_candidate_seconds")
    plain = statistics.mean([plain1, plain2])
    bound = 3 * plain + 30
    figures = {
        "date": stamp,
        "commit": commit,
        "suite": spec.key,
        "target": TARGET,
        "plain_target_seconds": [round(plain1, 2), round(plain2, 2)],
        "agent_exit": code,
        "agent_error": "" if report else compat.error_line(stderr),
        "status": report.get("status"),
        "fix_seconds": round(fix_seconds, 1),
        "first_candidate_seconds": first,
        "phases": report.get("phases"),
        "candidates": report.get("candidates"),
        "tests_run": report.get("tests_run"),
        "report": str(out_dir / "fix.json"),
        "overlay_warmup_seconds": round(overlay_seconds, 1),
        "bound_seconds": round(bound, 1),
        "within_bound": first is not None and first <= bound,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }
    print(f"time to first candidate on {spec.key} (commit {commit}, {stamp})")
    print(f"  plain `python -m pytest {TARGET}`: {plain1:.2f} s and {plain2:.2f} s")
    status = report.get("status") or f"exit {code}: {figures['agent_error']}"
    print(f"  `agent fix --budget {args.budget}`, empty cache: {status} in {fix_seconds:.1f} s")
    if first is None:
        print(f"  the fix JSON has no first_candidate_seconds; phases: {report.get('phases')}")
    else:
        print(
            f"  first candidate tested after {first:.1f} s: {first / plain:.1f}x the target "
            f"test's time; bound 3 x {plain:.2f} + 30 = {bound:.1f} s: "
            f"{'within' if first <= bound else 'OVER'}"
        )
    print(f"  overlay warm-up (one-test repo, built once per interpreter): {overlay_seconds:.1f} s")
    print(f"  load average before {load_before}, after {load_after}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
