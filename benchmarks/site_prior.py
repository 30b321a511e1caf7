"""Fit the model-free order's site-kind prior (`agent.pipeline.explore.SITE_KIND_PRIOR`).

For every task of a split: the model-free candidates of the line(s) where its fix belongs
(substitutions, edits and widenings, as the `edits` drafter makes them), each valued by the
fixed order without the prior (`fixed_values` divided by it). A multiplier per (stage, site
kind: `prior_key`) is fitted by maximum likelihood of the reference fix under a softmax over
its line's log values, with an L2 pull towards 1; printed with where the fix comes among its
line's candidates without the prior and with the fitted one (4-fold cross-validation over
the lines, so a line never ranks under multipliers fitted on it).

    .venv/bin/python benchmarks/site_prior.py [--split dev] [--l2 0.05]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from draft_rank import is_fix  # noqa: E402
from greenpatch.agent.bench.libraries import get_library, pristine_repo  # noqa: E402
from greenpatch.agent.bench.tasks import build_task_repo, load_tasks  # noqa: E402
from greenpatch.agent.pipeline.draft import Drafter  # noqa: E402
from greenpatch.agent.pipeline.explore import (  # noqa: E402
    SITE_KIND_PRIOR,
    fixed_values,
    prior_key,
)
from greenpatch.agent.pipeline.localize import SuspiciousLine  # noqa: E402
from greenpatch.agent.pipeline.sites import sites_for  # noqa: E402

STAGES = ("substitution", "edit", "widen")


def line_candidates(task, work: Path) -> list[list[tuple[tuple[str, str], float, bool]]]:
    """Per line where the task's fix belongs: its candidates as ((stage, site kind), value
    without the prior, is the fix)."""
    repo = build_task_repo(task, work / task.id)
    source = (repo / task.file).read_text()
    want = (pristine_repo(get_library(task.library)) / task.file).read_text()
    sources = {task.file: source}
    # A deleted statement is put back after the line before it (or before the line after).
    lines = ((task.start_line - 1, task.start_line) if task.kind == "deleted_statement"
             else (task.start_line,))  # fmt: skip
    out = []
    for line in lines:
        sites = sites_for(sources, [SuspiciousLine(task.file, line, 1.0, 0.0, False, 0.0)])
        drafter = Drafter(None, [], mode="edits")
        items = []
        for stage in STAGES:
            drafts = drafter.stage(sources, sites, stage)
            values = fixed_values(stage, [d.site for d in drafts])
            for d, value in zip(drafts, values, strict=True):
                key = prior_key(stage, d.site)
                items.append((key, value / SITE_KIND_PRIOR.get(key, 1.0), is_fix(d.source, want)))
        out.append(items)
    return out


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
    for task in (t for t in load_tasks() if t.split == args.split):
        raw += [items for items in line_candidates(task, work) if any(f for _, _, f in items)]
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
