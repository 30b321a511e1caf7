"""greenpatch's GitHub Action (action.yml) and the example workflows that use it, run the way
Actions runs them (tests/action_runner.py): the workflow's job with the action checked out
from this repository, pip installing greenpatch from that checkout into a fresh venv, and
`agent fix` / `agent batch` fixing a real project, pushing to a local bare remote and opening
the pull request on the local GitHub stand-in."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import test_agent_github
from tests.action_runner import (
    EXPRESSION,
    ActionError,
    Run,
    load_action,
    load_workflow,
    run_action,
    run_job,
)
from tests.conftest import git
from tests.fake_http import json_server
from tests.test_fix_cli import ROOT, prepare
from tests.test_user_venv import user_venv

TOKEN = test_agent_github.TOKEN
GITHUB = ROOT / "examples" / "github"
TICKET = (ROOT / "examples" / "tickets" / "stockroom.md").read_text()
BRANCH = "greenpatch/acme-lib-7"


class FakeGitHub(test_agent_github.FakeGitHub):
    """The documented contract of test_agent_github's stand-in, with issue acme/lib#7 being the
    stockroom ticket (labelled agent-fix), and the issue list and pull request lookup a batch
    and a publisher read."""

    def __init__(self) -> None:
        super().__init__()
        title, _, body = TICKET.partition("\n")
        self.issues[("acme", "lib", 7)] = {
            "number": 7, "title": title.removeprefix("# "), "body": body.strip(),
            "html_url": "https://github.com/acme/lib/issues/7",
            "labels": [{"name": "agent-fix"}], "state": "open",
        }  # fmt: skip
        self.heads_with_commits = {BRANCH}

    def handle(self, req: BaseHTTPRequestHandler, method: str) -> tuple:
        path = req.path.split("?", 1)[0]
        if method == "GET" and path in ("/repos/acme/lib/issues", "/repos/acme/lib/pulls"):
            self.requests.append({"method": method, "path": req.path,
                                  "headers": dict(req.headers), "body": b""})  # fmt: skip
            if req.headers.get("Authorization") != f"Bearer {TOKEN}":
                self.violations.append(f"{req.path} without the token")
            if path.endswith("/pulls"):
                head = re.search(r"head=([^&]+)", req.path)
                opened = [{"number": n, "head": {"ref": h}, "base": {"ref": b},
                           "html_url": f"https://github.com/acme/lib/pull/{n}"}
                          for (h, b), n in self.pulls.items()
                          if head is None or f"acme:{h}" == head.group(1).replace("%3A", ":")]
                return 200, opened  # fmt: skip
            labelled = re.search(r"labels=([^&]+)", req.path)
            wanted = labelled.group(1) if labelled else ""
            return 200, [{**issue, "state": "open"} for issue in self.issues.values()
                         if wanted in {lab["name"] for lab in issue.get("labels", [])}]
        return super().handle(req, method)


@pytest.fixture
def github() -> Iterator[tuple[FakeGitHub, str]]:
    fake = FakeGitHub()
    with json_server(fake.handle) as base:
        yield fake, base
    assert fake.violations == []


def _greenpatch_checkout(dest: Path) -> Path:
    """What actions/checkout lays out of this repository: its files as they are here (tracked,
    and new ones not ignored)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        source = ROOT / rel
        if source.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / rel)
    return dest


