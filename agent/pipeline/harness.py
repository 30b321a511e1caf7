"""From the settings to the parts that run: the target's interpreter, the sandbox limits, the
baseline's options, the test pool, the result cache and the drafting model. One place, so that
`agent fix`, `agent test`, batch and bench run tests and load models the same way."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from greenpatch.agent.config import Settings, sandbox_options
from greenpatch.runner.baseline import Baseline, BaselineOptions
from greenpatch.runner.cache import ResultCache
from greenpatch.runner.pool import Pool
from greenpatch.sandboxes import Limits
from greenpatch.sandboxes.cacheroot import cache_root

# A job's output is read by the host as JSON lines; a whole suite's worth must fit.
OUTPUT_BYTES = 1 << 30


def target_python(settings: Settings, root: Path) -> str:
    """The target's interpreter: `python` from the config (relative to the repo), else ours."""
    if not settings.python:
        return sys.executable
    path = Path(settings.python)
    return str(path if path.is_absolute() else root / path)


def limits(settings: Settings) -> Limits:
    return Limits(memory_mb=settings.memory_mb, output_bytes=OUTPUT_BYTES)


def baseline_options(settings: Settings) -> BaselineOptions:
    """The baseline runs like the candidates: same sandbox, workers, limits and test timeout."""
    return BaselineOptions(
        sandbox=settings.sandbox, workers=settings.workers, pytest_args=settings.pytest_args,
        test_timeout=settings.test_timeout, limits=limits(settings),
        backend_options=sandbox_options(settings),
    )  # fmt: skip


def result_cache() -> ResultCache:
    """Results by test and the content it executed, shared by `agent fix` and `agent test`."""
    return ResultCache(cache_root() / "results.sqlite")


def pool_options(settings: Settings, job_timeout: float | None = None,
                 pytest_args: list[str] | None = None) -> dict[str, Any]:
    """The Pool's options that the settings decide (a cluster's nodes take them as they are)."""
    return {
        "backend_options": sandbox_options(settings),
        "limits": limits(settings),
        "test_timeout": settings.test_timeout,
        "job_timeout": settings.candidate_timeout if job_timeout is None else job_timeout,
        "pytest_args": settings.pytest_args if pytest_args is None else pytest_args,
    }


def test_pool(
    root: Path,
    python: str,
    settings: Settings,
    baseline: Baseline,
    *,
    workers: int | None = None,
    job_timeout: float | None = None,
    pytest_args: list[str] | None = None,
    cache: ResultCache | None = None,
    cold: bool = False,
    startup: list[str] | None = None,
) -> Pool:
    """Warm sandboxed workers for `root`'s tests, as the settings say (not yet started)."""
    return Pool(
        root,
        python,
        settings.sandbox,
        workers=workers or settings.workers,
        cache=cache,
        dependencies=baseline.dependencies,
        durations=baseline.durations,
        cold=cold,
        startup_args=startup,
        **pool_options(settings, job_timeout, pytest_args),
    )


def load_model(path: Path | None, workers: int) -> object:
    """The embedded model (or the checkpoint at `path`) on the CPU, its threads sized to the
    cores the `workers` test workers leave, at least one: oversubscribed torch threads spin and
    slow drafting and testing down alike."""
    import torch  # heavy: imported only when drafting
    from greenpatch.model.checkpoint import load_model as load

    torch.set_num_threads(max(1, (os.cpu_count() or 1) - workers))
    return load(path)
