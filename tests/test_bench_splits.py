"""The frozen task list meets the benchmark's bar, and its dev/test split never moves."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest
from greenpatch.agent.bench.inject import KINDS, REAL_BUG_KINDS
from greenpatch.agent.bench.libraries import LIBRARIES
from greenpatch.agent.bench.splits import DEV_FRACTION, SEED, choose, sample, split_of
from greenpatch.agent.bench.tasks import TASKS_FILE, load_tasks
from greenpatch.agent.bench.ticket_text import write_ticket
from greenpatch.agent.errors import AgentError
from greenpatch.agent.tickets import parse_ticket

RESERVED = Path(__file__).resolve().parents[1] / "benchmarks" / "reserved.txt"


@pytest.fixture(scope="module")
def tasks():
    return load_tasks(TASKS_FILE)


def test_split_is_a_pure_function_of_the_task_id() -> None:
    # Recomputed independently: sha256 of "seed:id", first 8 bytes as a fraction of 2**64.
    for task_id in ["toolz-itertoolz-comparison-L1-0", "boltons-strutils-off_by_one-L9-1"]:
        digest = hashlib.sha256(f"{SEED}:{task_id}".encode()).digest()
        expected = "dev" if int.from_bytes(digest[:8], "big") / 2**64 < DEV_FRACTION else "test"
        assert split_of(task_id) == expected
    assert SEED == "greenpatch-bugs-v1" and DEV_FRACTION == 0.4  # frozen: changing moves tasks


def test_stored_split_matches_the_frozen_assignment(tasks) -> None:
    for task in tasks:
        assert task.split == split_of(task.id), task.id
    counts = Counter(t.split for t in tasks)
    assert counts["dev"] > 0 and counts["test"] > 0


def test_task_list_meets_the_acceptance_bar(tasks) -> None:
    assert len(tasks) >= 100
    assert len({t.id for t in tasks}) == len(tasks)
    assert len({t.library for t in tasks}) >= 3
    assert len({t.kind for t in tasks}) >= 5
    assert {t.kind for t in tasks} <= set(KINDS)
    reserved = {ln.strip() for ln in RESERVED.read_text().splitlines() if ln and ln[0] != "#"}
    assert {t.library for t in tasks} <= reserved & set(LIBRARIES)
    for task in tasks:
        assert task.version == LIBRARIES[task.library].version
        assert task.difficulty in {"easy", "medium", "hard"}
        assert task.ticket_test in task.failing_tests
        for nodeid in task.failing_tests:
            path = nodeid.split("::")[0]
            assert path.rsplit("/", 1)[-1].startswith("test_"), nodeid  # where pytest collects
            assert path.startswith(LIBRARIES[task.library].tests), nodeid


def test_tickets_name_one_failing_test_and_hide_the_fix(tasks) -> None:
    for task in tasks:
        ticket = parse_ticket(task.ticket, task.id)
        assert ticket.tests == [task.ticket_test], task.id
        fix_lines = [
            line[1:].strip()
            for line in task.reference_fix.splitlines()
            if line[:1] in "+-" and not line.startswith(("+++", "---")) and len(line.strip()) > 12
        ]
        # `pass` stands in a block whose only statement the bug deleted: a word, not the fix.
        for line in set(fix_lines) - {"pass"}:
            assert line not in task.ticket, (task.id, line)


def test_sample_is_seeded_and_sorted() -> None:
    ids = [f"t{i}" for i in range(50)]
    assert sample(ids, 10, seed=1) == sample(list(reversed(ids)), 10, seed=1)
    assert sample(ids, 10, seed=1) != sample(ids, 10, seed=2)
    assert sample(ids, 10, seed=1) == sorted(sample(ids, 10, seed=1))
    assert sample(ids, None) == sorted(ids) == sample(ids, 500)


def test_choose_keeps_only_the_kinds_asked_for(tasks) -> None:
    chosen = choose(tasks, "all", None, None, 0, ["comparison", "wrong_return"])
    assert chosen and {t.kind for t in chosen} == {"comparison", "wrong_return"}
    assert len(chosen) == sum(t.kind in {"comparison", "wrong_return"} for t in tasks)
    assert choose(tasks, "dev", None, None, 0, None) == choose(tasks, "dev", None, None, 0, [])
    with pytest.raises(AgentError, match="of kind nonsense"):
        choose(tasks, "test", None, None, 0, ["nonsense"])


def test_real_bug_kinds_have_tasks_in_the_test_split_and_hangs_are_tagged(tasks) -> None:
    real = [t for t in tasks if t.kind in REAL_BUG_KINDS]
    assert sum(t.split == "test" for t in real) >= 20
    assert {t.library for t in real} == set(LIBRARIES)
    hanging = [t for t in real if t.extra.get("hangs")]
    assert hanging, "a loop that never ends is one of the shapes"
    for task in hanging:
        assert set(task.extra["hanging_tests"]) <= set(task.failing_tests)
    assert not any(t.extra.get("hangs") for t in tasks if t.kind not in REAL_BUG_KINDS)


def test_a_ticket_reports_a_hang_as_one() -> None:
    timeout = "Failed: Timeout (>10.0s) from pytest-timeout."
    hang = write_ticket("tests/test_x.py::test_scan", timeout, {"scan"})
    assert hang.startswith("# `scan` never returns\n")
    wrong = write_ticket("tests/test_x.py::test_scan", "assert 1 == 2", {"scan"})
    assert wrong.startswith("# `scan` gives the wrong result\n")
