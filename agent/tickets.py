"""Tickets: what to fix, in plain words, and optionally which tests show the bug."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from agent import github
from agent.errors import AgentError

_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)
_TESTS_LINE = re.compile(r"^\s*(?:[-*]\s*)?tests?\s*:\s*(.*)$", re.I | re.M)
_NODE_ID = re.compile(r"[\w./-]+\.py(?:::[\w\[\]\-.=]+)*")


@dataclass
class Ticket:
    id: str
    title: str
    body: str
    tests: list[str] = field(default_factory=list)
    # Where the ticket lives when it is not a local file (a GitHub issue's html_url).
    url: str = ""

    @property
    def slug(self) -> str:
        text = re.sub(r"[^a-z0-9]+", "-", f"{self.id}".lower()).strip("-")
        return text[:60] or "ticket"


def _named_tests(text: str) -> list[str]:
    """Pytest node ids from front matter (`tests: [a, b]` or a `- item` list) or `tests:` lines."""
    found: list[str] = []
    front = _FRONT_MATTER.match(text)
    region = front.group(1) if front else ""
    lines = region.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\s*tests?\s*:\s*$", line, re.I):
            for item in lines[i + 1 :]:
                if not re.match(r"^\s*-\s*", item):
                    break
                found += _NODE_ID.findall(item)
    for match in _TESTS_LINE.finditer(text):
        found += _NODE_ID.findall(match.group(1))
    return list(dict.fromkeys(found))


def parse_ticket(text: str, ticket_id: str) -> Ticket:
    body = _FRONT_MATTER.sub("", text, count=1)
    title = next((ln.lstrip("# ").strip() for ln in body.splitlines() if ln.strip()), ticket_id)
    return Ticket(id=ticket_id, title=title, body=text, tests=_named_tests(text))


def github_ticket(source: str) -> Ticket:
    """A GitHub issue as a ticket, id `OWNER-REPO-N`; tests named in its body become targets."""
    owner, repo, number = github.parse_issue_ref(source)
    issue = github.fetch_issue(owner, repo, number, github.token_from_env())
    text = f"# {issue.title}\n\n{issue.body}"
    return Ticket(
        id=f"{owner}-{repo}-{number}",
        title=issue.title,
        body=text,
        tests=_named_tests(issue.body),
        url=issue.html_url,
    )


def load_ticket(source: str) -> Ticket:
    """A ticket from a file path, `-` (stdin), `gh:OWNER/REPO#N` or a GitHub issue URL."""
    if github.is_issue_ref(source):
        return github_ticket(source)
    if source == "-":
        text = sys.stdin.read()
        ticket_id = "stdin"
    else:
        path = Path(source)
        if not path.exists():
            raise AgentError(f"ticket file not found: {source}")
        if not path.is_file():
            raise AgentError(f"ticket is not a file: {source}")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AgentError(f"cannot read ticket {source}: {exc}") from None
        ticket_id = path.stem
    if not text.strip():
        raise AgentError(f"ticket is empty: {source}")
    return parse_ticket(text, ticket_id)
