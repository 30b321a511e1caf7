"""Operations on collections of intervals: calendars, busy times and free slots."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, time, timedelta

from timespan.interval import Interval


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, non-overlapping intervals covering the same time; touching ones are joined."""
    ordered = sorted(iv for iv in intervals if not iv.is_empty)
    if not ordered:
        return []
    merged = [ordered[0]]
    for current in ordered[1:]:
        last = merged[-1]
        if current.start <= last.end:
            merged[-1] = Interval(last.start, max(last.end, current.start))
        else:
            merged.append(current)
    return merged


def total_duration(intervals: Iterable[Interval]) -> timedelta:
    """Time covered by at least one interval (overlaps counted once)."""
    return sum((iv.duration for iv in merge(intervals)), timedelta())


def gaps(intervals: Iterable[Interval], within: Interval) -> list[Interval]:
    """The parts of `within` covered by none of the intervals."""
    free: list[Interval] = []
    cursor = within.start
    for busy in merge(intervals):
        clipped = busy.intersection(within)
        if clipped is None:
            continue
        if clipped.start > cursor:
            free.append(Interval(cursor, clipped.start))
        cursor = max(cursor, clipped.end)
    if cursor < within.end:
        free.append(Interval(cursor, within.end))
    return free


def free_slots(
    busy: Iterable[Interval],
    day: datetime,
    length: timedelta,
    opens: time = time(9, 0),
    closes: time = time(17, 0),
) -> list[Interval]:
    """Every gap in the working day of `day` long enough for a meeting of `length`."""
    if length <= timedelta():
        raise ValueError("a meeting must last some time")
    date = day.date()
    workday = Interval(
        datetime.combine(date, opens, day.tzinfo), datetime.combine(date, closes, day.tzinfo)
    )
    return [gap for gap in gaps(busy, workday) if gap.duration >= length]


def split_by_day(interval: Interval) -> list[Interval]:
    """Cut an interval at each midnight it crosses."""
    pieces: list[Interval] = []
    start = interval.start
    while start < interval.end:
        midnight = datetime.combine(start.date() + timedelta(days=1), time(0), start.tzinfo)
        end = min(midnight, interval.end)
        pieces.append(Interval(start, end))
        start = end
    return pieces
