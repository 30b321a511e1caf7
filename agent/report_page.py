"""The run report: one self-contained HTML page of a fix, made from its JSON report.

Who was busy when (a timeline of the set-up, the drafter and each test worker), the
candidates of each round and their outcomes, the localization ranking and the final diff.
Everything is inline (CSS, a little JS, SVG) and the page's content security policy forbids
any fetch: it opens from a CI artifact or a mail attachment as it is. Every text of the
report (ticket ids, fills, failure messages, the diff) is untrusted and escaped.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from greenpatch.agent.errors import AgentError
from greenpatch.agent.pipeline.timeline import CONFIRM, DRAFTER, SETUP

# Colours per span kind and candidate outcome (the legend lists the ones a page uses).
COLOURS = {
    "baseline": "#8d99ae", "pool": "#b8c0cc", "model": "#6c757d", "confirm": "#2b9348",
    "substitution": "#4361ee", "edit": "#4895ef", "sample": "#7209b7", "repair": "#3a0ca3",
    "widen": "#4cc9f0",
    "remask": "#b5179e",
    "green": "#2b9348", "partial": "#f4a261", "failed": "#e63946", "timeout": "#6a040f",
    "cancelled": "#adb5bd", "not run": "#dee2e6",
}  # fmt: skip
OTHER_COLOUR = "#495057"
WIDTH, LANE_HEIGHT, LANE_GAP, LABEL_WIDTH, AXIS_HEIGHT = 1000, 22, 6, 90, 24
ROWS_PER_ROUND = 300  # candidates listed per round (the counts cover all of them)
OPEN_ROWS = 30  # a round's list is shown open up to this many candidates
RANKED_LINES = 20

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#212529;
background:#f8f9fa}
main{max-width:1100px;margin:0 auto;padding:18px 22px 40px}
h1{font-size:22px;margin:6px 0 4px}h2{font-size:17px;margin:26px 0 8px}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff;font-weight:600;
font-size:13px;vertical-align:middle}
.figures{display:flex;flex-wrap:wrap;gap:8px;margin:12px 0}
.figure{background:#fff;border:1px solid #dee2e6;border-radius:6px;padding:6px 12px}
.figure b{display:block;font-size:18px}.figure span{color:#6c757d;font-size:12px}
section{background:#fff;border:1px solid #dee2e6;border-radius:6px;padding:10px 14px}
svg text{font-size:11px;fill:#495057}svg .lane{font-size:12px;fill:#212529}
svg rect.span:hover{stroke:#000;stroke-width:1}
.legend{display:flex;flex-wrap:wrap;gap:10px;margin:6px 0 0;font-size:12px}
.legend i{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:4px;
vertical-align:-1px}
table{border-collapse:collapse;width:100%;font-size:12.5px}
th,td{text-align:left;padding:3px 6px;border-bottom:1px solid #eee;vertical-align:top;
overflow-wrap:anywhere}td.num{white-space:nowrap}h3{font-size:14px;margin:12px 0 2px}
th{background:#f1f3f5;position:sticky;top:0}
td code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
tr.hit{background:#fff3bf}tr.fixed{background:#d3f9d8}
.bar{display:inline-block;height:10px;border-radius:2px;vertical-align:middle}
.stack{display:flex;height:14px;border-radius:3px;overflow:hidden;margin:4px 0 8px}
pre.diff{background:#fff;border:1px solid #dee2e6;border-radius:6px;padding:10px;overflow:auto;
font-size:12.5px;margin:0}
.add{color:#1b7f3b;background:#e6ffed;display:block}.del{color:#b31d28;background:#ffeef0;
display:block}.hunk{color:#6f42c1;display:block}
.muted{color:#6c757d}details{margin:6px 0}summary{cursor:pointer;font-weight:600}
select{font:inherit;margin-left:6px}
"""

# Clicking a candidate's span shows its row; the outcome filter hides the other rows.
SCRIPT = """
(function () {
  'use strict';
  var rows = document.querySelectorAll('tr[data-outcome]');
  var filter = document.getElementById('outcome-filter');
  if (filter) {
    filter.addEventListener('change', function () {
      rows.forEach(function (row) {
        row.hidden = filter.value !== '' && row.getAttribute('data-outcome') !== filter.value;
      });
    });
  }
  document.querySelectorAll('rect[data-candidate]').forEach(function (rect) {
    rect.addEventListener('click', function () {
      var row = document.getElementById('cand-' + rect.getAttribute('data-candidate'));
      if (!row) { return; }
      document.querySelectorAll('tr.hit').forEach(function (r) { r.classList.remove('hit'); });
      var details = row.closest('details');
      if (details) { details.open = true; }
      row.hidden = false;
      row.classList.add('hit');
      row.scrollIntoView({block: 'center'});
    });
  });
  document.body.setAttribute('data-ready', 'yes');
})();
"""

CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "img-src data:")  # fmt: skip


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _colour(key: str) -> str:
    return COLOURS.get(key, OTHER_COLOUR)


def _lane_order(lane: str) -> tuple[int, int, str]:
    worker = re.fullmatch(r"worker (\d+)", lane)
    if worker:
        return (2, int(worker.group(1)), lane)
    fixed = {SETUP: 0, DRAFTER: 1, CONFIRM: 3}
    return (fixed.get(lane, 4), 0, lane)


def _busy(spans: list[dict]) -> float:
    """Seconds a lane is busy: the union of its spans (a worker's never overlap; the
    drafter's lane holds the model loading next to the drafting)."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted((s["start"], s["end"]) for s in spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def _candidate_id(span: dict) -> str | None:
    if span.get("kind") != "candidate":
        return None
    return str(span.get("label", "")).split(":", 1)[0] or None


def _span_key(span: dict) -> str:
    """What colours a span: a candidate's outcome (after the id in its label), else its kind."""
    if span.get("kind") == "candidate":
        return str(span.get("label", "")).rsplit(": ", 1)[-1]
    return str(span.get("kind", ""))


def timeline_svg(spans: list[dict], seconds: float) -> tuple[str, list[str]]:
    """The timeline as inline SVG, and the span keys it used (for the legend)."""
    lanes: dict[str, list[dict]] = defaultdict(list)
    for span in spans:
        lanes[str(span["lane"])].append(span)
    order = sorted(lanes, key=_lane_order)
    end = max([seconds, *(float(s["end"]) for s in spans)]) or 1.0
    scale = (WIDTH - LABEL_WIDTH - 10) / end
    height = AXIS_HEIGHT + len(order) * (LANE_HEIGHT + LANE_GAP)
    parts = [f'<svg id="timeline" viewBox="0 0 {WIDTH} {height}" width="100%" '
             f'role="img" aria-label="timeline" xmlns="http://www.w3.org/2000/svg">']  # fmt: skip
    step = _tick_step(end)
    tick = 0.0
    while tick <= end + 1e-9:
        x = LABEL_WIDTH + tick * scale
        parts.append(f'<line x1="{x:.1f}" y1="{AXIS_HEIGHT - 6}" x2="{x:.1f}" y2="{height}" '
                     f'stroke="#e9ecef"/><text x="{x:.1f}" y="{AXIS_HEIGHT - 10}" '
                     f'text-anchor="middle">{tick:g} s</text>')  # fmt: skip
        tick += step
    used: list[str] = []
    for index, lane in enumerate(order):
        y = AXIS_HEIGHT + index * (LANE_HEIGHT + LANE_GAP)
        busy = _busy(lanes[lane]) / end
        parts.append(f'<text class="lane" x="0" y="{y + 15}">{_e(lane)}</text>'
                     f'<text x="{LABEL_WIDTH - 6}" y="{y + 15}" text-anchor="end">'
                     f'{busy:.0%}</text>')  # fmt: skip
        for span in lanes[lane]:
            key = _span_key(span)
            if key not in used:
                used.append(key)
            x = LABEL_WIDTH + float(span["start"]) * scale
            w = max(0.8, (float(span["end"]) - float(span["start"])) * scale)
            candidate = _candidate_id(span)
            data = f' data-candidate="{_e(candidate)}"' if candidate else ""
            title = (f'{span.get("label") or key} ({float(span["start"]):.2f}–'
                     f'{float(span["end"]):.2f} s)')  # fmt: skip
            parts.append(f'<rect class="span" x="{x:.2f}" y="{y}" width="{w:.2f}" '
                         f'height="{LANE_HEIGHT}" fill="{_colour(key)}"{data}>'
                         f'<title>{_e(title)}</title></rect>')  # fmt: skip
    parts.append("</svg>")
    return "".join(parts), used


def _tick_step(end: float) -> float:
    for step in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if end / step <= 12:
            return float(step)
    return end / 10


