"""Development and test splits: a task's split is a pure function of its id and a fixed seed, so
adding tasks never moves an existing one. The split is also stored in each task record."""

from __future__ import annotations

import hashlib
import random

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
