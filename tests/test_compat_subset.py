"""The compatibility matrix in small: real PyPI packages through benchmarks/compat.py's code path.

The slow tests download three of the matrix's smallest sdists from PyPI (cached under
~/.cache/greenpatch/compat, so later runs are offline), give each a venv without coverage or
xdist, and require `agent test --all` to report exactly what plain `python -m pytest` reports,
test by test, leaving the user's venv and working tree as they were. The fast tests pin down
the comparison itself: junit's dotted names map back to pytest node ids, and differences are
classified.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
# The three smallest of the matrix, in three layouts: a root test module with setup.cfg
# [tool:pytest]; src/ with pyproject's [tool.pytest]; tests inside the package, unittest-style.
SUBSET = ("six", "iniconfig", "colorama")


def load_compat() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compat", BENCHMARKS / "compat.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("compat", module)
    spec.loader.exec_module(module)
    return module


compat = load_compat()


def test_junit_names_map_back_to_node_ids(tmp_path: Path) -> None:
    """Every testcase junitxml writes has the key junit_key gives its node id (no guessing)."""
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "mod.py").write_text(
        textwrap.dedent(
            '''
            def double(x):
                """
                >>> double(2)
                4
                """
                return 2 * x
            '''
        )
    )
    (tmp_path / "pkg" / "sub" / "test_mod.py").write_text(
        textwrap.dedent(
            """
            import unittest
            import pytest

            class TestOuter:
                class TestInner:
                    def test_deep(self):
                        pass

                @pytest.mark.parametrize("v", ["a.b", "c::d", "e/f"])
                def test_param(self, v):
                    assert v != "e/f"

            class Case(unittest.TestCase):
                def test_skip(self):
                    self.skipTest("no")

            def test_error(request):
                raise ValueError
            """
        )
    )
    (tmp_path / "test_root.py").write_text("def test_fail():\n    assert False\n")
    args = ["--doctest-modules", "-p", "no:cacheprovider", "-q"]
    junit = tmp_path / "out.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", f"--junitxml={junit}", *args],
        cwd=tmp_path,
        capture_output=True,
        check=False,
    )
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    ids = [line for line in collected.splitlines() if "::" in line]
    outcomes, _ = compat.parse_junit(junit)
    assert len(ids) == 8
    assert sorted(compat.junit_key(i) for i in ids) == sorted(outcomes)
    by_id = {i: outcomes[compat.junit_key(i)] for i in ids}
    assert by_id["test_root.py::test_fail"] == "failed"
    assert by_id["pkg/sub/test_mod.py::test_error"] == "failed"
    assert by_id["pkg/sub/test_mod.py::Case::test_skip"] == "skipped"
    assert by_id["pkg/sub/test_mod.py::TestOuter::TestInner::test_deep"] == "passed"
    assert by_id["pkg/sub/test_mod.py::TestOuter::test_param[e/f]"] == "failed"
    assert by_id["pkg/sub/test_mod.py::TestOuter::test_param[c::d]"] == "passed"
    assert by_id["pkg/sub/mod.py::pkg.sub.mod.double"] == "passed"


def test_differences_are_classified() -> None:
    plain = compat.Run(code=1, seconds=1.0)
    agent = compat.Run(code=1, seconds=1.0)
    plain.outcomes = {"a::same": "passed", "a::net": "passed", "a::gone": "passed"}
    agent.outcomes = {"a::same": "passed", "a::net": "failed", "a::new": "passed"}
    agent.messages = {"a::net": "socket.gaierror: [Errno -3] Temporary failure in name resolution"}
    agent.ids = {"a::net": "a.py::net"}
    differences, module_skips = compat.compare(plain, agent)
    assert module_skips == 0
    assert {(d.test, d.why) for d in differences} == {
        ("a.py::net", "network (the sandbox has none)"),
        ("a::gone", "not run by agent"),
        ("a::new", "only run by agent"),
    }
    # Plain pytest stopped at a collection error: what only the agent ran is said so.
    plain.interrupted = True
    assert ("a::new", "plain stopped at a collection error") in {
        (d.test, d.why) for d in compat.compare(plain, agent)[0]
    }
    # A module skipped at import is a junit entry without a class, not a test.
    plain.outcomes = {"::tests.test_windows": "skipped"}
    agent.outcomes = {}
    assert compat.compare(plain, agent) == ([], 1)


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One results folder and one fresh greenpatch cache for the subset (the overlay built once)."""
    root = tmp_path_factory.mktemp("compat")
    return root / "runs", root / "xdg-cache"


@pytest.mark.slow
@pytest.mark.parametrize("name", SUBSET)
def test_agent_test_all_matches_plain_pytest(name: str, run_dirs: tuple[Path, Path]) -> None:
    (spec,) = compat.load_specs(only=[name])
    result = compat.run_package(spec, *run_dirs)
    assert result.prepare_error == ""
    assert result.agent_error == ""
    assert result.agent_exit in (0, 1)
    assert result.tests_plain > 10
    assert result.tests_agent == result.tests_plain
    assert [(d.test, d.plain, d.agent, d.why) for d in result.differences][:5] == []
    assert result.agent_counts == result.plain_counts
    # The user's venv (no coverage in it) and working tree are as they were.
    assert result.hygiene == []
    assert result.identical
