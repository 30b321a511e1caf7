"""Two-bug tasks: two verified single-site tasks of one library put together, one ticket naming
both ticket tests. Each bug fails its own tests only, so a candidate that fixes one of them
passes one more target: the case feedback rounds are for (fix one, then the other on top).

A pair is kept only if the two bugs sit in different functions, neither bug's failing tests
include the other's ticket test (so each fix alone shows as progress), and with both bugs in
both ticket tests fail (checked by running them)."""

from __future__ import annotations

import functools
import hashlib
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from greenpatch.agent.bench.inject import enclosing_function
from greenpatch.agent.bench.libraries import get_library, pristine_repo
from greenpatch.agent.bench.suite import run_pytest
from greenpatch.agent.bench.tasks import Task, build_task_repo

KIND = "two_bugs"


@functools.cache
def _function(library: str, path: str, offset: int) -> tuple[str, str, int] | None:
    """The function around a bug (file, name, first line); every candidate pair asks again."""
    source = (pristine_repo(get_library(library)) / path).read_bytes()
    found = enclosing_function(source, offset)
    return None if found is None else (path, found[0], found[1])


def compatible(a: Task, b: Task) -> bool:
    """Same library and split, different functions, each fix alone visible as progress."""
    if a.library != b.library or a.split != b.split or a.id == b.id:
        return False
    if a.ticket_test == b.ticket_test or set(a.failing_tests) & set(b.failing_tests):
        return False
    fa = _function(a.library, a.file, a.start_byte)
    fb = _function(b.library, b.file, b.start_byte)
    return fa is None or fb is None or fa != fb


def _body(ticket: str) -> str:
    """A single-bug ticket without its title and its `tests:` line."""
    lines = [line for line in ticket.strip().splitlines() if not line.startswith("tests:")]
    return "\n".join(lines[1:] if lines and lines[0].startswith("#") else lines).strip()


def combine(a: Task, b: Task) -> Task:
    """The two-bug task of `a` and `b` (not yet checked to fail both ticket tests)."""
    digest = hashlib.sha256(f"{a.id}+{b.id}".encode()).hexdigest()[:8]
    ticket = (
        "# Two regressions since the last release\n\n"
        "Two things broke at once; each shows in its own test.\n\n"
        f"First:\n\n{_body(a.ticket)}\n\nSecond:\n\n{_body(b.ticket)}\n\n"
        f"tests: {a.ticket_test} {b.ticket_test}\n"
    )
    more = b.sites()
    return Task(
        id=f"{a.library}-pair-{digest}", library=a.library, version=a.version, file=a.file,
        start_byte=a.start_byte, end_byte=a.end_byte, start_line=a.start_line,
        end_line=a.end_line, original=a.original, buggy=a.buggy, kind=KIND,
        failing_tests=sorted({*a.failing_tests, *b.failing_tests}),
        ticket_test=f"{a.ticket_test} {b.ticket_test}", ticket=ticket,
        reference_fix=a.reference_fix + b.reference_fix, difficulty="hard", split=a.split,
        distance=max(a.distance, b.distance), fix_tokens=a.fix_tokens + b.fix_tokens,
        extra={"parts": [a.id, b.id], "kinds": [a.kind, b.kind]}, more_sites=more,
    )  # fmt: skip


def both_fail(task: Task, workdir: Path) -> bool:
    """With both bugs in, both ticket tests fail (two bugs can cancel out)."""
    repo = build_task_repo(task, Path(tempfile.mkdtemp(dir=workdir)) / "repo")
    try:
        run = run_pytest(repo, task.ticket_test.split(), timeout=120)
        return run.failed_tests and {f.nodeid for f in run.failures} == set(
            task.ticket_test.split()
        )
    finally:
        shutil.rmtree(repo.parent, ignore_errors=True)


def pairs(tasks: list[Task], split: str, count: int, seed: int) -> Iterator[Task]:
    """Up to `count` verified two-bug tasks of `split`, drawn with `seed`, libraries in turn,
    each single task used at most once."""
    rng = random.Random(f"{seed}:{split}")
    by_library: dict[str, list[Task]] = {}
    for task in tasks:
        if task.split == split and len(task.sites()) == 1:
            by_library.setdefault(task.library, []).append(task)
    for pool in by_library.values():
        rng.shuffle(pool)
    used: set[str] = set()
    made = 0
    workdir = Path(tempfile.mkdtemp(prefix="gp-pairs-"))
    try:
        while made < count and any(len(p) > 1 for p in by_library.values()):
            for library in sorted(by_library):
                pool = [t for t in by_library[library] if t.id not in used]
                by_library[library] = pool
                if made == count or len(pool) < 2:
                    continue
                first = pool[0]
                used.add(first.id)
                for other in pool[1:]:
                    if compatible(first, other):
                        task = combine(first, other)
                        if both_fail(task, workdir):
                            used.add(other.id)
                            made += 1
                            yield task
                            break
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
