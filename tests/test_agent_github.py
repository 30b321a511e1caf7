"""agent.publish.github against a local server that enforces GitHub's documented REST contract, and
pushes to a real local bare remote."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from greenpatch.agent.errors import AgentError
from greenpatch.agent.pipeline.fix_report import FixReport
from greenpatch.agent.publish import github
from greenpatch.agent.publish.branch import commit_on_branch
from greenpatch.agent.publish.pull_request import Publication, pr_body, publish
from greenpatch.agent.repo import open_repo
from greenpatch.agent.tickets import Ticket, load_ticket

from tests.fake_http import json_server

TOKEN = "ghp_test123"
DOCS = "https://docs.github.com/rest"
# "Create a pull request": head and base are required, and title unless issue is given.
PULL_KEYS = {
    "title",
    "head",
    "head_repo",
    "base",
    "body",
    "maintainer_can_modify",
    "draft",
    "issue",
}


class FakeGitHub:
    """Answers like GitHub and records every way a request departs from the documented contract."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.violations: list[str] = []
        self.issues = {
            ("acme", "lib", 7): {
                "number": 7,
                "title": "add() subtracts",
                "body": "add(2, 3) returns -1.\n\ntests: tests/test_calc.py::test_add\n",
                "html_url": "https://github.com/acme/lib/issues/7",
            },
            ("acme", "secret", 1): {
                "number": 1,
                "title": "private bug",
                "body": None,
                "html_url": "https://github.com/acme/secret/issues/1",
            },
        }
        self.private = {("acme", "secret")}
        self.heads_with_commits = {"greenpatch/fix-add"}
        self.pulls: dict[tuple[str, str], int] = {}

    def handle(self, req: BaseHTTPRequestHandler, method: str) -> tuple[int, Any]:
        raw = req.rfile.read(int(req.headers.get("Content-Length") or 0))
        self.requests.append(
            {"method": method, "path": req.path, "headers": dict(req.headers), "body": raw}
        )
        problems = []
        if req.headers.get("Accept") != "application/vnd.github+json":
            problems.append(f"Accept is {req.headers.get('Accept')!r}")
        if req.headers.get("X-GitHub-Api-Version") != "2022-11-28":
            problems.append("missing X-GitHub-Api-Version: 2022-11-28")
        if not req.headers.get("User-Agent"):
            problems.append("missing User-Agent")
        auth = req.headers.get("Authorization")
        if auth is not None and not re.fullmatch(r"Bearer \S+", auth):
            problems.append(f"Authorization scheme is not Bearer: {auth!r}")
        if problems:
            self.violations += problems
            return 400, {"message": "contract: " + "; ".join(problems)}
        if auth is not None and auth != f"Bearer {TOKEN}":
            return 401, {"message": "Bad credentials", "documentation_url": DOCS}
        path, _, query = req.path.partition("?")
        issue = re.fullmatch(r"/repos/([^/]+)/([^/]+)/issues/(\d+)", path)
        pulls = re.fullmatch(r"/repos/([^/]+)/([^/]+)/pulls", path)
        if method == "GET" and issue:
            owner, repo, number = issue.group(1), issue.group(2), int(issue.group(3))
            found = self.issues.get((owner, repo, number))
            if found is None or ((owner, repo) in self.private and auth is None):
                return 404, {"message": "Not Found", "documentation_url": DOCS}
            return 200, {**found, "state": "open", "user": {"login": "reporter"}}
        if method == "GET" and pulls:  # ?head=OWNER:BRANCH&state=...: the pull requests from it
            params = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
            owner, repo = pulls.group(1), pulls.group(2)
            head = unquote(params.get("head", ""))
            if head and not head.startswith(f"{owner}:"):
                self.violations.append(f"head {head!r} is not OWNER:BRANCH")
            branch = head.split(":", 1)[-1]
            return 200, [{"number": n, "html_url": f"https://github.com/{owner}/{repo}/pull/{n}"}
                         for (h, _), n in self.pulls.items() if h == branch]  # fmt: skip
        if method == "POST" and pulls:
            return self.create_pull(req, raw, pulls.group(1), pulls.group(2), auth)
        self.violations.append(f"undocumented endpoint {method} {req.path}")
        return 404, {"message": "Not Found", "documentation_url": DOCS}

    def create_pull(
        self, req: BaseHTTPRequestHandler, raw: bytes, owner: str, repo: str, auth: str | None
    ) -> tuple[int, dict[str, Any]]:
        if auth is None:
            return 401, {"message": "Requires authentication", "documentation_url": DOCS}
        problems = []
        if not (req.headers.get("Content-Type") or "").startswith("application/json"):
            problems.append(f"Content-Type is {req.headers.get('Content-Type')!r}")
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            problems.append("body is not a JSON object")
            body = {}
        for key in ("head", "base"):
            if not isinstance(body.get(key), str) or not body.get(key):
                problems.append(f"required '{key}' missing")
        if not isinstance(body.get("title"), str) and "issue" not in body:
            problems.append("'title' (or 'issue') required")
        if "body" in body and not isinstance(body["body"], str):
            problems.append("'body' must be a string")
        if set(body) - PULL_KEYS:
            problems.append(f"undocumented keys {sorted(set(body) - PULL_KEYS)}")
        if problems:
            self.violations += problems
            return 400, {"message": "contract: " + "; ".join(problems)}
        head, base = body["head"], body["base"]
        if head not in self.heads_with_commits:
            error = {
                "resource": "PullRequest",
                "code": "custom",
                "message": f"No commits between {base} and {head}",
            }
            return 422, {
                "message": "Validation Failed",
                "errors": [error],
                "documentation_url": DOCS,
            }
        if (head, base) in self.pulls:
            error = {
                "resource": "PullRequest",
                "code": "custom",
                "message": f"A pull request already exists for {owner}:{head}.",
            }
            return 422, {
                "message": "Validation Failed",
                "errors": [error],
                "documentation_url": DOCS,
            }
        number = len(self.pulls) + 1
        self.pulls[(head, base)] = number
        return 201, {
            "number": number,
            "state": "open",
            "title": body["title"],
            "html_url": f"https://github.com/{owner}/{repo}/pull/{number}",
            "head": {"ref": head},
            "base": {"ref": base},
        }


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHub]:
    state = FakeGitHub()

    with json_server(state.handle) as base:
        monkeypatch.setenv("GITHUB_API_URL", base)
        monkeypatch.delenv("GITHUB_SERVER_URL", raising=False)
        monkeypatch.delenv("GITHUB_TOKEN", raising=False)
        yield state
    assert state.violations == []