def _legend(keys: list[str]) -> str:
    items = "".join(f'<span><i style="background:{_colour(k)}"></i>{_e(k)}</span>' for k in keys)
    return f'<div class="legend">{items}</div>'


def _figures(report: dict) -> str:
    busy = report.get("busy") or {}
    figures = [
        ("seconds", f'{float(report.get("seconds") or 0):.1f}'),
        ("rounds", report.get("rounds", 0)),
        ("candidates", report.get("candidates", 0)),
        ("tests run", report.get("tests_run", 0)),
        ("first candidate tested", f'{report["first_candidate_seconds"]:.1f} s'
         if report.get("first_candidate_seconds") is not None else "–"),
        ("drafting busy", f'{busy["drafting"]:.0%}' if "drafting" in busy else "–"),
        ("testing busy", f'{busy["testing"]:.0%}' if "testing" in busy else "–"),
        ("model", report.get("model") or "–"),
        ("sandbox", report.get("sandbox") or "–"),
    ]  # fmt: skip
    return '<div class="figures">' + "".join(
        f'<div class="figure"><b>{_e(value)}</b><span>{_e(name)}</span></div>'
        for name, value in figures
    ) + "</div>"


def _rounds(attempts: list[dict]) -> str:
    if not attempts:
        return '<p class="muted">No candidate was recorded.</p>'
    by_round: dict[int, list[dict]] = defaultdict(list)
    for attempt in attempts:
        by_round[int(attempt.get("round") or 1)].append(attempt)
    outcomes = sorted({str(a.get("outcome")) for a in attempts})
    options = "".join(f'<option value="{_e(o)}">{_e(o)}</option>' for o in outcomes)
    out = [f'<label>Show <select id="outcome-filter"><option value="">every outcome</option>'
           f"{options}</select></label>"]  # fmt: skip
    for number in sorted(by_round):
        items = by_round[number]
        counts = Counter(str(a.get("outcome")) for a in items)
        stack = "".join(
            f'<span style="width:{100 * n / len(items):.2f}%;background:{_colour(o)}" '
            f'title="{_e(o)}: {n}"></span>'
            for o, n in counts.most_common()
        )
        summary = ", ".join(f"{n} {o}" for o, n in counts.most_common())
        rows = "".join(_attempt_row(a) for a in items[:ROWS_PER_ROUND])
        more = (f'<p class="muted">{len(items) - ROWS_PER_ROUND} more not listed.</p>'
                if len(items) > ROWS_PER_ROUND else "")  # fmt: skip
        out.append(
            f"<h3>Round {number}: {len(items)} candidates ({_e(summary)})</h3>"
            f'<div class="stack">{stack}</div>'
            f'<details{" open" if len(items) <= OPEN_ROWS else ""}><summary>the candidates'
            "</summary><table><thead><tr><th>candidate</th><th>drafted by</th><th>site</th>"
            "<th>fill</th><th>outcome</th><th>targets passed</th><th>tests</th><th>tested at</th>"
            f"<th>first failure</th></tr></thead><tbody>{rows}</tbody></table>{more}</details>"
        )
    return "".join(out)


def _attempt_row(a: dict) -> str:
    outcome = str(a.get("outcome"))
    tested = a.get("tested")
    parent = f' <span class="muted">on {_e(a["parent"])}</span>' if a.get("parent") else ""
    return (
        f'<tr id="cand-{_e(a.get("id"))}" data-outcome="{_e(outcome)}">'
        f'<td><code>{_e(a.get("id"))}</code>{parent}</td><td>{_e(a.get("origin", ""))}</td>'
        f'<td><code>{_e(a.get("path", ""))}:{_e(a.get("line", ""))}</code></td>'
        f'<td><code>{_e(a.get("fill", ""))}</code></td>'
        f'<td><span class="bar" style="width:10px;background:{_colour(outcome)}"></span> '
        f"{_e(outcome)}</td><td>{_e(a.get('targets_passed', 0))}</td>"
        f"<td>{_e(a.get('tests', 0))}</td>"
        f"""<td class="num">{'' if tested is None else f'{float(tested):.2f} s'}</td>"""
        f"<td>{_e(a.get('failure', ''))}</td></tr>"
    )


