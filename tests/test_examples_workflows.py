"""The GitHub Actions workflows in examples/github: triggers, permissions, commands, summaries."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest
import typer

from agent.cli import app

yaml = pytest.importorskip("yaml")

GITHUB = Path(__file__).resolve().parent.parent / "examples" / "github"
CONTEXT = {
    "${{ github.repository }}": "octo/shop",
    "${{ github.event.issue.number }}": "42",
}


def _load(name: str) -> dict:
    data = yaml.safe_load((GITHUB / name).read_text(encoding="utf-8"))
    # YAML 1.1 reads the bare key `on` as boolean true.
    data["on"] = data.pop(True, data.get("on"))
    return data


def _steps(workflow: dict) -> list[dict]:
    (job,) = workflow["jobs"].values()
    return job["steps"]


def _step(workflow: dict, name: str) -> dict:
    return next(s for s in _steps(workflow) if s.get("name") == name)


def _argv(run: str) -> list[str]:
    for expr, value in CONTEXT.items():
        run = run.replace(expr, value)
    return shlex.split(run)


def _parse_cli(argv: list[str]) -> dict:
    """Parse a command line with the real `agent` CLI definition, without running it."""
    assert argv[0] == "agent"
    group = typer.main.get_command(app)
    command = group.get_command(None, argv[1])
    return command.make_context(argv[1], argv[2:]).params


@pytest.mark.parametrize("name", ["agent-fix.yml", "agent-batch.yml"])
def test_permissions_and_python(name):
    workflow = _load(name)
    assert workflow["permissions"] == {
        "contents": "write",
        "pull-requests": "write",
        "issues": "read",
    }
    setup = next(
        s for s in _steps(workflow) if s.get("uses", "").startswith("actions/setup-python")
    )
    assert str(setup["with"]["python-version"]) == "3.11"
    assert any(s.get("uses", "").startswith("actions/checkout") for s in _steps(workflow))
    assert any("pip install greenpatch" in s.get("run", "") for s in _steps(workflow))


def test_fix_runs_only_for_the_agent_fix_label():
    workflow = _load("agent-fix.yml")
    assert workflow["on"] == {"issues": {"types": ["labeled"]}}
    (job,) = workflow["jobs"].values()
    assert job["if"] == "github.event.label.name == 'agent-fix'"


def test_fix_command_is_accepted_by_the_cli():
    step = _step(_load("agent-fix.yml"), "agent fix")
    assert step["env"]["GITHUB_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
    params = _parse_cli(_argv(step["run"]))
    assert params["ticket"] == "gh:octo/shop#42"
    assert params["pr"] is True
    assert str(params["json_out"]) == "report.json"


def test_fix_report_goes_to_the_job_summary(tmp_path):
    step = _step(_load("agent-fix.yml"), "Report")
    assert step["if"] == "always()"
    (tmp_path / "report.json").write_text('{"status": "green", "branch": "greenpatch/42"}')
    summary = tmp_path / "summary.md"
    script = step["run"].replace("${{ github.event.issue.number }}", "42")
    env = {**os.environ, "GITHUB_STEP_SUMMARY": str(summary)}
    subprocess.run(["bash", "-euc", script], cwd=tmp_path, env=env, check=True)
    text = summary.read_text()
    assert "## agent fix #42" in text
    assert '"branch": "greenpatch/42"' in text


def test_batch_runs_nightly_and_on_demand():
    workflow = _load("agent-batch.yml")
    assert set(workflow["on"]) == {"schedule", "workflow_dispatch"}
    (entry,) = workflow["on"]["schedule"]
    assert len(entry["cron"].split()) == 5


def test_batch_command_is_accepted_by_the_cli():
    workflow = _load("agent-batch.yml")
    step = _step(workflow, "agent batch")
    assert step["env"]["GITHUB_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
    params = _parse_cli(_argv(step["run"]))
    assert params["backlog"] == "gh:octo/shop label:agent-fix"
    assert params["pr"] is True
    assert str(params["json_out"]) == "batch.json"
    assert str(params["markdown_out"]) == "batch.md"
    (job,) = workflow["jobs"].values()
    assert params["time_limit"] < job["timeout-minutes"] * 60  # reports before the job is killed
    upload = _step(workflow, "Upload the batch report")
    assert upload["uses"].startswith("actions/upload-artifact")
    assert upload["with"]["path"].split() == ["batch.json", "batch.md"]


def _run_summary(tmp_path: Path, markdown_report: str | None) -> str:
    step = _step(_load("agent-batch.yml"), "Summary")
    assert step["if"] == "always()"
    if markdown_report is not None:
        (tmp_path / "batch.md").write_text(markdown_report)
    summary = tmp_path / "summary.md"
    env = {**os.environ, "GITHUB_STEP_SUMMARY": str(summary)}
    subprocess.run(["bash", "-euc", step["run"]], cwd=tmp_path, env=env, check=True)
    return summary.read_text()


def test_batch_summary_is_the_batch_markdown_report(tmp_path):
    from agent.batch.report import markdown

    report = {
        "backlog": "gh:octo/shop label:agent-fix", "seconds": 341.0, "finished": True,
        "counts": {"green": 1, "failed": 1, "cannot-reproduce": 0, "error": 0},
        "tickets": [
            {"id": "octo-shop-7", "status": "green", "branch": "greenpatch/octo-shop-7",
             "commit": "abcdef0123456789", "seconds": 41.0, "reason": "",
             "pull_request": "https://github.com/octo/shop/pull/12"},
            {"id": "octo-shop-9", "status": "failed", "branch": None, "commit": None,
             "seconds": 300.0, "reason": "no fix within 300s"},
        ],
        "skipped": [],
    }  # fmt: skip
    lines = _run_summary(tmp_path, markdown(report)).splitlines()
    assert lines[0] == "## agent batch: 1 of 2 tickets green"
    assert "| ticket | status | branch | commit | seconds | reason | pull request |" in lines
    assert (
        "| octo-shop-7 | green | `greenpatch/octo-shop-7` | `abcdef0123` | 41.0 |  "
        "| [open](https://github.com/octo/shop/pull/12) |"
    ) in lines


def test_batch_summary_without_report(tmp_path):
    assert "No report was written" in _run_summary(tmp_path, None)
