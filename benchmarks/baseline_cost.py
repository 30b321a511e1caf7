"""Baseline cost: `agent test --all` from an empty cache vs plain `pytest -n 2`, side by side.

On networkx's own suite (the pinned sdist of benchmarks/compat/packages.toml `[big_suite]`,
6,000+ tests), as a user has it: a one-commit repository and a venv with networkx, numpy, scipy
and pytest, without coverage or xdist. In one run:
1. plain `python -m pytest -n 2` of the whole suite, from a second, reference venv that has
   pytest-xdist too (the user's venv stays free of it);
2. `agent test --all --python USER_VENV/bin/python` with an empty cache (a fresh
   XDG_CACHE_HOME): collection plus the per-test coverage baseline plus the run;
3. plain `pytest -n 2` once more (unless --plain-runs 1), so that a change of the machine's
   load during the run shows.
The overlay (coverage and our plugin for that interpreter) is built beforehand by a warm-up run
on a one-test repository and reported apart: it is paid once per Python version, not per
repository. The ratio is the agent's seconds over the mean of the two plain runs (issue 20's
bound: <= 3x). /proc/loadavg is printed before and after.

    .venv/bin/python benchmarks/baseline_cost.py [--json OUT] [--plain-runs 1] [--agent-timeout S]
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import compat
from rich.console import Console


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="write the figures as JSON")
    parser.add_argument(
        "--agent-timeout",
        type=float,
        help="seconds before the agent run is cut (default: 3x the first plain run + 60 s: past "
        "the bound, the answer is known)",
    )
    parser.add_argument(
        "--plain-runs", type=int, choices=(1, 2), default=2, help="plain runs: before, and after"
    )
    parser.add_argument("--plain-timeout", type=float, default=1200.0)
    args = parser.parse_args(argv)
    spec = compat.big_suite()
    say = Console(stderr=True)

    started = time.monotonic()
    repo = compat.prepare_repo(spec, compat.fetch_sdist(spec))
    user_python = compat.prepare_venv(spec, repo)
    reference_python = compat.prepare_venv(spec, repo, tools=("pytest-xdist",))
    say.log(f"{spec.key}: repo and venvs ready in {time.monotonic() - started:.0f} s (not timed)")

    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = compat.CACHE / "runs" / f"baseline-cost-{stamp}"
    out_dir.mkdir(parents=True)
    commit = compat.git(compat.HERE.parent, "rev-parse", "--short", "HEAD").strip()
    with tempfile.TemporaryDirectory(prefix="baseline-cost-") as tmp:
        say.log("overlay warm-up on a one-test repository (same interpreter)")
        xdg, overlay_seconds = compat.fresh_cache(user_python, Path(tmp))
        load_before = compat.loadavg()

        say.log("plain pytest -n 2 (reference venv), 1 of 2")
        plain1 = compat.run_plain(
            reference_python, repo, out_dir, args.plain_timeout, ["-n", "2"], "plain1"
        )
        say.log(f"  {plain1.seconds:.1f} s, {compat.counts(plain1.outcomes)}")

        agent_timeout = args.agent_timeout or 3 * plain1.seconds + 60
        say.log(f"agent test --all, empty cache (cut after {agent_timeout:.0f} s)")
        agent, _ = compat.run_agent(user_python, repo, out_dir, xdg, agent_timeout)
        say.log(f"  {agent.seconds:.1f} s, {compat.counts(agent.outcomes)} {agent.error}")

        plain2 = plain1
        if args.plain_runs == 2:
            say.log("plain pytest -n 2 (reference venv), 2 of 2")
            plain2 = compat.run_plain(
                reference_python, repo, out_dir, args.plain_timeout, ["-n", "2"], "plain2"
            )
            say.log(f"  {plain2.seconds:.1f} s, {compat.counts(plain2.outcomes)}")
        load_after = compat.loadavg()

    plain_runs = [plain1.seconds, plain2.seconds][: args.plain_runs]
    plain_seconds = statistics.mean(plain_runs)
    differences, _ = compat.compare(plain1, agent) if not agent.error else ([], 0)
    ratio = agent.seconds / plain_seconds
    timed_out = agent.code is None
    figures = {
        "date": stamp,
        "commit": commit,
        "suite": spec.key,
        "tests_plain": len(plain1.outcomes),
        "tests_agent": len(agent.outcomes),
        "plain_n2_seconds": [round(x, 1) for x in plain_runs],
        "agent_all_seconds": round(agent.seconds, 1),
        "agent_timed_out": timed_out,
        "agent_error": agent.error,
        "overlay_warmup_seconds": round(overlay_seconds, 1),
        "ratio": round(ratio, 2),
        "bound": 3.0,
        "outcomes_differing": len(differences),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }
    print(f"baseline cost on {spec.key} (commit {commit}, {stamp})")
    print(
        f"  plain `python -m pytest -n 2`: {' and '.join(f'{x:.1f} s' for x in plain_runs)} "
        f"({len(plain1.outcomes)} tests)"
    )
    print(
        f"  `agent test --all`, empty cache: {'>' if timed_out else ''}{agent.seconds:.1f} s "
        f"({len(agent.outcomes)} tests{'; ' + agent.error if agent.error else ''})"
    )
    print(f"  overlay warm-up (one-test repo, built once per interpreter): {overlay_seconds:.1f} s")
    print(
        f"  ratio {'>' if timed_out else ''}{ratio:.2f}x (bound 3x); "
        f"{len(differences)} outcomes differ from plain"
    )
    print(f"  load average before {load_before}, after {load_after}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
