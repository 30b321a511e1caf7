"""A small real pytest project for the runner tests, committed in a real git repository."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.conftest import make_repo

PYTHON = sys.executable

AREA = """\
SCALE = 1


def square(side):
    return side * side * SCALE


def rect(width, height):
    return width * height
"""

PROJECT = {
    "pyproject.toml": "[project]\nname = 'geometry'\nversion = '0'\n",
    "geometry/__init__.py": "",
    "geometry/area.py": AREA,
    "geometry/units.py": 'UNIT = "cm"\n',
    "tests/__init__.py": "",
    "tests/test_area.py": (
        "from geometry.area import rect, square\n\n\n"
        "def test_square():\n    assert square(3) == 9\n\n\n"
        "def test_rect():\n    assert rect(2, 3) == 6\n"
    ),
    # Reads a constant: executes no line of geometry/units.py while the test runs.
    "tests/test_units.py": (
        "from geometry import units\n\n\ndef test_unit():\n    assert units.UNIT == 'cm'\n"
    ),
    "tests/test_misc.py": "def test_trivial():\n    pass\n",
}
SQUARE = "tests/test_area.py::test_square"
RECT = "tests/test_area.py::test_rect"
UNIT = "tests/test_units.py::test_unit"
TRIVIAL = "tests/test_misc.py::test_trivial"
ALL = [SQUARE, RECT, TRIVIAL, UNIT]


def area_with(square_body: str) -> str:
    """geometry/area.py with the body of `square` replaced."""
    return AREA.replace("    return side * side * SCALE\n", square_body)


def make_project(path: Path, extra: dict[str, str] | None = None) -> Path:
    return make_repo(path, {**PROJECT, **(extra or {})})
