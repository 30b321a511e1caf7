"""Scheduling policies by name: `whole` (one chunk per job) and `steal` (chunks, work stealing)."""

from greenpatch.runner.scheduling.base import Chunk, Scheduler, Stats
from greenpatch.runner.scheduling.steal import StealingScheduler
from greenpatch.runner.scheduling.whole import WholeJobScheduler

POLICIES: dict[str, type[Scheduler]] = {"steal": StealingScheduler, "whole": WholeJobScheduler}

__all__ = ["POLICIES", "Chunk", "Scheduler", "Stats"]
