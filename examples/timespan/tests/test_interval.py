from datetime import datetime, timedelta

import pytest

from timespan import Interval


def test_duration(span):
    assert span("09:00", "10:30").duration == timedelta(minutes=90)


def test_of_builds_from_length():
    start = datetime(2024, 3, 4, 9)
    assert Interval.of(start, timedelta(hours=2)).end == datetime(2024, 3, 4, 11)


def test_end_before_start_is_rejected():
    with pytest.raises(ValueError):
        Interval(datetime(2024, 3, 4, 10), datetime(2024, 3, 4, 9))


def test_contains_is_half_open(span):
    meeting = span("09:00", "10:00")
    assert meeting.contains(meeting.start)
    assert not meeting.contains(meeting.end)


def test_overlapping_intervals(span):
    assert span("09:00", "10:00").overlaps(span("09:30", "11:00"))


def test_touching_intervals_do_not_overlap(span):
    assert not span("09:00", "10:00").overlaps(span("10:00", "11:00"))


def test_intersection(span):
    assert span("09:00", "10:00").intersection(span("09:30", "11:00")) == span("09:30", "10:00")


def test_disjoint_intersection_is_none(span):
    assert span("09:00", "10:00").intersection(span("12:00", "13:00")) is None


def test_shift(span):
    assert span("09:00", "10:00").shift(timedelta(hours=3)) == span("12:00", "13:00")


def test_str(span):
    assert str(span("09:00", "10:00")) == "2024-03-04 09:00–2024-03-04 10:00"
