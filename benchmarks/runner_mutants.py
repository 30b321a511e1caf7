"""Runner benchmark: per-candidate validation (selection + warm workers) vs `pytest -n 2`.

On python-dateutil's own test suite (sdist from PyPI, cached under ~/.cache/greenpatch/), in one
run, side by side:
1. the unpatched suite: plain `pytest -n 2 -rA` vs every test through the warm workers (same
   pass/fail per test id?);
2. N random single-line mutants of the library's source (fixed seed, lines some test executes):
   the full suite under `pytest -n 2` vs selection + warm workers (fail fast); caught/total for
   both, time ratio per mutant, median;
3. warm-worker overhead per job on a trivial test vs a fresh `pytest` process.

    .venv/bin/python benchmarks/runner_mutants.py [--mutants 20] [--seed 0] [--workers 2]
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import os
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tokenize
import venv
from pathlib import Path

from greenpatch.runner.baseline import BaselineOptions, build_baseline
from greenpatch.runner.env import source_path
from greenpatch.runner.pool import Job, Pool
from greenpatch.runner.selection import select_tests

CACHE = Path.home() / ".cache" / "greenpatch"
LIBRARY = "python-dateutil"
VERSION = "4.0.0"
# What the library's requirements-dev.txt asks of its test environment (minus build tools).
TEST_DEPS = ["pytest", "pytest-xdist", "pytest-cov", "coverage", "freezegun", "hypothesis", "attrs"]
SWAPS = {
    "==": "!=",
    "!=": "==",
    "<": ">=",
    ">=": "<",
    ">": "<=",
    "<=": ">",
    "+": "-",
    "-": "+",
    "*": "/",
    "and": "or",
    "or": "and",
    "True": "False",
    "False": "True",
    "is": "is not",
    "in": "not in",
    "0": "1",
    "1": "0",
    "2": "3",
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout


def prepare() -> tuple[Path, str]:
    """The library as a git repository, and a virtualenv with its test dependencies."""
    bench = CACHE / "bench"
    downloads = CACHE / "dl"
    downloads.mkdir(parents=True, exist_ok=True)
    sdist = downloads / f"python_dateutil-{VERSION}.tar.gz"
    if not sdist.exists():
        log(f"downloading {LIBRARY}=={VERSION} (sdist)")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"{LIBRARY}=={VERSION}",
                "-d",
                str(downloads),
            ],
            check=True,
            capture_output=True,
        )
    env_dir = bench / "dateutil-venv"
    python = env_dir / "bin" / "python"
    if not python.exists():
        log("creating the library's test environment")
        venv.create(env_dir, with_pip=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *TEST_DEPS], check=True, capture_output=True
        )
    repo = bench / "dateutil-repo"
    # Everything the sdist ships is committed, ignored files too (src/dateutil/_version.py is
    # generated, so .gitignore'd, yet the tests need it): worktrees hold committed files only.
    done_marker = repo / ".git" / "greenpatch-bench-forced"
    if not done_marker.exists():
        shutil.rmtree(repo, ignore_errors=True)
        repo.mkdir(parents=True)
        subprocess.run(
            ["tar", "xzf", str(sdist), "-C", str(repo), "--strip-components=1"], check=True
        )
        git(repo, "init", "-q")
        git(repo, "add", "-A", "--force")
        git(repo, "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", "v")
        done_marker.touch()
    return repo, str(python)


def plain_pytest(
    python: str, root: Path, workers: int, ids: list[str] | None = None, timeout: float = 480.0
) -> tuple[float, dict[str, str]]:
    """`pytest -n W -rA` in a fresh process: (seconds, {test id: PASSED/FAILED/ERROR/...});
    with `ids`, only those tests, in one process. A run that outlives `timeout` (a mutant can
    make the suite hang: plain pytest has no time limit) is killed and reported as one failing
    pseudo-test, "<timeout>"."""
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    env["PYTHONPATH"] = source_path(root)  # the library only, not our plugin
    start = time.perf_counter()
    how = ids if ids is not None else ["-n", str(workers)]
    args = ["-p", "no:cacheprovider", "-q", "-rA", "-o", "console_output_style=classic"]
    proc = subprocess.Popen(
        [python, "-m", "pytest", *how, *args],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # pytest and its xdist workers
        proc.communicate()
        return time.perf_counter() - start, {"<timeout>": "FAILED"}
    seconds = time.perf_counter() - start
    outcomes: dict[str, str] = {}
    for line in stdout.splitlines():
        # "PASSED <id>", "FAILED <id> - <message>": parametrized ids may hold spaces.
        match = re.match(r"^(PASSED|FAILED|ERROR|XFAIL|XPASS) (.+)$", line)
        if match:
            test = match.group(2)
            if match.group(1) != "PASSED":
                test = test.split(" - ", 1)[0]
            outcomes.setdefault(test, match.group(1))
    return seconds, outcomes


def mutants(repo: Path, baseline, count: int, seed: int) -> list[tuple[str, int, str, str]]:
    """(path, line, old line, new line): one token swapped on a line some passing test executes."""
    rng = random.Random(seed)
    sources = sorted(
        p for p in baseline.files if p.startswith("src/dateutil/") and "/test" not in p
    )
    found: list[tuple[str, int, str, str]] = []
    attempts = 0
    while len(found) < count and attempts < count * 200:
        attempts += 1
        path = rng.choice(sources)
        text = baseline.source(path)
        lines = text.splitlines(keepends=True)
        covered = sorted(n for n in range(1, len(lines) + 1) if baseline.tests_covering(path, [n]))
        if not covered:
            continue
        number = rng.choice(covered)
        line = lines[number - 1]
        try:
            tokens = list(tokenize.generate_tokens(io.StringIO(line.lstrip()).readline))
        except (tokenize.TokenError, IndentationError, SyntaxError):
            continue
        options = [t for t in tokens if t.string in SWAPS]
        if not options:
            continue
        token = rng.choice(options)
        indent = len(line) - len(line.lstrip())
        col = indent + token.start[1]
        new_line = line[:col] + SWAPS[token.string] + line[col + len(token.string) :]
        mutated = "".join(lines[: number - 1] + [new_line] + lines[number:])
        try:
            ast.parse(mutated)
        except SyntaxError:
            continue
        if any(f[:2] == (path, number) for f in found):
            continue
        found.append((path, number, line.strip(), new_line.strip()))
    return found


def apply(text: str, number: int, new_line: str) -> str:
    lines = text.splitlines(keepends=True)
    old = lines[number - 1]
    indent = old[: len(old) - len(old.lstrip())]
    lines[number - 1] = indent + new_line + "\n"
    return "".join(lines)


def overhead(workers_python: str, runs: int = 30) -> dict[str, float]:
    """Per job on one trivial test, warm worker vs a fresh pytest process: median wall-clock
    milliseconds, and median CPU milliseconds (the test processes' own user+system time, which
    the load of a shared machine does not inflate).

    Every warm job is a distinct candidate (a new version of the module the test imports), so
    nothing is answered by de-duplication or the cache: the file is written, imported fresh,
    the test runs, the file is restored.
    """
    with tempfile.TemporaryDirectory(prefix="gp-overhead-") as tmp:
        root = Path(tmp)
        (root / "tests").mkdir()
        (root / "lib.py").write_text("def value():\n    return 1\n")
        (root / "tests" / "test_trivial.py").write_text(
            "from lib import value\n\n\ndef test_trivial():\n    assert value() == 1\n"
        )
        git(root, "init", "-q")
        git(root, "add", "-A")
        git(root, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "t")
        test = "tests/test_trivial.py::test_trivial"
        fresh, fresh_cpu = [], []
        for _ in range(max(5, runs // 3)):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(
                [workers_python, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
                cwd=root,
                capture_output=True,
                check=True,
            )
            fresh.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            fresh_cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        warm, warm_cpu = [], []
        with Pool(root, workers_python, "process", workers=1) as pool:
            for i in range(runs):
                files = {"lib.py": f"def value():\n    return 1  # candidate {i}\n"}
                start = time.perf_counter()
                done = pool.run(Job(f"t{i}", files, [test], fail_fast=True))
                warm.append(time.perf_counter() - start)
                warm_cpu.append(done.cpu_seconds)
                assert [r.outcome for r in done.results] == ["passed"], done
                assert not done.results[0].cached
    return {
        "warm_wall_ms": statistics.median(warm) * 1000,
        "fresh_wall_ms": statistics.median(fresh) * 1000,
        "warm_cpu_ms": statistics.median(warm_cpu) * 1000,
        "fresh_cpu_ms": statistics.median(fresh_cpu) * 1000,
    }


def identity(pool: Pool, python: str, repo: Path, baseline, workers: int) -> dict:
    """The unpatched suite: plain `pytest -n W` vs every test through the warm workers."""
    plain_s, plain = plain_pytest(python, repo, workers)
    start = time.perf_counter()
    done = pool.run(Job("unpatched", {}, baseline.tests, fail_fast=False))
    ours_s = time.perf_counter() - start
    ours = {r.test_id: r.outcome for r in done.results}
    verdict = {"PASSED": "passed", "XPASS": "passed", "FAILED": "failed", "ERROR": "failed",
               "XFAIL": "skipped"}  # fmt: skip
    compared = [t for t in plain if t in ours]
    differ = [t for t in compared if {"error": "failed"}.get(ours[t], ours[t]) != verdict[plain[t]]]
    print(
        f"unpatched suite: plain pytest -n {workers} {plain_s:.1f} s, warm workers {ours_s:.1f} s;"
        f" {len(compared)} test ids compared (pytest -rA names no skipped test), "
        f"{len(differ)} differ"
    )
    for t in differ[:10]:
        print(f"  differs: {t}: pytest {plain[t]}, ours {ours[t]}")
    return {
        "compared": len(compared),
        "differ": differ,
        "plain_s": plain_s,
        "ours_s": ours_s,
        "plain_failing": sorted(t for t, o in plain.items() if o in ("FAILED", "ERROR")),
    }


def one_mutant(pool, python, repo, baseline, workers, known_bad, index, mutant) -> dict:
    """The full suite (fresh `pytest -n W`) vs selection + warm workers (fail fast) on a mutant.

    Tests failing before the mutation (or flaky) neither count as catching it nor stop our run.
    """
    path, number, old, new = mutant
    text = apply(baseline.source(path), number, new)
    with tempfile.TemporaryDirectory(prefix="gp-mutant-") as tmp:
        copy = Path(tmp, "repo")
        shutil.copytree(repo, copy, ignore=shutil.ignore_patterns(".git", "__pycache__"))
        (copy / path).write_text(text)
        full_s, full = plain_pytest(python, copy, workers)
        full_failed = sorted(
            t for t, o in full.items() if o in ("FAILED", "ERROR") and t not in known_bad
        )
        start = time.perf_counter()
        selection = select_tests(baseline, {path: text})
        tests = [t for t in selection.tests if t not in known_bad]
        result = pool.run(Job(f"m{index}", {path: text}, tests, fail_fast=True))
        ours_s = time.perf_counter() - start
        ours_failed = sorted(
            r.test_id for r in result.results if r.failed and r.test_id not in known_bad
        )
        chosen = set(tests)
        named = [t for t in full_failed if t != "<timeout>"]
        not_selected = [t for t in named if t not in chosen and t.split("::")[0] not in chosen]
        # A full-suite failure that the selection did not reproduce: does it fail on its own?
        confirmed = ours_confirmed = True
        if named and not ours_failed:
            _, alone = plain_pytest(python, copy, workers, ids=named[:20])
            confirmed = any(o in ("FAILED", "ERROR") for o in alone.values())
        # And ours: an order-dependent test failing in a chunk is no catch either.
        if ours_failed:
            _, alone = plain_pytest(python, copy, workers, ids=ours_failed[:1])
            ours_confirmed = any(o in ("FAILED", "ERROR") for o in alone.values())
    row = {
        "mutant": f"{path}:{number}: {old!r} -> {new!r}",
        "selected": len(tests),
        "full_s": full_s,
        "ours_s": ours_s,
        "ratio": full_s / ours_s,
        "full_caught": bool(full_failed),
        "full_confirmed": confirmed,
        "ours_caught": bool(ours_failed),
        "ours_confirmed": ours_confirmed,
        "full_failed": full_failed[:10],
        "ours_failed": ours_failed[:10],
        "not_selected": not_selected,
    }
    note = "" if confirmed else "  (the full suite's failures do not reproduce alone)"
    note += "" if ours_confirmed else "  (our failure does not reproduce alone)"
    print(
        f"mutant {index:2d} {row['mutant'][:70]:70s} selected {row['selected']:5d} "
        f"full {full_s:6.1f} s caught={int(row['full_caught'])}  ours {ours_s:6.2f} s "
        f"caught={int(row['ours_caught'])}  {row['ratio']:6.1f}x{note}",
        flush=True,
    )
    for t in not_selected[:5]:
        print(f"  full-suite failure outside the selection: {t}")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mutants", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument(
        "--first", type=int, default=0, help="start at this mutant (resume an interrupted run)"
    )
    parser.add_argument(
        "--skip-identity", action="store_true", help="skip the unpatched plain-vs-ours comparison"
    )
    args = parser.parse_args()

    repo, python = prepare()
    t0 = time.perf_counter()
    baseline = build_baseline(
        repo,
        python,
        BaselineOptions(sandbox="process", workers=args.workers),
        progress=lambda stage, done, total: (
            log(f"baseline: {stage} {done}/{total}") if stage != "run" or done == total else None
        ),
    )
    log(f"baseline: {len(baseline.tests)} tests ({time.perf_counter() - t0:.1f} s, cached after)")
    figures: dict = {"library": f"{LIBRARY}=={VERSION}", "tests": len(baseline.tests)}

    cost = figures["overhead"] = overhead(python)
    print(
        f"per-job overhead, trivial test: warm worker {cost['warm_wall_ms']:.1f} ms wall "
        f"({cost['warm_cpu_ms']:.1f} ms CPU), fresh pytest {cost['fresh_wall_ms']:.1f} ms wall "
        f"({cost['fresh_cpu_ms']:.1f} ms CPU): {cost['fresh_wall_ms'] / cost['warm_wall_ms']:.1f}x "
        f"wall, {cost['fresh_cpu_ms'] / cost['warm_cpu_ms']:.1f}x CPU"
    )

    start = time.perf_counter()
    with Pool(repo, python, "process", workers=args.workers, test_timeout=60) as pool:
        log(f"pool warm in {time.perf_counter() - start:.1f} s")
        figures["pool_start_s"] = time.perf_counter() - start
        known_bad = set(baseline.failing) | set(baseline.flaky)
        if not args.skip_identity:
            figures["identity"] = identity(pool, python, repo, baseline, args.workers)
            known_bad |= set(figures["identity"]["plain_failing"])
        rows = [
            one_mutant(pool, python, repo, baseline, args.workers, known_bad, index, mutant)
            for index, mutant in enumerate(mutants(repo, baseline, args.mutants, args.seed))
            if index >= args.first
        ]
    ratios = [r["ratio"] for r in rows]
    full_caught = sum(r["full_caught"] for r in rows)
    ours_caught = sum(r["ours_caught"] for r in rows)
    missed = [r for r in rows if r["full_caught"] and not r["ours_caught"]]
    outside = sum(len(r["not_selected"]) for r in rows)
    print(
        f"mutants: {len(rows)}; caught by the full suite {full_caught}/{len(rows)}, by "
        f"selection + warm workers {ours_caught}/{len(rows)}; caught by the full suite only: "
        f"{len(missed)} ({sum(not r['full_confirmed'] for r in missed)} of them not reproducible "
        f"when the failing tests re-run alone); full-suite failures outside the selection: "
        f"{outside}; our catches not reproducible alone: "
        f"{sum(r['ours_caught'] and not r['ours_confirmed'] for r in rows)}"
    )
    print(
        f"median speedup per candidate vs pytest -n {args.workers} on the full suite: "
        f"{statistics.median(ratios):.1f}x (min {min(ratios):.1f}x, max {max(ratios):.1f}x); "
        f"median full {statistics.median(r['full_s'] for r in rows):.1f} s, median ours "
        f"{statistics.median(r['ours_s'] for r in rows):.2f} s"
    )
    figures.update(
        mutants=rows,
        median_ratio=statistics.median(ratios),
        full_caught=full_caught,
        ours_caught=ours_caught,
        failures_outside_selection=outside,
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
