from datetime import datetime, time, timedelta

import pytest

from timespan import Interval, free_slots, gaps, merge, split_by_day, total_duration


def test_merge_empty():
    assert merge([]) == []


def test_merge_sorts_disjoint_intervals(span):
    assert merge([span("13:00", "14:00"), span("09:00", "10:00")]) == [
        span("09:00", "10:00"),
        span("13:00", "14:00"),
    ]


def test_merge_joins_overlapping_intervals(span):
    assert merge([span("09:00", "10:00"), span("09:30", "11:00")]) == [span("09:00", "11:00")]


def test_merge_absorbs_contained_interval(span):
    assert merge([span("09:00", "12:00"), span("10:00", "11:00")]) == [span("09:00", "12:00")]


def test_merge_drops_empty_intervals(span):
    assert merge([span("09:00", "09:00"), span("10:00", "11:00")]) == [span("10:00", "11:00")]


def test_total_duration_counts_overlap_once(span):
    busy = [span("09:00", "10:00"), span("09:30", "10:30"), span("15:00", "15:15")]
    assert total_duration(busy) == timedelta(minutes=105)


def test_gaps_inside_window(span):
    busy = [span("10:00", "11:00"), span("13:00", "14:00")]
    assert gaps(busy, span("09:00", "17:00")) == [
        span("09:00", "10:00"),
        span("11:00", "13:00"),
        span("14:00", "17:00"),
    ]


def test_gaps_clip_busy_time_outside_window(span):
    busy = [span("07:00", "09:30"), span("16:30", "19:00")]
    assert gaps(busy, span("09:00", "17:00")) == [span("09:30", "16:30")]


def test_no_gaps_when_fully_booked(span):
    assert gaps([span("08:00", "18:00")], span("09:00", "17:00")) == []


def test_free_slots_filters_short_gaps(span):
    busy = [span("09:00", "09:45"), span("10:00", "12:00"), span("12:30", "16:00")]
    slots = free_slots(busy, datetime(2024, 3, 4), timedelta(minutes=30))
    assert slots == [span("12:00", "12:30"), span("16:00", "17:00")]


def test_free_slots_custom_hours(span):
    slots = free_slots([], datetime(2024, 3, 4), timedelta(hours=1), opens=time(8, 0))
    assert slots == [span("08:00", "17:00")]


def test_free_slots_rejects_zero_length():
    with pytest.raises(ValueError):
        free_slots([], datetime(2024, 3, 4), timedelta())


def test_split_by_day_within_one_day(span):
    assert split_by_day(span("09:00", "17:00")) == [span("09:00", "17:00")]


def test_split_by_day_overnight():
    night = Interval(datetime(2024, 3, 4, 22), datetime(2024, 3, 6, 2))
    assert split_by_day(night) == [
        Interval(datetime(2024, 3, 4, 22), datetime(2024, 3, 5)),
        Interval(datetime(2024, 3, 5), datetime(2024, 3, 6)),
        Interval(datetime(2024, 3, 6), datetime(2024, 3, 6, 2)),
    ]
