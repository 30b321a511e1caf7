"""GitHub: issues as tickets, pushing the fix branch, opening the pull request (REST API).

The API base is `GITHUB_API_URL` (as in GitHub Actions; default https://api.github.com) and the
web base `GITHUB_SERVER_URL` (default https://github.com), so GitHub Enterprise and local test
servers work unchanged. The token comes from `GITHUB_TOKEN`.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import git
import httpx
from greenpatch.agent.errors import AgentError
from greenpatch.agent.repo import open_repo
from greenpatch.sandboxes import safegit

API_VERSION = "2022-11-28"
_TIMEOUT = httpx.Timeout(20.0, connect=10.0)
NAME = r"[A-Za-z0-9_.-]+"
_GH_REF = re.compile(rf"^gh:({NAME})/({NAME})#(\d+)$")
_PUSH_TIMEOUT = 300.0
_LOCAL_RECEIVE_PACK = (
    "git -c core.hooksPath=/dev/null -c core.fsmonitor=false -c receive.autogc=false receive-pack"
)


@dataclass(frozen=True)
class Issue:
    owner: str
    repo: str
    number: int
    title: str
    body: str
    html_url: str


def api_url() -> str:
    return os.environ.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")


def server_url() -> str:
    return os.environ.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")


# Tokens taken out of the environment by `tokens_hidden()`: only this process talks to GitHub,
# so no child (git, pytest, a sandbox, a model server) inherits them; the push gets them back.
_TOKENS: dict[str, str] = {}
TOKEN_NAMES = ("GITHUB_TOKEN", "GH_TOKEN")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@contextlib.contextmanager
def tokens_hidden() -> Iterator[None]:
    """While a command runs (the CLI wraps each in this), the GitHub tokens are out of
    os.environ and kept here; they are back afterwards."""
    hidden = {name: os.environ.pop(name) for name in TOKEN_NAMES if name in os.environ}
    _TOKENS.update(hidden)
    try:
        yield
    finally:
        for name, value in hidden.items():
            _TOKENS.pop(name, None)
            os.environ.setdefault(name, value)


def token_from_env() -> str | None:
    return os.environ.get("GITHUB_TOKEN") or _TOKENS.get("GITHUB_TOKEN") or None


def _hosts() -> set[str]:
    return {"github.com", urlsplit(server_url()).hostname or "github.com"}


def is_issue_ref(source: str) -> bool:
    """Whether `source` is meant as a GitHub issue (`gh:...` or an https URL to one)."""
    return source.startswith("gh:") or any(
        source.startswith(f"https://{host}/") for host in _hosts()
    )


def parse_issue_ref(source: str) -> tuple[str, str, int]:
    """(owner, repo, number) from `gh:OWNER/REPO#N` or `https://github.com/OWNER/REPO/issues/N`."""
    match = _GH_REF.match(source)
    if match:
        return match.group(1), match.group(2), int(match.group(3))
    parts = urlsplit(source)
    path = re.fullmatch(rf"/({NAME})/({NAME})/issues/(\d+)/?", parts.path)
    if parts.scheme == "https" and parts.hostname in _hosts() and path:
        return path.group(1), path.group(2), int(path.group(3))
    raise AgentError(
        f"not a GitHub issue reference: {source} "
        "(use gh:OWNER/REPO#N or https://github.com/OWNER/REPO/issues/N)"
    )


def _check_transport(url: str) -> None:
    """A token goes over https only (plain http to this machine is for local test servers)."""
    parts = urlsplit(url)
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        raise AgentError(
            f"refusing to send the GitHub token to {parts.scheme}://{parts.hostname}: "
            "GITHUB_API_URL must be https"
        )


def _headers(token: str | None, url: str) -> dict[str, str]:
    if token:
        _check_transport(url)
    headers = {
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": API_VERSION,
        "User-Agent": "greenpatch",
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _github_message(response: httpx.Response) -> str:
    """GitHub's own explanation: `message`, plus the `errors[].message` details of a 422."""
    try:
        data = response.json()
    except ValueError:
        return response.reason_phrase or "no details"
    if not isinstance(data, dict):
        return response.reason_phrase or "no details"
    message = str(data.get("message") or response.reason_phrase or "no details")
    details = []
    for err in data.get("errors") or []:
        if isinstance(err, dict):
            detail = err.get("message") or " ".join(
                str(err[k]) for k in ("resource", "field", "code") if err.get(k)
            )
            if detail:
                details.append(str(detail))
        elif isinstance(err, str):
            details.append(err)
    return f"{message}: {'; '.join(details)}" if details else message


def _request(
    method: str, path: str, token: str | None, json: dict[str, Any] | None = None
) -> httpx.Response:
    url = f"{api_url()}{path}"
    try:
        with httpx.Client(timeout=_TIMEOUT, follow_redirects=True) as client:
            return client.request(method, url, headers=_headers(token, url), json=json)
    except httpx.HTTPError as exc:
        raise AgentError(f"cannot reach the GitHub API at {api_url()}: {exc}") from None


