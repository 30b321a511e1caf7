"""`agent batch` end to end on real repos and pytest suites: bad JSONL lines are reported with
their line numbers and the rest runs; tickets on one commit share one baseline; the journal's
rules (resume, refusal, time limit); the reports; one model shared by threads."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import torch
from greenpatch.agent.batch.board import Board
from greenpatch.agent.batch.journal import Journal
from greenpatch.agent.batch.report import markdown
from greenpatch.agent.batch.scheduler import MIN_SHARE, BatchOptions, TicketScheduler
from greenpatch.agent.batch.shared_model import SerialNet
from greenpatch.agent.batch.sources import BatchTicket
from greenpatch.agent.commands.cli import app
from greenpatch.agent.config import Settings
from greenpatch.agent.tickets import Ticket
from greenpatch.model.network import DiffusionLM, ModelConfig
from greenpatch.runner import baseline as baseline_module
from typer.testing import CliRunner

from tests.conftest import git, make_repo

CALC = {
    "src/calc.py": "def add(a, b):\n    return a - b\n\n\ndef sub(a, b):\n    return a - b\n",
    "tests/test_calc.py": (
        "from calc import add, sub\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\n"
        "def test_sub():\n    assert sub(5, 3) == 2\n"
    ),
    "pyproject.toml": '[tool.pytest.ini_options]\npythonpath = ["src"]\n',
}


def _jsonl(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines))
    return path


def _batch(*args: object, cache: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        app, ["batch", *map(str, args)], env={"XDG_CACHE_HOME": str(cache)}, catch_exceptions=False
    )
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.slow
def test_bad_lines_are_skipped_the_rest_runs_on_one_baseline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[Path] = []
    collect = baseline_module.BaselineBuild._collect

    def counting_collect(self):  # a spy: every build that runs the suite collects it once
        builds.append(self.repo_root)
        return collect(self)

    monkeypatch.setattr(baseline_module.BaselineBuild, "_collect", counting_collect)
    repo = make_repo(tmp_path / "calc", CALC)
    head = git(repo, "rev-parse", "HEAD")
    backlog = _jsonl(tmp_path / "backlog.jsonl", [
        {"id": "add", "title": "add subtracts", "body": "add(2, 3) is -1\n",
         "tests": ["tests/test_calc.py::test_add"], "repo": "calc"},
        '{"id": "oops", "title": ',
        {"id": "sub", "title": "sub is fine", "body": "sub works\n",
         "tests": "tests/test_calc.py::test_sub", "repo": "calc"},
        {"id": "nobody", "title": "no body", "repo": "calc"},
    ])  # fmt: skip
    cache = tmp_path / "cache"
    code, out, err = _batch(
        backlog, "--journal", tmp_path / "j.sqlite", "--drafter", "edits", "--sandbox",
        "process", "--budget", "90", "--json", "-", "--markdown", tmp_path / "summary.md", "-q",
        cache=cache,
    )  # fmt: skip
    assert code == 1, err  # not every ticket is green
    assert f"skipped {backlog}:2: invalid JSON" in err
    assert f"skipped {backlog}:4: missing field: body" in err
    report = json.loads(out)
    by_id = {t["id"]: t for t in report["tickets"]}
    assert list(by_id) == ["add", "sub"]
    assert {k: by_id["add"][k] for k in ("status", "branch")} == {
        "status": "green", "branch": "greenpatch/add",
    }  # fmt: skip
    assert by_id["sub"]["status"] == "cannot-reproduce"
    assert by_id["sub"]["reason"].startswith("cannot reproduce: nothing fails")
    assert set(by_id["add"]) >= {"id", "status", "branch", "commit", "seconds", "reason"}
    assert [s["where"] for s in report["skipped"]] == [f"{backlog}:2", f"{backlog}:4"]
    # The fix is a branch on top of the user's HEAD, which did not move.
    assert git(repo, "rev-parse", "greenpatch/add").strip() == by_id["add"]["commit"]
    assert git(repo, "rev-parse", "greenpatch/add^").strip() == head.strip()
    assert "return a + b" in git(repo, "show", "greenpatch/add:src/calc.py")
    assert git(repo, "rev-parse", "HEAD") == head and git(repo, "status", "--porcelain") == ""
    # Two tickets on one commit, in flight together: the baseline is built once.
    assert len(builds) == 1
    summary = (tmp_path / "summary.md").read_text()
    assert summary.startswith("## agent batch: 1 of 2 tickets green")
    assert "| add | green | `greenpatch/add` |" in summary
    assert f"- `{backlog}:2`: invalid JSON" in summary
    # Resuming a finished batch redoes nothing.
    code, out, err = _batch(backlog, "--journal", tmp_path / "j.sqlite", "--resume", "--json",
                            "-", "-q", cache=cache)  # fmt: skip
    again = json.loads(out)
    assert [(t["id"], t["status"], t["commit"]) for t in again["tickets"]] == [
        (t["id"], t["status"], t["commit"]) for t in report["tickets"]
    ]
    with Journal(tmp_path / "j.sqlite") as journal:
        assert [s for i, s, _ in journal.events("add")] == ["queued", "running", "green"]


def test_journal_rules(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "calc", CALC)
    backlog = _jsonl(tmp_path / "b.jsonl", [{"id": "add", "title": "t", "body": "b"}])
    other = _jsonl(tmp_path / "other.jsonl", [{"id": "x", "title": "t", "body": "b"}])
    journal = tmp_path / "j.sqlite"
    cache = tmp_path / "cache"
    code, _, err = _batch("--resume", "--journal", journal, cache=cache)
    assert code == 2 and "nothing to resume" in err
    # --time-limit too short to start anything: every ticket is left for --resume.
    code, out, err = _batch(backlog, "--repo", repo, "--journal", journal, "--time-limit", "1",
                            "--drafter", "edits", "--json", "-", cache=cache)  # fmt: skip
    assert code == 1, err
    (ticket,) = json.loads(out)["tickets"]
    assert (ticket["status"], ticket["finished"]) == ("failed", False)
    assert "continue with --resume" in ticket["reason"]
    code, _, err = _batch(backlog, "--repo", repo, "--journal", journal, cache=cache)
    assert code == 2 and "an unfinished batch (0 of 1 tickets done" in " ".join(err.split())
    code, _, err = _batch(other, "--resume", "--journal", journal, cache=cache)
    assert code == 2 and "is for the backlog" in " ".join(err.split())
    code, _, err = _batch(backlog, "--repo", repo, "--drafter", "llm", "--journal",
                          tmp_path / "j2.sqlite", cache=cache)  # fmt: skip
    drafters = "model, model-only, model-repair, edits, mutations"
    assert code == 2 and f"--drafter must be one of {drafters}" in err
    code, _, err = _batch(tmp_path / "missing.jsonl", "--journal", tmp_path / "j3.sqlite",
                          cache=cache)  # fmt: skip
    assert code == 2 and "backlog not found" in err
    # Options stored at the start are the defaults of a resume.
    with Journal(journal) as j:
        options = j.meta()["options"]
    assert options["drafter"] == "edits" and options["time_limit"] == 1


def test_fair_budgets_under_a_time_limit(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        scheduler = TicketScheduler(journal, BatchOptions(budget=300, parallel=2, time_limit=600),
                              Board())  # fmt: skip
        settings = Settings()
        assert scheduler.budget_for(settings, 1) == 300  # no limit started: just --budget
        scheduler._deadline = time.monotonic() + 600
        assert scheduler.budget_for(settings, 2) == 300  # plenty of time: --budget caps
        assert 119 < scheduler.budget_for(settings, 10) <= 120  # 2 slots x 600 s / 10 tickets
        assert scheduler.budget_for(settings, 1000) == MIN_SHARE  # never thinner than this
        scheduler._deadline = time.monotonic() + 10
        assert scheduler.budget_for(settings, 1) <= 10  # never past the limit
        free = TicketScheduler(journal, BatchOptions(), Board())
        assert free.budget_for(Settings(budget=77), 50) == 77  # the repo's configured budget


def test_one_network_serves_every_ticket_one_pass_at_a_time() -> None:
    torch.manual_seed(0)
    net = DiffusionLM(ModelConfig.tiny(vocab_size=64, max_seq_len=32)).eval()
    shared = SerialNet(net)
    active, peak = [0], [0]
    guard = threading.Lock()

    def enter(module, args):
        with guard:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.01)  # widen the window in which an unserialized pass would overlap

    def leave(module, args, output):
        with guard:
            active[0] -= 1

    net.register_forward_pre_hook(enter)
    net.register_forward_hook(leave)
    ids = torch.randint(0, 64, (2, 16))

    def ticket() -> None:
        with torch.no_grad():
            for _ in range(5):
                assert shared(ids).shape[:2] == (2, 16)

    threads = [threading.Thread(target=ticket) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 1 and shared.calls == 15
    assert shared.config is net.config  # everything else is the network's


def test_markdown_report_escapes_and_links() -> None:
    report = {
        "backlog": "gh:acme/lib label:agent-fix", "seconds": 12.0, "finished": False,
        "counts": {"green": 1, "failed": 1, "cannot-reproduce": 0, "error": 0},
        "tickets": [
            {"id": "acme-lib-1", "status": "green", "branch": "greenpatch/acme-lib-1",
             "commit": "0123456789abcdef", "seconds": 3.21, "reason": "",
             "url": "https://github.com/acme/lib/issues/1",
             "pull_request": "https://github.com/acme/lib/pull/5"},
            {"id": "acme-lib-2", "status": "failed", "branch": None, "commit": None,
             "seconds": 60.0, "reason": "a | b\nsecond line"},
        ],
        "skipped": [],
    }  # fmt: skip
    text = markdown(report)
    assert "| [acme-lib-1](https://github.com/acme/lib/issues/1) | green | " in text
    assert "`0123456789` | 3.2 |  | [open](https://github.com/acme/lib/pull/5) |" in text
    assert "| acme-lib-2 | failed |  |  | 60.0 | a \\| b second line |  |" in text
    assert text.rstrip().endswith("`agent batch --resume` continues it.")


def test_batch_ticket_record_round_trip(tmp_path: Path) -> None:
    item = BatchTicket(Ticket("a", "T", "body", ["t.py::x"], "https://x/issues/1"), tmp_path)
    assert BatchTicket.from_record(item.to_record()) == item
