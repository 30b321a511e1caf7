"""Generating the frozen task list: propose mutants with a fixed seed, keep those the suite
detects, and verify each (suite fails with the bug, passes with the reference fix). Every
attempt is appended to a checkpoint JSONL, so an interrupted generation resumes where it was."""

from __future__ import annotations

import json
import random
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from greenpatch.agent.bench.inject import (
    KINDS,
    REAL_BUG_KINDS,
    Mutation,
    Validator,
    candidates,
    enclosing_function,
)
from greenpatch.agent.bench.libraries import LIBRARIES, Library, pristine_repo
from greenpatch.agent.bench.splits import split_of
from greenpatch.agent.bench.suite import Failure, run_pytest
from greenpatch.agent.bench.tasks import (
    Task,
    build_task_repo,
    difficulty_class,
    reference_diff,
    token_count,
)
from greenpatch.agent.bench.ticket_text import defined_names, ticket_ready, write_ticket

# A suite with hanging tests costs up to pytest-timeout's 10 s per hanging test: room for a few.
HANG_SUITE_TIMEOUT = 300.0


def plan(
    lib: Library, per_kind: int, seed: int, kinds: tuple[str, ...] = KINDS
) -> Iterator[tuple[str, Mutation]]:
    """Up to `per_kind` valid mutants of each of `kinds`, drawn from all the library's modules;
    a mutant giving the same module as one drawn before in this call is skipped."""
    root = pristine_repo(lib)
    sources = {module: (root / module).read_bytes() for module in lib.modules}
    validators = {module: Validator(source) for module, source in sources.items()}
    for kind in kinds:
        pool = [(m, mut) for m in lib.modules for mut in candidates(sources[m], kind, seed)]
        random.Random(f"{seed}:{lib.name}:{kind}").shuffle(pool)
        picked = 0
        for module, mutation in pool:
            if picked == per_kind:
                break
            if validators[module].accept(mutation):
                picked += 1
                yield module, mutation


def _distance(
    failure: Failure, module: str, lines: tuple[int, int], function: tuple | None
) -> int:
    here = [line for path, line in failure.frames if path == module]
    if any(lines[0] <= line <= lines[1] for line in here):
        return 0
    if function and any(function[1] <= line <= function[2] for line in here):
        return 1
    return 2 if here else 3


def attempt(lib: Library, module: str, mutation: Mutation, workdir: Path) -> dict:
    """One mutant, checked end to end; returns the checkpoint record (verified or rejected)."""
    source = (pristine_repo(lib) / module).read_bytes()
    start_line = source.count(b"\n", 0, mutation.start) + 1
    end_line = source.count(b"\n", 0, max(mutation.start, mutation.end - 1)) + 1
    stem = Path(module).stem.strip("_") or "init"
    task = Task(
        id=f"{lib.name}-{stem}-{mutation.kind}-L{start_line}-{mutation.key}",
        library=lib.name, version=lib.version, file=module,
        start_byte=mutation.start, end_byte=mutation.end,
        start_line=start_line, end_line=end_line,
        original=mutation.original, buggy=mutation.buggy, kind=mutation.kind,
        failing_tests=[], ticket_test="", ticket="", reference_fix="", difficulty="",
        split=split_of(""),
    )
    record = {"key": f"{lib.name}:{module}:{mutation.key}", "id": task.id, "kind": task.kind}

    def reject(reason: str) -> dict:
        return {**record, "status": "rejected", "reason": reason}

    function = enclosing_function(source, mutation.start)
    # A real-bug kind may hang a test (a loop that never ends): that is the bug, shown by
    # pytest-timeout; the original kinds keep rejecting it, as when their tasks were made.
    hangs_allowed = mutation.kind in REAL_BUG_KINDS
    repo = build_task_repo(task, Path(tempfile.mkdtemp(dir=workdir)) / "repo")
    try:
        quick = None
        if function and function[0].strip("_"):
            # Tests named after the function catch most mutants in a fraction of the suite.
            named = [*lib.relevant_tests(module), "-k", function[0].strip("_")]
            quick = run_pytest(repo, named, exitfirst=True, timeout=30)
        if quick is None or not (quick.failed_tests or quick.timed_out):
            quick = run_pytest(repo, lib.relevant_tests(module), exitfirst=True, timeout=30)
        if quick.timed_out and not hangs_allowed:
            return reject("timeout")
        if quick.passed:
            return reject("undetected")
        if not (quick.failed_tests or quick.timed_out):
            return reject(f"pytest exit {quick.returncode}")
        full = run_pytest(repo, timeout=HANG_SUITE_TIMEOUT if hangs_allowed else 120)
        if not full.failed_tests:
            return reject(f"full suite: exit {full.returncode}, timeout {full.timed_out}")
        if (full.slow_tests or quick.slow_tests) and not hangs_allowed:
            return reject("a test times out: detection would depend on machine speed")
        buggy = (repo / module).read_bytes()
    finally:
        shutil.rmtree(repo.parent, ignore_errors=True)
    usable = sorted((f for f in full.failures if ticket_ready(f.nodeid)), key=lambda f: f.nodeid)
    if not usable:
        return reject("no failing test a ticket can name")
    chosen = usable[0]
    texts = [(pristine_repo(lib) / m).read_text() for m in lib.modules]
    distance = _distance(chosen, module, (start_line, end_line), function)
    failing = sorted(f.nodeid for f in full.failures)
    tokens = token_count(mutation.original)
    task.failing_tests = failing
    task.ticket_test = chosen.nodeid
    task.ticket = write_ticket(chosen.nodeid, chosen.message, defined_names(texts))
    task.reference_fix = reference_diff(module, buggy, source)
    task.distance = distance
    task.fix_tokens = tokens
    task.difficulty = difficulty_class(distance, len(failing), tokens)
    task.split = split_of(task.id)
    task.extra = {"message": chosen.message, "frames": chosen.frames}
    hanging = sorted(f.nodeid for f in full.failures if f.timed_out)
    if hanging:
        task.extra["hangs"] = True
        task.extra["hanging_tests"] = hanging
    return {**record, "status": "verified", "task": task.to_dict()}


