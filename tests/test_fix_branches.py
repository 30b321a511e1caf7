"""`agent fix` and its branch: names git cannot create are refused before any work, and once a fix
is committed it is never lost: the JSON report is written whatever fails after it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import git
from tests.test_fix_cli import ROOT, fix, prepare


def _worktrees(repo: Path) -> int:
    return git(repo, "worktree", "list").count("\n")


def test_a_branch_blocking_the_default_name_is_refused_before_any_work(
    run_agent, tmp_path: Path
) -> None:
    repo = prepare("stockroom", tmp_path / "stockroom")
    git(repo, "branch", "greenpatch")  # blocks greenpatch/stockroom
    result = fix(run_agent, repo)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: branch greenpatch exists, and git cannot have both greenpatch and "
        "greenpatch/stockroom; pass --branch NAME"
    ]
    assert _worktrees(repo) == 1  # no baseline ran: no worktree was ever made


def test_a_branch_shorthand_is_refused_before_any_work(run_agent, tmp_path: Path) -> None:
    repo = prepare("stockroom", tmp_path / "stockroom")
    git(repo, "checkout", "-q", "-b", "other")
    git(repo, "checkout", "-q", "-")
    result = fix(run_agent, repo, "--branch", "@{-1}")
    assert result.returncode == 2
    assert "invalid branch name: '@{-1}'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    # --json is written on every outcome, a refusal before any work included.
    report = json.loads(result.stdout)
    assert report["status"] == "error" and report["ticket"] == "stockroom"
    assert report["error"].startswith("invalid branch name: '@{-1}'")


def test_the_report_is_written_when_the_pull_request_fails_after_the_commit(
    run_agent, tmp_path: Path
) -> None:
    repo = prepare("stockroom", tmp_path / "stockroom")
    result = fix(run_agent, repo, "--pr")  # no remote to push to
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: no git remote named 'origin' to push greenpatch/stockroom to"
    )
    report = json.loads(result.stdout)
    assert report["status"] == "green"
    assert report["branch"] == report["branch_requested"] == "greenpatch/stockroom"
    assert git(repo, "rev-parse", "greenpatch/stockroom").strip() == report["commit"]
    assert report["error"] == "no git remote named 'origin' to push greenpatch/stockroom to"


def test_the_report_is_written_when_the_run_is_stopped(tmp_path: Path) -> None:
    repo = prepare("stockroom", tmp_path / "stockroom")
    out = tmp_path / "report.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "greenpatch.agent",
         "fix", str(ROOT / "examples/tickets/stockroom.md"),
         "--repo", str(repo), "--drafter", "edits", "--sandbox", "process", "-q",
         "--json", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")},
    )  # fmt: skip
    deadline = time.monotonic() + 120  # until the run has worktrees of its own
    while time.monotonic() < deadline and _worktrees(repo) < 2 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    report = json.loads(out.read_text())
    assert report["status"] == "interrupted" and report["error"] == "interrupted"
    assert report["ticket"] == "stockroom" and report["branch"] is None
