"""Exploration order: which suspicious line's next draft goes to the testers.

Every suspicious line drafts in stages (one-token substitutions, structural edits, model
samples; or, with a repair model, "repair": substitutions and edits together, each scored by
the model against the buggy original), each stage a batch of fills for the line's sites, best
first per site. A draft is worth its chance of being the fix: the line's weight, times the
stage's prior, times its share of the stage: for the fixed-order stages, shared among the
stage's sites by their kind (`SITE_KIND_PRIOR`), times a geometric decay over the fill's rank
at its site (`fixed_values`); for
"repair", that same share as the prior, updated by the model's evidence (`Draft.score` is
the log of both: a fill replacing what the model disbelieves gains, the others lose in
proportion). The most valuable draft of any line goes next; a stage is drafted only when its
best draft could be the most valuable. So the top line's first substitutions come first, its
hundreds of edits interleave with other lines' likelier substitutions, and no line's long
tail blocks the others; where the model sees nothing wrong, a repair line goes in the
model-free order.

Value is per test-second: a line's drafts are divided by what testing one of them is expected
to cost (`costs`, from the baseline's durations: the targets every candidate runs first, and a
share of the regression tests a change to the line selects), so a cheap line's likely fix is
not held back behind an equally likely one whose tests take ten times longer.

Feedback goes through the same order. A candidate that made progress (more target tests pass)
multiplies the weight of its line and of the lines
next to it (`progress`), and work drafted on top of it (its fill re-noised, new sites on its
version of the file) joins as new entries (`add`) worth a share of its line's weight: a near
miss is followed up at once, without starving the rest.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

# P(the fix is in this stage | the line holds the bug), measured on the bug benchmark's dev split
# (`benchmarks/draft_rank.py --split dev`).
# "repair" holds the first two model-free stages; "widen" (the real-bug shapes: 10 of the dev
# split's 96 single-bug tasks) was not measured there.
STAGE_PRIOR = {"substitution": 0.6, "edit": 0.35, "repair": 0.95, "widen": 0.1, "sample": 0.05}
# The value of a stage's best draft, assumed before it is drafted (drafting it tells): for the
# fixed-order stages, its first fill's share among ~8/10/2 sites; for "repair", between a
# flat line's first fill (~0.015) and a sure one's (up to 0.95): below what a sure line is
# worth, such a line is drafted only once the lines above it fall to the guess. Chosen with
# EVIDENCE_WEIGHT on the dev split (`benchmarks/draft_rank.py --split dev --evidence 1,1.25
# --guess 0.152,0.4`, RESULTS.md: median rank 69.5 at 0.152, 48.5 at 0.4).
GUESS = {"substitution": 0.6 * 0.2 / 8, "edit": 0.35 * 0.2 / 10, "repair": 0.4,
         "widen": 0.1 * 0.2 / 8, "sample": 0.05 * 0.2 / 2}
# A repair draft's score is log prior + EVIDENCE_WEIGHT * the model's evidence (nats): the
# evidence, log(1 + mean odds of corruption of the tokens replaced), grows slowly with the
# odds. Chosen with GUESS (weight 1.25 and guess 0.4 against 1 and 0.15: the fix earlier on
# 24 of the 48 dev tasks, later on 4; median rank 69.5 -> 46).
EVIDENCE_WEIGHT = 1.25
# The fix loop weighs a line by its localization score to this power, per the drafter's first
# stage (1 otherwise). Chosen on the bug benchmark's dev split
# (`benchmarks/draft_rank.py --split dev --sharpness 1,2,3`, then 3,4; benchmarks/RESULTS.md):
# sharper weights let the top lines go deeper into their drafts before the next line's; 4
# put the fix earlier than 3 on more dev tasks than later in each of three runs.
LINE_SHARPNESS = {"repair": 4.0}
# P(the k-th fill of a site is the fix | the site is) ~ (1 - RANK_DECAY) * RANK_DECAY**k.
RANK_DECAY = 0.8
# A site's share of its stage, by (stage, site kind; a token site by what it holds:
# `prior_key`), relative to an even share: fitted on the bug benchmark's dev split by
# `benchmarks/site_prior.py` (the fix's place among its line's model-free candidates, softmax
# likelihood; keys it did not meet keep 1). An operator has few fills and a node edit
# (swapped arguments, a clause dropped, `n + 1` -> `n`) is one fill, where a name has up to
# MAX_NAMES: per fill, those are likelier.
SITE_KIND_PRIOR = {
    ("substitution", "operator"): 6.7, ("substitution", "constant"): 1.2,
    ("substitution", "name"): 0.28,
    ("edit", "node"): 4.7, ("edit", "line"): 1.2, ("edit", "token"): 0.94, ("edit", "name"): 0.42,
    ("edit", "delete"): 0.89, ("edit", "insert_before"): 0.65, ("edit", "insert_after"): 0.52,
    ("widen", "node"): 1.6, ("widen", "token"): 0.8, ("widen", "name"): 0.53,
}
# A progressing candidate's line, and the lines within NEAR_LINES of it in the same file.
PROGRESS_BOOST = 8.0
NEAR_BOOST = 3.0
NEAR_LINES = 2


@dataclass
class Step:
    """One batch a line can draft: its stage and how to draft it (drafts best first per site;
    each draft has an `id` and a `site`)."""

    stage: str
    make: Callable[[], list]


def fixed_values(stage: str, sites: Sequence,
                 kinds: Mapping[tuple[str, str | None], float] = SITE_KIND_PRIOR) -> list[float]:
    """The chance of each fill of a fixed-order stage being the fix given its line holds the
    bug, the fills given in that order by their sites: the stage's prior shared among its
    sites (weighed by their kind: `kinds`, keyed by `prior_key`), times a geometric decay
    over the fill's rank at its site."""
    if not sites:
        return []
    per_site = STAGE_PRIOR[stage] * (1 - RANK_DECAY) / len(set(sites))
    seen: dict = {}
    values = []
    for site in sites:
        k = seen[site] = seen.get(site, -1) + 1
        values.append(per_site * kinds.get(prior_key(stage, site), 1.0)
                      * RANK_DECAY**k)  # fmt: skip
    return values


