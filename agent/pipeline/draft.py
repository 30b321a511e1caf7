"""Drafting: fill canvas sites with candidate code, by the diffusion model or by mutation.

A draft is a whole new version of one file (plus, when drafted on top of an earlier candidate,
that candidate's other files). Drafts must parse, are deduplicated by program (AST),
never touch protected paths, and come out best first (by fill rank, or by model likelihood).

Drafting goes by stages (`Drafter.stage`): one-token substitutions, structural edits
(`agent.pipeline.mutations`), and fills sampled from the diffusion model: with a repair head,
sampling that edits (`model.repair.sample_edits`: the tokens of the line the model disbelieves
re-masked and denoised, the rest of the code kept; a statement sampled after a line the head
says is followed by a missing one), otherwise blank canvases of the most suspicious sites,
ranked by its likelihood. Which line's stage is drafted and tested when is the explorer's
call (`agent.pipeline.explore`). Modes:
- `model` (default): substitutions, edits and samples, the model-free fills in their fixed
  order (a plain diffusion model's likelihood put the right fix later than the fixed order,
  measured with `benchmarks/draft_rank.py`);
- `model-repair` (measured by `benchmarks/draft_rank.py`, not yet the default: see the model
  card): the "repair" stage (every substitution and edit of the line, the fixed order's
  chance of each as the prior, updated by the model's repair head scoring it against the
  buggy original at its site, best first; `Draft.score` is the log of that, in nats), then
  the samples;
- `model-only`: the samples alone (ablation);
- `edits`: substitutions and edits, no model (ablation: what the model adds);
- `mutations`: operator/constant/identifier substitutions only, no model (the mutation-only
  baseline).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from greenpatch.agent.config import MODEL_FREE
from greenpatch.agent.pipeline.explore import EVIDENCE_WEIGHT, fixed_values
from greenpatch.agent.pipeline.localize import SuspiciousLine, is_protected
from greenpatch.agent.pipeline.mutations import edit_fills, substitution_fills, widen_fills
from greenpatch.agent.pipeline.sites import Site, apply, canvas, dedupe_fills, sites_for
from greenpatch.model.checkpoint import LoadedModel
from greenpatch.model.errors import ModelError
from greenpatch.model.repair import has_repair_head, quick_scores, sample_edits
from greenpatch.model.sampler import Canvas, DecodeStats, infill, remask, score_fills

# Canvases decoded in one batched call; with `samples` each, this bounds the batch size.
SITES_PER_BATCH = 6
# Tokens of context on each side of a canvas: local context is what a repair needs, and short
# rows keep the CPU forward passes cheap.
CONTEXT_TOKENS = 192
# Denoising passes per canvas at most: threshold decoding usually needs fewer; the cap bounds the
# cost of long spans on a model that is rarely confident.
MAX_STEPS = 6
# Top-k instead of nucleus sampling: it needs no sort over the whole vocabulary per position.
TOP_K = 40
# Sites of a chunk the model samples for: sampling costs a denoising per span length, and the
# most suspicious sites are where a fill beyond the model-free ones is most likely needed.
SAMPLED_SITES = 2
# Suspicious lines per "sample" stage that sampling that edits re-masks (with a repair head):
# the stage is drafted for one suspicious line at a time.
EDITED_LINES = 1
# Most bugs are one token: the cheap substitutions go first, then the edits that multiply the
# candidates, then the model's samples.
STAGES = {
    "model": ("substitution", "edit", "widen", "sample"),
    "model-repair": ("repair", "widen", "sample"),
    "model-only": ("sample",),
    "edits": ("substitution", "edit", "widen"),
    "mutations": ("substitution",),
}


def fixed_order(source: str, sites: Sequence[Site], stage: str,
                missing: Sequence[str] = ()) -> list[tuple[Site, str, float]]:
    """(site, fill, -rank) of one model-free stage ("substitution", "edit" or "widen") for
    `sites`, in the fixed order: every site's first fill, then every site's second, ..."""
    def fills_of(site: Site) -> list[str]:
        if stage == "substitution":
            return substitution_fills(source, site)
        if stage == "widen":
            return widen_fills(source, site)
        return [""] if site.kind == "delete" else edit_fills(source, site, missing)

    items = [(site, fill, -float(rank)) for site in sites
             for rank, fill in enumerate(fills_of(site))]
    items.sort(key=lambda item: -item[2])  # stable: sites keep their order within a rank
    return items


@dataclass(frozen=True)
class Draft:
    id: str
    path: str
    source: str  # the whole new file
    site: Site
    fill: str
    score: float
    # The stage that drafted it: substitution | edit | widen | repair | sample | remask | chat.
    origin: str
    parent: str | None = None
    # The parent candidate's other files: a fix of a second bug keeps the fix of the first.
    carried: Mapping[str, str] = field(default_factory=dict)
    # A repair draft's evidence (nats), weighed into `score` by its drafter's evidence_weight.
    evidence: float = 0.0

    @property
    def files(self) -> dict[str, str]:
        return {**self.carried, self.path: self.source}


def model_canvas(source: str, site: Site) -> tuple[str, str, str]:
    """The site's canvas as the model should see it: (prefix, suffix, moved), the spaces that
    end the prefix mid-line moved into the fill. Byte-level BPE attaches a space to the token
    after it (` +`, ` name`), so training never saw a prefix ending in one; `moved` is put back
    in front of every fill scored and taken off every fill sampled."""
    prefix, suffix = canvas(source, site)
    stripped = prefix.rstrip(" ")
    if not stripped or stripped.endswith("\n"):  # indentation: line sites keep it visible
        return prefix, suffix, ""
    return stripped, suffix, prefix[len(stripped) :]


def line_candidates(source: str, line: int, path: str = "module.py"
                    ) -> list[tuple[int, int, str]]:
    """The model-free candidates of one line as edits (start, end, replacement) of `source`,
    in the drafter's fixed order (substitutions, then edits), one per distinct program."""
    sources = {path: source}
    sites = sites_for(sources, [SuspiciousLine(path, line, 1.0, 0.0, False, 0.0)])
    items = fixed_order(source, sites, "substitution") + fixed_order(source, sites, "edit")
    kept = dedupe_fills(sources, items, lambda item: item[0], lambda item: item[1])
    return [(site.start_char, site.end_char, site.lead + fill + site.trail)
            for site, fill, _ in kept]


