"""agent.explore: the value order across lines and stages, feedback re-weighting, and how a
candidate's failure is compared with the pristine one."""

from __future__ import annotations

import itertools
import traceback
from dataclasses import dataclass

from agent.explore import Explorer, Step, effect, failure_signature
from runner.results import TestResult

_ids = itertools.count()


@dataclass(frozen=True)
class Item:
    id: str
    line: str
    stage: str
    site: str  # one fill per site: every draft of a batch is equally likely


def steps(line: str, **sizes: int) -> list[Step]:
    def make(stage: str, n: int):
        def make_batch() -> list[Item]:
            ids = [f"{line}-{stage}-{next(_ids)}" for _ in range(n)]
            return [Item(i, line, stage, site=i) for i in ids]

        return make_batch

    return [Step(stage, make(stage, n)) for stage, n in sizes.items()]


def order(explorer: Explorer, n: int = 1000) -> list[tuple[str, str]]:
    """(line, stage) of each batch, in the order handed out."""
    out: list[tuple[str, str]] = []
    for item in explorer.take(n):
        if not out or out[-1] != (item.line, item.stage):
            out.append((item.line, item.stage))
    return out


def test_a_likely_lines_many_edits_wait_behind_other_lines_few_substitutions() -> None:
    plans = {0: steps("a", substitution=3, edit=200), 1: steps("b", substitution=3, edit=200)}
    explorer = Explorer([1.0, 0.5], plans.__getitem__)
    assert order(explorer) == [
        ("a", "substitution"), ("b", "substitution"), ("a", "edit"), ("b", "edit"),
    ]  # fmt: skip
    assert not explorer


def test_a_line_is_planned_only_when_it_comes_up() -> None:
    planned: list[int] = []

    def plan(i: int) -> list[Step]:
        planned.append(i)
        return steps(str(i), substitution=4)

    explorer = Explorer([1.0 / (i + 1) for i in range(50)], plan)
    assert len(explorer.take(8)) == 8
    assert planned == [0, 1]


def test_feedback_moves_the_edits_of_a_line_whose_candidates_changed_the_value() -> None:
    def run(feedback: bool) -> list[tuple[str, str]]:
        plans = {0: steps("a", substitution=2, edit=40), 1: steps("b", substitution=2, edit=40)}
        explorer = Explorer([1.0, 0.9], plans.__getitem__)
        first = explorer.take(4)
        assert [i.line for i in first] == ["a", "a", "b", "b"]
        if feedback:
            for item in first:
                explorer.observe(item.id, "moved" if item.line == "b" else "unchanged")
        return order(explorer)

    assert run(feedback=False) == [("a", "edit"), ("b", "edit")]
    assert run(feedback=True) == [("b", "edit"), ("a", "edit")]


def test_samples_wait_while_testers_are_short_of_work_unless_nothing_else_is_left() -> None:
    fed = [False]
    plans = {0: steps("a", sample=2, substitution=0), 1: steps("b", substitution=2)}
    explorer = Explorer([1.0, 0.1], plans.__getitem__, sample_now=lambda: fed[0])
    assert order(explorer, 2) == [("b", "substitution")]
    assert order(explorer, 2) == [("a", "sample")]  # nothing else left: sampling beats idling


def test_fills_are_worth_their_sites_share_and_their_rank() -> None:
    def ranked(line: str, sites: int, fills: int) -> list[Step]:
        def make_batch() -> list[Item]:
            return [Item(f"{line}{s}.{k}", line, "substitution", f"{line}{s}")
                    for k in range(fills) for s in range(sites)]  # fmt: skip

        return [Step("substitution", make_batch)]

    plans = {0: ranked("a", sites=13, fills=20), 1: ranked("b", sites=2, fills=3)}
    explorer = Explorer([1.0, 0.8], plans.__getitem__)
    first = [item.id for item in explorer.take(40)]
    # a line with two sites: each is the bug with a chance of one half, so all of b goes first
    assert sorted(first[:6]) == sorted(f"b{s}.{k}" for s in range(2) for k in range(3))
    # then a's sites by rank: every first fill before any second one, no long tail
    assert first[6:19] == [f"a{s}.0" for s in range(13)]
    assert first[19:32] == [f"a{s}.1" for s in range(13)]


def test_empty_batches_are_skipped() -> None:
    plans = {0: steps("a", substitution=0, edit=3), 1: []}
    explorer = Explorer([1.0, 0.9], plans.__getitem__)
    assert order(explorer) == [("a", "edit")]
    assert not explorer


def _failure(source: str, *args) -> tuple[str, list[tuple[str, int]]]:
    """A real traceback of `check(*args)` defined in `source` (file lib.py), called from a
    test frame in test_lib.py: the message and the (path, line) frames."""
    lib: dict = {}
    exec(compile(source, "lib.py", "exec"), lib)
    test = compile("def test():\n    got = lib['check'](*args)\n    assert got == 24, got\n",
                   "test_lib.py", "exec")  # fmt: skip
    scope = {"lib": lib, "args": args}
    exec(test, scope)
    try:
        scope["test"]()
    except Exception as exc:  # noqa: BLE001 - the failure is the point
        frames = [(f.filename, f.lineno) for f in traceback.extract_tb(exc.__traceback__)][1:]
        return "".join(traceback.format_exception(exc)), frames
    raise AssertionError("the check passed")


def result(source: str, *args) -> TestResult:
    message, frames = _failure(source, *args)
    return TestResult("j", "test_lib.py::test", "failed", 0.1, message, tuple(frames))


LIB = "def check(n):\n    return n + 1\n"


def test_a_shifted_file_with_the_same_failure_is_unchanged() -> None:
    reference = result(LIB, 2)
    shifted = result("\n\n# a comment\n" + LIB, 2)
    assert failure_signature(shifted.message) == failure_signature(reference.message)
    assert effect(reference, shifted, {"lib.py"}) == "unchanged"


def test_a_different_value_at_the_same_assertion_moved() -> None:
    reference = result(LIB, 2)
    assert effect(reference, result("def check(n):\n    return n - 1\n", 2), {"lib.py"}) == "moved"


def test_a_crash_elsewhere_or_a_pass_tells_nothing() -> None:
    reference = result(LIB, 2)
    crash = result("def check(n):\n    return n + None\n", 2)
    assert effect(reference, crash, {"lib.py"}) == ""
    assert effect(reference, None, {"lib.py"}) == ""
    other = TestResult("j", "test_lib.py::other", "failed", 0.1, reference.message, ())
    assert effect(reference, other, {"lib.py"}) == ""


def test_object_addresses_do_not_count_as_a_change() -> None:
    assert failure_signature("x = <Obj at 0x7fe44371c250>") == failure_signature(
        "x = <Obj at 0x7f0000000010>"
    )
