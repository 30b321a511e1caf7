"""Every bad input gets one clear line on stderr and exit code 2, and changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer.main
from greenpatch.agent.commands.cli import app

from tests.conftest import git, make_repo


def one_line_error(result, code: int = 2) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_help_describes_every_option() -> None:
    command = typer.main.get_command(app)
    assert set(command.commands) >= {"fix", "batch", "test", "infill"}
    for name, sub in command.commands.items():
        assert sub.help, name
        for param in sub.params:
            if param.name == "help":
                continue
            assert getattr(param, "help", None), f"agent {name}: {param.name} has no help"


@pytest.mark.parametrize("command", ["fix", "batch", "test", "infill"])
def test_subcommand_help_runs(run_agent, command: str) -> None:
    result = run_agent(command, "--help")
    assert result.returncode == 0
    assert "--json" in result.stdout


def test_missing_repo_path(run_agent, tmp_path: Path) -> None:
    ticket = tmp_path / "t.md"
    ticket.write_text("bug\n")
    line = one_line_error(run_agent("fix", ticket, "--repo", tmp_path / "nope"))
    assert "does not exist" in line


@pytest.mark.parametrize("command", ["fix", "batch", "test"])
def test_not_a_git_repo(run_agent, tmp_path: Path, command: str) -> None:
    plain = tmp_path / "plain"
    (plain / "backlog").mkdir(parents=True)
    (plain / "t.md").write_text("bug\n")
    (plain / "backlog" / "t.md").write_text("bug\n")
    args = {"fix": ["t.md"], "batch": ["backlog"], "test": []}[command]
    line = one_line_error(run_agent(command, *args, "--repo", plain, cwd=plain))
    assert "not a git repository" in line


def test_repo_without_commits(run_agent, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    (tmp_path / "t.md").write_text("bug\n")
    line = one_line_error(run_agent("fix", tmp_path / "t.md", "--repo", empty))
    assert "no commits" in line


def test_ticket_missing_and_empty(run_agent, repo: Path, tmp_path: Path) -> None:
    assert "not found" in one_line_error(run_agent("fix", tmp_path / "none.md", "--repo", repo))
    empty = tmp_path / "empty.md"
    empty.write_text("  \n\n")
    assert "empty" in one_line_error(run_agent("fix", empty, "--repo", repo))
    assert "empty" in one_line_error(run_agent("fix", "-", "--repo", repo, stdin=""))


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("[tool.greenpatch\n", "not valid TOML"),
        ("[tool.greenpatch]\ncolour = 'red'\n", "unknown key 'colour'"),
        ("[tool.greenpatch]\nworkers = 'two'\n", "'workers' must be int"),
        ("[tool.greenpatch]\nsandbox = 'vm'\n", "'sandbox' must be one of"),
        ("[tool.greenpatch]\nnever_edit = [1]\n", "list of strings"),
        ("[tool.greenpatch]\nbudget = -5\n", "must be positive"),
    ],
)
def test_bad_config(run_agent, tmp_path: Path, config: str, expected: str) -> None:
    target = make_repo(tmp_path / "r", {"pyproject.toml": config})
    (tmp_path / "t.md").write_text("bug\n")
    line = one_line_error(run_agent("fix", tmp_path / "t.md", "--repo", target))
    assert expected in line


def test_unreadable_config(run_agent, tmp_path: Path) -> None:
    target = make_repo(tmp_path / "r", {"pyproject.toml": "[tool.greenpatch]\n"})
    (target / "pyproject.toml").write_bytes(b"\xff\xfe not utf-8")
    (tmp_path / "t.md").write_text("bug\n")
    line = one_line_error(run_agent("test", "--repo", target))
    assert "cannot read" in line


def test_bad_flag_value_is_usage_error(run_agent, repo: Path, tmp_path: Path) -> None:
    (tmp_path / "t.md").write_text("bug\n")
    result = run_agent("fix", tmp_path / "t.md", "--repo", repo, "--sandbox", "vm")
    assert "'sandbox' must be one of" in one_line_error(result)


@pytest.mark.parametrize(
    ("content", "lines", "expected"),
    [
        ("x = 1\n", "3:4", "beyond the end"),
        ("", "1:1", "empty"),
        (b"\x00\x01binary", "1:1", "binary"),
        ("x = 1\n", "2:1", "need 1 <= A <= B"),
        ("x = 1\n", "a:b", "must look like A:B"),
    ],
)
def test_infill_bad_inputs(run_agent, tmp_path: Path, content, lines: str, expected: str) -> None:
    source = tmp_path / "m.py"
    if isinstance(content, bytes):
        source.write_bytes(content)
    else:
        source.write_text(content)
    assert expected in one_line_error(run_agent("infill", source, "--lines", lines))


def test_infill_missing_file(run_agent, tmp_path: Path) -> None:
    result = run_agent("infill", tmp_path / "none.py", "--lines", "1:1")
    assert "not found" in one_line_error(result)


def test_batch_missing_backlog(run_agent, repo: Path, tmp_path: Path) -> None:
    result = run_agent("batch", tmp_path / "backlog", "--repo", repo)
    assert "backlog not found" in one_line_error(result)


def test_bad_input_leaves_repo_untouched(run_agent, tmp_path: Path) -> None:
    target = make_repo(tmp_path / "r", {"a.py": "x = 1\n"})
    (target / "a.py").write_text("x = 2\n")  # a dirty tree is the user's business
    before = (git(target, "status", "--porcelain"), git(target, "rev-parse", "HEAD"))
    one_line_error(run_agent("fix", tmp_path / "missing.md", "--repo", target))
    assert (git(target, "status", "--porcelain"), git(target, "rev-parse", "HEAD")) == before
    assert (target / "a.py").read_text() == "x = 2\n"
