"""The denoiser in the agent: line suspicion from the repair head, candidates ranked against
the buggy original, the drafter's "repair" stage and the explorer's values for it. The network's
repair logits are stubbed to flag one token, so the plumbing is tested apart from training."""

from __future__ import annotations

import math

import pytest
import torch
from greenpatch.agent.pipeline.draft import Drafter, line_candidates
from greenpatch.agent.pipeline.explore import Explorer, Step
from greenpatch.agent.pipeline.localize import SuspiciousLine, denoiser_disbelief, rank_lines
from greenpatch.agent.pipeline.sites import sites_for
from greenpatch.model.checkpoint import wrap
from greenpatch.model.errors import ModelError
from greenpatch.model.network import DiffusionLM, ModelConfig
from greenpatch.model.repair import line_suspicion, quick_scores, rank_candidates, with_prior

from tests.model_support import stdlib_tokenizer

SOURCE = """\
def price(total, count):
    if count == 0:
        return 0
    share = total - count
    return share


def other(x):
    return x
"""


def flagging_model(word: str):
    """A tiny model whose repair head says "corrupted" on exactly the tokens of `word` (and
    nowhere "a statement is missing")."""
    tok = stdlib_tokenizer()
    net = DiffusionLM(ModelConfig.tiny(vocab_size=tok.vocab_size, mask_id=tok.mask_id,
                                       repair_head=True)).eval()
    bad = set(tok.encode(word))

    def repair_hidden(ids, attention_mask=None):
        flags = torch.isin(ids, torch.tensor(sorted(bad)))
        logits = torch.full((*ids.shape, 2), -6.0)
        logits[..., 0] = torch.where(flags, 6.0, -6.0)
        return torch.zeros(*ids.shape, net.config.dim), logits

    net.repair_hidden = repair_hidden
    return wrap(net, tok)


def count_passes(lm) -> list:
    """The shapes of the repair head's passes over `lm`, as they happen."""
    calls = []
    real = lm.net.repair_hidden

    def counting(ids, attention_mask=None):
        calls.append(ids.shape)
        return real(ids, attention_mask)

    lm.net.repair_hidden = counting
    return calls


def test_line_suspicion_points_at_the_flagged_line() -> None:
    lm = flagging_model("-")
    lines = line_suspicion(lm, SOURCE)
    assert {s.line for s in lines} >= {1, 2, 3, 4, 5, 8, 9}
    top = max(lines, key=lambda s: s.score)
    assert top.line == 4 and top.corrupted > 0.99
    assert all(s.score < 0.01 for s in lines if s.line != 4)
    # A part of the text: line numbers stay the file's.
    start = SOURCE.index("def other")
    assert {s.line for s in line_suspicion(lm, SOURCE, start)} == {8, 9}


def test_a_long_function_is_read_in_overlapping_windows() -> None:
    lm = flagging_model("-")
    body = "".join(f"    v{i} = {i}\n" for i in range(200)) + "    w = a - b\n"
    text = "def f(a, b):\n" + body
    assert len(lm.tokenizer.encode(text)) > 2 * lm.config.max_seq_len
    lines = line_suspicion(lm, text)
    assert max(lines, key=lambda s: s.score).line == 202 and len(lines) == 202


def test_candidates_are_scored_against_the_original() -> None:
    lm = flagging_model("-")
    at = SOURCE.index("-")
    edits = [(at, at + 1, "+"), (at, at + 1, "-"), (at, at + 1, "*"), (at, at + 1, "- 1 -")]
    scores = rank_candidates(lm, SOURCE, edits)
    assert abs(scores[1]) < 1e-4  # the original itself: no better
    assert scores[0] > 5 and math.isclose(scores[0], scores[2], rel_tol=1e-5)
    assert scores[3] < 0  # a second flagged token: worse than the original
    assert rank_candidates(lm, SOURCE, edits[:1]) == scores[:1]  # batching changes nothing


def test_the_fixed_order_is_a_power_law_prior() -> None:
    keys = with_prior([0.0, 0.0, 3.0, 0.0], weight=2.0)
    assert keys[0] == 0.0 and keys[1] < 0.0
    assert math.isclose(keys[2], 3.0 - 2.0 * math.log(3))
    assert with_prior([1.0, 5.0], weight=0.0) == [1.0, 5.0]  # the model alone


def test_denoiser_disbelief_reads_each_function_once() -> None:
    lm = flagging_model("-")
    calls = count_passes(lm)
    doubt = denoiser_disbelief(lm, {"m.py": SOURCE}, [("m.py", 2), ("m.py", 4), ("m.py", 9)])
    assert len(calls) == 2  # price() and other()
    assert doubt[("m.py", 4)] > 0.99 and doubt[("m.py", 2)] < 0.01 and ("m.py", 9) in doubt
    assert denoiser_disbelief(lm, {"m.py": SOURCE}, [("m.py", 2), ("m.py", 9)],
                              max_functions=1).keys() == {("m.py", n) for n in range(1, 6)}
    # Spectrum ties broken by the denoiser, with the weight given.
    cov = {"t::f": {"m.py": {2, 4}}}
    ranked = rank_lines(cov, ["t::f"], [], disbelief=doubt, disbelief_weight=0.5)
    assert [s.line for s in ranked] == [4, 2] and math.isclose(
        ranked[0].score - ranked[1].score, 0.5 * (doubt[("m.py", 4)] - doubt[("m.py", 2)]))


