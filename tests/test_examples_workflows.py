"""The GitHub Actions workflows in examples/github and the action they use (action.yml): triggers,
permissions, the command lines the action builds, summaries. tests/test_action.py runs them
end to end."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import typer
from greenpatch.agent.commands.cli import app

from tests.action_runner import Run, load_action, load_workflow, run_action, run_job

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
GITHUB = ROOT / "examples" / "github"

# Stands in for `agent` on PATH: records its argv and writes what the real one would (a report,
# and for a batch its markdown), so the action's own lines around the command run for real.
AGENT_SHIM = """#!/usr/bin/env python3
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["SHIM_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
out = Path(args[args.index("--json") + 1])
out.write_text(json.dumps({"status": os.environ.get("SHIM_STATUS", "green"), "ticket": "t"}))
if "--markdown" in args and os.environ.get("SHIM_MARKDOWN"):
    Path(args[args.index("--markdown") + 1]).write_text(os.environ["SHIM_MARKDOWN"])
sys.exit(int(os.environ.get("SHIM_EXIT", "0")))
"""


def _job(name: str) -> dict:
    (job,) = load_workflow(GITHUB / name)["jobs"].values()
    return job


def _step(job: dict, name: str) -> dict:
    return next(s for s in job["steps"] if s.get("name") == name)


def _parse_cli(argv: list[str]) -> dict:
    """Parse a command line with the real `agent` CLI definition, without running it."""
    group = typer.main.get_command(app)
    command = group.get_command(None, argv[0])
    return command.make_context(argv[0], argv[1:]).params


def _agent_step(tmp_path: Path, inputs: dict[str, str], **shim_env: str) -> tuple[Run, list]:
    """Run the action's agent step (not its install steps) with the shim as `agent`."""
    action = load_action(ROOT)
    action["runs"]["steps"] = [s for s in action["runs"]["steps"] if s.get("id") == "agent"]
    here = tmp_path / "action"
    here.mkdir()
    (here / "action.yml").write_text(yaml.safe_dump(action))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "agent").write_text(AGENT_SHIM)
    (bin_dir / "agent").chmod(stat.S_IRWXU)
    log = tmp_path / "argv.jsonl"
    (tmp_path / "temp").mkdir()
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}", "RUNNER_TEMP": str(tmp_path / "temp"),
        "HOME": str(tmp_path), "GITHUB_REPOSITORY": "octo/shop", "SHIM_LOG": str(log),
        **shim_env,
    }  # fmt: skip
    run = run_action(here, inputs, env, tmp_path, {"token": "ghs_job"})
    argv = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return run, argv


@pytest.mark.parametrize("name", ["agent-fix.yml", "agent-batch.yml"])
def test_permissions_and_python(name):
    workflow = load_workflow(GITHUB / name)
    assert workflow["permissions"] == {
        "contents": "write",
        "pull-requests": "write",
        "issues": "read",
    }
    steps = _job(name)["steps"]
    setup = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python"))
    assert str(setup["with"]["python-version"]) == "3.11"
    assert any(s.get("uses", "").startswith("actions/checkout") for s in steps)


def test_fix_runs_only_for_the_agent_fix_label():
    workflow = load_workflow(GITHUB / "agent-fix.yml")
    assert workflow["on"] == {"issues": {"types": ["labeled"]}}
    assert _job("agent-fix.yml")["if"] == "github.event.label.name == 'agent-fix'"


def test_the_fix_command_the_action_builds_is_accepted_by_the_cli(tmp_path: Path):
    run, argv = _agent_step(tmp_path, {"ticket": "42", "budget": "300",
                                       "model-url": "http://127.0.0.1:8000/v1",
                                       "args": "--workers 3  --drafter edits"})  # fmt: skip
    assert run.ok and run.outputs["status"] == "green"
    ((command, *rest),) = argv
    assert command == "fix"
    params = _parse_cli([command, *rest])
    assert params["ticket"] == "gh:octo/shop#42"  # a bare number: an issue of this repository
    assert params["pr"] is True and params["budget"] == 300
    assert params["model"] == "http://127.0.0.1:8000/v1"
    assert params["workers"] == 3 and params["drafter"] == "edits"
    assert str(params["json_out"]) == run.outputs["report"]
    assert str(params["report_html"]) == run.outputs["page"]
    assert params["repo"] == Path(".")


