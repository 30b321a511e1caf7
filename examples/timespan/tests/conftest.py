from datetime import datetime

import pytest

from timespan import Interval


def at(hhmm: str, day: int = 4) -> datetime:
    hours, minutes = map(int, hhmm.split(":"))
    return datetime(2024, 3, day, hours, minutes)


@pytest.fixture
def span():
    """span("09:00", "10:30") -> Interval on 2024-03-04."""
    return lambda a, b, day=4: Interval(at(a, day), at(b, day))
