"""Sandbox benchmark: warm-job start-up per backend and worktree reset time, side by side.

In one run:
1. start-up: time from `backend.start(spec)` to the first line echoed back over the worker's pipe,
   median of N, per backend (`process` is the no-isolation baseline; ratios are against it).
   Docker twice: a new container per start, and exec into a running (prewarmed) container.
   Also the round trip of one line through an already-running worker.
2. worktree reset on a generated repo with 5,000 files: change 10 files and add 2, then
   `Worktree.reset()`; median of N, against the same tree restored by `git reset --hard` +
   `git clean -ffdx`, and against a fresh worktree (`remove()` + `create()`).

    .venv/bin/python benchmarks/sandbox_startup.py [--n 20] [--files 5000] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from greenpatch.sandboxes import Backend, Limits, SandboxError, WorkerSpec, get_backend
from greenpatch.sandboxes.worktree import Worktree

ECHO = "import sys\nfor line in sys.stdin:\n    print(line.strip(), flush=True)\n"
LIMITS = Limits(wall_seconds=60)


def first_echo(backend: Backend, spec: WorkerSpec) -> float:
    """Seconds from start() to the first echoed line; the worker is stopped afterwards."""
    start = time.perf_counter()
    worker = backend.start(spec)
    worker.stdin.write(b"ready\n")
    worker.stdin.flush()
    line = worker.stdout.readline()
    elapsed = time.perf_counter() - start
    worker.stop()
    if line != b"ready\n":
        raise SandboxError(f"{backend.name}: unexpected reply {line!r}: {worker.stderr_tail()}")
    return elapsed


def round_trip(backend: Backend, spec: WorkerSpec, n: int) -> float:
    """Median seconds for one line to go to a running worker and back."""
    with backend.start(spec) as worker:
        times = []
        for i in range(n):
            start = time.perf_counter()
            worker.stdin.write(f"{i}\n".encode())
            worker.stdin.flush()
            worker.stdout.readline()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def prewarmed_echo(backend: Backend, spec: WorkerSpec) -> float:
    """Like first_echo, with the container already running (Docker): the exec alone."""
    backend.prewarm(spec)  # type: ignore[attr-defined]
    return first_echo(backend, spec)


def median_of(n: int, measure: Callable[..., float], *args: object) -> float:
    return statistics.median(measure(*args) for _ in range(n))


def startup(n: int, scratch: Path) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for name in ("process", "bwrap", "docker"):
        try:
            backend = get_backend(name)
        except SandboxError as exc:
            print(f"  {name}: unavailable ({exc})", file=sys.stderr)
            continue
        tree = scratch / f"tree-{name}"
        tree.mkdir()
        spec = WorkerSpec(argv=[sys.executable, "-c", ECHO], worktree=tree, limits=LIMITS)
        first_echo(backend, spec)  # interpreter probe, image, page cache: not part of the figure
        if name == "docker":
            fresh = []
            for i in range(n):
                # A worktree of its own each time: no spare container fits, one is created.
                own = scratch / f"tree-docker-{i}"
                own.mkdir()
                fresh.append(first_echo(backend, WorkerSpec(spec.argv, own, limits=LIMITS)))
            rows.append({"backend": "docker (new container)", "start_s": statistics.median(fresh)})

            warm = median_of(n, prewarmed_echo, backend, spec)
            rows.append({"backend": "docker (exec, running container)", "start_s": warm})
        else:
            rows.append({"backend": name, "start_s": median_of(n, first_echo, backend, spec)})
        trip = round_trip(backend, spec, n)
        for row in rows:
            row.setdefault("round_trip_s", trip)
        backend.close()
    base = rows[0]["start_s"] if rows and rows[0]["backend"] == "process" else None
    for row in rows:
        row["vs_process"] = row["start_s"] / base if base else None  # type: ignore[operator]
    return rows


def make_repo(path: Path, files: int) -> None:
    path.mkdir()
    for i in range(files):
        f = path / f"pkg{i // 100}" / f"mod{i}.py"
        f.parent.mkdir(exist_ok=True)
        f.write_text(f"def f{i}(x):\n    return x + {i}\n")
    (path / ".gitignore").write_text("__pycache__/\n")
    git = ["git", "-c", "user.email=b@b", "-c", "user.name=bench"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True)
    subprocess.run(["git", "add", "-A"], cwd=path, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "bench"], cwd=path, check=True)


def dirty(tree: Worktree, round_: int) -> None:
    files = {
        f"pkg{i * 7}/mod{i * 700 + round_ % 100}.py": f"changed = {round_}\n" for i in range(7)
    }
    files.update({f"pkg{i}/mod{i * 100 + 1}.py": f"x = {round_}\n" for i in range(40, 43)})
    files.update({"planted/conftest.py": "boom\n", f"pkg1/new{round_}.py": "new\n"})
    tree.write(files)


def reset_times(n: int, files: int, scratch: Path) -> dict[str, object]:
    repo = scratch / "repo5k"
    make_repo(repo, files)
    tree = Worktree.create(repo, scratch / "worktrees")

    def ours() -> float:
        dirty(tree, int(time.perf_counter() * 1000))
        start = time.perf_counter()
        restored = tree.reset()
        elapsed = time.perf_counter() - start
        assert restored == 12 and tree.changed() == [], restored
        return elapsed

    def hard_reset() -> float:
        dirty(tree, int(time.perf_counter() * 1000))
        start = time.perf_counter()
        tree.git("reset", "-q", "--hard", "HEAD")
        tree.git("clean", "-q", "-ffdx")
        elapsed = time.perf_counter() - start
        assert tree.changed() == []
        return elapsed

    def fresh() -> float:
        nonlocal tree
        start = time.perf_counter()
        tree.remove()
        tree = Worktree.create(repo, scratch / "worktrees")
        return time.perf_counter() - start

    result = {
        "files": files,
        "reset_s": median_of(n, ours),
        "git_reset_hard_clean_s": median_of(n, hard_reset),
        "fresh_worktree_s": median_of(max(3, n // 4), fresh),
    }
    tree.remove()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="repetitions per figure (median)")
    parser.add_argument("--files", type=int, default=5000, help="files in the reset repo")
    parser.add_argument("--json", metavar="OUT", help="also write the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gp-sandbox-bench-") as tmp:
        scratch = Path(tmp)
        print(f"start-up of a warm job (start() -> first echoed line), median of {args.n}")
        rows = startup(args.n, scratch)
        print(f"  {'backend':36} {'start ms':>9} {'x process':>10} {'round trip ms':>14}")
        for row in rows:
            ratio = f"{row['vs_process']:.1f}x" if row["vs_process"] else "-"
            print(
                f"  {row['backend']:36} {row['start_s'] * 1000:9.1f} {ratio:>10}"
                f" {row['round_trip_s'] * 1000:14.3f}"
            )
        print(f"worktree reset, {args.files} files, 10 changed + 2 added, median of {args.n}")
        reset = reset_times(args.n, args.files, scratch)
        for key, label in (
            ("reset_s", "Worktree.reset()"),
            ("git_reset_hard_clean_s", "git reset --hard + git clean -ffdx"),
            ("fresh_worktree_s", "remove() + create() (fresh worktree)"),
        ):
            ratio = reset[key] / reset["reset_s"]  # type: ignore[operator]
            print(f"  {label:38} {reset[key] * 1000:9.1f} ms  {ratio:5.1f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"startup": rows, "reset": reset}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
