"""Backlog sources: JSONL lines (bad ones reported with line numbers), folders, label specs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from greenpatch.agent.batch.sources import load_backlog, parse_label_spec
from greenpatch.agent.errors import AgentError

from tests.conftest import make_repo


def _line(**fields: object) -> str:
    return json.dumps(fields)


def test_jsonl_bad_lines_are_reported_with_line_numbers_and_skipped(tmp_path: Path) -> None:
    one = make_repo(tmp_path / "one")
    two = make_repo(tmp_path / "two")
    lines = [
        _line(id="a", title="A", body="fix a\n\ntests: tests/test_a.py::test_x", repo="one"),
        '{"id": "b", "title": "B", "body": ',  # truncated: invalid JSON
        "",  # blank lines are not tickets and not errors
        _line(id="c", title="C"),  # no body
        _line(title="D", body="d"),  # no id
        "[1, 2]",  # JSON, but not an object
        _line(id="e", title="E", body="e", tests=["tests/test_e.py::test_e"], repo="two"),
        _line(id="f", title="F", body="f", tests=7),
        _line(id="g", title="G", body="g", repo="missing"),
        _line(id="a", title="again", body="a duplicate id", repo="one"),
        _line(id=9, title="Nine", body="numeric ids are fine", tests="t.py::a t.py::b"),
    ]
    backlog_file = tmp_path / "backlog.jsonl"
    backlog_file.write_text("\n".join(lines) + "\n")
    backlog = load_backlog(str(backlog_file), repo=one)
    assert [t.id for t in backlog.tickets] == ["a", "e", "9"]
    a, e, nine = backlog.tickets
    assert a.repo == one.resolve() and a.ticket.tests == ["tests/test_a.py::test_x"]
    assert e.repo == two.resolve() and e.ticket.tests == ["tests/test_e.py::test_e"]
    assert nine.repo == one.resolve() and nine.ticket.tests == ["t.py::a", "t.py::b"]
    assert a.origin == f"{backlog_file}:1"
    problems = {p.where.rsplit(":", 1)[1]: p.reason for p in backlog.problems}
    assert set(problems) == {"2", "4", "5", "6", "8", "9", "10"}
    assert problems["2"].startswith("invalid JSON")
    assert problems["4"] == "missing field: body"
    assert problems["5"] == "missing field: id"
    assert problems["6"] == "not a JSON object but list"
    assert problems["8"].startswith("'tests' must be")
    assert "repository path does not exist" in problems["9"]
    assert problems["10"] == "duplicate ticket id a; skipped"
    assert all(p.where.startswith(str(backlog_file)) for p in backlog.problems)


def test_jsonl_with_no_valid_ticket_is_bad_input(tmp_path: Path) -> None:
    backlog_file = tmp_path / "b.jsonl"
    backlog_file.write_text("not json\n{}\n")
    with pytest.raises(AgentError, match=r"no tickets in .*b\.jsonl \(2 bad entries skipped\)"):
        load_backlog(str(backlog_file), repo=make_repo(tmp_path / "r"))


def test_folder_of_ticket_files(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    folder = tmp_path / "tickets"
    folder.mkdir()
    (folder / "b-bug.md").write_text("# Second\n\ntests: tests/test_b.py::test_b\n")
    (folder / "a-bug.txt").write_text("First bug\n")
    (folder / "empty.md").write_text("  \n")
    (folder / "notes.json").write_text("{}")
    (folder / ".hidden.md").write_text("# hidden\n")
    backlog = load_backlog(str(folder), repo=repo)
    assert [(t.id, t.ticket.title) for t in backlog.tickets] == [
        ("a-bug", "First bug"),
        ("b-bug", "Second"),
    ]
    assert backlog.tickets[1].ticket.tests == ["tests/test_b.py::test_b"]
    assert all(t.repo == repo.resolve() for t in backlog.tickets)
    assert [p.reason for p in backlog.problems] == [f"ticket is empty: {folder / 'empty.md'}"]


def test_tickets_sharing_a_branch_name_on_one_repo_are_refused(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    backlog_file = tmp_path / "b.jsonl"
    backlog_file.write_text(
        _line(id="Bug 1", title="x", body="x") + "\n" + _line(id="bug-1", title="y", body="y")
    )
    backlog = load_backlog(str(backlog_file), repo=repo)
    assert [t.id for t in backlog.tickets] == ["Bug 1"]
    (problem,) = backlog.problems
    assert problem.where == f"{backlog_file}:2"
    assert "same branch name greenpatch/bug-1 as ticket Bug 1" in problem.reason


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("missing-dir", "backlog not found: missing-dir"),
        ("gh:acme/lib#3", "not a GitHub backlog"),
        ("gh:acme/lib label:", "not a GitHub backlog"),
    ],
)
def test_unusable_backlogs(tmp_path: Path, spec: str, message: str, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AgentError, match=message):
        load_backlog(spec, repo=make_repo(tmp_path / "repo"))


def test_a_single_ticket_file_is_not_a_backlog(tmp_path: Path) -> None:
    (tmp_path / "t.md").write_text("# bug\n")
    with pytest.raises(AgentError, match="not a backlog"):
        load_backlog(str(tmp_path / "t.md"), repo=make_repo(tmp_path / "repo"))


def test_label_spec() -> None:
    assert parse_label_spec("gh:acme/lib label:agent-fix") == ("acme", "lib", "agent-fix")
    assert parse_label_spec("gh:acme/my.lib  label:good first issue") == (
        "acme",
        "my.lib",
        "good first issue",
    )
