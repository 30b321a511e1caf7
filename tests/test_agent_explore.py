"""agent.pipeline.explore: the value order across lines and stages, and how progress and follow-up
work change it."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from greenpatch.agent.pipeline.explore import (
    SITE_KIND_PRIOR,
    Explorer,
    Step,
    fixed_values,
    prior_key,
)
from greenpatch.agent.pipeline.sites import Site

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


def test_progress_moves_up_the_line_and_its_neighbours() -> None:
    def run(feedback: bool) -> list[tuple[str, str]]:
        plans = {i: steps(n, substitution=2, edit=40) for i, n in enumerate("abcd")}
        keys = [("m.py", 10), ("m.py", 30), ("m.py", 31), ("other.py", 31)]
        explorer = Explorer([1.0, 0.9, 0.8, 0.8], plans.__getitem__, keys=keys)
        first = explorer.take(8)
        assert [i.line for i in first] == ["a", "a", "b", "b", "c", "c", "d", "d"]
        if feedback:
            explorer.progress(first[2].id)  # a candidate on line b (m.py:30) made progress
            explorer.progress(first[3].id)  # more of it is no more evidence
        return order(explorer)

    assert run(feedback=False) == [("a", "edit"), ("b", "edit"), ("c", "edit"), ("d", "edit")]
    # b x8, its neighbour c (line 31 of the same file) x3; d is line 31 of another file
    assert run(feedback=True) == [("b", "edit"), ("c", "edit"), ("a", "edit"), ("d", "edit")]


def test_follow_up_work_joins_at_a_share_of_its_lines_weight() -> None:
    plans = {0: steps("a", substitution=2, edit=40), 1: steps("b", substitution=4)}
    explorer = Explorer([1.0, 0.05], plans.__getitem__)
    first = explorer.take(2)
    assert explorer.depth(first[0].id) == 1
    explorer.add(explorer.weight(first[0].id) * 0.5, lambda: steps("a2", substitution=3), 2)
    nxt = explorer.take(3)
    assert [i.line for i in nxt] == ["a2"] * 3  # worth more than a's edits and b
    assert explorer.depth(nxt[0].id) == 2


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


def test_a_sites_share_is_weighed_by_its_kind() -> None:
    def site(kind: str, start: int) -> Site:
        return Site("m.py", start, start + 1, kind, "x", (1,), 1, 1.0)

    operator, name = site("operator", 0), site("token", 2)
    values = fixed_values("substitution", [operator, name, operator, name])
    prior = SITE_KIND_PRIOR
    ratio = prior[("substitution", "operator")] / prior[("substitution", "name")]
    assert abs(values[0] / values[1] - ratio) < 1e-9 and values[2] < values[0]
    # A token site by what it holds: a constant has a handful of fills, a name many.
    number = Site("m.py", 4, 5, "token", "1", (1,), 1, 1.0)
    assert prior_key("edit", number) == ("edit", "constant")
    assert prior_key("edit", name) == ("edit", "name")
    assert prior_key("edit", Site("m.py", 4, 7, "token", "'a'", (1,), 1, 1.0))[1] == "token"
    # A kind without a prior: an even share.
    assert fixed_values("edit", [site("insert_after", 0), site("whatever", 2)])[1] == (
        fixed_values("edit", [site("whatever", 0), site("whatever", 2)])[0])


def test_empty_batches_are_skipped() -> None:
    plans = {0: steps("a", substitution=0, edit=3), 1: []}
    explorer = Explorer([1.0, 0.9], plans.__getitem__)
    assert order(explorer) == [("a", "edit")]
    assert not explorer


def test_value_is_per_test_second() -> None:
    # Equally suspicious lines, equally likely drafts: the line whose candidates test in a
    # tenth of the time goes first (without costs the first line listed would).
    plans = {0: steps("dear", substitution=8), 1: steps("cheap", substitution=8)}
    explorer = Explorer([1.0, 1.0], lambda i: plans[i], costs=[10.0, 1.0])
    handed = [item.line for item in explorer.take(16)]
    assert handed[:8] == ["cheap"] * 8 and handed[8:] == ["dear"] * 8
    # A likelier line may cost more and still come first, by value per second.
    plans = {0: steps("likely", substitution=8), 1: steps("cheap", substitution=8)}
    explorer = Explorer([1.0, 0.2], lambda i: plans[i], costs=[2.0, 1.0])
    assert explorer.take(1)[0].line == "likely"
    # Follow-up work carries its own cost.
    explorer = Explorer([], lambda i: [])
    explorer.add(1.0, lambda: steps("slow", substitution=1), 2, cost=100.0)
    explorer.add(0.1, lambda: steps("fast", substitution=1), 2, cost=1.0)
    assert [item.line for item in explorer.take(2)] == ["fast", "slow"]
