"""The one directory where greenpatch keeps what it can rebuild (baselines, results, worktrees,
tool overlays, batch journals, corpora). `GREENPATCH_CACHE` names it outright; otherwise it is
`greenpatch` under the XDG cache directory, so tests and benchmarks isolate a run by setting
`XDG_CACHE_HOME` alone."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    explicit = os.environ.get("GREENPATCH_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "greenpatch"
