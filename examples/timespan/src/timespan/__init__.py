"""timespan: half-open datetime intervals, merging, gaps and free meeting slots."""

from timespan.interval import Interval
from timespan.schedule import free_slots, gaps, merge, split_by_day, total_duration

__all__ = ["Interval", "free_slots", "gaps", "merge", "split_by_day", "total_duration"]
