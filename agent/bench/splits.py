"""Development and test splits: a task's split is a pure function of its id and a fixed seed, so
adding tasks never moves an existing one. The split is also stored in each task record."""

from __future__ import annotations

import hashlib
import random

from greenpatch.agent.bench.tasks import Task
from greenpatch.agent.errors import AgentError

SEED = "greenpatch-bugs-v1"
DEV_FRACTION = 0.4
SPLITS = ("dev", "test")


def split_of(task_id: str) -> str:
    digest = hashlib.sha256(f"{SEED}:{task_id}".encode()).digest()
    return "dev" if int.from_bytes(digest[:8], "big") / 2**64 < DEV_FRACTION else "test"


def sample(ids: list[str], n: int | None, seed: int = 0) -> list[str]:
    """`n` ids drawn with a fixed seed (all of them if n is None or too large), in id order."""
    ordered = sorted(ids)
    if n is None or n >= len(ordered):
        return ordered
    return sorted(random.Random(seed).sample(ordered, n))


def choose(tasks: list[Task], split: str, task_ids: list[str] | None, n: int | None,
           seed: int, kinds: list[str] | None = None) -> list[Task]:  # fmt: skip
    """The tasks `agent bench` runs: these ids, else the split (of these kinds, if given), then
    N of them drawn with seed."""
    if split not in (*SPLITS, "all"):
        raise AgentError(f"--split must be dev, test or all, got '{split}'")
    by_id = {t.id: t for t in tasks}
    if task_ids:
        unknown = [i for i in task_ids if i not in by_id]
        if unknown:
            raise AgentError(f"unknown task id: {unknown[0]}")
        pool = [by_id[i] for i in task_ids]
    else:
        pool = [t for t in tasks if (split == "all" or t.split == split)
                and (not kinds or t.kind in kinds)]
    chosen = [by_id[i] for i in sample([t.id for t in pool], n, seed)]
    if not chosen:
        which = f" of kind {', '.join(kinds)}" if kinds else ""
        raise AgentError(f"no tasks in split '{split}'{which}")
    return chosen