@pytest.fixture(scope="module")
def python_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What actions/setup-python and the project's dependencies leave: a Python 3.11 with
    pytest and nothing of greenpatch. Everything else greenpatch depends on is this
    environment's (a .pth line, seen on the host only: a sandbox sees the venv's own pytest),
    so pip installs greenpatch itself without fetching anything, from the action's checkout."""
    venv = user_venv(tmp_path_factory.mktemp("runner") / "python").parent.parent
    (site,) = venv.glob("lib/python3*/site-packages")
    (site / "zz-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def _workspace(tmp_path: Path) -> tuple[Path, Path]:
    """The repository a workflow runs in (as actions/checkout leaves it): stockroom, its origin
    github.com/acme/lib, pushes going to a local bare repository."""
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    repo = prepare("stockroom", tmp_path / "workspace")
    git(repo, "remote", "add", "origin", "https://github.com/acme/lib.git")
    git(repo, "config", f"url.{bare}.insteadOf", "https://github.com/acme/lib.git")
    git(repo, "push", "-q", "origin", "HEAD:main")
    return repo, bare


def _env(python: Path, base: str, tmp_path: Path) -> dict[str, str]:
    temp = tmp_path / "runner-temp"
    temp.mkdir(exist_ok=True)
    return {
        "PATH": f"{python / 'bin'}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "HOME": str(tmp_path / "home"), "RUNNER_TEMP": str(temp), "CI": "true",
        "GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "acme/lib",
        "GITHUB_API_URL": base, "GITHUB_SERVER_URL": "https://github.com",
        # The runner here reaches no package index: pip builds with what the env has.
        "PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }  # fmt: skip


def _handlers(tmp_path: Path, python: Path, artifacts: dict[str, list[Path]]) -> dict:
    def checkout(inputs: dict[str, str], ctx: dict[str, Any]) -> dict[str, str]:
        if not inputs.get("repository"):
            return {}  # the workspace is the repository's checkout already
        assert inputs["repository"] == "acme/greenpatch" and inputs["ref"] == "v1"
        _greenpatch_checkout(tmp_path / "workspace" / inputs["path"])
        return {}

    def setup_python(inputs: dict[str, str], ctx: dict[str, Any]) -> dict[str, str]:
        version = subprocess.run([str(python / "bin" / "python"), "-c",
                                  "import sys; print(*sys.version_info[:2], sep='.')"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        assert inputs["python-version"] == version  # fmt: skip
        return {}

    def upload(inputs: dict[str, str], ctx: dict[str, Any]) -> dict[str, str]:
        paths = [Path(p.strip()) for p in inputs["path"].splitlines() if p.strip()]
        artifacts[inputs["name"]] = [p for p in paths if p.exists()]
        return {}

    return {"actions/checkout": checkout, "actions/setup-python": setup_python,
            "actions/upload-artifact": upload}  # fmt: skip


def _job(name: str, event: dict, python: Path, base: str, tmp_path: Path,
         artifacts: dict) -> Run | None:  # fmt: skip
    context = {
        "github": {"repository": "acme/lib", "token": TOKEN, "event": event,
                   "workspace": str(tmp_path / "workspace")},
        "secrets": {"GITHUB_TOKEN": TOKEN},
        "vars": {"GREENPATCH_REPOSITORY": "acme/greenpatch", "GREENPATCH_REF": "v1"},
    }  # fmt: skip
    return run_job(GITHUB / name, context, _env(python, base, tmp_path), tmp_path / "workspace",
                   _handlers(tmp_path, python, artifacts))  # fmt: skip


LABELLED = {"issue": {"number": 7}, "label": {"name": "agent-fix"}}


def _green_run(name: str, event: dict, github, python_env: Path, tmp_path: Path, step: str
               ) -> tuple[Run, dict[str, str], Path, Path, dict[str, list[Path]]]:  # fmt: skip
    """The workflow's job run against the stand-in and a fresh workspace: it must succeed, its
    greenpatch step saying green. Returns the run, that step's outputs, the workspace, the bare
    remote and the uploaded artifacts."""
    repo, bare = _workspace(tmp_path)
    artifacts: dict[str, list[Path]] = {}
    run = _job(name, event, python_env, github[1], tmp_path, artifacts)
    assert run is not None and run.ok, [(s.name, s.outcome, s.code) for s in run.steps]
    outputs = next(s.outputs for s in run.steps if s.name == step)
    assert outputs["status"] == "green"
    return run, outputs, repo, bare, artifacts


@pytest.mark.slow
def test_the_fix_workflow_turns_the_labelled_issue_into_a_pull_request(
    github, python_env: Path, tmp_path: Path
) -> None:
    fake = github[0]
    run, outputs, repo, bare, artifacts = _green_run("agent-fix.yml", LABELLED, github,
                                                     python_env, tmp_path, "agent fix")
    report = json.loads(Path(outputs["report"]).read_text())
    assert report["status"] == "green" and report["branch"] == BRANCH
    assert report["pull_request"] == "https://github.com/acme/lib/pull/1"
    # Pushed to the remote, the PR opened from it, the user's checkout on its branch.
    pushed = git(bare, "rev-parse", f"refs/heads/{BRANCH}").strip()
    assert pushed == report["commit"]
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    (opened,) = [r for r in fake.requests if r["method"] == "POST"]
    assert json.loads(opened["body"])["head"] == BRANCH
    assert opened["headers"]["Authorization"] == f"Bearer {TOKEN}"
    # greenpatch ran from the action's checkout, installed into the job's Python (not editable).
    shown = subprocess.run([str(python_env / "bin" / "python"), "-m", "pip", "show", "greenpatch"],
                           capture_output=True, text=True, check=True).stdout
    (where,) = [line.split(":", 1)[1].strip() for line in shown.splitlines()
                if line.startswith("Location:")]  # fmt: skip
    assert Path(where).is_relative_to(python_env), shown
    assert (python_env / "bin" / "agent").exists()
    # The summary and the artifacts: the JSON and the run report page.
    assert "## agent fix #7" in run.summary and '"status": "green"' in run.summary
    uploaded = {p.name for p in artifacts["agent-fix-report"]}
    assert uploaded == {"fix.json", "run.html"}
    assert "<svg" in Path(outputs["page"]).read_text()


@pytest.mark.slow
def test_the_batch_workflow_fixes_every_labelled_issue(
    github, python_env: Path, tmp_path: Path
) -> None:
    fake = github[0]
    run, outputs, _, bare, artifacts = _green_run("agent-batch.yml", {}, github, python_env,
                                                  tmp_path, "agent batch")
    batch = json.loads(Path(outputs["report"]).read_text())
    (ticket,) = batch["tickets"]
    assert ticket["status"] == "green" and ticket["branch"] == BRANCH
    assert git(bare, "rev-parse", f"refs/heads/{BRANCH}").strip() == ticket["commit"]
    assert [r["method"] for r in fake.requests if r["path"].endswith("/pulls")] == ["POST"]
    assert run.summary.startswith("## agent batch: 1 of 1 tickets green")
    assert [p.name for p in artifacts["agent-batch-report"]] == ["batch.json"]


def test_the_job_does_not_run_for_another_label(tmp_path: Path) -> None:
    other = {"issue": {"number": 7}, "label": {"name": "question"}}
    assert _job("agent-fix.yml", other, Path(sys.prefix), "http://127.0.0.1:9", tmp_path,
                {}) is None  # fmt: skip


def test_the_scripts_read_inputs_from_the_environment_only() -> None:
    """An issue number or a label is data: no ${{ }} is pasted into a script, where a crafted
    value would become shell code."""
    action = load_action(ROOT)
    for step in action["runs"]["steps"]:
        assert not EXPRESSION.search(step["run"]), step["name"]
    for name in ("agent-fix.yml", "agent-batch.yml"):
        (job,) = load_workflow(GITHUB / name)["jobs"].values()
        for step in job["steps"]:
            assert not EXPRESSION.search(step.get("run", "")), (name, step.get("name"))


def test_the_action_installs_from_its_own_checkout() -> None:
    (install, *_) = load_action(ROOT)["runs"]["steps"]
    assert 'python -m pip install "$GITHUB_ACTION_PATH"' in install["run"]
    for name in ("agent-fix.yml", "agent-batch.yml"):
        (job,) = load_workflow(GITHUB / name)["jobs"].values()
        assert not any("pip install greenpatch" in s.get("run", "") for s in job["steps"])
        (uses,) = [s for s in job["steps"] if s.get("uses", "").startswith("./")]
        checkout = next(s for s in job["steps"] if s.get("with", {}).get("path"))
        assert uses["uses"] == f"./{checkout['with']['path']}"
        assert set(uses["with"]) <= set(load_action(ROOT)["inputs"])


def test_bad_inputs_stop_the_action_with_one_line(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    env = {"PATH": "/usr/bin:/bin", "RUNNER_TEMP": str(tmp_path), "HOME": str(tmp_path)}
    with pytest.raises(ActionError, match="unexpected inputs"):
        run_action(ROOT, {"tickets": "7"}, env, workspace)
    # Neither a ticket nor a label: the run step says so (install steps skipped: a fake
    # checkout whose install does nothing).
    fake = tmp_path / "fake-action"
    fake.mkdir()
    action = load_action(ROOT)
    action["runs"]["steps"] = action["runs"]["steps"][2:]
    (fake / "action.yml").write_text(yaml.safe_dump(action))
    run = run_action(fake, {"pr": "maybe", "ticket": "7"}, env, workspace)
    assert [s.outcome for s in run.steps] == ["failure"] and run.steps[0].code == 2
    run = run_action(fake, {}, env, workspace)
    assert run.steps[0].code == 2