def test_a_ticket_reference_is_passed_as_is_and_pr_can_be_off(tmp_path: Path):
    run, argv = _agent_step(tmp_path, {"ticket": "gh:octo/other#7", "pr": "false"},
                            SHIM_STATUS="no-fix", SHIM_EXIT="1")  # fmt: skip
    params = _parse_cli(argv[0])
    assert params["ticket"] == "gh:octo/other#7" and params["pr"] is False
    # No fix: the step fails with agent's exit code, and still says what happened.
    (step,) = run.steps
    assert step.outcome == "failure" and step.code == 1
    assert step.outputs["status"] == "no-fix"


def test_the_batch_command_the_action_builds_is_accepted_by_the_cli(tmp_path: Path):
    run, argv = _agent_step(tmp_path, {"label": "agent-fix", "time-limit": "16200"},
                            SHIM_MARKDOWN="## agent batch: 1 of 2 tickets green\n")  # fmt: skip
    params = _parse_cli(argv[0])
    assert argv[0][0] == "batch"
    assert params["backlog"] == "gh:octo/shop label:agent-fix"
    assert params["pr"] is True and params["time_limit"] == 16200
    assert str(params["json_out"]) == run.outputs["report"]
    assert Path(params["markdown_out"]).parent == Path(run.outputs["report"]).parent
    assert run.summary == "## agent batch: 1 of 2 tickets green\n"  # the batch's own report


def test_a_batch_without_its_markdown_still_leaves_a_summary(tmp_path: Path):
    run, _ = _agent_step(tmp_path, {"label": "agent-fix"}, SHIM_EXIT="2")
    assert run.steps[0].code == 2
    assert run.summary == "## greenpatch: failed\n"


def test_the_fix_report_goes_to_the_job_summary(tmp_path: Path):
    report = tmp_path / "fix.json"
    report.write_text('{"status": "green", "branch": "greenpatch/42"}')
    job = _job("agent-fix.yml")
    step = _step(job, "Report")
    assert step["if"] == "always()"
    # Only the Report step, after a failed agent step (its outputs still set).
    one = {"name": "agent-fix", "on": {"issues": {}},
           "jobs": {"fix": {"steps": [{"name": "agent fix", "id": "greenpatch",
                                       "run": f"echo report={report} >> $GITHUB_OUTPUT; exit 1"},
                                      step]}}}  # fmt: skip
    (tmp_path / "one.yml").write_text(yaml.safe_dump(one))
    run = run_job(tmp_path / "one.yml", {"github": {"event": {"issue": {"number": 42}}}},
                  {"PATH": os.environ["PATH"]}, tmp_path, {})  # fmt: skip
    assert [s.outcome for s in run.steps] == ["failure", "success"]
    assert "## agent fix #42" in run.summary
    assert '"branch": "greenpatch/42"' in run.summary


def test_batch_runs_nightly_and_on_demand():
    workflow = load_workflow(GITHUB / "agent-batch.yml")
    assert set(workflow["on"]) == {"schedule", "workflow_dispatch"}
    (entry,) = workflow["on"]["schedule"]
    assert len(entry["cron"].split()) == 5
    job = _job("agent-batch.yml")
    batch = _step(job, "agent batch")
    # The batch reports before the job is killed.
    assert int(batch["with"]["time-limit"]) < job["timeout-minutes"] * 60
    upload = _step(job, "Upload the batch report")
    assert upload["uses"].startswith("actions/upload-artifact")
    assert upload["if"] == "always()"


@pytest.mark.parametrize("name", ["agent-fix.yml", "agent-batch.yml"])
def test_without_the_greenpatch_repository_variable_the_job_stops_clearly(name, tmp_path: Path):
    """Unset, actions/checkout would check out the user's own repository as greenpatch: the
    job stops before, saying which variable to set."""
    checked_out: list[dict] = []
    handlers = {
        "actions/checkout": lambda inputs, ctx: checked_out.append(inputs) or {},
        "actions/setup-python": lambda inputs, ctx: {},
        "actions/upload-artifact": lambda inputs, ctx: {},
    }
    context = {"github": {"repository": "octo/shop", "event": {"issue": {"number": 42},
                                                              "label": {"name": "agent-fix"}}},
               "secrets": {"GITHUB_TOKEN": "ghs_job"}, "vars": {}}  # fmt: skip
    run = run_job(GITHUB / name, context, {"PATH": os.environ["PATH"]}, tmp_path, handlers)
    outcomes = {s.name: s.outcome for s in run.steps}
    assert outcomes["Which greenpatch"] == "failure"
    assert outcomes["Check out greenpatch"] == "skipped"
    assert checked_out == [{"fetch-depth": "0"}]  # only the repository's own checkout
    assert [s.outcome for s in run.steps if s.name.startswith("agent ")] == ["skipped"]
