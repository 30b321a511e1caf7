"""The run report page in a real headless Chromium: it renders what the fix JSON says, with no
console error and no fetch, and nothing of the report's untrusted text runs as code."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest
from greenpatch.agent.report_page import render

from tests.headless import Browser, chromium
from tests.test_fix_cli import ROOT, prepare


@pytest.fixture(scope="module")
def browser():
    if chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (make setup installs it)")
        pytest.skip("chromium is not installed (make setup installs it)")
    with Browser() as running:
        yield running


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


HOSTILE = '</script><script>window.pwned = 1</script><img src="http://127.0.0.1:9/x.png">'


def _hostile_report() -> dict:
    """A report whose every text field tries to run code or fetch something."""
    return {
        "status": "no-fix", "ticket": f"t{HOSTILE}", "branch": None, "commit": None,
        "diff": f"--- a/m.py\n+++ b/m.py\n@@ -1 +1 @@\n-x = 1\n+x = '{HOSTILE}'\n",
        "rounds": 2, "candidates": 3, "tests_run": 5, "seconds": 4.0,
        "failing_before": ["t.py::test_a"], "failing_after": ["t.py::test_a"],
        "model": HOSTILE, "sandbox": "bwrap", "reason": HOSTILE,
        "localization": [{"path": f"m{HOSTILE}.py", "line": 1, "score": 0.9}],
        "timeline": [
            {"lane": "set-up", "start": 0.0, "end": 1.0, "kind": "baseline", "label": HOSTILE},
            {"lane": "drafter", "start": 1.0, "end": 1.5, "kind": HOSTILE, "label": HOSTILE},
            {"lane": HOSTILE, "start": 1.5, "end": 2.0, "kind": "candidate",
             "label": f"{HOSTILE}: failed"},
            {"lane": "worker 0", "start": 1.5, "end": 2.5, "kind": "candidate",
             "label": "d1: failed"},
        ],
        "attempts": [
            {"id": "d1", "round": 1, "origin": "substitution", "path": "m.py", "line": 1,
             "fill": HOSTILE, "score": 0.0, "parent": None, "submitted": 1.5, "tested": 2.5,
             "outcome": "failed", "targets_passed": 0, "tests": 1, "failure": HOSTILE},
            {"id": HOSTILE, "round": 2, "origin": HOSTILE, "path": HOSTILE, "line": HOSTILE,
             "fill": "", "score": 0.0, "parent": "d1", "submitted": 2.0, "tested": None,
             "outcome": HOSTILE, "targets_passed": 0, "tests": 0, "failure": ""},
        ],
    }  # fmt: skip


def test_untrusted_text_is_shown_never_run_or_fetched(browser, tmp_path: Path) -> None:
    report = _hostile_report()
    page_path = tmp_path / "run.html"
    page_path.write_text(render(report))
    page = browser.open(page_path)
    assert page.errors == []
    assert page.requests == [page_path.resolve().as_uri()]  # the page itself, nothing else
    assert page.evaluate("window.pwned === undefined") is True
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert page.evaluate("document.querySelectorAll('script').length") == 1  # the page's own
    assert page.evaluate("document.body.dataset.ready") == "yes"  # its script ran to the end
    text = page.evaluate("document.body.innerText")
    assert text.count("window.pwned = 1") >= 5  # shown as text: diff, reason, fill, ...
    assert page.evaluate("document.querySelectorAll('#timeline rect.span').length") == 4


@pytest.mark.slow
def test_a_green_fix_page_from_the_cli(browser, run_agent, tmp_path: Path, monkeypatch) -> None:
    # A cache of its own: the baseline runs here (not read from another test's run).
    monkeypatch.setenv("GREENPATCH_CACHE", str(tmp_path / "cache"))
    repo = prepare("stockroom", tmp_path / "stockroom")
    page_path, fix_json = tmp_path / "run.html", tmp_path / "fix.json"
    result = run_agent(
        "fix", ROOT / "examples" / "tickets" / "stockroom.md", "--repo", repo,
        "--drafter", "edits", "--sandbox", "process", "--budget", "240", "--workers", "2",
        "--json", fix_json, "--report", page_path, "-q", timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(fix_json.read_text())
    assert report["status"] == "green"
    spans, attempts = report["timeline"], report["attempts"]
    lanes = {s["lane"] for s in spans}
    assert {"set-up", "drafter", "confirm"} <= lanes and lanes & {"worker 0", "worker 1"}
    for span in spans:
        assert 0 <= span["start"] <= span["end"] <= report["seconds"]
    # The workers ran the baseline, then candidates; one job at a time: spans never overlap.
    workers = lanes - {"set-up", "drafter", "confirm"}
    assert {s["kind"] for s in spans if s["lane"] in workers} == {"baseline", "candidate"}
    for lane in workers:
        own = sorted((s["start"], s["end"]) for s in spans if s["lane"] == lane)
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in pairwise(own))
    (green,) = [a for a in attempts if a["outcome"] == "green"]
    assert len(attempts) == report["candidates"]
    assert any(s["label"] == f"{green['id']}: green" for s in spans)
    assert green["path"] == "src/stockroom/pricing.py"

    # agent report makes the same page from the JSON alone.
    again = tmp_path / "again.html"
    made = subprocess.run([sys.executable, "-m", "greenpatch.agent", "report", str(fix_json), "-o",
                           str(again)], capture_output=True, text=True)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert again.read_text() == page_path.read_text()

    page = browser.open(page_path)
    assert page.errors == []
    assert page.requests == [page_path.resolve().as_uri()]
    assert page.evaluate("document.querySelectorAll('#timeline rect.span').length") == len(spans)
    # Every span is drawn where its times say, on a page as wide as the viewport.
    widths = page.evaluate(
        "[...document.querySelectorAll('#timeline rect.span')]"
        ".map(r => r.getBoundingClientRect().width)"
    )
    assert min(widths) > 0
    text = page.evaluate("document.body.innerText")
    assert "if quantity >= tier.min_quantity:" in text  # the diff
    # The ranking highlights the line the fix changed, and only it.
    ranked = [f"{r['path']}:{r['line']}" for r in report["localization"]]
    site = f"{green['path']}:{green['line']}"
    fixed = page.evaluate("[...document.querySelectorAll('tr.fixed code')].map(c => c.textContent)")
    assert fixed == ([site] if site in ranked else [])
    # Clicking the green candidate's span shows its row.
    page.evaluate(f"document.querySelector('rect[data-candidate=\"{green['id']}\"]')"
                  ".dispatchEvent(new MouseEvent('click', {bubbles: true}))")  # fmt: skip
    assert page.evaluate(f"document.getElementById('cand-{green['id']}').className") == "hit"
    shot = tmp_path / "report.png"
    width, height = page.screenshot(shot, max_height=1400)
    assert _png_size(shot) == (width, height) and width >= 1000 and height >= 600
    assert shot.stat().st_size > 20_000  # a picture, not a blank page
    assert page.errors == []


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    not_a_fix = tmp_path / "batch.json"
    not_a_fix.write_text(json.dumps({"backlog": "x", "tickets": []}))
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{")
    for path, expected in [(not_a_fix, "is not a fix report"), (garbage, "is not JSON"),
                           (tmp_path / "missing.json", "cannot read")]:  # fmt: skip
        result = subprocess.run([sys.executable, "-m", "greenpatch.agent", "report", str(path)],
                                capture_output=True, text=True)  # fmt: skip
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], result.stderr
        assert not path.with_suffix(".html").exists()
