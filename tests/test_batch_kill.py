"""A batch killed with SIGKILL at random moments, then resumed, until it finishes: every ticket
ends in exactly one final state, no branch is made twice, and the journal matches the branches.

Three seeds run side by side (each with its own repos, journal and cache); each seed kills its
batch twice at random moments (the whole process group, as a power cut would: workers too),
then resumes it to the end. The backlog holds three tickets on two copies of an example repo
(two tickets on one commit, sharing its baseline) and two bad lines.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from greenpatch.agent.batch.journal import FINAL, Journal

from tests.conftest import git

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (1, 2, 3)
KILL_WINDOWS = ((2.0, 15.0), (1.0, 12.0))  # seconds after each start: before the 1st, 2nd kill
FINAL_TIMEOUT = 400.0


def _prepare(name: str, dest: Path) -> Path:
    subprocess.run([sys.executable, str(ROOT / "examples" / "prepare.py"), name, str(dest)],
                   check=True, capture_output=True)  # fmt: skip
    return dest


def _ticket(name: str) -> str:
    return (ROOT / "examples" / "tickets" / f"{name}.md").read_text()


TIER_MIN = "tests/test_pricing.py::test_discount_starts_exactly_at_tier_minimum"


def _backlog(where: Path) -> Path:
    stock = _prepare("stockroom", where / "stockroom")
    other = _prepare("stockroom", where / "stockroom-copy")
    lines = [
        json.dumps({"id": "tier-minimum", "title": "Bulk discount starts late",
                    "body": _ticket("stockroom"), "repo": str(stock),
                    "tests": [TIER_MIN]}),
        "{not json",
        json.dumps({"id": "tier-total", "title": "Line total at a tier boundary",
                    "body": "200 units cost 360.00 instead of 340.00\n", "repo": str(stock),
                    "tests": ["tests/test_pricing.py::test_line_total_at_tier_boundary"]}),
        json.dumps({"id": "no-title", "body": "x", "repo": str(stock)}),
        json.dumps({"id": "copy", "title": "Bulk discount not applied at the tier quantity",
                    "body": _ticket("stockroom"), "repo": str(other)}),
    ]  # fmt: skip
    path = where / "backlog.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _start(backlog: Path, where: Path, resume: bool) -> subprocess.Popen:
    args = [sys.executable, "-m", "greenpatch.agent", "batch", str(backlog), "--journal",
            str(where / "journal.sqlite"), "--drafter", "edits", "--sandbox", "process",
            "--parallel", "2", "--workers", "1", "--budget", "150", "-q",
            "--json", str(where / "report.json")]  # fmt: skip
    if resume:
        args.append("--resume")
    env = {**os.environ, "XDG_CACHE_HOME": str(where / "cache")}
    return subprocess.Popen(args, cwd=where, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip


def _run_seed(seed: int, where: Path, outcome: dict) -> None:
    rng = random.Random(seed)
    backlog = _backlog(where)
    log = []
    for attempt, (low, high) in enumerate(KILL_WINDOWS):
        proc = _start(backlog, where, resume=attempt > 0)
        delay = rng.uniform(low, high)
        try:
            proc.wait(timeout=delay)
            log.append(("finished before the kill", delay, proc.returncode))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            log.append(("killed", delay, proc.returncode))
        proc.communicate()
    proc = _start(backlog, where, resume=True)
    out, err = proc.communicate(timeout=FINAL_TIMEOUT)
    outcome.update(code=proc.returncode, stderr=err, log=log, backlog=backlog)
    print(f"seed {seed}: {log}, then resumed to the end (exit {proc.returncode})")


def _check(where: Path, outcome: dict) -> None:
    assert outcome["code"] in (0, 1), outcome["stderr"]
    assert f"skipped {outcome['backlog']}:2: invalid JSON" in outcome["stderr"]
    assert f"skipped {outcome['backlog']}:4: missing field: title" in outcome["stderr"]
    report = json.loads((where / "report.json").read_text())
    tickets = {t["id"]: t for t in report["tickets"]}
    assert sorted(tickets) == ["copy", "tier-minimum", "tier-total"]
    assert report["finished"] and not report["interrupted"]
    with Journal(where / "journal.sqlite") as journal:
        entries = {e.id: e for e in journal.entries()}
        events = journal.events()
    for ticket_id, entry in entries.items():
        assert entry.state in FINAL, (ticket_id, entry.state)
        assert tickets[ticket_id]["status"] == entry.state
        states = [s for i, s, _ in events if i == ticket_id]
        finals = [s for s in states if s in FINAL]
        assert finals == [entry.state], (ticket_id, states)  # exactly one final state, ever
        after = states[states.index(entry.state) + 1 :]
        assert not {"queued", "running"} & set(after), (ticket_id, states)  # never redone
    # The journal and the repositories agree, branch for branch.
    for name in ("stockroom", "stockroom-copy"):
        repo = where / name
        branches = dict(
            line.split() for line in git(
                repo, "for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads/"
            ).splitlines()
        )  # fmt: skip
        head = branches.pop("main")
        green = {e.branch: e.commit for e in entries.values()
                 if e.state == "green" and e.item.repo.name == name}  # fmt: skip
        assert branches == green, (name, outcome["log"])
        for sha in branches.values():
            assert git(repo, "rev-parse", f"{sha}^").strip() == head  # one commit on main
        assert git(repo, "status", "--porcelain") == ""
        assert git(repo, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    # Fixable without a model well within the budget: nothing is lost to the kills.
    problems = {i: (t["status"], t["reason"]) for i, t in tickets.items() if t["status"] != "green"}
    assert not problems, (problems, outcome["log"])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_at_random_moments_then_resume(tmp_path: Path) -> None:
    outcomes: dict[int, dict] = {seed: {} for seed in SEEDS}
    errors: list[BaseException] = []

    def run(seed: int) -> None:
        try:
            _run_seed(seed, tmp_path / f"seed{seed}", outcomes[seed])
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    started = time.monotonic()
    threads = []
    for seed in SEEDS:
        (tmp_path / f"seed{seed}").mkdir()
        threads.append(threading.Thread(target=run, args=(seed,)))
        threads[-1].start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for seed in SEEDS:
        _check(tmp_path / f"seed{seed}", outcomes[seed])
    assert time.monotonic() - started < FINAL_TIMEOUT + 60
