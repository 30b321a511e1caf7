"""Task rebuild recipes on real sdists: the pristine and buggy commits, the suite failing with the
bug and passing with the hidden reference fix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from greenpatch.agent.bench.generate import _appended
from greenpatch.agent.bench.inject import candidates
from greenpatch.agent.bench.libraries import LIBRARIES, get_library, pristine_repo
from greenpatch.agent.bench.pairs import compatible, pairs
from greenpatch.agent.bench.suite import run_pytest
from greenpatch.agent.bench.tasks import TASKS_FILE, buggy_source, build_task_repo, load_tasks
from greenpatch.agent.errors import AgentError
from greenpatch.agent.tickets import parse_ticket


def small_tasks(n: int):
    """Tasks of the library with the quickest suite, different kinds first."""
    tasks = [t for t in load_tasks(TASKS_FILE) if t.library == "cachetools"]
    by_kind = {t.kind: t for t in reversed(tasks)}
    return list(by_kind.values())[:n]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def test_every_task_matches_its_pinned_library_source() -> None:
    for task in load_tasks(TASKS_FILE):
        pristine = (pristine_repo(get_library(task.library)) / task.file).read_bytes()
        buggy = buggy_source(task, task.file, pristine)
        assert buggy != pristine
        assert buggy[task.start_byte :].startswith(task.buggy.encode())



def test_every_task_is_still_proposed_by_its_kinds_operator() -> None:
    # A task id ends with its mutant's key: the operators must keep proposing each mutant, or
    # the frozen tasks could not be generated again.
    sources: dict[tuple[str, str], bytes] = {}
    for task in load_tasks(TASKS_FILE):
        key = (task.library, task.file)
        if key not in sources:
            sources[key] = (pristine_repo(get_library(task.library)) / task.file).read_bytes()
        proposed = {(m.start, m.end, m.buggy): m.key
                    for m in candidates(sources[key], task.kind)}
        found = proposed.get((task.start_byte, task.end_byte, task.buggy))
        assert found is not None and task.id.endswith(found), task.id


@pytest.mark.slow
@pytest.mark.parametrize("task", small_tasks(2), ids=lambda t: t.id)
def test_rebuilt_task_fails_with_the_bug_and_passes_with_the_reference_fix(tmp_path, task) -> None:
    repo = build_task_repo(task, tmp_path / "a")
    log = git(repo, "log", "--format=%s").splitlines()
    assert log == [f"buggy: {task.id}", "pristine"]
    assert git(repo, "status", "--porcelain") == ""
    again = build_task_repo(task, tmp_path / "b")
    assert git(repo, "rev-parse", "HEAD") == git(again, "rev-parse", "HEAD"), "reproducible"

    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--co", task.ticket_test],
        cwd=repo, capture_output=True, text=True, check=False,
    )
    assert collected.returncode == 0 and "1 test collected" in collected.stdout, collected.stdout

    buggy = run_pytest(repo, timeout=120)
    assert buggy.failed_tests
    assert task.ticket_test in {f.nodeid for f in buggy.failures}
    assert sorted(f.nodeid for f in buggy.failures) == task.failing_tests

    (tmp_path / "fix.diff").write_text(task.reference_fix)
    git(repo, "apply", str(tmp_path / "fix.diff"))
    pristine = pristine_repo(LIBRARIES[task.library])
    assert (repo / task.file).read_bytes() == (pristine / task.file).read_bytes()
    assert run_pytest(repo, timeout=120).passed


def test_rebuild_refuses_an_existing_destination_and_a_moved_source(tmp_path) -> None:
    task = small_tasks(1)[0]
    (tmp_path / "taken").mkdir()
    with pytest.raises(AgentError, match="already exists"):
        build_task_repo(task, tmp_path / "taken")
    task.start_byte += 1
    with pytest.raises(AgentError, match="does not match"):
        build_task_repo(task, tmp_path / "moved")


PAIRS_FILE = TASKS_FILE.parent / "pairs.jsonl"


def test_every_two_bug_task_puts_both_bugs_at_their_recorded_places() -> None:
    pairs_ = load_tasks(PAIRS_FILE)
    assert pairs_ and all(len(t.sites()) == 2 and t.kind == "two_bugs" for t in pairs_)
    for task in pairs_:
        for site in task.sites():
            pristine = (pristine_repo(get_library(task.library)) / site["file"]).read_bytes()
            buggy = buggy_source(task, site["file"], pristine)
            assert buggy != pristine and site["buggy"].encode() in buggy
        assert list(parse_ticket(task.ticket, task.id).tests) == task.ticket_test.split()


@pytest.mark.slow
def test_a_drawn_pair_fails_both_ticket_tests_and_each_fix_alone_is_progress(tmp_path) -> None:
    tasks = [t for t in load_tasks(TASKS_FILE) if t.library == "cachetools"]
    pair = next(pairs(tasks, "test", 1, seed=5))
    first, second = (next(t for t in tasks if t.id == i) for i in pair.extra["parts"])
    assert compatible(first, second) and not compatible(first, first)
    assert first.ticket_test not in second.failing_tests
    repo = build_task_repo(pair, tmp_path / "pair")
    failing = run_pytest(repo, pair.ticket_test.split(), timeout=120).failures
    assert {f.nodeid for f in failing} == {first.ticket_test, second.ticket_test}
    # With the first bug put right, only the second ticket test still fails.
    pristine = pristine_repo(LIBRARIES[pair.library])
    git(repo, "checkout", "HEAD~1", "--", first.file)
    if second.file == first.file:
        pristine_text = (pristine / first.file).read_bytes()
        (repo / first.file).write_bytes(buggy_source(second, first.file, pristine_text))
    failing = run_pytest(repo, pair.ticket_test.split(), timeout=120).failures
    assert {f.nodeid for f in failing} == {second.ticket_test}


def test_generation_appends_new_tasks_after_the_written_ones(tmp_path) -> None:
    def task(task_id: str, line: int, ticket: str = "t") -> dict:
        return {"id": task_id, "file": "m.py", "start_line": line, "ticket": ticket,
                "failing_tests": ["tests/test_m.py::test_a"]}

    out = tmp_path / "tasks.jsonl"
    out.write_text(json.dumps(task("z-old", 1)) + "\n" + json.dumps(task("a-old", 2)) + "\n")
    verified = [task("a-old", 2), task("m-new", 3), task("b-new", 4), task("c-same", 1)]
    kept = [t["id"] for t in _appended(out, verified)]
    # Written tasks keep their lines; new ones follow by id; one that shows exactly like an
    # earlier task (same line, ticket and failing tests) is that task again, and is dropped.
    assert kept == ["z-old", "a-old", "b-new", "m-new"]
