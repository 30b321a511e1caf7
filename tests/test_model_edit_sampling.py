"""Sampling that edits (`model.repair.sample_edits`): the tokens of a line the repair head
disbelieves are re-masked and denoised, the rest of the code is kept.

The tiny alphabet model (tests.model_support) knows its language but has no repair head: the
head's verdicts are given here (`flag`: its pass replaced by one that flags chosen tokens), so
the tests check the sampling side on a model that can fill what is re-masked.

Thresholds: measured over training seeds 0-2 x sampling seeds 0-5, with 1 and 2 torch threads
(`tests.model_support.train_alphabet_model(seed=, threads=)`); the comment by each assertion
says what was measured."""

from __future__ import annotations

import pytest
import torch
from greenpatch.model import repair as R
from greenpatch.model.checkpoint import LoadedModel, wrap
from greenpatch.model.network import DiffusionLM, ModelConfig
from greenpatch.model.sampler import DecodeStats

from tests.model_support import (
    TEST_THREADS,
    stdlib_tokenizer,
    torch_threads,
    trained_alphabet_model,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def threads():
    with torch_threads(TEST_THREADS):
        yield


def flag(monkeypatch, lm: LoadedModel, words: set[str], missing: bool = False) -> None:
    """The repair head's pass replaced: P(corrupted) ~1 for tokens whose text is in `words`,
    ~0 elsewhere; P(statement missing) ~1 everywhere with `missing`."""
    tok = lm.tokenizer

    def head(ids: torch.Tensor, attention_mask=None):
        logits = torch.full((*ids.shape, 2), -6.0)
        for b, row in enumerate(ids.tolist()):
            for t, i in enumerate(row):
                logits[b, t, 0] = 6.0 if tok.decode([i]).strip() in words else -6.0
        logits[..., 1] = 6.0 if missing else -6.0
        return None, logits

    monkeypatch.setattr(lm.net, "repair_hidden", head)


WRONG = "b c d e f x h i j k l m"
RIGHT = "b c d e f g h i j k l m"


def test_edit_sampling_fixes_the_disbelieved_token(monkeypatch) -> None:
    lm, _ = trained_alphabet_model()
    flag(monkeypatch, lm, {"x"})
    for seed in range(3):
        fills = R.sample_edits(lm, WRONG, 1, seed=seed)
        # Measured (training seeds 0-2 x seeds 0-5, 1 and 2 threads): the fix first every time.
        assert fills[0].text == RIGHT
        assert [f.score for f in fills] == sorted((f.score for f in fills), reverse=True)
        assert len({f.text for f in fills}) == len(fills) and WRONG not in {f.text for f in fills}


def test_edit_sampling_keeps_what_the_model_believes(monkeypatch) -> None:
    lm, _ = trained_alphabet_model()
    flag(monkeypatch, lm, {"x"})
    monkeypatch.setattr(R, "EDIT_TOP", 1)  # only the disbelieved token's run
    fills = R.sample_edits(lm, WRONG, 1, seed=0)
    assert fills
    for f in fills:
        assert (f.start, f.end) == (0, len(WRONG))  # the line, rewritten
        # Re-masked: " x" (grown, or wrapped in a call), or " f x" deleted; nothing else.
        assert f.text.startswith("b c d e") and f.text.endswith(" h i j k l m")


def test_edit_sampling_stays_within_its_budget(monkeypatch) -> None:
    lm, _ = trained_alphabet_model()
    flag(monkeypatch, lm, {"x", "k"})
    stats = DecodeStats()
    R.sample_edits(lm, WRONG, 1, samples=3, stats=stats)
    # Runs: the top 3 tokens, the runs joining the top 2 and 3; each with every growth, and
    # calls wrapped around the first WRAPPED_RUNS runs; no statement inserted (one line).
    most = (2 * R.EDIT_TOP - 1) * len(R.EDIT_GROW) + R.WRAPPED_RUNS * len(R.WRAPPER_SLOTS)
    assert 0 < stats.spans <= most
    assert stats.rows == 3 * stats.spans
    assert stats.passes <= R.EDIT_OPTIONS["steps"] + 1  # a safety pass at most


@pytest.fixture(scope="module")
def python_model() -> LoadedModel:
    """An untrained model with a repair head and a code tokenizer: shapes, not skill."""
    tok = stdlib_tokenizer()
    config = ModelConfig.tiny(vocab_size=tok.vocab_size, repair_head=True, mask_id=tok.mask_id)
    torch.manual_seed(0)
    return wrap(DiffusionLM(config).eval(), tok, name="untrained")


SOURCE = "def total(items):\n    n = 0\n    for item in items:\n        n += item\n    return n\n"


def test_a_statement_is_sampled_after_a_line_said_to_miss_one(monkeypatch, python_model
                                                              ) -> None:
    flag(monkeypatch, python_model, set(), missing=True)
    fills = R.sample_edits(python_model, SOURCE, 2, seed=0)
    after = SOURCE.index("\n", SOURCE.index("n = 0")) + 1
    inserted = [f for f in fills if f.start == f.end]
    assert inserted and all(f.start == after and f.text.endswith("\n") for f in inserted)
    # Nothing flagged on the line: its rewrites re-mask its top tokens all the same, but no
    # statement is inserted when the head says none is missing.
    flag(monkeypatch, python_model, set())
    assert all(f.start < f.end for f in R.sample_edits(python_model, SOURCE, 2, seed=0))
