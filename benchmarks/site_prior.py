"""Fit the model-free order's site-kind prior (`agent.pipeline.explore.SITE_KIND_PRIOR`).

For every task of a split: the model-free candidates of the line(s) where its fix belongs
(substitutions, edits and widenings, as the `edits` drafter makes them), each valued by the
fixed order without the prior (`fixed_values` with no kinds). A multiplier per (stage, site
kind: `prior_key`) is fitted by maximum likelihood of the reference fix under a softmax over
its line's log values, with an L2 pull towards 1; printed with where the fix comes among its
line's candidates without the prior and with the fitted one (4-fold cross-validation over
the lines, so a line never ranks under multipliers fitted on it).

    .venv/bin/python benchmarks/site_prior.py [--split dev] [--l2 0.05]
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from draft_rank import is_fix, task_case  # noqa: E402
from greenpatch.agent.bench.tasks import load_tasks  # noqa: E402
from greenpatch.agent.pipeline.draft import Drafter  # noqa: E402
from greenpatch.agent.pipeline.explore import fixed_values, prior_key  # noqa: E402
from greenpatch.agent.pipeline.localize import SuspiciousLine  # noqa: E402
from greenpatch.agent.pipeline.sites import sites_for  # noqa: E402

STAGES = ("substitution", "edit", "widen")


def line_candidates(task, work: Path) -> list[list[tuple[tuple[str, str], float, bool]]]:
    """Per line where the task's fix belongs (`draft_rank.task_case`): its candidates as
    ((stage, site kind), value without the prior, is the fix)."""
    case = task_case(task, work)
    try:
        (path, want), = case.fixed.items()
        sources = {path: (case.repo / path).read_text()}
        out = []
        for line in case.lines:
            sites = sites_for(sources, [SuspiciousLine(path, line, 1.0, 0.0, False, 0.0)])
            drafter = Drafter(None, [], mode="edits")
            items = []
            for stage in STAGES:
                drafts = drafter.stage(sources, sites, stage)
                values = fixed_values(stage, [d.site for d in drafts], kinds={})
                items += [(prior_key(stage, d.site), value, is_fix(d.source, want))
                          for d, value in zip(drafts, values, strict=True)]  # fmt: skip
            out.append(items)
        return out
    finally:
        shutil.rmtree(case.repo, ignore_errors=True)


def fit(lines: list, keys: list, l2: float, steps: int = 2000, rate: float = 0.1) -> np.ndarray:
    """Log-multipliers per key: gradient descent on the mean softmax loss of the fix."""
    w = np.zeros(len(keys))
    for _ in range(steps):
        grad = l2 * w
        for x, base, fix in lines:
            s = base + x @ w
            p = np.exp(s - s.max())
            p /= p.sum()
            grad += (x.T @ p - x[fix]) / len(lines)
        w -= rate * grad
    return w


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="dev")
    parser.add_argument("--l2", type=float, default=0.05)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gp-prior-"))
    raw = []
    try:
        for task in (t for t in load_tasks() if t.split == args.split):
            raw += [items for items in line_candidates(task, work)
                    if any(f for _, _, f in items)]  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    keys = sorted({key for items in raw for key, _, _ in items})
    lines = [(np.array([[key == k for k in keys] for key, _, _ in items], dtype=float),
              np.log([value for _, value, _ in items]),
              next(i for i, (_, _, f) in enumerate(items) if f)) for items in raw]  # fmt: skip

    def place(w: np.ndarray, line) -> int:
        x, base, fix = line
        s = base + x @ w
        return int((s > s[fix]).sum())

    plain, fitted = [], []
    for fold in range(4):
        held = set(range(fold, len(lines), 4))
        w = fit([line for i, line in enumerate(lines) if i not in held], keys, args.l2)
        for i in sorted(held):
            plain.append(place(np.zeros(len(keys)), lines[i]))
            fitted.append(place(w, lines[i]))
    print(f"{len(lines)} lines holding the fix ({args.split} split)")
    for name, ranks in (("fixed order, no prior", plain), ("site-kind prior, 4-fold", fitted)):
        print(f"{name:26s} the fix's place among its line's candidates: median "
              f"{statistics.median(ranks) + 1:g}, first {sum(r == 0 for r in ranks)}, in the "
              f"first 10 {sum(r < 10 for r in ranks)}, mean log(1 + place) "
              f"{statistics.mean(math.log1p(r) for r in ranks):.3f}")
    w = fit(lines, keys, args.l2)
    print("SITE_KIND_PRIOR (all lines):")
    for (stage, kind), v in zip(keys, w, strict=True):
        print(f"  ({stage!r}, {kind!r}): {math.exp(v):.2f}")


if __name__ == "__main__":
    main()
