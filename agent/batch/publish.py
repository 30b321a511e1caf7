"""One pull request per green ticket, never two: push the branch, ask GitHub whether a pull
request from it exists (an earlier, interrupted batch may have opened it), open one if not."""

from __future__ import annotations

from dataclasses import dataclass

import git

from agent import github
from agent.batch.journal import Entry
from agent.errors import AgentError


@dataclass(frozen=True)
class Publication:
    pull_request: str | None
    compare_url: str | None
    error: str | None


def _body(repo: git.Repo, entry: Entry) -> str:
    report = entry.report
    if report is not None:
        return github.pr_body(
            entry.item.ticket, report["diff"], report.get("tests_confirmed", {}),
            report["failing_before"], report["tests_run"], report["rounds"],
            report["candidates"], entry.seconds, report.get("model", ""),
        )  # fmt: skip
    # Recovered from the repository after a crash: the commit itself is the evidence.
    # Neither an external diff program nor a textconv filter of the repository's config runs.
    diff = repo.git.diff("--no-ext-diff", "--no-textconv", f"{entry.commit}^", entry.commit)
    return github.pr_body(entry.item.ticket, diff + "\n", {}, [], 0, 0, 0, entry.seconds, "")


def publish(repo: git.Repo, entry: Entry, token: str | None) -> Publication:
    """Push `entry`'s branch and open (or find) its pull request; errors are returned, not
    raised: a ticket that is green stays green when its push fails."""
    branch = entry.branch
    assert branch and entry.commit
    try:
        if f"refs/heads/{branch}" in {ref.path for ref in repo.branches}:
            github.push_branch(repo, branch)
        url = repo.remote("origin").url
        owner_repo = github.parse_remote(url)
        if owner_repo is None:
            return Publication(None, None, None)
        owner, name = owner_repo
        base = github.pull_request_base(repo)
        if not token:
            return Publication(None, github.compare_url(owner, name, base, branch), None)
        found = github.find_pull_request(owner, name, branch, token)
        if found:
            return Publication(found, None, None)
        title = f"Fix: {entry.item.ticket.title}"
        opened = github.open_pull_request(
            owner, name, branch, base, title, _body(repo, entry), token
        )
        return Publication(opened, None, None)
    except AgentError as exc:
        return Publication(None, None, str(exc))
    except ValueError:  # repo.remote() of a repository without `origin`
        return Publication(None, None, f"no git remote named 'origin' to push {branch} to")
