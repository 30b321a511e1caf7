"""`agent bench` end to end with real subprocess fixers: a fixer that applies the reference fix
(by commit or by diff), one that claims green without fixing, one that gives up, one that crashes
and one that hangs. The bench records each outcome and carries on."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import pytest
from greenpatch.agent.bench.run import (
    Config,
    fixer_command,
    isolated_cache,
    markdown_table,
    paired,
    report,
    run_task,
    summarize,
)
from greenpatch.agent.bench.tasks import TASKS_FILE, load_tasks
from greenpatch.agent.commands.cli import app
from greenpatch.agent.errors import AgentError
from typer.testing import CliRunner

FIXER = Path(__file__).resolve().parent / "bench_fixer.py"


@pytest.fixture(scope="module")
def two_tasks(tmp_path_factory) -> Path:
    """Two cachetools tasks (the quickest suite) of different kinds, as a task file."""
    by_kind = {}
    for task in load_tasks(TASKS_FILE):
        if task.library == "cachetools":
            by_kind.setdefault(task.kind, task)
    chosen = list(by_kind.values())[:2]
    path = tmp_path_factory.mktemp("tasks") / "tasks.jsonl"
    path.write_text("".join(json.dumps(t.to_dict()) + "\n" for t in chosen))
    return path


def fixer(tasks: Path) -> str:
    return shlex.join([sys.executable, str(FIXER), "--tasks", str(tasks)])


def one_line_error(result) -> str:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.slow
def test_bench_records_every_outcome_and_goes_on(run_agent, two_tasks, tmp_path) -> None:
    out, table = tmp_path / "report.json", tmp_path / "table.md"
    modes = ["commit", "diff", "noop", "giveup", "crash", "hang"]
    result = run_agent(
        "bench", "--tasks", two_tasks, "--split", "all", "--fixer", fixer(two_tasks),
        *[arg for mode in modes for arg in ("--compare", f"{mode}=--mode {mode}")],
        "--budget", "2", "--timeout", "6", "--jobs", "2",
        "--json", out, "--markdown", table, timeout=240,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert len(report["tasks"]) == 2
    configs = report["configs"]
    assert list(configs) == modes
    statuses = {name: {t["status"] for t in data["tasks"]} for name, data in configs.items()}
    assert statuses == {
        "commit": {"green"}, "diff": {"green"}, "noop": {"green"}, "giveup": {"no_fix"},
        "crash": {"error"}, "hang": {"timeout"},
    }
    for name in ("commit", "diff"):
        summary = configs[name]["summary"]
        assert (summary["plausible"], summary["exact"], summary["total"]) == (2, 2, 2)
        assert summary["candidates_per_bug"] == 3 and summary["tests_run_per_bug"] == 7
        assert summary["median_seconds_to_green"] is not None
    # A committed fix with an extra comment is still exact: compared as ASTs.
    assert all(t["changed_files"] for t in configs["commit"]["tasks"])
    noop = configs["noop"]["tasks"]
    assert not any(t["plausible"] for t in noop)
    assert all("failing" in t["reason"] for t in noop), noop
    assert all("crashed on purpose" in t["reason"] for t in configs["crash"]["tasks"])
    assert all("killed after 6 s" in t["reason"] for t in configs["hang"]["tasks"])
    assert all(t["wall_seconds"] < 30 for t in configs["hang"]["tasks"])
    text = table.read_text()
    assert text in result.stdout
    assert "| commit | **all** | 2/2 | 2/2 | 0 | 0 |" in text
    assert "| crash | **all** | 0/2 | 0/2 | 2 | 0 |" in text
    assert "| hang | **all** | 0/2 | 0/2 | 0 | 2 |" in text


@pytest.mark.slow
def test_bench_with_the_real_agent_fix_records_its_outcome(run_agent, two_tasks, tmp_path) -> None:
    out = tmp_path / "report.json"
    result = run_agent(
        "bench", "--tasks", two_tasks, "--split", "all", "--sample", "1", "--budget", "5",
        "--timeout", "15", "--json", out, timeout=240,
    )
    assert result.returncode == 0, result.stderr
    (task,) = json.loads(out.read_text())["configs"]["default"]["tasks"]
    assert task["status"] in {"green", "no_fix", "cannot_reproduce", "error", "timeout"}
    if task["status"] == "error":
        assert task["reason"]


def test_bench_json_to_stdout_keeps_stdout_clean(run_agent, two_tasks) -> None:
    result = run_agent(
        "bench", "--tasks", two_tasks, "--split", "all", "--sample", "1",
        "--fixer", fixer(two_tasks), "--compare", "giveup=--mode giveup", "--budget", "2",
        "--json", "-", timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["configs"]["giveup"]["summary"]["statuses"] == {"no_fix": 1}
    assert "| giveup |" in result.stderr


def test_shards_of_one_run_merge_into_its_report(run_agent, two_tasks, tmp_path) -> None:
    shards = []
    for k in (1, 2):
        out = tmp_path / f"shard{k}.json"
        result = run_agent(
            "bench", "--tasks", two_tasks, "--split", "all", "--shard", f"{k}/2",
            "--fixer", fixer(two_tasks), "--compare", "commit=--mode commit",
            "--compare", "giveup=--mode giveup", "--budget", "2", "--json", out, timeout=180,
        )
        assert result.returncode == 0, result.stderr
        shards.append(out)
    one, two = (json.loads(p.read_text()) for p in shards)
    assert len(one["tasks"]) == len(two["tasks"]) == 1 and one["tasks"] != two["tasks"]
    assert one["code"] == two["code"] and len(one["code"].split("+")[0]) == 40
    merged_out, table = tmp_path / "merged.json", tmp_path / "merged.md"
    result = run_agent("bench", "--merge", shards[0], "--merge", shards[1], "--json", merged_out,
                       "--markdown", table, timeout=60)
    assert result.returncode == 0, result.stderr
    merged = json.loads(merged_out.read_text())
    assert sorted(merged["tasks"]) == sorted(one["tasks"] + two["tasks"])
    assert merged["configs"]["commit"]["summary"]["plausible"] == 2
    assert merged["configs"]["giveup"]["summary"]["statuses"] == {"no_fix": 2}
    assert "| commit | **all** | 2/2 | 2/2 | 0 | 0 |" in table.read_text()
    # Shards of another run are refused, as is a task measured twice.
    other = {**two, "budget": 5}
    (tmp_path / "other.json").write_text(json.dumps(other))
    again = CliRunner().invoke(app, ["bench", "--merge", str(shards[0]), "--merge",
                                     str(tmp_path / "other.json")])
    assert "ran with budget 5" in one_line_error(again)
    twice = CliRunner().invoke(app, ["bench", "--merge", str(shards[0]), "--merge",
                                     str(shards[0])])
    assert "is in both" in one_line_error(twice)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--split", "nope"], "--split must be"),
        (["--compare", "noequals"], "NAME=FLAGS"),
        (["--compare", "a=", "--compare", "a=-x"], "distinct"),
        (["--task", "no-such-task"], "unknown task id"),
        (["--fixer", "no-such-fixer-binary"], "command not found"),
        (["--tasks", "/nonexistent/tasks.jsonl"], "task file not found"),
        (["--shard", "3/2"], "--shard wants K/N"),
        (["--shard", "x"], "--shard wants K/N"),
        (["--merge", "/nonexistent/shard.json"], "cannot read"),
    ],
)
def test_bad_input_is_one_line(two_tasks, args, message) -> None:
    # In process: the same command and error path, without paying the CLI's import time per case.
    if "--tasks" not in args:
        args = ["--tasks", str(two_tasks), *args]
    assert message in one_line_error(CliRunner().invoke(app, ["bench", *args]))


def test_config_parse_and_summary() -> None:
    assert Config.parse("one-shot=--max-rounds 1") == Config("one-shot", ("--max-rounds", "1"))
    assert Config.parse("full=") == Config("full", ())
    with pytest.raises(AgentError):
        Config.parse("=x")
    rows = [
        {"status": "green", "plausible": True, "exact": True, "seconds": s, "candidates": 4,
         "tests_run": 10}
        for s in (1.0, 2.0, 3.0, 4.0, 10.0)
    ] + [{"status": "timeout", "plausible": False, "exact": False}]
    summary = summarize(rows)
    assert (summary["total"], summary["plausible"], summary["exact"]) == (6, 5, 5)
    assert summary["median_seconds_to_green"] == 3.0
    assert summary["p90_seconds_to_green"] == 10.0
    assert summary["candidates_per_bug"] == 4 and summary["tests_run_per_bug"] == 10
    assert summary["statuses"] == {"green": 5, "timeout": 1}
    # Over every task, the miss counts as never green: it lifts the median from 3 to 3.5...
    assert summary["median_seconds_all_tasks"] == 3.5
    # ...and a configuration that misses half the tasks has no median at all.
    assert summarize(rows[:2] + [rows[-1]] * 2)["median_seconds_all_tasks"] is None


def test_configurations_are_paired_on_the_tasks_both_fixed() -> None:
    def result(task: str, config: str, seconds: float | None) -> dict:
        return {"task": task, "config": config, "kind": "k", "status": "green" if seconds
                else "no_fix", "plausible": seconds is not None, "seconds": seconds}

    rows = [result("a", "full", 30.0), result("b", "full", 5.0), result("c", "full", 50.0),
            result("a", "edits", 20.0), result("b", "edits", 9.0), result("c", "edits", None)]
    configs = report(rows, [Config("full", ()), Config("edits", ("--drafter", "edits"))])
    [pair] = paired(configs)
    # Task c (only full fixed it, slowly) is left out: the same two tasks are compared.
    assert pair == {"config": "edits", "against": "full", "both_fixed": 2,
                    "median_seconds": 14.5, "median_seconds_against": 17.5, "faster_on": 1}
    assert "| edits | full | 2 | 14.5 | 17.5 | 1/2 |" in markdown_table(configs)


def test_every_fixer_run_gets_its_own_cache_with_the_baseline(tmp_path) -> None:
    # Task repos have deterministic commits: a shared result cache would hand one
    # configuration the results of another.
    baseline = tmp_path / "abc.sqlite"
    baseline.write_bytes(b"stored baseline")
    first = isolated_cache(tmp_path / "full" / "t", baseline)
    second = isolated_cache(tmp_path / "one-shot" / "t", baseline)
    assert first["XDG_CACHE_HOME"] != second["XDG_CACHE_HOME"]
    for env in (first, second):
        stored = Path(env["XDG_CACHE_HOME"]) / "greenpatch" / "baselines" / "abc.sqlite"
        assert stored.read_bytes() == b"stored baseline"


def test_a_hanging_task_that_nothing_localizes_ends_as_no_fix_with_why(tmp_path) -> None:
    # What `agent fix` reports on a task whose ticket test hangs: the timeout kills the test,
    # nothing is localized, no candidate is tried.
    task = next(t for t in load_tasks(TASKS_FILE)
                if t.extra.get("hangs") and t.library == "cachetools")
    script = tmp_path / "gives_up.py"
    script.write_text(
        "import json, sys\n"
        "out = sys.argv[sys.argv.index('--json') + 1]\n"
        "json.dump({'status': 'no-fix', 'localization': [], 'candidates': 0}, open(out, 'w'))\n"
        "sys.exit(1)\n"
    )
    result = run_task(task, Config("full"), [sys.executable, str(script)], 5, tmp_path)
    assert (result["status"], result["hangs"]) == ("no_fix", True)
    assert result["reason"] == "nothing localized: no candidate tried"


def test_a_bare_agent_fixer_is_the_one_installed_beside_the_bench(tmp_path, monkeypatch) -> None:
    # Another `agent` earlier on PATH (another checkout's) is not the code the bench records.
    other = tmp_path / "agent"
    other.write_text("#!/bin/sh\nexit 0\n")
    other.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert fixer_command("agent fix") == [str(Path(sys.executable).parent / "agent"), "fix"]
    assert fixer_command(f"{other} fix")[0] == str(other)