def fetch_issue(owner: str, repo: str, number: int, token: str | None = None) -> Issue:
    """GET /repos/{owner}/{repo}/issues/{number}; errors become one-line AgentErrors."""
    ref = f"{owner}/{repo}#{number}"
    response = _request("GET", f"/repos/{quote(owner)}/{quote(repo)}/issues/{number}", token)
    if response.status_code == 404:
        hint = "" if token else "; set GITHUB_TOKEN for a private repository"
        raise AgentError(f"GitHub issue {ref} not found ({_github_message(response)}){hint}")
    if response.status_code != 200:
        raise AgentError(
            f"cannot fetch GitHub issue {ref}: "
            f"HTTP {response.status_code}: {_github_message(response)}"
        )
    try:
        data = response.json()
        title = str(data["title"])
    except (ValueError, KeyError, TypeError):
        raise AgentError(f"GitHub's answer for issue {ref} is not an issue") from None
    return Issue(
        owner=owner,
        repo=repo,
        number=number,
        title=title,
        body=str(data.get("body") or ""),
        html_url=str(data.get("html_url") or f"{server_url()}/{owner}/{repo}/issues/{number}"),
    )


_MAX_PAGES = 100  # 10,000 issues: a label listing that never ends is a server bug, not a backlog


def _get_pages(
    url: str, params: dict[str, str] | None, token: str | None, what: str
) -> Iterator[Any]:
    """GET `url` and every page after it (`Link: <...>; rel="next"`), yielding decoded bodies.
    A next link must stay on the API host: the token is never sent anywhere else."""
    base = api_url()
    try:
        with httpx.Client(timeout=_TIMEOUT, follow_redirects=True) as client:
            for _ in range(_MAX_PAGES):
                response = client.get(url, params=params, headers=_headers(token, url))
                if response.status_code != 200:
                    hint = (
                        "; set GITHUB_TOKEN for a private repository"
                        if response.status_code == 404 and not token
                        else ""
                    )
                    raise AgentError(
                        f"cannot list {what}: HTTP {response.status_code}: "
                        f"{_github_message(response)}{hint}"
                    )
                try:
                    yield response.json()
                except ValueError:
                    raise AgentError(f"GitHub's answer listing {what} is not JSON") from None
                following = response.links.get("next", {}).get("url")
                if not following:
                    return
                if not following.startswith(base + "/"):
                    raise AgentError(f"GitHub's next page for {what} leaves {base}: {following}")
                url, params = following, None  # the next link carries the query itself
    except httpx.HTTPError as exc:
        raise AgentError(f"cannot reach the GitHub API at {base}: {exc}") from None
    raise AgentError(f"listing {what} did not end after {_MAX_PAGES} pages")


def list_issues_by_label(owner: str, repo: str, label: str, token: str | None = None
                         ) -> list[Issue]:  # fmt: skip
    """Open issues of OWNER/REPO carrying `label`, oldest first; pull requests (which the issues
    endpoint also returns) are left out. GET /repos/{owner}/{repo}/issues, every page."""
    what = f"issues labelled '{label}' in {owner}/{repo}"
    url = f"{api_url()}/repos/{quote(owner)}/{quote(repo)}/issues"
    params = {"labels": label, "state": "open", "per_page": "100", "page": "1"}
    issues: dict[int, Issue] = {}
    for page in _get_pages(url, params, token, what):
        if not isinstance(page, list):
            raise AgentError(f"GitHub's answer listing {what} is not a list")
        for item in page:
            if not isinstance(item, dict) or "pull_request" in item:
                continue
            try:
                number, title = int(item["number"]), str(item["title"])
            except (KeyError, TypeError, ValueError):
                raise AgentError(f"GitHub's answer listing {what} holds a non-issue") from None
            issues[number] = Issue(
                owner=owner,
                repo=repo,
                number=number,
                title=title,
                body=str(item.get("body") or ""),
                html_url=str(
                    item.get("html_url") or f"{server_url()}/{owner}/{repo}/issues/{number}"
                ),
            )
    return [issues[n] for n in sorted(issues)]


def find_pull_request(owner: str, repo: str, head: str, token: str | None = None) -> str | None:
    """The html_url of a pull request (open or closed) from branch `head` of OWNER/REPO, if any:
    a resumed batch asks before opening, so it never opens a second one.
    GET /repos/{owner}/{repo}/pulls?head=OWNER:BRANCH&state=all."""
    url = f"{api_url()}/repos/{quote(owner)}/{quote(repo)}/pulls"
    params = {"head": f"{owner}:{head}", "state": "all", "per_page": "100"}
    for page in _get_pages(url, params, token, f"pull requests from {head} in {owner}/{repo}"):
        for item in page if isinstance(page, list) else []:
            if isinstance(item, dict) and item.get("html_url"):
                return str(item["html_url"])
    return None


