"""GitHub for batches, against a local server enforcing the documented REST contract: issues by
label (paginated by Link headers, pull requests left out), and one pull request per green ticket
even when a batch publishes again after being interrupted."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import git
import pytest
from greenpatch.agent.batch.board import Board
from greenpatch.agent.batch.journal import Journal
from greenpatch.agent.batch.scheduler import BatchOptions, TicketScheduler
from greenpatch.agent.batch.sources import BatchTicket, load_backlog
from greenpatch.agent.errors import AgentError
from greenpatch.agent.publish import github
from greenpatch.agent.publish.branch import commit_message, commit_on_branch

from tests.conftest import git as run_git
from tests.conftest import make_repo
from tests.fake_http import json_server

TOKEN = "ghp_batch"
DOCS = "https://docs.github.com/rest"
# "List repository issues" query parameters.
ISSUE_PARAMS = {"milestone", "state", "assignee", "type", "creator", "mentioned", "labels",
                "sort", "direction", "since", "per_page", "page"}  # fmt: skip
PULL_PARAMS = {"state", "head", "base", "sort", "direction", "per_page", "page"}


class FakeGitHub:
    def __init__(self) -> None:
        self.base = ""
        self.requests: list[tuple[str, str]] = []
        self.violations: list[str] = []
        # 8 open entries labelled agent-fix (one is a pull request), an unlabelled and a closed one.
        self.issues: list[dict[str, Any]] = []
        for n in range(1, 11):
            self.issues.append({
                "number": n, "title": f"bug {n}", "body": f"breaks {n}\n\ntests: t.py::test_{n}",
                "html_url": f"https://github.com/acme/lib/issues/{n}",
                "labels": [{"name": "agent-fix"}] if n != 4 else [{"name": "question"}],
                "state": "closed" if n == 6 else "open",
            })  # fmt: skip
        self.issues[2]["pull_request"] = {"url": "https://api.github.com/repos/acme/lib/pulls/3"}
        self.issues[4]["body"] = None
        self.pulls: list[dict[str, Any]] = []

    def handle(self, req: BaseHTTPRequestHandler, method: str) -> tuple[int, Any, dict]:
        raw = req.rfile.read(int(req.headers.get("Content-Length") or 0))
        parts = urlsplit(req.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        self.requests.append((method, req.path))
        problems = []
        if req.headers.get("Accept") != "application/vnd.github+json":
            problems.append(f"Accept is {req.headers.get('Accept')!r}")
        if req.headers.get("X-GitHub-Api-Version") != "2022-11-28":
            problems.append("missing X-GitHub-Api-Version")
        auth = req.headers.get("Authorization")
        if auth is not None and auth != f"Bearer {TOKEN}":
            problems.append(f"bad Authorization {auth!r}")
        if any(len(v) != 1 for v in query.values()):
            problems.append(f"repeated query parameter in {req.path}")
        q = {k: v[0] for k, v in query.items()}
        if problems:
            self.violations += problems
            return 400, {"message": "; ".join(problems)}, {}
        if method == "GET" and parts.path == "/repos/acme/lib/issues":
            return self.list_issues(q)
        if parts.path == "/repos/acme/lib/pulls":
            if method == "GET":
                return self.list_pulls(q)
            if method == "POST":
                return self.create_pull(json.loads(raw), auth)
        self.violations.append(f"undocumented endpoint {method} {req.path}")
        return 404, {"message": "Not Found", "documentation_url": DOCS}, {}

    def list_issues(self, q: dict[str, str]) -> tuple[int, Any, dict]:
        if set(q) - ISSUE_PARAMS:
            self.violations.append(f"undocumented issue parameters {sorted(set(q) - ISSUE_PARAMS)}")
        per_page, page = int(q.get("per_page", 30)), int(q.get("page", 1))
        if per_page > 100:
            self.violations.append("per_page above 100")
        # The fake pages by 3 whatever is asked, as GitHub may return fewer than per_page.
        size = 3
        state = q.get("state", "open")
        wanted = [s for s in q.get("labels", "").split(",") if s]
        found = [
            i for i in self.issues
            if (state == "all" or i["state"] == state)
            and all(w in {lab["name"] for lab in i["labels"]} for w in wanted)
        ]  # fmt: skip
        chunk = found[(page - 1) * size : page * size]
        headers = {}
        if page * size < len(found):
            nxt = f"{self.base}/repos/acme/lib/issues?labels={q.get('labels', '')}&state={state}"
            headers["Link"] = (f'<{nxt}&per_page={per_page}&page={page + 1}>; rel="next", '
                               f'<{nxt}&page=1>; rel="first"')  # fmt: skip
        return 200, chunk, headers

    def list_pulls(self, q: dict[str, str]) -> tuple[int, Any, dict]:
        if set(q) - PULL_PARAMS:
            self.violations.append(f"undocumented pull parameters {sorted(set(q) - PULL_PARAMS)}")
        head = q.get("head", "")
        if head and not re.fullmatch(r"[^:]+:.+", head):
            self.violations.append(f"head must be user:ref-name, got {head!r}")
        found = [p for p in self.pulls if not head or f"acme:{p['head']['ref']}" == head]
        return 200, found, {}

    def create_pull(self, body: dict[str, Any], auth: str | None) -> tuple[int, Any, dict]:
        if auth is None:
            return 401, {"message": "Requires authentication"}, {}
        if any(p["head"]["ref"] == body["head"] for p in self.pulls):
            message = f"A pull request already exists for acme:{body['head']}."
            return 422, {"message": "Validation Failed", "errors": [{"message": message}]}, {}
        number = len(self.pulls) + 1
        pull = {"number": number, "html_url": f"https://github.com/acme/lib/pull/{number}",
                "head": {"ref": body["head"]}, "base": {"ref": body["base"]},
                "title": body["title"], "body": body["body"]}  # fmt: skip
        self.pulls.append(pull)
        return 201, pull, {}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHub]:
    state = FakeGitHub()

    with json_server(state.handle) as base:
        state.base = base
        monkeypatch.setenv("GITHUB_API_URL", base)
        monkeypatch.delenv("GITHUB_SERVER_URL", raising=False)
        monkeypatch.delenv("GITHUB_TOKEN", raising=False)
        yield state
    assert state.violations == []


def test_issues_by_label_follow_every_page_and_leave_out_pull_requests(fake: FakeGitHub) -> None:
    issues = github.list_issues_by_label("acme", "lib", "agent-fix", TOKEN)
    assert [i.number for i in issues] == [1, 2, 5, 7, 8, 9, 10]  # 3 is a PR, 4 unlabelled, 6 closed
    assert issues[0].title == "bug 1" and issues[0].body.startswith("breaks 1")
    assert issues[2].body == ""
    assert issues[0].html_url == "https://github.com/acme/lib/issues/1"
    pages = [path for method, path in fake.requests]
    assert len(pages) == 3  # 8 open labelled entries, 3 per page
    first = parse_qs(urlsplit(pages[0]).query)
    assert first == {"labels": ["agent-fix"], "state": ["open"], "per_page": ["100"],
                     "page": ["1"]}  # fmt: skip
    assert parse_qs(urlsplit(pages[2]).query)["page"] == ["3"]


def test_label_listing_errors_are_one_line(fake: FakeGitHub, monkeypatch) -> None:
    with pytest.raises(AgentError, match=r"^cannot list issues labelled 'x' in acme/nope: HTTP 4"):
        github.list_issues_by_label("acme", "nope", "x")
    fake.violations.clear()


def test_a_next_page_off_the_api_host_is_refused(fake: FakeGitHub, monkeypatch) -> None:
    fake.base = "http://evil.example"  # the token must never follow a link elsewhere
    with pytest.raises(AgentError, match="next page .* leaves http://127.0.0.1"):
        github.list_issues_by_label("acme", "lib", "agent-fix", TOKEN)


def test_label_backlog_becomes_tickets_on_the_repo(fake: FakeGitHub, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    backlog = load_backlog("gh:acme/lib label:agent-fix", repo=repo)
    assert [t.id for t in backlog.tickets] == [f"acme-lib-{n}" for n in (1, 2, 5, 7, 8, 9, 10)]
    first = backlog.tickets[0]
    assert first.ticket.tests == ["t.py::test_1"]
    assert first.ticket.url == "https://github.com/acme/lib/issues/1"
    assert first.ticket.title == "bug 1" and first.repo == repo.resolve()


def _github_repo(tmp_path: Path) -> tuple[Path, Path]:
    """A repo whose origin says github.com/acme/lib; git's insteadOf sends pushes to a bare repo."""
    bare = tmp_path / "remote.git"
    run_git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    root = make_repo(tmp_path / "proj", {"calc.py": "def add(a, b):\n    return a - b\n"})
    run_git(root, "remote", "add", "origin", "https://github.com/acme/lib.git")
    run_git(root, "config", f"url.{bare}.insteadOf", "https://github.com/acme/lib.git")
    run_git(root, "push", "-q", "origin", "main")
    return root, bare


