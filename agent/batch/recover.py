"""What the repository already says about a ticket: a fix branch made by an earlier attempt.

Before a ticket runs (first time or on resume), its branch is looked up locally and on `origin`:
a branch whose tip is greenpatch's commit for this very ticket (same message, citing it) means the
ticket is already fixed, so it is recorded green and never redone; a branch of that name that is
anything else is somebody's work, never overwritten.
"""

from __future__ import annotations

import git
from greenpatch.agent.errors import AgentError
from greenpatch.agent.publish.branch import commit_message
from greenpatch.agent.tickets import Ticket


def _tip(repo: git.Repo, ref: str) -> git.Commit | None:
    try:
        sha = repo.git.rev_parse("--verify", "--quiet", f"{ref}^{{commit}}")
    except git.GitCommandError:
        return None
    return repo.commit(sha)


def cites(commit: git.Commit, ticket: Ticket) -> bool:
    """Whether `commit` is the fix commit greenpatch writes for `ticket`."""
    return commit.message.strip() == commit_message(ticket).strip()


def existing_fix(
    repo: git.Repo, branch: str, ticket: Ticket, base: str | None = None
) -> tuple[str, str] | None:
    """(commit, where) of this ticket's fix already on `branch` (local, else origin's), or None.

    With `base` (the commit an interrupted attempt started from), a local branch must sit right
    on it. Raises AgentError when a branch of that name holds something else.
    """
    for ref, where in ((f"refs/heads/{branch}", "branch"),
                       (f"refs/remotes/origin/{branch}", "origin")):  # fmt: skip
        tip = _tip(repo, ref)
        if tip is None:
            continue
        on_base = base is None or where != "branch" or [p.hexsha for p in tip.parents] == [base]
        if cites(tip, ticket) and on_base:
            return tip.hexsha, where
        raise AgentError(f"{where} {branch} exists and is not greenpatch's fix for {ticket.id}")
    return None