def test_the_fake_server_catches_contract_violations(fake: FakeGitHub) -> None:
    response = httpx.post(
        f"{github.api_url()}/repos/acme/lib/pulls",
        headers={"Accept": "application/json", "Authorization": f"token {TOKEN}"},
        content=b"title=x",
    )
    assert response.status_code == 400
    assert any("Accept" in v for v in fake.violations)
    assert any("X-GitHub-Api-Version" in v for v in fake.violations)
    assert any("Bearer" in v for v in fake.violations)
    fake.violations.clear()


def test_issue_becomes_a_ticket(fake: FakeGitHub) -> None:
    for source in ("gh:acme/lib#7", "https://github.com/acme/lib/issues/7"):
        ticket = load_ticket(source)
        assert ticket.id == "acme-lib-7"
        assert ticket.title == "add() subtracts"
        assert ticket.tests == ["tests/test_calc.py::test_add"]
        assert ticket.url == "https://github.com/acme/lib/issues/7"
        assert "add(2, 3) returns -1." in ticket.body
        assert ticket.slug == "acme-lib-7"
    assert [r["path"] for r in fake.requests] == ["/repos/acme/lib/issues/7"] * 2
    assert "Authorization" not in fake.requests[0]["headers"]


def test_token_is_sent_as_bearer_and_opens_private_issues(
    fake: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(AgentError, match=r"set GITHUB_TOKEN for a private repository"):
        load_ticket("gh:acme/secret#1")
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    ticket = load_ticket("gh:acme/secret#1")
    assert ticket.title == "private bug" and ticket.tests == []
    assert fake.requests[-1]["headers"]["Authorization"] == f"Bearer {TOKEN}"


def test_issue_errors_are_one_clear_line(fake: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(AgentError) as err:
        github.fetch_issue("acme", "lib", 99)
    assert str(err.value) == (
        "GitHub issue acme/lib#99 not found (Not Found); set GITHUB_TOKEN for a private repository"
    )
    assert err.value.code == 2
    monkeypatch.setenv("GITHUB_TOKEN", "wrong")
    with pytest.raises(AgentError, match=r"^cannot fetch GitHub issue acme/lib#7: HTTP 401: Bad "):
        load_ticket("gh:acme/lib#7")


def test_cli_reports_a_missing_issue_in_one_line(fake: FakeGitHub, run_agent, repo: Path) -> None:
    result = run_agent("fix", "gh:acme/lib#99", "--repo", repo)
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "GitHub issue acme/lib#99 not found (Not Found)" in lines[0]
    assert fake.requests[-1]["path"] == "/repos/acme/lib/issues/99"


def test_unreachable_api(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("GITHUB_API_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(AgentError, match=r"^cannot reach the GitHub API at http://127.0.0.1"):
        load_ticket("gh:acme/lib#7")


@pytest.mark.parametrize(
    "source", ["gh:acme/lib", "gh:acme#3", "https://github.com/acme/lib/pull/3", "gh:a/b#x"]
)
def test_bad_issue_references(source: str) -> None:
    with pytest.raises(AgentError, match="not a GitHub issue reference"):
        load_ticket(source)


def test_open_pull_request_follows_the_contract(fake: FakeGitHub) -> None:
    url = github.open_pull_request(
        "acme", "lib", "greenpatch/fix-add", "main", "Fix add", "Fixes acme/lib#7", TOKEN
    )
    assert url == "https://github.com/acme/lib/pull/1"
    request = fake.requests[-1]
    assert request["method"] == "POST" and request["path"] == "/repos/acme/lib/pulls"
    assert request["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(request["body"]) == {
        "title": "Fix add",
        "head": "greenpatch/fix-add",
        "base": "main",
        "body": "Fixes acme/lib#7",
    }
    with pytest.raises(AgentError) as err:
        github.open_pull_request("acme", "lib", "greenpatch/fix-add", "main", "again", "", TOKEN)
    assert str(err.value) == (
        "GitHub refused the pull request greenpatch/fix-add -> main on acme/lib: HTTP 422: "
        "Validation Failed: A pull request already exists for acme:greenpatch/fix-add."
    )


def test_pull_request_errors(fake: FakeGitHub) -> None:
    with pytest.raises(AgentError, match=r"HTTP 422: Validation Failed: No commits between main"):
        github.open_pull_request("acme", "lib", "greenpatch/empty", "main", "t", "b", TOKEN)
    with pytest.raises(AgentError, match=r"HTTP 401: Bad credentials"):
        github.open_pull_request("acme", "lib", "greenpatch/fix-add", "main", "t", "b", "nope")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://github.com/acme/lib.git", ("acme", "lib")),
        ("https://github.com/acme/lib", ("acme", "lib")),
        ("https://x-access-token:abc@github.com/acme/lib.git", ("acme", "lib")),
        ("git@github.com:acme/my.lib.git", ("acme", "my.lib")),
        ("ssh://git@github.com/acme/lib.git", ("acme", "lib")),
        ("ssh://git@github.com:22/acme/lib", ("acme", "lib")),
        ("https://gitlab.com/acme/lib.git", None),
        ("git@gitlab.com:acme/lib.git", None),
        ("/srv/git/lib.git", None),
        ("file:///srv/git/lib.git", None),
    ],
)
def test_parse_remote(url: str, expected: tuple[str, str] | None) -> None:
    assert github.parse_remote(url) == expected


def test_compare_url_and_enterprise_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_SERVER_URL", raising=False)
    assert github.compare_url("acme", "lib", "main", "greenpatch/x") == (
        "https://github.com/acme/lib/compare/main...greenpatch/x?expand=1"
    )
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://git.corp.example")
    assert github.parse_remote("git@git.corp.example:team/app.git") == ("team", "app")
    assert github.parse_issue_ref("https://git.corp.example/team/app/issues/4") == (
        "team",
        "app",
        4,
    )


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def repo_with_remote(tmp_path: Path) -> tuple[Path, Path]:
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    root = tmp_path / "proj"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Dev")
    git(root, "config", "user.email", "dev@example.com")
    (root / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "initial")
    git(root, "remote", "add", "origin", str(bare))
    git(root, "push", "-q", "origin", "main")
    return root, bare


def test_push_branch_reaches_a_real_bare_remote(repo_with_remote: tuple[Path, Path]) -> None:
    root, bare = repo_with_remote
    base = git(root, "rev-parse", "HEAD").strip()
    fix = {"calc.py": "def add(a, b):\n    return a + b\n"}
    sha = commit_on_branch(root, base, fix, "greenpatch/fix-add", "Fix add")
    status_before = git(root, "status", "--porcelain=v1")
    github.push_branch(root, "greenpatch/fix-add")
    assert git(bare, "rev-parse", "refs/heads/greenpatch/fix-add").strip() == sha
    assert git(bare, "show", f"{sha}:calc.py") == fix["calc.py"]
    assert git(root, "status", "--porcelain=v1") == status_before
    assert git(root, "symbolic-ref", "HEAD").strip() == "refs/heads/main"


def test_push_errors(repo_with_remote: tuple[Path, Path], tmp_path: Path) -> None:
    root, bare = repo_with_remote
    base = git(root, "rev-parse", "HEAD").strip()
    with pytest.raises(AgentError, match="no git remote named 'upstream'"):
        github.push_branch(root, "main", remote="upstream")
    with pytest.raises(AgentError, match="no such local branch"):
        github.push_branch(root, "greenpatch/none")
    # The remote already has a different greenpatch/x: a non-fast-forward push is rejected.
    commit_on_branch(root, base, {"calc.py": "A = 1\n"}, "greenpatch/x", "one")
    github.push_branch(root, "greenpatch/x")
    git(root, "branch", "-D", "greenpatch/x")
    commit_on_branch(root, base, {"calc.py": "B = 2\n"}, "greenpatch/x", "two")
    with pytest.raises(AgentError, match=r"^git push of greenpatch/x to origin failed: .*rejected"):
        github.push_branch(root, "greenpatch/x")
    git(root, "remote", "set-url", "origin", str(tmp_path / "missing.git"))
    with pytest.raises(AgentError, match=r"^git push of main to origin failed: "):
        github.push_branch(root, "main")


def test_pr_body_gives_the_evidence() -> None:
    ticket = Ticket(
        id="acme-lib-7",
        title="add() subtracts",
        body="",
        url="https://github.com/acme/lib/issues/7",
    )
    diff = (
        "diff --git a/calc.py b/calc.py\n--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n"
        " def add(a, b):\n-    return a - b\n+    return a + b\n"
    )
    report = FixReport(
        ticket=ticket.id,
        diff=diff,
        tests_confirmed={
            "tests/test_calc.py::test_add": "passed",
            "tests/test_calc.py::test_sub": "passed",
        },
        failing_before=["tests/test_calc.py::test_add"],
        tests_run=12,
        rounds=2,
        candidates=37,
        seconds=8.25,
        model="embedded-small",
    )
    body = pr_body(ticket, report)
    assert body.startswith("Fixes acme/lib#7\n")
    assert "- `calc.py`: +1 -1" in body
    assert "```diff\n" + diff.rstrip("\n") + "\n```" in body
    assert "12 tests run; 1 failing before the fix." in body
    assert "Still failing" not in body
    still = pr_body(ticket, replace(report, failing_after=["tests/test_env.py::test_environ"]))
    assert "Still failing after the fix, as before it: `tests/test_env.py::test_environ`." in still
    assert "| `tests/test_calc.py::test_add` | failed | passed |" in body
    assert "| `tests/test_calc.py::test_sub` | passed | passed |" in body
    assert "- rounds: 2" in body and "- candidates drafted: 37" in body
    assert "- time: 8.2 s" in body or "- time: 8.3 s" in body
    assert "`embedded-small`" in body
    local = pr_body(Ticket(id="t1", title="T", body=""), FixReport(ticket="t1", diff=diff))
    assert local.startswith("Ticket: ticket `t1`\n")


def test_publish_to_a_plain_remote_pushes_and_gives_no_urls(
    repo_with_remote: tuple[Path, Path],
) -> None:
    root, bare = repo_with_remote
    base = git(root, "rev-parse", "HEAD").strip()
    sha = commit_on_branch(root, base, {"calc.py": "A = 1\n"}, "greenpatch/a", "fix")
    published = publish(open_repo(root), "greenpatch/a", "Fix", "body", TOKEN)
    assert published == Publication(None, None, None)
    assert git(bare, "rev-parse", "refs/heads/greenpatch/a").strip() == sha


def github_looking_remote(root: Path, bare: Path) -> None:
    """origin says github.com/acme/lib, but git's insteadOf sends pushes to the local bare repo."""
    git(root, "remote", "set-url", "origin", "https://github.com/acme/lib.git")
    git(root, "config", f"url.{bare}.insteadOf", "https://github.com/acme/lib.git")


def test_publish_without_token_gives_the_compare_url(
    repo_with_remote: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_SERVER_URL", raising=False)
    root, bare = repo_with_remote
    github_looking_remote(root, bare)
    git(root, "checkout", "-q", "--detach")  # detached: the base is the remote's default or main
    base = git(root, "rev-parse", "HEAD").strip()
    sha = commit_on_branch(root, base, {"calc.py": "A = 1\n"}, "greenpatch/fix-add", "fix")
    published = publish(open_repo(root), "greenpatch/fix-add", "Fix", "body", None)
    assert published.pull_request is None and published.error is None
    assert published.compare_url == (
        "https://github.com/acme/lib/compare/main...greenpatch/fix-add?expand=1"
    )
    assert git(bare, "rev-parse", "refs/heads/greenpatch/fix-add").strip() == sha


def test_publish_with_token_pushes_then_opens_the_pull_request(
    fake: FakeGitHub, repo_with_remote: tuple[Path, Path]
) -> None:
    root, bare = repo_with_remote
    github_looking_remote(root, bare)
    git(root, "checkout", "-q", "-b", "feature")
    git(root, "push", "-q", "origin", "feature")  # the current branch exists on the remote
    base = git(root, "rev-parse", "HEAD").strip()
    sha = commit_on_branch(root, base, {"calc.py": "A = 1\n"}, "greenpatch/fix-add", "fix")
    published = publish(open_repo(root), "greenpatch/fix-add", "Fix add", "Body", TOKEN)
    assert published.pull_request == "https://github.com/acme/lib/pull/1"
    assert git(bare, "rev-parse", "refs/heads/greenpatch/fix-add").strip() == sha
    sent = json.loads(fake.requests[-1]["body"])
    assert sent == {
        "title": "Fix add",
        "head": "greenpatch/fix-add",
        "base": "feature",
        "body": "Body",
    }