def test_one_pull_request_per_green_ticket_across_resumes(
    fake: FakeGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two tickets whose fixes are on their branches (committed by a batch that was then killed):
    publishing runs three times (the run, and two resumes) and opens exactly one PR each."""
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    root, bare = _github_repo(tmp_path)
    backlog = load_backlog("gh:acme/lib label:agent-fix", repo=root)
    items: list[BatchTicket] = backlog.tickets[:2]
    base = run_git(root, "rev-parse", "HEAD").strip()
    for n, item in enumerate(items):
        commit_on_branch(root, base, {"calc.py": f"X = {n}\n"}, f"greenpatch/{item.ticket.slug}",
                         commit_message(item.ticket))  # fmt: skip
    with Journal(tmp_path / "j.sqlite") as journal:
        journal.add(items)
        options = BatchOptions(pr=True, drafter="edits", sandbox="process")
        for _ in range(3):
            scheduler = TicketScheduler(journal, options, Board())
            for entry in journal.entries():
                scheduler.board.add(entry.id, "proj", entry.state)
            scheduler.run(journal.entries())
            scheduler.publish_pending()
        entries = journal.entries()
    assert [e.state for e in entries] == ["green", "green"]
    assert sorted(p["head"]["ref"] for p in fake.pulls) == [
        "greenpatch/acme-lib-1", "greenpatch/acme-lib-2",
    ]  # fmt: skip
    opened = {p["head"]["ref"]: p["html_url"] for p in fake.pulls}
    assert {e.branch: e.pull_request for e in entries} == opened
    assert [m for m, p in fake.requests if p.endswith("/pulls")] == ["POST", "POST"]
    for entry in entries:
        pushed = run_git(bare, "rev-parse", f"refs/heads/{entry.branch}").strip()
        assert pushed == entry.commit
    body = next(p["body"] for p in fake.pulls if p["head"]["ref"] == "greenpatch/acme-lib-1")
    assert body.startswith("Fixes acme/lib#1\n") and "-    return a - b" in body


def test_an_existing_pull_request_is_found_not_opened_again(
    fake: FakeGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch was killed after GitHub opened the PR but before the journal recorded it."""
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    root, _ = _github_repo(tmp_path)
    (item,) = load_backlog("gh:acme/lib label:agent-fix", repo=root).tickets[:1]
    base = run_git(root, "rev-parse", "HEAD").strip()
    commit_on_branch(root, base, {"calc.py": "Y = 1\n"}, "greenpatch/acme-lib-1",
                     commit_message(item.ticket))  # fmt: skip
    head = "greenpatch/acme-lib-1"
    fake.pulls.append({"number": 9, "html_url": "https://github.com/acme/lib/pull/9",
                       "head": {"ref": head}, "base": {"ref": "main"}})  # fmt: skip
    with Journal(tmp_path / "j.sqlite") as journal:
        journal.add([item])
        board = Board()
        board.add(item.id, "proj", "queued")
        options = BatchOptions(pr=True, drafter="edits")
        TicketScheduler(journal, options, board).run(journal.entries())
        (entry,) = journal.entries()
    assert entry.pull_request == "https://github.com/acme/lib/pull/9"
    assert [m for m, p in fake.requests if "/pulls" in p] == ["GET"]
    assert git.Repo(root).active_branch.name == "main"
