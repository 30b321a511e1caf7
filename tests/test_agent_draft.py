"""Drafting on top of an earlier candidate: its changes to other files are kept, and a fill
already tried on the original code is tried again on top of it; with a repair head, the
"sample" stage drafts sampling that edits."""

from __future__ import annotations

import pytest
from greenpatch.agent.pipeline.draft import Drafter
from greenpatch.agent.pipeline.localize import SuspiciousLine
from greenpatch.agent.pipeline.sites import sites_for

TERMS = "def early(paid, deadline):\n    return paid < deadline\n"
INVOICE = "def first(due, i):\n    return due + i + 1\n"


def drafts_for(drafter: Drafter, sources: dict[str, str], path: str, line: int, parent=None,
               stage: str = "substitution"):
    suspicious = [SuspiciousLine(path, line, 1.0, 1.0, False, 0.0)]
    sites = sites_for(sources, suspicious, count_tokens=drafter.count_tokens)
    return drafter.stage(sources, sites, stage, parent=parent)


def test_a_draft_on_top_of_a_candidate_keeps_its_other_files() -> None:
    drafter = Drafter(None, [], mode="mutations")
    first = next(d for d in drafts_for(drafter, {"terms.py": TERMS}, "terms.py", 2)
                 if d.fill == "<=")  # fmt: skip
    assert first.files == {"terms.py": TERMS.replace("<", "<=")}
    alone = drafts_for(drafter, {"invoice.py": INVOICE}, "invoice.py", 2)
    on_top = drafts_for(drafter, {"invoice.py": INVOICE}, "invoice.py", 2, parent=first)
    # The same fills, not dropped as duplicates of the ones tried without the first fix.
    assert [d.fill for d in on_top] == [d.fill for d in alone] and on_top
    for draft in on_top:
        assert draft.parent == first.id
        assert set(draft.files) == {"terms.py", "invoice.py"}
        assert draft.files["terms.py"] == first.source
    # Drafting on top again yields nothing new.
    assert drafts_for(drafter, {"invoice.py": INVOICE}, "invoice.py", 2, parent=first) == []


def test_a_draft_of_the_parent_s_own_file_builds_on_its_version() -> None:
    drafter = Drafter(None, [], mode="mutations")
    first = drafts_for(drafter, {"terms.py": TERMS}, "terms.py", 2)[0]
    again = drafts_for(drafter, first.files, "terms.py", 1, parent=first)
    assert again and all(set(d.files) == {"terms.py"} for d in again)
    assert all(first.fill in d.source.splitlines()[1] for d in again)


def test_the_widen_stage_comes_after_the_edits_and_drafts_the_real_bug_shapes() -> None:
    drafter = Drafter(None, [], mode="edits")
    assert drafter.stages == ("substitution", "edit", "widen")
    widened = drafts_for(drafter, {"terms.py": TERMS}, "terms.py", 2, stage="widen")
    fills = [d.fill for d in widened]
    assert {"len(paid)", "paid - deadline"} <= set(fills)
    assert all(d.origin == "widen" for d in widened)
    swapped = drafts_for(drafter, {"invoice.py": INVOICE}, "invoice.py", 2, stage="widen")
    assert "1 + due + i" in {d.fill for d in swapped}  # the operands of `due + i + 1`
    edited = {d.fill for d in drafts_for(drafter, {"terms.py": TERMS}, "terms.py", 2, stage="edit")}
    assert not edited & set(fills)


SOURCE = "def total(items):\n    n = 0\n    for item in items:\n        n += item\n    return n\n"


def test_with_a_repair_head_the_sample_stage_samples_edits(monkeypatch) -> None:
    """The "sample" stage of a model with a repair head drafts sampling that edits
    (`model.repair.sample_edits`) for the sites' line: its fills become whole-line rewrites
    or inserted lines, best first; fills that do not parse and repeated programs are dropped,
    and the blank-canvas sampler is not run."""
    from greenpatch.agent.pipeline import draft as D
    from greenpatch.model.checkpoint import wrap
    from greenpatch.model.network import DiffusionLM, ModelConfig
    from greenpatch.model.repair import EditFill

    from tests.model_support import stdlib_tokenizer

    tok = stdlib_tokenizer()
    lm = wrap(DiffusionLM(ModelConfig.tiny(vocab_size=tok.vocab_size, repair_head=True,
                                           mask_id=tok.mask_id)), tok)
    line = SOURCE.index("    for item")
    end = SOURCE.index("\n", line)
    after = SOURCE.index("\n", SOURCE.index("n += item")) + 1
    asked = []

    def sample_edits(lm_, source, at, *, seed=0, stats=None):
        asked.append(at)
        return [EditFill(line, end, "    for item in items[1:]:", 3.0),
                EditFill(line, end, "    for item in (items:", 2.5),        # does not parse
                EditFill(line, end, "    for item in (items):", 2.0),       # same program
                EditFill(after, after, "    n = n * 2\n", 1.0)]

    monkeypatch.setattr(D, "sample_edits", sample_edits)
    monkeypatch.setattr(D.Drafter, "_samples", lambda *a: pytest.fail("blank sampler ran"))
    drafter = D.Drafter(lm, [], mode="model")
    suspicious = [SuspiciousLine("m.py", 3, 1.0, 1.0, False, 0.0)]
    sites = sites_for({"m.py": SOURCE}, suspicious, count_tokens=drafter.count_tokens)
    drafts = drafter.stage({"m.py": SOURCE}, sites, "sample")
    assert asked == [3]
    assert [d.origin for d in drafts] == ["sample", "sample"]
    assert drafts[0].source == SOURCE.replace("in items:", "in items[1:]:")
    assert drafts[1].source == SOURCE.replace("        n += item\n",
                                              "        n += item\n    n = n * 2\n")
    assert drafts[0].score > drafts[1].score
