"""Tickets: what to fix, in plain words, and optionally which tests show the bug."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from greenpatch.agent.errors import AgentError
from greenpatch.agent.publish import github

_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)
_TESTS_LINE = re.compile(r"^\s*(?:[-*]\s*)?tests?\s*:\s*(.*)$", re.I | re.M)
_PATHLIKE = re.compile(r"/|\\|::|\.py\b")
_TEST_FILE = re.compile(r"[\w./-]+\.py")
MAX_TICKET_BYTES = 1 << 20  # a ticket is words for a person: more is a mistake or an attack


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


def _test_ids(text: str) -> list[str]:
    """The pytest node ids among the words of `text`. A word that names a path (a `/`, `::` or
    `.py` in it) must be a node id inside the repository: a ticket is untrusted input, and a
    test it names is what the agent runs."""
    ids = []
    for word in re.split(r"[\s,;]+", text):
        word = word.strip("`'\"()").lstrip("[")
        if word.count("]") > word.count("["):  # the end of a YAML list: [a, b]
            word = word.rstrip("]")
        if not _PATHLIKE.search(word) or "://" in word:  # prose, or a link to somewhere
            continue
        ids.append(check_node_id(word))
    return ids


def check_node_id(test_id: str) -> str:
    """`test_id` if it is a pytest node id of a test file inside the repository, else
    AgentError (exit 2): no absolute path, no `..`, nothing but a .py file and names."""
    file, *names = test_id.split("::")
    path = PurePosixPath(file)
    # Parameter ids may hold any printable character (`test_x[1+2]`): only the path is strict.
    well_formed = _TEST_FILE.fullmatch(file) and all(n and n.isprintable() for n in names)
    if not well_formed or path.is_absolute() or ".." in path.parts:
        raise AgentError(
            "the ticket names a test that is not a pytest node id inside the repository: "
            f"{test_id[:200]}"
        )
    return test_id


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
                found += _test_ids(re.sub(r"^\s*-\s*", "", item))
    for match in _TESTS_LINE.finditer(text):
        found += _test_ids(match.group(1))
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


def read_capped(stream: BinaryIO, what: str, limit: int = MAX_TICKET_BYTES) -> str:
    """At most `limit` bytes of `stream` as UTF-8 text; AgentError past it (never read whole)."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise AgentError(f"{what} is larger than {limit // (1 << 20)} MB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AgentError(f"cannot read {what}: not UTF-8 text ({exc.reason})") from None


def load_ticket(source: str) -> Ticket:
    """A ticket from a file path, `-` (stdin), `gh:OWNER/REPO#N` or a GitHub issue URL."""
    if github.is_issue_ref(source):
        return github_ticket(source)
    if source == "-":
        text = read_capped(sys.stdin.buffer, "the ticket on standard input")
        ticket_id = "stdin"
    else:
        path = Path(source)
        if not path.exists():
            raise AgentError(f"ticket file not found: {source}")
        if not path.is_file():
            raise AgentError(f"ticket is not a file: {source}")
        try:
            with path.open("rb") as stream:
                text = read_capped(stream, f"ticket {source}")
        except OSError as exc:
            raise AgentError(f"cannot read ticket {source}: {exc}") from None
        ticket_id = path.stem
    if not text.strip():
        raise AgentError(f"ticket is empty: {source}")
    return parse_ticket(text, ticket_id)
