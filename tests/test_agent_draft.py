"""Drafting on top of an earlier candidate: its changes to other files are kept, and a fill
already tried on the original code is tried again on top of it."""

from __future__ import annotations

from greenpatch.agent.pipeline.draft import Drafter
from greenpatch.agent.pipeline.localize import SuspiciousLine
from greenpatch.agent.pipeline.sites import sites_for

TERMS = "def early(paid, deadline):\n    return paid < deadline\n"
INVOICE = "def first(due, i):\n    return due + i + 1\n"


def drafts_for(drafter: Drafter, sources: dict[str, str], path: str, line: int, parent=None):
    suspicious = [SuspiciousLine(path, line, 1.0, 1.0, False, 0.0)]
    sites = sites_for(sources, suspicious, count_tokens=drafter.count_tokens)
    return drafter.stage(sources, sites, "substitution", parent=parent)


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