def edit_candidates(lm: LoadedModel, source: str, line: int, path: str = "module.py",
                    seed: int = 0, stats: DecodeStats | None = None
                    ) -> list[tuple[Site, str, float]]:
    """Sampling that edits for one line (`model.repair.sample_edits`), as (site, fill, score)
    best first: the line rewritten (a "line" site holding the whole line, indentation
    included) or a statement inserted after it ("insert_after"); fills that do not parse, and
    programs met before, are dropped."""
    items = []
    for f in sample_edits(lm, source, line, seed=seed, stats=stats):
        kind = "line" if f.end > f.start else "insert_after"
        site = Site(path, f.start, f.end, kind, source[f.start:f.end], (), line, 1.0)
        items.append((site, f.text, f.score))
    return dedupe_fills({path: source}, items, lambda item: item[0], lambda item: item[1])


class Drafter:
    """Turns sites into drafts; `busy` accumulates the seconds spent drafting."""

    def __init__(
        self,
        lm: LoadedModel | None,
        never_edit: Sequence[str],
        samples: int = 4,
        seed: int = 0,
        mode: str = "model",
    ) -> None:
        self.lm = lm
        self.mode = mode if lm is not None or mode in MODEL_FREE else "edits"
        if self.mode == "model-repair" and not has_repair_head(lm):
            raise ModelError(f"{lm.name if lm else 'no model'}: mode model-repair needs a "
                             "model with a repair head")
        self.never_edit = list(never_edit)
        self.samples = samples
        self.seed = seed
        # How much a repair draft's score moves with the model's evidence (see the constant).
        self.evidence_weight = EVIDENCE_WEIGHT
        self.busy = 0.0
        self._ids = itertools.count(1)
        self._emitted: set[tuple] = set()  # (path, text, *carried files)

    @property
    def name(self) -> str:
        if self.lm is None:
            return f"{self.mode} (no model)"
        if self.mode == "model":
            return self.lm.name
        return f"{self.lm.name} ({self.mode})"

    def count_tokens(self, text: str) -> int:
        if self.lm is None:
            return max(1, len(text.split()))
        return max(1, len(self.lm.tokenizer.encode(text)))

    def _make(self, sources: Mapping[str, str], items, origin: str, parent: Draft | None,
              deduped: bool = False):
        # Compiling every fill is most of a stage's cost: items already deduplicated (the
        # repair stage does it before the model scores them) are not compiled again.
        kept = items if deduped else dedupe_fills(sources, items, lambda item: item[0],
                                                  lambda item: item[1])  # fmt: skip
        inherited = parent.files if parent else {}
        # A repair stage's items carry the model's evidence as a fourth element.
        for site, fill, score, *evidence in kept:
            text = apply(sources[site.path], site, fill)
            carried = {p: t for p, t in inherited.items() if p != site.path}
            key = (site.path, text, *sorted(carried.items()))
            if key in self._emitted:
                continue
            self._emitted.add(key)
            yield Draft(
                f"d{next(self._ids)}",
                site.path,
                text,
                site,
                fill,
                score,
                origin,
                parent.id if parent else None,
                carried,
                *evidence,
            )

    @property
    def stages(self) -> tuple[str, ...]:
        """The stages this drafter drafts, in the order a line goes through them."""
        return STAGES[self.mode]

    def stage(
        self,
        sources: Mapping[str, str],
        sites: Sequence[Site],
        stage: str,
        cond: str = "",
        parent: Draft | None = None,
        seed: int = 0,
        missing: Sequence[str] = (),
    ) -> list[Draft]:
        """One stage's drafts for `sites`, best first: "substitution" (one-token operator,
        constant and identifier substitutions), "edit" (structural edits; `missing`: names the
        failures say were not defined, which inserted statements bind), "repair" (both, ranked
        by the model's repair head against the original), "widen" (the real-bug shapes no
        inverse operator undoes, in the fixed order), or "sample" (the model's fills for
        the SAMPLED_SITES most suspicious sites, SITES_PER_BATCH in mode `model-only`). With
        `parent`, `sources` hold its version of its files, and every draft keeps its changes
        to the others."""
        sites = [s for s in sites if not is_protected(s.path, self.never_edit)]
        began = time.monotonic()
        deduped = stage == "repair"
        if stage == "sample" and has_repair_head(self.lm):
            items, deduped = self._edited(sources, sites, seed), True
        elif stage == "sample":
            sampled = SITES_PER_BATCH if self.mode == "model-only" else SAMPLED_SITES
            items = self._scored(sources, self._samples(sources, sites[:sampled], cond, seed),
                                 cond)
        elif stage == "repair":  # the fixed order's chances, as the model's prior
            items = []
            for part in ("substitution", "edit"):
                mine = self._fixed(sources, sites, part, missing)
                prior = fixed_values(part, [site for site, _, _ in mine])
                items += [(site, fill, math.log(p))
                          for (site, fill, _), p in zip(mine, prior, strict=True)]
            items = self._ranked(sources, items)
        else:
            items = self._fixed(sources, sites, stage, missing)
        items.sort(key=lambda item: -item[2])
        drafts = list(self._make(sources, items, stage, parent,  # its origin: the stage
                                 deduped=deduped))  # fmt: skip
        self.busy += time.monotonic() - began
        return drafts

    def _fixed(self, sources: Mapping[str, str], sites: Sequence[Site], stage: str,
               missing: Sequence[str]) -> list[tuple[Site, str, float]]:
        """One model-free stage's fills for `sites` of any files, in the stage's order."""
        items = []
        for path in dict.fromkeys(s.path for s in sites):
            items += fixed_order(sources[path], [s for s in sites if s.path == path], stage,
                                 missing)  # fmt: skip
        items.sort(key=lambda item: -item[2])  # stable: sites keep their order within a rank
        return items

    def _ranked(self, sources: Mapping[str, str], items: list[tuple[Site, str, float]]
                ) -> list[tuple[Site, str, float, float]]:
        """The fills (site, fill, log prior) scored by the repair head against the original at
        their site: log prior plus `evidence_weight` times the evidence (`quick_scores`, in
        nats: how strongly the model disbelieves the tokens each fill replaces; one pass per
        site); higher is better; each with its evidence. Fills that do not parse are dropped
        first, so the model scores only real candidates."""
        assert self.lm is not None
        kept = dedupe_fills(sources, items, lambda item: item[0], lambda item: item[1])
        out = []
        for path in dict.fromkeys(site.path for site, _, _ in kept):
            mine = [item for item in kept if item[0].path == path]
            edits = [(site.start_char, site.end_char, site.lead + fill + site.trail)
                     for site, fill, _ in mine]
            evidence = quick_scores(self.lm, sources[path], edits, mean=True)
            out += [(site, fill, prior + self.evidence_weight * e, e)
                    for (site, fill, prior), e in zip(mine, evidence, strict=True)]
        return out

    def _edited(self, sources: Mapping[str, str], sites: Sequence[Site], seed: int
                ) -> list[tuple[Site, str, float]]:
        """The "sample" stage with a repair head: sampling that edits for the sites' line(s)
        (`edit_candidates`), each line's fills best first."""
        assert self.lm is not None
        lines = list(dict.fromkeys((s.path, s.line) for s in sites))[:EDITED_LINES]
        return [item for path, line in lines
                for item in edit_candidates(self.lm, sources[path], line, path,
                                            self.seed + seed)]

    def _samples(self, sources, chunk: Sequence[Site], cond: str, seed: int):
        assert self.lm is not None
        fills: dict[Site, list[str]] = {site: [] for site in chunk}
        canvases, owners = [], []
        for site in chunk:
            if site.kind == "delete":  # nothing to sample: the candidate is the deletion
                fills[site].append("")
                continue
            prefix, suffix, moved = model_canvas(sources[site.path], site)
            canvases += [Canvas(prefix, suffix, n, cond) for n in site.span_lengths]
            owners += [(site, moved)] * len(site.span_lengths)
        if canvases:
            results = infill(
                self.lm, canvases, self.samples, seed=self.seed + seed, context=CONTEXT_TOKENS,
                steps=MAX_STEPS, top_k=TOP_K, top_p=None,
            )  # fmt: skip
            for (site, moved), candidates in zip(owners, results, strict=True):
                fills[site] += [c.text.removeprefix(moved) for c in candidates]
        return fills

    def _scored(self, sources, fills: Mapping[Site, list[str]], cond: str):
        """(site, fill, log-likelihood) for every distinct non-trivial fill; one pass a site."""
        items = []
        for site, texts in fills.items():
            texts = [t for t in dict.fromkeys(texts) if t != site.original_text]
            if not texts:
                continue
            prefix, suffix, moved = model_canvas(sources[site.path], site)
            scores = score_fills(
                self.lm, prefix, suffix, [moved + t for t in texts], cond=cond,
                context=CONTEXT_TOKENS,
            )  # fmt: skip
            items += [(site, text, score) for text, score in zip(texts, scores, strict=True)]
        return items

    def refine(self, draft: Draft, cond: str = "") -> list[Draft]:
        """Feedback: keep the draft's anchoring tokens, re-noise the rest of its fill."""
        if self.lm is None or not draft.fill.strip():
            return []
        began = time.monotonic()
        prefix = draft.source[: draft.site.start_char] + draft.site.lead
        suffix = draft.source[len(prefix) + len(draft.fill) :]
        rest = suffix[len(draft.site.trail) :]
        base = {draft.path: draft.source[: draft.site.start_char] + draft.site.original_text + rest}
        # Keep the first and last tokens of the fill, re-noise the middle: the edges anchor
        # the fill to its context, the inside is where a near miss differs.
        n = len(self.lm.tokenizer.encode(draft.fill))
        keep = [i in (0, n - 1) for i in range(n)] if n > 2 else [False] * n
        candidates = remask(
            self.lm, prefix, draft.fill, suffix, keep, self.samples,
            cond=cond, context=CONTEXT_TOKENS, seed=self.seed + 7,
        )  # fmt: skip
        items = [(draft.site, c.text, c.score) for c in candidates]
        drafts = list(self._make(base, items, "remask", draft))
        self.busy += time.monotonic() - began
        return drafts
