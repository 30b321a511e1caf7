"""A tiny model trained here on a synthetic language learns it: the loss falls and the sampler
fills masked spans exactly. Proof that loss and sampler agree; the sampler's modes are checked
on the trained model.

Every threshold below sits outside the spread measured over training seeds 0-5 with 1 thread,
seeds 0-5 with AVX2 kernels forced (`ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2` on an
AVX512 machine, which brought back a CPU-dependent failure of the former 300-step model) and
seeds 0-2 with 2 threads (bitwise the losses of 1 thread; see the last test). The comment by
each threshold says what was measured. Threads: `GREENPATCH_TEST_THREADS` (model_support)."""

from __future__ import annotations

import pytest
import torch
from greenpatch.model import sampler as S
from greenpatch.model.checkpoint import LoadedModel
from greenpatch.model.errors import ModelError

from tests.model_support import (
    TEST_THREADS,
    alphabet_tasks,
    torch_threads,
    train_alphabet_model,
    trained_alphabet_model,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def threads():
    with torch_threads(TEST_THREADS):
        yield


@pytest.fixture(scope="module")
def trained(threads) -> tuple[LoadedModel, tuple[float, ...]]:
    return trained_alphabet_model()


def accuracy(lm: LoadedModel, **options) -> tuple[float, S.DecodeStats]:
    items = alphabet_tasks()
    canvases = [S.Canvas(p, s, len(lm.tokenizer.encode(m))) for p, m, s in items]
    stats = S.DecodeStats()
    results = S.infill(lm, canvases, samples=1, stats=stats, **options)
    hits = sum(r[0].text == m for r, (_, m, _) in zip(results, items, strict=True))
    return hits / len(items), stats


def test_loss_falls(trained) -> None:
    _, losses = trained
    first, last = sum(losses[:30]) / 30, sum(losses[-30:]) / 30
    assert last < 0.2 * first  # measured last/first: 0.057-0.076


MODES = [
    dict(threshold=0.9), dict(threshold=None), dict(threshold=0.9, block_size=1),
    dict(threshold=None, steps=1), dict(threshold=0.9, remask_low_confidence=0.2),
    dict(threshold=None, cache_every=3),
]


@pytest.mark.parametrize("options", MODES, ids=["threshold", "one-per-step", "blocks",
                                                "all-at-once", "remask", "cached"])
def test_infill_is_exact(trained, options) -> None:
    lm, _ = trained
    acc, stats = accuracy(lm, **options)
    assert acc >= 0.9  # measured: 1.0 (30 of 30) in every mode
    if options.get("threshold") is None and options.get("steps") is None:
        # One token per pass: as many passes as the longest span.
        assert stats.passes == max(len(lm.tokenizer.encode(m)) for _, m, _ in alphabet_tasks())


def test_threshold_decoding_needs_fewer_passes_at_equal_accuracy(trained) -> None:
    lm, _ = trained
    parallel_acc, parallel = accuracy(lm, threshold=0.9)
    serial_acc, serial = accuracy(lm, threshold=None)
    assert serial.row_passes == serial.tokens
    assert parallel_acc >= serial_acc
    # Measured: 30-34 row passes for 112 tokens (one per step: 112).
    assert parallel.row_passes < serial.row_passes / 2


def test_samples_are_deterministic_distinct_and_ranked(trained) -> None:
    lm, _ = trained
    canvas = [S.Canvas("c d e f g", " k l m n o", 3)]
    # A hot temperature: the trained model is sure of this span (at 2.0 some seeds drew one
    # text only). Measured at 8.0 (AVX2 seeds 0-5, 2 threads seeds 0-2): 6 distinct texts, the
    # right one first, other texts for seed 4.
    a = S.infill(lm, canvas, samples=6, temperature=8.0, top_p=None, seed=3)
    b = S.infill(lm, canvas, samples=6, temperature=8.0, top_p=None, seed=3)
    assert a == b
    texts = [c.text for c in a[0]]
    assert len(texts) == len(set(texts)) >= 3 and texts[0] == " h i j"
    assert [c.score for c in a[0]] == sorted((c.score for c in a[0]), reverse=True)
    c = S.infill(lm, canvas, samples=6, temperature=8.0, top_p=None, seed=4)
    assert [x.text for x in c[0]] != texts  # another seed, other draws


def test_infill_site_merges_span_lengths(trained) -> None:
    lm, _ = trained
    lengths = S.span_lengths(lm, " i j", extra=(0, 1))
    assert lengths == [2, 3]
    cands = S.infill_site(lm, "c d e f g h", " k l m n o", lengths, samples=2)
    assert {c.span_len for c in cands} == {2, 3}
    assert max((c for c in cands if c.span_len == 2), key=lambda c: c.score).text == " i j"
    assert len({c.text for c in cands}) == len(cands)


def test_score_prefers_the_right_middle(trained) -> None:
    lm, _ = trained
    right = S.score(lm, "c d e", " f g", " h i j k l m n")
    wrong = S.score(lm, "c d e", " q g", " h i j k l m n")
    # Measured log-probabilities: right -0.0007 to -0.0042, wrong -9.5 to -39.6.
    assert right > wrong and right > -1.0


def test_disbelief_points_at_the_wrong_token(trained) -> None:
    lm, _ = trained
    text = "b c d e f x h i j k l m"
    wrong_at = text.index("x")
    scores = S.disbelief(lm, text, masked=True)
    worst = max(scores, key=lambda s: s[2])
    # Measured (AVX2 seeds 0-5, 2 threads seeds 0-2): the wrong token's log-odds lead the next
    # token's by 2.4 or more.
    assert worst[0] <= wrong_at < worst[1]
    # Windows: every token of a long text gets one score, in order, the same ranges as one pass.
    for masked in (False, True):
        long = S.disbelief(lm, text, window=6, masked=masked)
        assert [s[:2] for s in long] == [s[:2] for s in scores]
        assert all(0.0 <= s[2] <= 1.0 for s in long)


def test_remask_refills_the_noised_tokens(trained) -> None:
    lm, _ = trained
    middle = " h q j"  # q is wrong
    offsets = S.middle_offsets(lm, middle)
    keep = [middle[a:b] != " q" for a, b in offsets]
    cands = S.remask(lm, "c d e f g", middle, " k l m n o", keep=keep, samples=3)
    assert cands[0].text == " h i j"
    by_range = S.remask(lm, "c d e f g", middle, " k l m n o", keep=[(0, 2), (4, 6)],
                        samples=1)
    assert by_range[0].text == " h i j"


def test_beam_finds_the_right_fill_first_and_ranks_the_rest(trained) -> None:
    lm, _ = trained
    items = alphabet_tasks(12)
    for prefix, middle, suffix in items:
        n = len(lm.tokenizer.encode(middle))
        beam = S.beam_infill(lm, prefix, suffix, n, k=5)
        assert beam[0].text == middle  # measured: 12 of 12 for every seed
        assert [c.score for c in beam] == sorted((c.score for c in beam), reverse=True)
        assert len({c.text for c in beam}) == len(beam) <= 5 and all(c.text for c in beam)
    with pytest.raises(ModelError):
        S.beam_infill(lm, "a", "b", 0)


def test_bad_sampler_inputs(trained) -> None:
    lm, _ = trained
    with pytest.raises(S.ModelError, match="span_len"):
        S.infill(lm, [S.Canvas("a", "b", 0)])
    with pytest.raises(S.ModelError, match="does not fit"):
        S.infill(lm, [S.Canvas("a", "b", 500)])
    with pytest.raises(S.ModelError, match="keep has"):
        S.remask(lm, "a", " b c", " d", keep=[True])
    assert S.infill(lm, []) == []
    assert torch.is_inference_mode_enabled() is False


def outcomes(lm: LoadedModel) -> list[list[str]]:
    """What the tests above judge: the greedy fill of every task in every decoding mode, the
    draws of one sampling seed, and the beams."""
    items = alphabet_tasks()
    canvases = [S.Canvas(p, s, len(lm.tokenizer.encode(m))) for p, m, s in items]
    fills = [[r[0].text for r in S.infill(lm, canvases, samples=1, **options)]
             for options in MODES]
    draws = S.infill(lm, [S.Canvas("c d e f g", " k l m n o", 3)], samples=6, temperature=2.0,
                     top_p=None, seed=3)
    beams = [[c.text for c in S.beam_infill(lm, p, s, len(lm.tokenizer.encode(m)), k=5)]
             for p, m, s in items[:6]]
    return [*fills, [c.text for c in draws[0]], *beams]


def test_same_seeds_give_the_same_outcomes_with_1_and_2_threads(trained) -> None:
    # Training: the same seeds give the same loss curve, whatever the thread count. Measured
    # (16 steps): 1 and 2 threads bitwise equal; another seed differs by 3-31% at every step.
    one = train_alphabet_model(steps=16, threads=1)[1]
    assert train_alphabet_model(steps=16, threads=1)[1] == one
    assert train_alphabet_model(steps=16, threads=2)[1] == pytest.approx(one, rel=1e-4)
    assert train_alphabet_model(steps=16, threads=1, seed=1)[1] != pytest.approx(one, rel=1e-2)
    # Decoding: the trained model gives the same fills, draws and beams with 1 and 2 threads.
    lm, _ = trained
    with torch_threads(1):
        single = outcomes(lm)
    with torch_threads(2):
        assert outcomes(lm) == single
