"""Exploration order: which suspicious line's next draft goes to the testers.

Every suspicious line drafts in stages (one-token substitutions, structural edits, model
samples), each stage a batch of fills for the line's sites, best first per site. A draft is
worth its chance of being the fix: the line's weight, times the stage's prior, shared among
the stage's sites, times a geometric decay over the fill's rank at its site. The most valuable
draft of any line goes next; a stage is drafted only when its best draft could be the most
valuable. So the top line's first substitutions come first, its hundreds of edits interleave
with other lines' likelier substitutions, and no line's long tail blocks the others.

Feedback (`observe`): a candidate whose target test still fails at the same place but with a
different message changed the value the test checks, so its line is on the failure's data path
(the idea of mutation-based fault localization, e.g. Metallaxis-FL): the line's weight goes up.
A line whose candidates leave the failure exactly as it was goes down. Without feedback the
order is fixed by the localization alone (the one-shot ablation).
"""

from __future__ import annotations

import heapq
import itertools
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from runner.results import TestResult

# P(the fix is in this stage | the line holds the bug), measured on the bug benchmark's dev split
# (`benchmarks/draft_rank.py --split dev`).
STAGE_PRIOR = {"substitution": 0.6, "edit": 0.35, "sample": 0.05}
# Sites per stage assumed before a stage is drafted (drafting it tells).
GUESSED_SITES = {"substitution": 8, "edit": 10, "sample": 2}
# P(the k-th fill of a site is the fix | the site is) ~ (1 - RANK_DECAY) * RANK_DECAY**k.
RANK_DECAY = 0.8
# Weight of a line with a candidate that moved the failing value, and the factor each candidate
# that changed nothing takes off (at most UNCHANGED_CAP of them: a line is never written off).
MOVED_BOOST = 4.0
UNCHANGED_DECAY = 0.85
UNCHANGED_CAP = 12


@dataclass
class Step:
    """One batch a line can draft: its stage and how to draft it (drafts best first per site;
    each draft has an `id` and a `site`)."""

    stage: str
    make: Callable[[], list]


def _values(stage: str, drafts: list) -> list[float]:
    """Each draft's chance of being the fix given its line holds the bug."""
    sites = {d.site for d in drafts}
    if not sites:
        return []
    per_site = STAGE_PRIOR[stage] * (1 - RANK_DECAY) / len(sites)
    seen: dict = {}
    values = []
    for draft in drafts:
        k = seen[draft.site] = seen.get(draft.site, -1) + 1
        values.append(per_site * RANK_DECAY**k)
    return values


@dataclass
class _Line:
    score: float
    plan: Callable[[], list[Step]] | None
    steps: list[Step] = field(default_factory=list)
    # (-value, tie, draft): drafted, not yet handed out, best first
    pending: list = field(default_factory=list)
    moved: int = 0
    unchanged: int = 0

    def weight(self) -> float:
        if self.moved:
            return self.score * MOVED_BOOST
        return self.score * UNCHANGED_DECAY ** min(self.unchanged, UNCHANGED_CAP)

    def next_stage(self) -> str | None:
        if self.plan is not None:  # not planned yet: its first stage is assumed
            return "substitution"
        return self.steps[0].stage if self.steps else None

    def head(self, skip_samples: bool) -> tuple[float, bool] | None:
        """The value of the line's best draft (weight excluded), and whether it is still to
        be drafted (an estimate)."""
        drafted = -self.pending[0][0] if self.pending else None
        stage = self.next_stage()
        guess = None
        if stage is not None and not (skip_samples and stage == "sample"):
            guess = STAGE_PRIOR[stage] * (1 - RANK_DECAY) / GUESSED_SITES[stage]
        if guess is not None and (drafted is None or guess > drafted):
            return guess, True
        return None if drafted is None else (drafted, False)


class Explorer:
    """Drafts of many lines in order of value; `plan(i)` lists line i's steps (called once,
    when the line first comes up). `sample_now` says whether a sampling step may run now
    (testers fed); otherwise it waits while anything else is left."""

    def __init__(
        self,
        scores: Sequence[float],
        plan: Callable[[int], list[Step]],
        sample_now: Callable[[], bool] = lambda: True,
    ) -> None:
        self.lines = [_Line(s, (lambda i=i: plan(i))) for i, s in enumerate(scores)]
        self.sample_now = sample_now
        self._line_of: dict[str, _Line] = {}
        self._tie = itertools.count()

    def __bool__(self) -> bool:
        return any(line.head(False) is not None for line in self.lines)

    def _best(self, skip_samples: bool) -> tuple[_Line, bool] | None:
        best, best_value, to_draft = None, 0.0, False
        for line in self.lines:
            head = line.head(skip_samples)
            if head is not None and line.weight() * head[0] > best_value:
                best, best_value, to_draft = line, line.weight() * head[0], head[1]
        return None if best is None else (best, to_draft)

    def _draft_next_stage(self, line: _Line) -> None:
        if line.plan is not None:
            line.steps, line.plan = line.plan(), None
            return
        step = line.steps.pop(0)
        drafts = step.make()
        for value, draft in zip(_values(step.stage, drafts), drafts, strict=True):
            heapq.heappush(line.pending, (-value, next(self._tie), draft))

    def _next(self):
        """The most valuable draft, drafting stages until the best is in hand."""
        while True:
            found = self._best(skip_samples=not self.sample_now()) or self._best(False)
            if found is None:
                return None
            line, to_draft = found
            if to_draft:
                self._draft_next_stage(line)
                continue
            draft = heapq.heappop(line.pending)[2]
            self._line_of[draft.id] = line
            return draft

    def take(self, n: int) -> list:
        """Up to `n` drafts, most valuable first; fewer when nothing is left."""
        out = []
        while len(out) < n and (draft := self._next()) is not None:
            out.append(draft)
        return out

    def observe(self, draft_id: str, effect: str) -> None:
        """`effect` of a candidate this explorer handed out: "moved" (the same failure with a
        different value), "unchanged" (the very same failure); anything else tells nothing."""
        line = self._line_of.get(draft_id)
        if line is None:
            return
        if effect == "moved":
            line.moved += 1
        elif effect == "unchanged":
            line.unchanged += 1


_FRAME = re.compile(r'^\s*File ".*", line \d+')
_SOURCE_OR_CARETS = re.compile(r"^\s{4,}\S|^\s*[\^~]+\s*$")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")


def failure_signature(message: str) -> str:
    """What a failure reported, without where the code sat: traceback frames (an edit shifts
    the line numbers of its file) and object addresses dropped."""
    kept, after_frame = [], False
    for line in message.splitlines():
        if _FRAME.match(line):
            after_frame = True
            continue
        if after_frame and _SOURCE_OR_CARETS.match(line):
            continue
        after_frame = False
        kept.append(line)
    return _ADDRESS.sub("0x", "\n".join(kept))


def effect(reference: TestResult, failure: TestResult | None, edited: Collection[str]) -> str:
    """How a candidate changed the pristine code's first failure: "moved" (the same test fails
    at the same place, outside the files it edited, with a different message: the checked
    value changed), "unchanged", or "" (it passed, crashed in its own edit, or failed
    elsewhere: no evidence either way)."""
    if failure is None or failure.test_id != reference.test_id:
        return ""
    if failure_signature(failure.message) == failure_signature(reference.message):
        return "unchanged"
    if not failure.frames or failure.frames[-1][0] in edited:
        return ""  # raised in the edited code: a crash the edit made, not a value it changed
    here = [frame for frame in failure.frames if frame[0] not in edited]
    there = [frame for frame in reference.frames if frame[0] not in edited]
    return "moved" if here == there else ""