def prior_key(stage: str, site) -> tuple[str, str | None]:
    """The key of a site's kind in SITE_KIND_PRIOR: a token is a "constant" (a number,
    True, False or None: a handful of fills), a "name" (up to MAX_NAMES) or another "token"."""
    kind = getattr(site, "kind", None)
    if kind == "token":
        text = site.original_text
        if text[:1].isdigit() or text in ("True", "False", "None"):
            kind = "constant"
        elif text.isidentifier():
            kind = "name"
    return stage, kind


def _values(stage: str, drafts: list) -> list[float]:
    """Each draft's chance of being the fix given its line holds the bug."""
    if stage != "repair":
        return fixed_values(stage, [d.site for d in drafts])
    if not drafts:
        return []
    # Scores are log(prior * evidence): the stage's chance shared in proportion to both.
    top = max(d.score for d in drafts)
    weights = [math.exp(d.score - top) for d in drafts]
    total = sum(weights)
    return [STAGE_PRIOR[stage] * w / total for w in weights]


@dataclass
class _Line:
    weight: float
    plan: Callable[[], list[Step]] | None
    key: tuple[str, int] | None = None  # (path, line) of a suspicious line of the original code
    depth: int = 1
    cost: float = 1.0  # expected test-seconds of one of its drafts
    boosted: bool = False
    steps: list[Step] = field(default_factory=list)
    # (-value, tie, draft): drafted, not yet handed out, best first
    pending: list = field(default_factory=list)

    def next_stage(self, first: str) -> str | None:
        if self.plan is not None:  # not planned yet: its first stage is assumed
            return first
        return self.steps[0].stage if self.steps else None

    def head(self, skip_samples: bool, first: str, guesses: Mapping[str, float]
             ) -> tuple[float, bool] | None:
        """The value of the line's best draft (weight excluded), and whether it is still to
        be drafted (an estimate from `guesses`); `first`: the stage an unplanned line starts
        with."""
        drafted = -self.pending[0][0] if self.pending else None
        stage = self.next_stage(first)
        guess = None
        # Planning costs nothing but a list of steps: an unplanned line is never held back.
        if stage is not None and not (skip_samples and stage == "sample" and self.plan is None):
            guess = guesses[stage]
        if guess is not None and (drafted is None or guess > drafted):
            return guess, True
        return None if drafted is None else (drafted, False)