def _distinct(tasks: list[dict]) -> list[dict]:
    """Drops a task that shows exactly like an earlier one at the same line: the same failing
    tests and ticket (e.g. `x is not None` and `not (x is None)`), i.e. the same bug twice."""
    seen: set[tuple] = set()
    kept = []
    for task in tasks:
        key = (task["file"], task["start_line"], task["ticket"], tuple(task["failing_tests"]))
        if key not in seen:
            seen.add(key)
            kept.append(task)
    return kept


def _appended(out: Path, verified: list[dict]) -> list[dict]:
    """The tasks of `out` as they are (a written task keeps its line), then the verified ones
    not in it, sorted by id, each dropped if it shows like one before it (`_distinct`)."""
    kept = [json.loads(line) for line in out.read_text().splitlines() if line.strip()] \
        if out.exists() else []
    known = {t["id"] for t in kept}
    return _distinct(kept + sorted((t for t in verified if t["id"] not in known),
                                   key=lambda t: t["id"]))


def generate(
    out: Path,
    checkpoint: Path,
    libraries: list[str],
    per_kind: int,
    seed: int,
    jobs: int,
    kinds: tuple[str, ...] = KINDS,
) -> int:
    """Run (or resume) generation of `kinds` for `libraries`; write to `out` the tasks already
    there, in their order, then every other verified task of the checkpoint, sorted by id."""
    done: dict[str, dict] = {}
    if checkpoint.exists():
        for line in checkpoint.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                done[record["key"]] = record
    lock = threading.Lock()
    workdir = Path(tempfile.mkdtemp(prefix="gp-bench-gen-"))
    todo = []
    for name in libraries:
        lib = LIBRARIES[name]
        copy = workdir / f"baseline-{name}"
        shutil.copytree(pristine_repo(lib), copy, symlinks=True)
        baseline = run_pytest(copy, timeout=300)
        if not baseline.passed:  # once more: a loaded machine can make a timing test flaky
            baseline = run_pytest(copy, timeout=300)
        if not baseline.passed:
            failing = ", ".join(f.nodeid for f in baseline.failures[:3]) or baseline.output[-300:]
            print(f"{name}: pristine suite does not pass ({failing}), skipped", file=sys.stderr)
            continue
        todo += [
            (lib, module, mutation)
            for module, mutation in plan(lib, per_kind, seed, kinds)
            if f"{lib.name}:{module}:{mutation.key}" not in done
        ]
    print(f"{len(done)} attempts done before, {len(todo)} to go", file=sys.stderr, flush=True)

    def work(item: tuple[Library, str, Mutation]) -> None:
        record = attempt(*item, workdir)
        with lock:
            done[record["key"]] = record
            with checkpoint.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
            print(f"[{len(done)}] {record['id']}: {record['status']} {record.get('reason', '')}",
                  file=sys.stderr, flush=True)

    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(work, todo))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    verified = _appended(out, [r["task"] for r in done.values() if r["status"] == "verified"])
    out.write_text("".join(json.dumps(t, sort_keys=True) + "\n" for t in verified))
    return len(verified)
