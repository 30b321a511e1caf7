"""Where a batch's tickets come from: a folder of ticket files, a JSONL file, or a GitHub label.

Bad entries (a JSONL line that is not JSON or lacks a field, an unreadable ticket file, a
duplicate id) are collected as problems with their place (`file:line`) and skipped; the rest of
the backlog runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from greenpatch.agent.errors import AgentError
from greenpatch.agent.publish import github
from greenpatch.agent.publish.branch import default_branch_name
from greenpatch.agent.repo import resolve_repo
from greenpatch.agent.tickets import (
    MAX_TICKET_BYTES,
    Ticket,
    check_node_id,
    load_ticket,
    parse_ticket,
)

TICKET_SUFFIXES = (".md", ".markdown", ".txt")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
REQUIRED = ("id", "title", "body")
_LABEL_SPEC = re.compile(r"^gh:([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)\s+label:(.+)$")


@dataclass(frozen=True)
class BatchTicket:
    ticket: Ticket
    repo: Path  # the target repository's working tree, resolved
    origin: str = ""  # where it was read: `backlog.jsonl:4`, a ticket file, an issue URL

    @property
    def id(self) -> str:
        return self.ticket.id

    def to_record(self) -> dict[str, Any]:
        t = self.ticket
        return {"id": t.id, "title": t.title, "body": t.body, "tests": t.tests, "url": t.url,
                "repo": str(self.repo)}  # fmt: skip

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> BatchTicket:
        ticket = Ticket(data["id"], data["title"], data["body"], list(data["tests"]), data["url"])
        return cls(ticket, Path(data["repo"]))


@dataclass(frozen=True)
class Problem:
    where: str  # `backlog.jsonl:3`, a ticket file, or a ticket id
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass
class Backlog:
    spec: str
    kind: str  # folder | jsonl | github
    tickets: list[BatchTicket] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


class _Repos:
    """Resolves each repository path once; `None` means --repo, else the one around the cwd."""

    def __init__(self, default: Path | None) -> None:
        self.default = default
        self._seen: dict[Path | None, Path] = {}

    def get(self, path: Path | None = None) -> Path:
        key = path if path is not None else self.default
        if key not in self._seen:
            self._seen[key] = Path(resolve_repo(key).working_tree_dir).resolve()
        return self._seen[key]


def parse_label_spec(spec: str) -> tuple[str, str, str]:
    """(owner, repo, label) from `gh:OWNER/REPO label:NAME`."""
    match = _LABEL_SPEC.match(spec.strip())
    if not match:
        raise AgentError(f"not a GitHub backlog: {spec} (use 'gh:OWNER/REPO label:NAME')")
    return match.group(1), match.group(2), match.group(3).strip()


def load_backlog(spec: str, repo: Path | None = None) -> Backlog:
    """The tickets of `spec` (a folder, a .jsonl file or `gh:OWNER/REPO label:NAME`), each with
    its repository; entries that cannot be read become problems. Raises AgentError (exit 2) when
    the backlog itself is unusable."""
    repos = _Repos(repo)
    if spec.startswith("gh:"):
        backlog = _from_github(spec, repos)
    else:
        path = Path(spec)
        if not path.exists():
            raise AgentError(f"backlog not found: {spec}")
        if path.is_dir():
            backlog = _from_folder(path, repos)
        elif path.suffix.lower() in JSONL_SUFFIXES:
            backlog = _from_jsonl(path, repos)
        else:
            raise AgentError(
                f"not a backlog: {spec} (a folder of ticket files, a .jsonl file, or "
                "'gh:OWNER/REPO label:NAME')"
            )
    _drop_duplicates(backlog)
    if backlog.kind != "github" and not backlog.tickets:
        bad = f" ({len(backlog.problems)} bad entries skipped)" if backlog.problems else ""
        raise AgentError(f"no tickets in {spec}{bad}")
    return backlog


def _from_folder(folder: Path, repos: _Repos) -> Backlog:
    backlog = Backlog(str(folder), "folder")
    files = sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in TICKET_SUFFIXES
    )  # fmt: skip
    if not files:
        suffixes = ", ".join(f"*{s}" for s in TICKET_SUFFIXES)
        raise AgentError(f"no ticket files ({suffixes}) in {folder}")
    root = repos.get()
    for path in files:
        try:
            backlog.tickets.append(BatchTicket(load_ticket(str(path)), root, str(path)))
        except AgentError as exc:
            backlog.problems.append(Problem(str(path), str(exc)))
    return backlog


def _lines(stream: BinaryIO) -> Iterator[bytes | None]:
    """The lines of `stream`, read one at a time; None for a line longer than a ticket may be
    (its rest is skipped unread into memory)."""
    while True:
        line = stream.readline(MAX_TICKET_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_TICKET_BYTES and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = stream.readline(1 << 20)
            yield None
        else:
            yield line


def _from_jsonl(path: Path, repos: _Repos) -> Backlog:
    backlog = Backlog(str(path), "jsonl")
    try:
        with path.open("rb") as stream:
            for number, raw in enumerate(_lines(stream), 1):
                where = f"{path}:{number}"
                if raw is None:
                    backlog.problems.append(
                        Problem(where, f"line longer than {MAX_TICKET_BYTES >> 20} MB; skipped")
                    )
                    continue
                try:
                    line = raw.decode("utf-8")
                    if line.strip():
                        backlog.tickets.append(_jsonl_ticket(line, path.parent, repos, where))
                except ValueError as exc:  # UnicodeDecodeError included
                    backlog.problems.append(Problem(where, str(exc)))
    except OSError as exc:
        raise AgentError(f"cannot read backlog {path}: {exc}") from None
    return backlog


def _jsonl_ticket(line: str, base: Path, repos: _Repos, origin: str) -> BatchTicket:
    """One JSONL line as a ticket; ValueError says what is wrong with it."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"not a JSON object but {type(data).__name__}")
    missing = [k for k in REQUIRED if k not in data or data[k] is None]
    if missing:
        raise ValueError(f"missing field{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    ticket_id = data["id"]
    if isinstance(ticket_id, bool) or not isinstance(ticket_id, str | int):
        raise ValueError("'id' must be a string or an integer")
    ticket_id = str(ticket_id).strip()
    if not ticket_id:
        raise ValueError("'id' is empty")
    for key in ("title", "body", "url"):
        if key in data and not isinstance(data[key], str):
            raise ValueError(f"'{key}' must be a string")
    if not data["body"].strip():
        raise ValueError("'body' is empty")
    tests = data.get("tests")
    try:
        if tests is None:
            tests = parse_ticket(data["body"], ticket_id).tests
        elif isinstance(tests, str):
            tests = [check_node_id(t) for t in tests.split()]
        elif isinstance(tests, list) and all(isinstance(t, str) for t in tests):
            tests = [check_node_id(t) for t in tests]
        else:
            raise ValueError("'tests' must be a list of pytest node ids or one string of them")
    except AgentError as exc:
        raise ValueError(str(exc)) from None
    repo_field = data.get("repo")
    if repo_field is not None and not isinstance(repo_field, str):
        raise ValueError("'repo' must be a path")
    try:
        root = repos.get(base / repo_field if repo_field else None)
    except AgentError as exc:
        raise ValueError(str(exc)) from None
    title = " ".join(data["title"].split()) or ticket_id
    ticket = Ticket(ticket_id, title, data["body"], list(tests), data.get("url") or "")
    return BatchTicket(ticket, root, origin)


def _from_github(spec: str, repos: _Repos) -> Backlog:
    owner, name, label = parse_label_spec(spec)
    root = repos.get()
    backlog = Backlog(spec, "github")
    for issue in github.list_issues_by_label(owner, name, label, github.token_from_env()):
        try:
            ticket = parse_ticket(f"# {issue.title}\n\n{issue.body}",
                                  f"{owner}-{name}-{issue.number}")  # fmt: skip
        except AgentError as exc:  # an unsafe test path in one issue skips that issue only
            backlog.problems.append(Problem(issue.html_url, str(exc)))
            continue
        ticket.title, ticket.url = issue.title, issue.html_url
        backlog.tickets.append(BatchTicket(ticket, root, issue.html_url))
    return backlog


def _drop_duplicates(backlog: Backlog) -> None:
    """Ids are the journal's keys and name the branches: both must be unique in a batch."""
    ids: set[str] = set()
    branches: dict[tuple[Path, str], str] = {}
    kept = []
    for item in backlog.tickets:
        branch = (item.repo, default_branch_name(item.ticket))
        if item.id in ids:
            backlog.problems.append(
                Problem(item.origin or item.id, f"duplicate ticket id {item.id}; skipped")
            )
        elif branch in branches:
            backlog.problems.append(Problem(
                item.origin or item.id,
                f"ticket {item.id} has the same branch name {branch[1]} as ticket "
                f"{branches[branch]}; skipped",
            ))  # fmt: skip
        else:
            ids.add(item.id)
            branches[branch] = item.id
            kept.append(item)
    backlog.tickets = kept
