"""A batch entry's pull request: its body from the journal's report (or, for a fix recovered from
the repository after a crash, from the commit itself), published by agent.publish.pull_request
(which finds a pull request an earlier, interrupted batch opened before it opens one)."""

from __future__ import annotations

import git
from greenpatch.agent.batch.journal import Entry
from greenpatch.agent.pipeline.fix_report import FixReport
from greenpatch.agent.publish.pull_request import Publication, pr_body, publish


def _body(repo: git.Repo, entry: Entry) -> str:
    if entry.report is not None:
        report = FixReport.from_json(entry.report)
        report.seconds = entry.seconds
        return pr_body(entry.item.ticket, report)
    # Recovered from the repository after a crash: the commit itself is the evidence.
    # Neither an external diff program nor a textconv filter of the repository's config runs.
    diff = repo.git.diff("--no-ext-diff", "--no-textconv", f"{entry.commit}^", entry.commit)
    report = FixReport(ticket=entry.item.ticket.id, diff=diff + "\n", seconds=entry.seconds)
    return pr_body(entry.item.ticket, report)


def publish_entry(repo: git.Repo, entry: Entry, token: str | None) -> Publication:
    """Push `entry`'s branch and open (or find) its pull request; errors are returned."""
    assert entry.branch and entry.commit
    title = f"Fix: {entry.item.ticket.title}"
    return publish(repo, entry.branch, title, _body(repo, entry), token)
