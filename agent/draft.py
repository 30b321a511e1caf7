"""Drafting: fill canvas sites with candidate code, by the diffusion model or by mutation.

A draft is a whole new version of one file. Drafts must parse, are deduplicated by program (AST),
never touch protected paths, and come out best first by model likelihood.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from agent.canvases import Site, apply, canvas, dedupe_fills
from agent.localize import is_protected
from agent.mutations import mutation_fills
from model.checkpoint import LoadedModel
from model.sampler import Canvas, infill, remask

# Canvases decoded in one batched call; with `samples` each, this bounds the batch size.
SITES_PER_BATCH = 6
# Tokens of context on each side of a canvas: local context is what a repair needs, and short
# rows keep the CPU forward passes cheap.
CONTEXT_TOKENS = 256


@dataclass(frozen=True)
class Draft:
    id: str
    path: str
    source: str  # the whole new file
    site: Site
    fill: str
    score: float
    origin: str  # model | mutation | delete | remask
    parent: str | None = None

    @property
    def files(self) -> dict[str, str]:
        return {self.path: self.source}


class Drafter:
    """Turns sites into drafts; `busy` accumulates the seconds spent drafting."""

    def __init__(
        self,
        lm: LoadedModel | None,
        never_edit: Sequence[str],
        samples: int = 4,
        seed: int = 0,
    ) -> None:
        self.lm = lm
        self.never_edit = list(never_edit)
        self.samples = samples
        self.seed = seed
        self.busy = 0.0
        self._ids = itertools.count(1)

    @property
    def name(self) -> str:
        return self.lm.name if self.lm is not None else "mutations (no model)"

    def count_tokens(self, text: str) -> int:
        if self.lm is None:
            return max(1, len(text.split()))
        return max(1, len(self.lm.tokenizer.encode(text)))

    def _make(self, sources: Mapping[str, str], items, origin: str, parent: str | None):
        kept = dedupe_fills(sources, items, lambda item: item[0], lambda item: item[1])
        for site, fill, score in kept:
            yield Draft(
                f"d{next(self._ids)}",
                site.path,
                apply(sources[site.path], site, fill),
                site,
                fill,
                score,
                origin,
                parent,
            )

    def draft(
        self,
        sources: Mapping[str, str],
        sites: Sequence[Site],
        cond: str = "",
        parent: str | None = None,
        round_seed: int = 0,
    ) -> Iterator[list[Draft]]:
        """Drafts batch by batch (most suspicious sites first), so validation can start early."""
        sites = [s for s in sites if not is_protected(s.path, self.never_edit)]
        for start in range(0, len(sites), SITES_PER_BATCH):
            began = time.monotonic()
            chunk = sites[start : start + SITES_PER_BATCH]
            if self.lm is None:
                items = [
                    (site, fill, -float(rank))
                    for site in chunk
                    for rank, fill in enumerate(mutation_fills(sources[site.path], site))
                ]
                origin = "mutation"
            else:
                items = self._model_fills(sources, chunk, cond, round_seed + start)
                origin = "model"
            items.sort(key=lambda item: -item[2])
            drafts = list(self._make(sources, items, origin, parent))
            self.busy += time.monotonic() - began
            if drafts:
                yield drafts

    def _model_fills(self, sources, chunk: Sequence[Site], cond: str, seed: int):
        assert self.lm is not None
        items = [(site, "", 0.0) for site in chunk if site.kind == "delete"]
        fill_sites = [site for site in chunk if site.kind != "delete"]
        canvases, owners = [], []
        for site in fill_sites:
            prefix, suffix = canvas(sources[site.path], site)
            for n in site.span_lengths:
                canvases.append(Canvas(prefix, suffix, n, cond))
                owners.append(site)
        if canvases:
            results = infill(
                self.lm, canvases, self.samples, seed=self.seed + seed, context=CONTEXT_TOKENS
            )
            for site, candidates in zip(owners, results, strict=True):
                items += [(site, c.text, c.score) for c in candidates]
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
        drafts = list(self._make(base, items, "remask", draft.id))
        self.busy += time.monotonic() - began
        return drafts