def open_pull_request(
    owner: str, repo: str, head: str, base: str, title: str, body: str, token: str
) -> str:
    """POST /repos/{owner}/{repo}/pulls; returns the pull request's html_url."""
    response = _request(
        "POST",
        f"/repos/{quote(owner)}/{quote(repo)}/pulls",
        token,
        json={"title": title, "head": head, "base": base, "body": body},
    )
    if response.status_code != 201:
        raise AgentError(
            f"GitHub refused the pull request {head} -> {base} on {owner}/{repo}: "
            f"HTTP {response.status_code}: {_github_message(response)}"
        )
    try:
        return str(response.json()["html_url"])
    except (ValueError, KeyError, TypeError):
        raise AgentError("GitHub created the pull request but returned no html_url") from None


def parse_remote(url: str) -> tuple[str, str] | None:
    """(owner, repo) of a GitHub remote URL (https, ssh or scp-like), else None."""
    scp = re.fullmatch(rf"(?:[\w.-]+@)?([\w.-]+):({NAME})/({NAME}?)(?:\.git)?/?", url)
    if scp and "://" not in url:
        host, owner, name = scp.groups()
    else:
        parts = urlsplit(url)
        path = re.fullmatch(rf"/({NAME})/({NAME}?)(?:\.git)?/?", parts.path)
        if parts.scheme not in ("https", "http", "ssh", "git") or not path:
            return None
        host, (owner, name) = parts.hostname or "", path.groups()
    if host not in _hosts() or not name:
        return None
    return owner, name


def compare_url(owner: str, repo: str, base: str, head: str) -> str:
    """The web page that offers to open a pull request from `head` into `base`."""
    return f"{server_url()}/{owner}/{repo}/compare/{quote(base)}...{quote(head)}?expand=1"


def push_branch(repo: git.Repo | str | Path, branch: str, remote: str = "origin") -> None:
    """Push local branch `branch` to the same name on `remote`; never prompts for credentials.

    The one git process that gets the user's credentials (their own helpers, ssh agent and
    tokens), never the repository's: no hooks, helpers or receive-pack of its config run."""
    repo = open_repo(repo)
    if remote not in {r.name for r in repo.remotes}:
        raise AgentError(f"no git remote named '{remote}' to push {branch} to")
    if f"refs/heads/{branch}" not in {ref.path for ref in repo.branches}:
        raise AgentError(f"cannot push {branch}: no such local branch")
    root = repo.working_tree_dir or repo.git_dir
    url = safegit.run(root, "remote", "get-url", "--push", remote).stdout.strip()
    if _is_local(url):
        # A remote on this machine: its receive-pack runs here, without our config overrides
        # (git clears them for another repository), so it gets them on its command line, and
        # no credentials: its hooks are as untrusted as the config that named it.
        env = safegit.environment(root)
        receive_pack = _LOCAL_RECEIVE_PACK
    else:
        env = safegit.environment(root, push=True)
        env.update({k: v for k, v in _TOKENS.items() if k not in env})
        receive_pack = "git-receive-pack"  # not the one remote.<name>.receivepack names
    try:
        done = subprocess.run(
            ["git", "push", "--porcelain", f"--receive-pack={receive_pack}", remote,
             f"refs/heads/{branch}:refs/heads/{branch}"],
            cwd=root, env=env, capture_output=True, text=True, check=False,
            timeout=_PUSH_TIMEOUT,  # an ssh prompt must not hang a CI job
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise AgentError(
            f"git push of {branch} to {remote} failed: no answer within {_PUSH_TIMEOUT:.0f}s"
        ) from None
    if done.returncode != 0:
        error = _push_error(done.stdout, done.stderr)
        raise AgentError(f"git push of {branch} to {remote} failed: {error}")


def _is_local(url: str) -> bool:
    """Whether a remote URL is a repository on this machine (a path or file://): not
    `scheme://...` and not scp-like `host:path`."""
    if url.startswith("file://"):
        return True
    if "://" in url:
        return False
    colon, slash = url.find(":"), url.find("/")
    return colon < 0 or (0 <= slash < colon)


def pull_request_base(repo: git.Repo, remote: str = "origin") -> str:
    """The branch a PR should target: the current branch if the remote has it, else the
    remote's default branch, else `main`."""
    remote_refs = {ref.remote_head for ref in repo.remote(remote).refs}
    if not repo.head.is_detached and repo.active_branch.name in remote_refs:
        return repo.active_branch.name
    try:
        target = repo.git.symbolic_ref("--quiet", f"refs/remotes/{remote}/HEAD")
        return target.removeprefix(f"refs/remotes/{remote}/")
    except git.GitCommandError:
        return "main"


def _push_error(stdout: str, stderr: str) -> str:
    text = f"{stdout}\n{stderr}"
    lines = [ln.strip().strip("'").strip() for ln in text.splitlines()]
    wanted = [ln for ln in lines if ln.startswith(("!", "fatal:", "error:", "remote:"))]
    for line in wanted or lines:
        if line and not line.startswith(("stdout:", "stderr:")):
            return re.sub(r"\s+", " ", line)
    return "unknown error"