def test_the_repair_stage_ranks_substitutions_and_edits_by_the_model() -> None:
    lm = flagging_model("-")
    drafter = Drafter(lm, [], mode="model-repair")
    assert drafter.stages == ("repair", "widen", "sample")
    assert Drafter(lm, [], mode="model").stages == ("substitution", "edit", "widen", "sample")
    plain = wrap(DiffusionLM(ModelConfig.tiny(vocab_size=lm.tokenizer.vocab_size)), lm.tokenizer)
    with pytest.raises(ModelError, match="repair head"):
        Drafter(plain, [], mode="model-repair")
    sources = {"m.py": SOURCE}
    sites = sites_for(sources, [SuspiciousLine("m.py", 4, 1.0, 1.0, False, 0.0)],
                      count_tokens=drafter.count_tokens)
    drafts = drafter.stage(sources, sites, "repair")
    assert drafts and all(d.origin == "repair" for d in drafts)
    scores = [d.score for d in drafts]
    assert scores == sorted(scores, reverse=True)
    # Replacing the flagged token is what the model likes; it comes before any edit keeping it.
    assert "-" not in drafts[0].source.splitlines()[3]
    keeps = [i for i, d in enumerate(drafts) if "-" in d.source.splitlines()[3]]
    assert keeps and min(keeps) > 0 and all(drafts[i].score < 0.1 for i in keeps)
    # The same candidates as the model-free stages, in another order.
    plain = Drafter(None, [], mode="edits")
    fixed = plain.stage(sources, sites, "substitution") + plain.stage(sources, sites, "edit")
    assert sorted(d.source for d in drafts) == sorted(d.source for d in fixed)


def test_line_candidates_are_the_fixed_order_and_include_the_fix() -> None:
    buggy = SOURCE.replace("total - count", "total + count")
    edits = line_candidates(buggy, 4)
    texts = [buggy[:a] + fill + buggy[z:] for a, z, fill in edits]
    assert SOURCE in texts and len(set(texts)) == len(texts)


class Item:
    def __init__(self, id: str, score: float) -> None:
        self.id, self.site, self.score = id, id, score


def test_the_explorer_shares_a_repair_line_in_proportion_to_the_drafts_scores() -> None:
    # A draft's score is log(prior * evidence): its line's chance is shared in proportion.
    drafts = [Item("a", 0.0), Item("b", 2.0), Item("c", 1.0)]
    explorer = Explorer([1.0], lambda i: [Step("repair", lambda: list(drafts))])
    assert [d.id for d in explorer.take(3)] == ["b", "c", "a"]
    # Line a (weight 1): shares 0.6, 0.35, 0.05; line b (weight 0.5): 0.5 each, worth 0.25.
    lines = {0: [Item("a1", math.log(6)), Item("a2", math.log(3.5)), Item("a3", math.log(0.5))],
             1: [Item("b1", 0.0), Item("b2", 0.0)]}

    def order(b_scores: list[float]) -> list[str]:
        for item, score in zip(lines[1], b_scores, strict=True):
            item.score = score
        explorer = Explorer([1.0, 0.5], lambda i: [Step("repair", lambda: list(lines[i]))])
        return [d.id for d in explorer.take(5)]

    assert order([0.0, 0.0]) == ["a1", "a2", "b1", "b2", "a3"]
    # Evidence for one of b's drafts concentrates b's chance on it: b2 is worth nothing now.
    # (b1 is not drafted before a2, though worth more: an undrafted line is assumed to be
    # worth GUESS until then.)
    assert order([0.0, -100.0]) == ["a1", "a2", "b1", "a3", "b2"]


def test_quick_scores_read_the_original_once_per_site() -> None:
    lm = flagging_model("-")
    calls = count_passes(lm)
    at = SOURCE.index("total - count")
    minus = SOURCE.index("-", at)
    edits = [(minus, minus + 1, "+"), (minus, minus + 1, "*"), (at, at + 5, "amount"),
             (SOURCE.index("count == 0"), SOURCE.index("count == 0") + 5, "total")]
    scores = quick_scores(lm, SOURCE, edits)
    assert len(calls) == 2  # one pass per line's window: line 4's three edits share one
    # Replacing the flagged token removes ~6 nats of "wrong"; the others remove ~nothing.
    assert scores[0] == scores[1] > 5 and max(scores[2:]) < 0.1
    # A span holding the flagged token removes its "wrong" and a little more; as evidence that
    # the bug lies in the span (`mean`), it is diluted by the unflagged tokens beside it.
    span = [edits[0], (at, at + len("total - count"), "amount")]
    summed, mean = quick_scores(lm, SOURCE, span), quick_scores(lm, SOURCE, span, mean=True)
    assert summed[1] > summed[0] and mean[0] - 0.5 > mean[1] > 0.1
    assert math.isclose(mean[0], summed[0], rel_tol=1e-6)  # one token: the same
    # An insertion inside a line has no evidence, even beside the flagged token; one after a
    # line break is read as "a statement is missing" there.
    end = SOURCE.index("\n", at)
    inserted = quick_scores(lm, SOURCE, [(minus, minus, "+ 1 "), (end, end, " + 1"),
                                         (end + 1, end + 1, "    share += 1\n")], mean=True)
    assert inserted[:2] == [0.0, 0.0] and 0 < inserted[2] < 0.01
