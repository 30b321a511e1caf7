"""The repository's own config cannot weaken isolation; the command line and the user's own
config can. And `agent test` sends only regular files of the working tree to the sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from greenpatch.agent.config import load_settings
from greenpatch.agent.errors import AgentError
from greenpatch.runner.changes import working_changes
from greenpatch.runner.errors import RunnerError

from tests.conftest import make_repo


def repo_with(tmp_path: Path, section: str, extra: dict | None = None) -> Path:
    files = {"pyproject.toml": f"[tool.greenpatch]\n{section}\n", **(extra or {})}
    return make_repo(tmp_path / "repo", files)


def test_repo_config_cannot_turn_isolation_off(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    repo = repo_with(tmp_path, 'sandbox = "process"')
    warned: list[str] = []
    assert load_settings(repo, warn=warned.append).sandbox == "bwrap"
    assert len(warned) == 1 and "cannot turn isolation off" in warned[0]
    # The command line can.
    assert load_settings(repo, sandbox="process").sandbox == "process"


def test_the_users_own_config_can_choose(tmp_path, monkeypatch):
    config = tmp_path / "config" / "greenpatch"
    config.mkdir(parents=True)
    (config / "config.toml").write_text('sandbox = "docker"\nworkers = 3\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    repo = repo_with(tmp_path, "budget = 50")
    settings = load_settings(repo)
    assert (settings.sandbox, settings.workers, settings.budget) == ("docker", 3, 50.0)


def test_repo_config_cannot_name_an_interpreter_it_ships(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    fake = "#!/bin/sh\ntouch /tmp/should-never-run\n"
    repo = repo_with(tmp_path, 'python = "bin/python"', {"bin/python": fake})
    with pytest.raises(AgentError, match="a file of the repository itself"):
        load_settings(repo)
    # An untracked venv of the user's, inside the repository, is theirs: allowed.
    repo2 = make_repo(tmp_path / "repo2",
                      {"pyproject.toml": '[tool.greenpatch]\npython = ".venv/bin/python"\n'})
    assert load_settings(repo2).python == ".venv/bin/python"


def test_an_untracked_symlink_is_refused_not_followed(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    repo = make_repo(tmp_path / "repo", {"a.py": "X = 1\n"})
    (repo / "link.py").symlink_to(secret)
    with pytest.raises(RunnerError, match="link.py is a symbolic link"):
        working_changes(repo)
    (repo / "link.py").unlink()
    (repo / "dir.py").symlink_to(tmp_path)
    with pytest.raises(RunnerError, match="dir.py is a symbolic link"):
        working_changes(repo)


def test_agent_test_with_a_symlink_is_one_line_exit_2(tmp_path):
    repo = make_repo(tmp_path / "repo", {"test_a.py": "def test_a():\n    pass\n"})
    (repo / "test_b.py").symlink_to("/etc/hostname")
    done = subprocess.run(
        [sys.executable, "-m", "greenpatch.agent", "test", "--repo", str(repo), "--json", "-"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")},
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "symbolic link" in lines[0], done.stderr
