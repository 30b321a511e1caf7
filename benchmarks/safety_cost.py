"""What the sandboxed baseline costs: `agent fix` on the example tickets, this checkout against
an earlier commit (whose baseline ran pytest on the host), side by side in one run.

For each example and each side: a fresh copy of the project, an empty cache (so the baseline is
part of the time: that is where the isolation changed), `--drafter edits` (no model: the weights
and the drafting may differ between the commits, the pipeline is what is compared), budget 120 s.
The two sides alternate per example; `--repeat N` runs each pair N times and reports medians.

    .venv/bin/python benchmarks/safety_cost.py [--base 42bf2b2] [--repeat 1] [--json OUT]
    .venv/bin/python benchmarks/safety_cost.py --overhead [--repeat 2]

`--overhead`: instead, the warm worker's per-job overhead on a trivial test (runner_mutants.py's
measure: 30 candidate jobs, median wall and CPU ms), each side in turn, `--repeat` rounds.

The earlier commit runs from a `git worktree` of this repository on the same interpreter (its
packages first on PYTHONPATH).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ("stockroom", "slugkit", "timespan", "confparse", "invoicer")


def cli_module(code: Path) -> str:
    """The command line of a checkout: top-level `agent` before the greenpatch namespace, the
    installed `greenpatch.agent` (this checkout, editable) after it."""
    return "agent" if (code / "agent" / "cli.py").is_file() else "greenpatch.agent"


def fix(code: Path, name: str, scratch: Path) -> dict:
    repo = scratch / name
    subprocess.run([sys.executable, str(ROOT / "examples/prepare.py"), name, str(repo)],
                   check=True, capture_output=True)  # fmt: skip
    env = {**os.environ, "XDG_CACHE_HOME": str(scratch / "cache"), "PYTHONPATH": str(code)}
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", cli_module(code), "fix", str(ROOT / f"examples/tickets/{name}.md"),
         "--repo", str(repo), "--drafter", "edits", "--budget", "120", "--json", "-", "-q"],
        capture_output=True, text=True, env=env, cwd=code, timeout=600,
    )  # fmt: skip
    seconds = time.monotonic() - start
    try:
        report = json.loads(done.stdout)
    except ValueError:
        report = {"status": f"exit {done.returncode}"}
    return {"status": report.get("status"), "seconds": round(seconds, 2),
            "phases": report.get("phases", {})}  # fmt: skip


OVERHEAD = (
    "import json, sys; sys.path.insert(0, 'benchmarks'); import runner_mutants; "
    "print(json.dumps(runner_mutants.overhead(sys.executable, runs=30)))"
)


def overhead(code: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", OVERHEAD], cwd=code, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(code)}, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="42bf2b2", help="the earlier commit")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--examples", default=",".join(EXAMPLES))
    parser.add_argument("--json", dest="json_out")
    parser.add_argument("--overhead", action="store_true", help="per-job warm overhead instead")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="gp-safety-") as tmp:
        base = Path(tmp, "base")
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base), args.base],
                       cwd=ROOT, check=True)  # fmt: skip
        try:
            if args.overhead:
                for n in range(args.repeat):
                    for side, code in (("base", base), ("head", ROOT)):
                        got = {k: round(v, 1) for k, v in overhead(code).items()}
                        rows.append({"side": side, "round": n, **got})
                        print(f"{side} round {n}: {got}", flush=True)
                print(f"load {load:.2f} -> {os.getloadavg()[0]:.2f}")
                if args.json_out:
                    Path(args.json_out).write_text(json.dumps(rows, indent=2))
                return
            for name in args.examples.split(","):
                runs: dict[str, list[dict]] = {"base": [], "head": []}
                for n in range(args.repeat):
                    for side, code in (("base", base), ("head", ROOT)):
                        scratch = Path(tmp, f"{side}-{name}-{n}")
                        scratch.mkdir()
                        runs[side].append(fix(code, name, scratch))
                med = {s: statistics.median(r["seconds"] for r in runs[s]) for s in runs}
                rows.append({
                    "example": name, "base_s": med["base"], "head_s": med["head"],
                    "ratio": round(med["head"] / med["base"], 3),
                    "status": {s: [r["status"] for r in runs[s]] for s in runs},
                    "reproduce_s": {s: [r["phases"].get("reproduce") for r in runs[s]]
                                    for s in runs},
                })  # fmt: skip
                print(f"{name:10} base {med['base']:6.1f} s  head {med['head']:6.1f} s  "
                      f"ratio {med['head'] / med['base']:.2f}  {rows[-1]['status']}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT,
                           check=False)  # fmt: skip
    total = {s: sum(r[f"{s}_s"] for r in rows) for s in ("base", "head")}
    summary = {"base": args.base, "rows": rows, "total_base_s": round(total["base"], 2),
               "total_head_s": round(total["head"], 2),
               "ratio": round(total["head"] / total["base"], 3),
               "load_before": round(load, 2),
               "load_after": round(os.getloadavg()[0], 2)}  # fmt: skip
    print(f"total: base {total['base']:.1f} s, head {total['head']:.1f} s, "
          f"ratio {summary['ratio']:.2f} (load {summary['load_before']} -> "
          f"{summary['load_after']})")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