class Explorer:
    """Drafts of many lines in order of value per test-second. Line i of the first round has
    weight `scores[i]`, (optionally) `keys[i]` and `costs[i]` (expected test-seconds of one of
    its drafts; default 1 each); `plan(i)` lists its steps, called once, when the line first
    comes up. `sample_now` says whether a sampling step may run now (testers fed);
    otherwise it waits while anything else is left."""

    def __init__(
        self,
        scores: Sequence[float],
        plan: Callable[[int], list[Step]],
        sample_now: Callable[[], bool] = lambda: True,
        keys: Sequence[tuple[str, int]] | None = None,
        costs: Sequence[float] | None = None,
    ) -> None:
        self.lines = [
            _Line(s, (lambda i=i: plan(i)), keys[i] if keys else None,
                  cost=max(1e-6, costs[i]) if costs else 1.0)
            for i, s in enumerate(scores)
        ]  # fmt: skip
        self.sample_now = sample_now
        # The stage unplanned lines start with: every line has the drafter's stages, so the
        # first line planned tells.
        self.first_stage = "substitution"
        # What an undrafted stage is assumed to be worth (a benchmark may try others).
        self.guess = dict(GUESS)
        self._line_of: dict[str, _Line] = {}
        self._tie = itertools.count()

    def __bool__(self) -> bool:
        return any(line.head(False, self.first_stage, self.guess) is not None
                   for line in self.lines)

    def add(self, weight: float, steps: Callable[[], list[Step]], depth: int,
            cost: float = 1.0) -> None:
        """New work (e.g. drafted on top of a candidate), worth `weight` like a line, each
        draft costing `cost` test-seconds."""
        self.lines.append(_Line(weight, steps, None, depth, cost=max(1e-6, cost)))

    def cost(self, draft_id: str) -> float:
        line = self._line_of.get(draft_id)
        return line.cost if line else 1.0

    def depth(self, draft_id: str) -> int:
        line = self._line_of.get(draft_id)
        return line.depth if line else 1

    def weight(self, draft_id: str) -> float:
        line = self._line_of.get(draft_id)
        return line.weight if line else 0.0

    def progress(self, draft_id: str) -> None:
        """The candidate made progress: its line, and the lines next to it, are worth more."""
        line = self._line_of.get(draft_id)
        if line is None or line.boosted:
            return  # once per line: many near misses on one line are one piece of evidence
        line.boosted = True
        line.weight *= PROGRESS_BOOST
        if line.key is None:
            return
        path, number = line.key
        for other in self.lines:
            if other is not line and other.key and other.key[0] == path and (
                abs(other.key[1] - number) <= NEAR_LINES
            ):
                other.weight *= NEAR_BOOST

    def _best(self, skip_samples: bool) -> tuple[_Line, bool] | None:
        best, best_value, to_draft = None, 0.0, False
        for line in self.lines:
            head = line.head(skip_samples, self.first_stage, self.guess)
            if head is not None and line.weight * head[0] / line.cost > best_value:
                best, best_value, to_draft = line, line.weight * head[0] / line.cost, head[1]
        return None if best is None else (best, to_draft)

    def _draft_next_stage(self, line: _Line) -> None:
        if line.plan is not None:
            line.steps, line.plan = line.plan(), None
            if line.steps and line.depth == 1:
                self.first_stage = line.steps[0].stage
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
