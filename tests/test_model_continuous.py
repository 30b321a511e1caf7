"""Continuous batching (model.continuous): a request decodes as `infill` decodes it alone, and
requests join and leave the running batch between passes."""

from __future__ import annotations

import pytest
from greenpatch.model.checkpoint import load_model
from greenpatch.model.continuous import ContinuousDecoder
from greenpatch.model.sampler import Canvas, infill

CODE = "def mean(values):\n    total = sum(values)\n    return total / len(values)\n"
OPTIONS = dict(steps=8, top_k=40, top_p=None, context=256)


@pytest.fixture(scope="module")
def lm():
    return load_model()


def _canvas(at: int, span: int) -> Canvas:
    return Canvas(CODE[:at], CODE[at + 5:], span)


def assert_same(fills: list, alone: list) -> None:
    """The same fills, scored alike: the running batch and infill's own batch can sum in
    another order (CPU kernels pick their path by shape), so scores agree to rounding."""
    assert [c.text for c in fills] == [c.text for c in alone]
    assert [c.score for c in fills] == pytest.approx([c.score for c in alone], rel=1e-5)


def _run(decoder: ContinuousDecoder, joins: dict[int, list[tuple[str, Canvas, int, float]]]
         ) -> tuple[dict[str, list], list[str], list[int]]:
    """Step until done, joining requests before the given step; (fills by key, keys in the
    order they finished, requests per step)."""
    fills, order, sizes = {}, [], []
    step = 0
    while step == 0 or decoder.requests or any(k >= step for k in joins):
        for key, canvas, n, temperature in joins.get(step, []):
            decoder.join(key, decoder.prepare(canvas), n, temperature)
        finished, stats = decoder.step()
        sizes.append(stats.requests)
        for key, candidates in finished:
            fills[key] = candidates
            order.append(key)
        step += 1
    return fills, order, sizes


def test_one_request_decodes_exactly_as_infill_alone(lm) -> None:
    canvas = _canvas(30, 6)
    alone = infill(lm, [canvas], 4, temperature=0.8, seed=3, **OPTIONS)[0]
    fills, _, sizes = _run(ContinuousDecoder(lm, seed=3, **OPTIONS), {0: [("a", canvas, 4, 0.8)]})
    assert_same(fills["a"], alone)
    assert len(sizes) <= 8  # at most `steps` passes


def test_with_the_context_cache_a_request_decodes_as_cached_infill_alone(lm) -> None:
    # A span long enough to need a second full pass (the shipped weights commit 6 tokens in
    # 4 passes, 12 in 8).
    canvas = _canvas(30, 12)
    alone = infill(lm, [canvas], 4, temperature=0.8, seed=3, cache_every=4, **OPTIONS)[0]
    decoder = ContinuousDecoder(lm, seed=3, cache_every=4, **OPTIONS)
    decoder.join("a", decoder.prepare(canvas), 4, 0.8)
    computed = []
    fills = {}
    while decoder.requests:
        finished, stats = decoder.step()
        computed.append(stats.computed)
        fills.update(finished)
    assert_same(fills["a"], alone)
    # Pass 0 runs one row for the four identical samples; passes 1-3 are span passes of every
    # live row; pass 4 is full again.
    assert computed[0] == 1 and len(computed) >= 5


def test_with_the_context_cache_requests_join_and_leave_at_any_pass(lm) -> None:
    long, short, late = _canvas(20, 24), _canvas(40, 1), Canvas(CODE * 3, CODE, 3)
    decoder = ContinuousDecoder(lm, seed=0, cache_every=3, **OPTIONS)
    joins = {0: [("long", long, 3, 0.0)], 2: [("short", short, 2, 0.0)],
             3: [("late", late, 2, 0.0)]}  # a wider canvas: every cached row is widened
    fills, order, _ = _run(decoder, joins)
    assert order[0] == "short" and set(order) == {"long", "short", "late"}
    # Greedy fills are the ones each canvas gets decoded alone with the same cache schedule.
    for key, canvas in (("long", long), ("short", short), ("late", late)):
        alone = infill(lm, [canvas], 1, temperature=0.0, seed=0, cache_every=3, **OPTIONS)[0]
        assert fills[key][0].text == alone[0].text
    assert decoder.cache is not None and len(decoder.cache.k[0]) == decoder.rows == 0


def test_requests_join_mid_decoding_and_leave_when_done(lm) -> None:
    long, short, late = _canvas(20, 24), _canvas(40, 1), _canvas(60, 3)
    decoder = ContinuousDecoder(lm, seed=0, **OPTIONS)
    joins = {0: [("long", long, 3, 0.0)], 2: [("short", short, 2, 0.0)],
             3: [("late", late, 2, 0.8)]}
    fills, order, sizes = _run(decoder, joins)
    # The one-token fill joined at pass 2 and left after one pass, long before the long fill.
    assert order[0] == "short" and order[-1] == "long"
    assert sizes[:4] == [1, 1, 2, 2] and max(sizes) == 2
    assert decoder.rows == 0 and decoder.batch is not None and len(decoder.batch.ids) == 0
    # Greedy fills are the ones each canvas gets decoded alone (sharing passes changes nothing).
    for key, canvas in (("long", long), ("short", short)):
        alone = infill(lm, [canvas], 1, temperature=0.0, seed=0, **OPTIONS)[0]
        assert fills[key][0].text == alone[0].text
    assert fills["late"]


def test_a_short_canvas_is_not_padded_to_a_long_one(lm) -> None:
    decoder = ContinuousDecoder(lm, seed=0, **OPTIONS)
    decoder.join("long", decoder.prepare(Canvas(CODE * 4, CODE * 2, 4)), 2, 0.8)
    decoder.join("short", decoder.prepare(Canvas("x = ", "\n", 4)), 2, 0.8)
    widths = sorted(decoder.batch.attn.sum(1).tolist())
    assert widths[0] < widths[-1] / 2
    groups = ContinuousDecoder._groups(sorted(widths, reverse=True))
    assert len(groups) == 2  # run as two passes, each trimmed to its own longest row
    finished, stats = decoder.step()
    assert stats.computed == 2  # first pass: one row per request, shared by its samples


def test_identical_rows_run_once(lm) -> None:
    decoder = ContinuousDecoder(lm, seed=0, **OPTIONS)
    decoder.join("greedy", decoder.prepare(_canvas(30, 6)), 4, 0.0)  # four identical samples
    decoder.join("sampled", decoder.prepare(_canvas(50, 6)), 4, 1.5)
    computed, rows, greedy_live = [], [], []
    while decoder.requests:
        greedy_live.append(any(r.key == "greedy" for r in decoder.requests))
        _, stats = decoder.step()
        computed.append(stats.computed)
        rows.append(stats.rows)
    assert computed[0] == 2  # before the first pass, one row per request
    # Greedy samples never differ: one row of the four runs; hot samples soon differ.
    assert all(c <= r - 3 for c, r, g in zip(computed, rows, greedy_live, strict=True) if g)
    assert max(computed) > 2
