"""The baseline a ticket waits for: its named tests first, the rest of the map behind."""

from __future__ import annotations

import time

from greenpatch.runner.baseline import BaselineBuild, BaselineOptions
from greenpatch.runner.selection import select_tests

from tests.conftest import make_repo
from tests.runner_support import PYTHON

SLOW = "".join(
    f"from shapes.area import square\n\n\ndef test_slow_{i}():\n"
    f"    import time; time.sleep(0.5)\n    assert square({i}) == {i * i}\n\n\n"
    for i in range(8)
)
FILES = {
    "shapes/__init__.py": "",
    "shapes/area.py": "def square(x):\n    return x * x\n\n\ndef cube(x):\n    return x * x\n",
    "tests/test_cube.py": (
        "from shapes.area import cube\n\n\ndef test_cube():\n    assert cube(2) == 8\n\n\n"
        "def test_cube_one():\n    assert cube(1) == 1\n"
    ),
    "tests/test_slow.py": SLOW,
    "tests/test_other.py": "def test_other():\n    assert True\n",
}
TARGET = "tests/test_cube.py::test_cube"
# A change inside cube's body only.
CUBE_FIXED = "def square(x):\n    return x * x\n\n\ndef cube(x):\n    return x * x * x\n"


def test_named_tests_first_then_the_rest_fills_in_and_is_stored(tmp_path):
    repo = make_repo(tmp_path / "repo", FILES)
    options = BaselineOptions(sandbox="bwrap", workers=1)
    build = BaselineBuild(repo, PYTHON, options, cache_dir=tmp_path / "c", first=[TARGET])
    try:
        baseline = build.first()
        mapped_first = set(baseline.records)
        # The target and its file are mapped; the rest of the suite is collected behind, then
        # mapped: the slow file is known and not mapped yet.
        assert baseline.records[TARGET].outcome == "failed"
        assert "tests/test_cube.py::test_cube_one" in baseline.records
        assert not baseline.complete
        deadline = time.monotonic() + 60
        while not baseline.collection_complete and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(t.startswith("tests/test_slow.py") for t in baseline.not_yet_mapped())
        # Conservative meanwhile: a change to shapes/area.py selects the unmapped importers.
        change = {"shapes/area.py": CUBE_FIXED}
        selected = select_tests(baseline, change).tests
        assert {f"tests/test_slow.py::test_slow_{i}" for i in range(8)} <= set(selected)
        assert "tests/test_other.py::test_other" not in selected
        full = build.finish()
    finally:
        build.close()
    assert full.complete and len(full.tests) == 11 and full.path is not None
    # first() answered before the slow file ran: it was left for the fill.
    assert mapped_first == {TARGET, "tests/test_cube.py::test_cube_one"}
    # Exact once complete: only the tests that executed cube's body.
    exact = select_tests(full, change).tests
    assert set(exact) == {TARGET, "tests/test_cube.py::test_cube_one"}
    again = BaselineBuild(repo, PYTHON, options, cache_dir=tmp_path / "c", first=[TARGET])
    assert again.first().complete  # from the cache
    again.close()
