"""Which tests a change can affect, from the baseline's per-test coverage and import graph.

Safety first: whatever this cannot reason about (new files, deleted files, conftest.py, non-Python
files) selects the whole suite and says why. For a Python file of the baseline:
- a changed line inside a function body selects the tests that executed any line of that body;
- a change at module level (imports, constants, class bodies, `def` lines, decorators) selects
  every test that executed any line of the module or whose test module imports it (transitively);
- a module-level change to a test module also runs the whole file (new tests appear there).
While the baseline is still filling in, a test not yet mapped is selected when its module imports
a changed file (transitively): its coverage is unknown, the import graph is not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath

from greenpatch.runner.baseline import Baseline
from greenpatch.runner.blocks import classify


@dataclass
class Selection:
    """`tests`: ids (and whole test files, for test modules changed at module level) in suite
    order; `reasons`: why each was selected; `conservative`: why everything was, if it was."""

    tests: list[str]
    reasons: dict[str, str] = field(default_factory=dict)
    conservative: str | None = None


def _is_test_module(path: str, baseline: Baseline) -> bool:
    name = PurePosixPath(path).name
    if name.startswith("test_") or name.endswith("_test.py"):
        return True
    prefix = path + "::"
    return any(t.startswith(prefix) for t in baseline.records)


def _everything(baseline: Baseline, why: str, extra: list[str]) -> Selection:
    tests = [*baseline.collected, *extra]
    return Selection(tests, {t: why for t in tests}, conservative=why)


def _span(lines: tuple[int, ...]) -> str:
    if not lines:
        return "?"
    return str(lines[0]) if lines[0] == lines[-1] else f"{lines[0]}-{lines[-1]}"


def select_tests(baseline: Baseline, changes: dict[str, str | None]) -> Selection:
    """The tests that can fail because of `changes` (relpath -> new text, None = deleted)."""
    reasons: dict[str, str] = {}
    whole_files: list[str] = []
    new_test_files: list[str] = []
    conservative: list[str] = []

    def add(tests: set[str], why: str) -> None:
        for test in tests:
            reasons.setdefault(test, why)

    for path, new in sorted(changes.items()):
        old = baseline.source(path)
        if old is not None and new == old:
            continue
        name = PurePosixPath(path).name
        if not path.endswith(".py"):
            conservative.append(f"{path} is not a Python file")
        elif name == "conftest.py":
            conservative.append(f"{path} is a conftest.py")
        elif old is None and new is not None:
            conservative.append(f"{path} is a new file")
            if _is_test_module(path, baseline):
                new_test_files.append(path)
        elif new is None:
            conservative.append(f"{path} was deleted")
        else:
            unmapped = baseline.not_yet_mapped()
            if unmapped:
                add(baseline.importers(path, among=unmapped),
                    f"not yet mapped; imports {path}")  # fmt: skip
            change = classify(old, new)
            for func in change.functions:
                add(
                    baseline.tests_covering(path, func.lines()),
                    f"executed {path}:{func.qualname} (lines {func.body_start}-{func.body_end})",
                )
            if change.module_level:
                why = f"imports {path}, changed at module level (line {_span(change.module_level)})"
                add(baseline.tests_covering(path), why)
                add(baseline.importers(path), why)
                if _is_test_module(path, baseline):
                    whole_files.append(path)
    if conservative:
        return _everything(baseline, "; ".join(conservative), new_test_files)
    inside = tuple(f"{path}::" for path in whole_files)
    tests = [t for t in baseline.collected if t in reasons and not t.startswith(inside or ("\0",))]
    for path in whole_files:
        reasons[path] = "test module changed at module level: run all of it"
    return Selection([*tests, *whole_files], reasons)
