"""A batch's results: the JSON report, a markdown report (a CI job summary), a summary table.

Every ticket has one status: green, failed, cannot-reproduce or error. A ticket the batch did not
finish (the time limit came first, or it was interrupted) is reported `failed` with the reason;
its journal entry stays open, so `agent batch --resume` takes it up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from greenpatch.agent.batch.board import STYLE
from greenpatch.agent.batch.journal import Entry
from greenpatch.agent.batch.sources import Problem
from rich.table import Table

STATUSES = ("green", "failed", "cannot-reproduce", "error")
_NOT_STARTED = "not started before the batch's time limit; continue with --resume"
_INTERRUPTED = "interrupted; continue with --resume"


def _unfinished(entry: Entry) -> str:
    if entry.state == "queued" and not entry.attempts:
        return _NOT_STARTED
    return _INTERRUPTED


def ticket_report(entry: Entry) -> dict[str, Any]:
    final = entry.state in STATUSES
    item: dict[str, Any] = {
        "id": entry.id,
        "status": entry.state if final else "failed",
        "branch": entry.branch if entry.state == "green" else None,
        "commit": entry.commit if entry.state == "green" else None,
        "seconds": round(entry.seconds, 3),
        "reason": entry.reason if final else _unfinished(entry),
        "title": entry.item.ticket.title,
        "repo": str(entry.item.repo),
        "attempts": entry.attempts,
        "finished": final,
    }
    if entry.item.ticket.url:
        item["url"] = entry.item.ticket.url
    if entry.pull_request or entry.compare_url or entry.pr_error:
        item["pull_request"] = entry.pull_request
        item["compare_url"] = entry.compare_url
        item["pull_request_error"] = entry.pr_error
    if entry.report:
        for key in ("candidates", "tests_run", "rounds", "model", "diff"):
            if key in entry.report:
                item[key] = entry.report[key]
    return item


def batch_report(
    backlog: str, entries: Sequence[Entry], problems: Sequence[Problem], seconds: float,
    journal: str,
) -> dict[str, Any]:  # fmt: skip
    tickets = [ticket_report(e) for e in entries]
    counts = {s: sum(1 for t in tickets if t["status"] == s) for s in STATUSES}
    return {
        "backlog": backlog,
        "journal": journal,
        "seconds": round(seconds, 3),
        "counts": counts,
        "finished": all(t["finished"] for t in tickets),
        "tickets": tickets,
        "skipped": [{"where": p.where, "reason": p.reason} for p in problems],
    }


def _cell(text: object) -> str:
    """Markdown table cell: one line, pipes escaped."""
    return " ".join(str(text or "").split()).replace("|", "\\|")


def markdown(report: dict[str, Any]) -> str:
    tickets = report["tickets"]
    green = report["counts"]["green"]
    lines = [
        f"## agent batch: {green} of {len(tickets)} tickets green",
        "",
        f"Backlog `{report['backlog']}`, {report['seconds']:.0f} s. "
        + ", ".join(f"{n} {s}" for s, n in report["counts"].items() if n),
        "",
    ]
    if tickets:
        with_pr = any(t.get("pull_request") or t.get("compare_url") for t in tickets)
        head = ["ticket", "status", "branch", "commit", "seconds", "reason"]
        head += ["pull request"] if with_pr else []
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for t in tickets:
            ticket = f"[{_cell(t['id'])}]({t['url']})" if t.get("url") else _cell(t["id"])
            row = [
                ticket,
                t["status"],
                f"`{t['branch']}`" if t["branch"] else "",
                f"`{t['commit'][:10]}`" if t["commit"] else "",
                f"{t['seconds']:.1f}",
                _cell(t["reason"]),
            ]
            if with_pr:
                link = t.get("pull_request") or t.get("compare_url")
                row.append(f"[open]({link})" if link else _cell(t.get("pull_request_error")))
            lines.append("| " + " | ".join(row) + " |")
    else:
        lines.append("No tickets.")
    if report["skipped"]:
        lines += ["", f"Skipped {len(report['skipped'])} bad backlog entries:", ""]
        lines += [f"- `{_cell(s['where'])}`: {_cell(s['reason'])}" for s in report["skipped"]]
    if not report["finished"]:
        lines += ["", "The batch did not finish every ticket; `agent batch --resume` continues it."]
    return "\n".join(lines) + "\n"


def summary_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"agent batch: {report['counts']['green']} of "
                  f"{len(report['tickets'])} green in {report['seconds']:.0f}s")  # fmt: skip
    for name in ("ticket", "status", "branch", "commit", "seconds", "reason"):
        table.add_column(name, justify="right" if name == "seconds" else "left",
                         overflow="fold")  # fmt: skip
    for t in report["tickets"]:
        style = STYLE.get(t["status"], "")
        status = f"[{style}]{t['status']}[/{style}]"
        commit = (t["commit"] or "")[:10]
        table.add_row(t["id"], status, t["branch"] or "", commit, f"{t['seconds']:.1f}",
                      t["reason"] or "")  # fmt: skip
    return table
