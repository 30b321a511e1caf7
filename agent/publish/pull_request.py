"""Publishing a fix: push its branch, find or open its pull request (never two for one
branch), and the pull request's body. `agent fix --pr` and `agent batch --pr` both come here."""

from __future__ import annotations

import re
from dataclasses import dataclass

import git
from greenpatch.agent.errors import AgentError
from greenpatch.agent.pipeline.fix_report import FixReport, FixView, Unpublished
from greenpatch.agent.publish import github
from greenpatch.agent.tickets import Ticket

_MAX_BODY_DIFF = 20_000  # GitHub caps a PR body at 65,536 characters.


@dataclass(frozen=True)
class Publication:
    """Where a pushed fix can be seen: its pull request, or the page to open one by hand (a
    GitHub remote without a token); `error` says why neither, the branch staying committed."""

    pull_request: str | None
    compare_url: str | None
    error: str | None


def publish(repo: git.Repo, branch: str, title: str, body: str, token: str | None) -> Publication:
    """Push `branch` and find or open its pull request. Errors are returned, not raised: a fix
    that is green stays green when its push fails."""
    try:
        if f"refs/heads/{branch}" in {ref.path for ref in repo.branches}:
            github.push_branch(repo, branch)
        owner_repo = github.parse_remote(repo.remote("origin").url)
        if owner_repo is None:
            return Publication(None, None, None)
        owner, name = owner_repo
        base = github.pull_request_base(repo)
        if not token:
            return Publication(None, github.compare_url(owner, name, base, branch), None)
        # An earlier, interrupted run may have opened it.
        found = github.find_pull_request(owner, name, branch, token)
        if found:
            return Publication(found, None, None)
        return Publication(github.open_pull_request(owner, name, branch, base, title, body, token),
                           None, None)  # fmt: skip
    except AgentError as exc:
        return Publication(None, None, str(exc))
    except ValueError:  # repo.remote() of a repository without `origin`
        return Publication(None, None, f"no git remote named 'origin' to push {branch} to")


def publish_fix(repo: git.Repo, ticket: Ticket, report: FixReport, view: FixView) -> None:
    """`agent fix --pr`: publish a green report's branch; the report records where it went."""
    assert report.branch is not None
    body = pr_body(ticket, report)
    done = publish(repo, report.branch, f"Fix: {ticket.title}", body, github.token_from_env())
    if done.error is not None:
        raise AgentError(done.error)
    report.pull_request, report.compare_url, report.pr_body = (
        done.pull_request, done.compare_url, body)  # fmt: skip
    if done.pull_request is None:
        view.event(Unpublished(body))


def diff_summary(diff: str) -> list[tuple[str, int, int]]:
    """(path, lines added, lines removed) per file of a unified git diff."""
    summary: list[tuple[str, int, int]] = []
    for line in diff.splitlines():
        if line.startswith("diff --git "):
            summary.append((line.split(" b/", 1)[-1], 0, 0))
        elif summary and line.startswith("+") and not line.startswith("+++"):
            path, added, removed = summary[-1]
            summary[-1] = (path, added + 1, removed)
        elif summary and line.startswith("-") and not line.startswith("---"):
            path, added, removed = summary[-1]
            summary[-1] = (path, added, removed + 1)
    return summary


def pr_body(ticket: Ticket, report: FixReport) -> str:
    """Markdown body of the pull request: the ticket, the change, the evidence, the search."""
    diff, results, failing_before = report.diff, report.tests_confirmed or {}, report.failing_before
    cite = ticket.url or f"ticket `{ticket.id}`"
    ref = _issue_cite(ticket.url)
    lines = [
        f"Fixes {ref}" if ref else f"Ticket: {cite}",
        "",
        f"**{ticket.title}**",
        "",
        "## Change",
        "",
    ]
    for path, added, removed in diff_summary(diff):
        lines.append(f"- `{path}`: +{added} -{removed}")
    shown = diff if len(diff) <= _MAX_BODY_DIFF else diff[:_MAX_BODY_DIFF] + "\n... (truncated)\n"
    lines += ["", "```diff", shown.rstrip("\n"), "```", "", "## Tests", ""]
    lines.append(f"{report.tests_run} tests run; {len(failing_before)} failing before the fix.")
    if report.failing_after:
        # Green means the ticket's tests pass and nothing that passed broke; a reviewer must
        # still see what this change leaves failing (it may be the same bug).
        still = report.failing_after
        shown = ", ".join(f"`{t}`" for t in still[:10])
        more = f" and {len(still) - 10} more" if len(still) > 10 else ""
        lines.append(f"Still failing after the fix, as before it: {shown}{more}.")
    if results:
        lines += ["", "| test | before | after |", "|---|---|---|"]
        before = set(failing_before)
        for test_id in sorted(results):
            was = "failed" if test_id in before else "passed"
            lines.append(f"| `{test_id}` | {was} | {results[test_id]} |")
    lines += [
        "",
        "## How it was found",
        "",
        f"- rounds: {report.rounds}",
        f"- candidates drafted: {report.candidates}",
        f"- time: {report.seconds:.1f} s",
        f"- model: `{report.model}`",
        "",
        "Drafted by a masked-diffusion model and validated in a sandbox by greenpatch; "
        "confirmed on a clean worktree before committing.",
    ]
    return "\n".join(lines) + "\n"


def _issue_cite(url: str) -> str:
    match = re.search(rf"/({github.NAME})/({github.NAME})/issues/(\d+)", url)
    return f"{match.group(1)}/{match.group(2)}#{match.group(3)}" if match else ""