def _localization(report: dict) -> str:
    ranked = list(report.get("localization") or [])[:RANKED_LINES]
    if not ranked:
        return '<p class="muted">No ranking was recorded.</p>'
    attempts = list(report.get("attempts") or [])
    tried = Counter((a.get("path"), a.get("line")) for a in attempts)
    fixed = _winning_sites(attempts)
    top = max((float(r.get("score") or 0) for r in ranked), default=0.0) or 1.0
    rows = "".join(
        f'<tr{" class=fixed" if (r.get("path"), r.get("line")) in fixed else ""}><td>{n}</td>'
        f'<td><code>{_e(r.get("path"))}:{_e(r.get("line"))}</code></td>'
        f'<td><span class="bar" style="width:{max(1.0, 160 * float(r.get("score") or 0) / top):.0f}'
        f'px;background:#4361ee"></span> {float(r.get("score") or 0):.3f}</td>'
        f'<td>{tried.get((r.get("path"), r.get("line")), 0)}</td></tr>'
        for n, r in enumerate(ranked, 1)
    )
    head = "<th>rank</th><th>line</th><th>suspiciousness</th><th>candidates drafted there</th>"
    note = '<p class="muted">Highlighted: the lines the fix changed.</p>' if fixed else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{note}"


def _winning_sites(attempts: list[dict]) -> set[tuple[object, object]]:
    """The lines the green candidate and the candidates it was drafted on changed."""
    by_id = {a.get("id"): a for a in attempts}
    chain = next((a for a in attempts if a.get("outcome") == "green"), None)
    sites = set()
    while chain is not None and (chain.get("path"), chain.get("line")) not in sites:
        sites.add((chain.get("path"), chain.get("line")))
        chain = by_id.get(chain.get("parent"))
    return sites


def _diff(diff: str) -> str:
    if not diff.strip():
        return '<p class="muted">No fix: nothing was committed.</p>'
    lines = []
    for line in diff.splitlines():
        kind = ("add" if line.startswith("+") and not line.startswith("+++") else
                "del" if line.startswith("-") and not line.startswith("---") else
                "hunk" if line.startswith("@@") else "")  # fmt: skip
        lines.append(f'<span class="{kind}">{_e(line)}</span>' if kind else _e(line))
    return '<pre class="diff">' + "\n".join(lines) + "</pre>"


def render(report: dict) -> str:
    """The page of a fix's JSON report (`agent fix --json`)."""
    status = str(report.get("status", "unknown"))
    badge = {"green": "#2b9348", "no-fix": "#e63946"}.get(status, "#6c757d")
    spans = list(report.get("timeline") or [])
    attempts = list(report.get("attempts") or [])
    seconds = float(report.get("seconds") or 0.0)
    if spans:
        svg, keys = timeline_svg(spans, seconds)
        timeline = svg + _legend(keys) + (
            '<p class="muted">Each lane: the share of the run it was busy. Hover a span for '
            "what it was; click a candidate's span for its row below.</p>"
        )
    else:
        timeline = '<p class="muted">This report has no timeline.</p>'
    branch = report.get("branch")
    where = (f' on <code>{_e(branch)}</code> (<code>{_e(str(report.get("commit") or "")[:10])}'
             "</code>)" if branch else "")  # fmt: skip
    failing = len(report.get("failing_before") or [])
    after = len(report.get("failing_after") or [])
    title = f"greenpatch: {report.get('ticket', '')}"
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body><main>"
        f'<h1>{_e(title)} <span class="badge" style="background:{badge}">{_e(status)}</span></h1>'
        f'<div class="muted">{failing} test(s) failing before, {after} after{where}.'
        f"{' ' + _e(report['reason']) if report.get('reason') else ''}</div>"
        f"{_figures(report)}"
        f"<h2>Who was busy when</h2><section>{timeline}</section>"
        f"<h2>Candidates per round</h2><section>{_rounds(attempts)}</section>"
        f"<h2>Localization</h2><section>{_localization(report)}</section>"
        f"<h2>The fix</h2>{_diff(str(report.get('diff') or ''))}"
        f"</main><script>{SCRIPT}</script></body></html>\n"
    )


def load_report(path: Path) -> dict[str, Any]:
    """A fix's JSON report; one clear AgentError for anything else."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AgentError(f"cannot read {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise AgentError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or "status" not in data or "ticket" not in data:
        raise AgentError(f"{path} is not a fix report (agent fix --json): no status or ticket")
    return data


def write_page(report: dict, out: Path) -> None:
    try:
        out.write_text(render(report), encoding="utf-8")
    except OSError as exc:
        raise AgentError(f"cannot write the report page to {out}: {exc.strerror}") from None
