"""Continuous batching for the infill sampler: requests join and leave a running batch between
forward passes, instead of waiting for a whole batch to finish (what a model server needs when
requests arrive one by one).

Each request is one canvas filled `samples` times (sample 0 greedy, as `sampler.infill`), with
its own temperature. Every `step` is one forward pass over the rows of all live requests and the
same per-pass update as `infill` (`sampler._unmask`), so a request decodes as it would alone,
only sharing passes; a request whose rows are all unmasked leaves with its candidates at once.
Two exact savings keep a pass small:
- identical rows run once: a request's samples before their first pass, and as long as they
  commit the same tokens (often several passes: confident tokens are drawn alike);
- rows are run in groups of similar length, each trimmed to its longest row, so a short canvas
  does not pay for the padding of a long one (one group unless lengths differ by over a third).

With `cache_every=k` (as `sampler.infill`'s option) a request's rows get a full pass when they
join and every k passes after; in between only their span tokens run, against the context's
keys/values of their last full pass (approximate). A full pass of a canvas costs the same alone
or shared on a CPU; a span pass is small, so sharing it is where batching pays there.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
from greenpatch.model.checkpoint import LoadedModel
from greenpatch.model.errors import ModelError
from greenpatch.model.network import ContextCache
from greenpatch.model.sampler import (
    Candidate,
    Canvas,
    _best_first,
    _build_rows,
    _candidates,
    _generator,
    _layout,
    _Rows,
    _unmask,
)

# A group of rows is run trimmed to its longest row; a row shorter than this share of that
# length starts a group of its own (the padding it would carry costs more than another pass).
GROUP_SHARE = 2 / 3


@dataclass(frozen=True)
class Prepared:
    """A canvas laid out as token ids (tokenizing is done by the caller's thread)."""

    ids: list[int]
    start: int
    span_len: int


@dataclass
class _Request:
    key: Any
    rows: int
    span_len: int
    passes: int = 0
    since_full: int | None = None  # passes since its rows' last full pass (None: never)


@dataclass
class StepStats:
    """What one `step` did: requests and rows in the pass, rows actually run."""

    requests: int
    rows: int
    computed: int


def _pad(x: torch.Tensor, width: int, value: Any, dim: int = 1) -> torch.Tensor:
    if x.dim() <= dim or x.shape[dim] >= width:
        return x
    shape = list(x.shape)
    shape[dim] = width
    out = torch.full(shape, value, dtype=x.dtype, device=x.device)
    out.narrow(dim, 0, x.shape[dim]).copy_(x)
    return out


class _RowCache:
    """Keys/values [R, H, T, D] of every layer, one row per row of the running batch (T its
    token width); a row's entries are those of its last full pass."""

    def __init__(self, n_layers: int) -> None:
        self.k: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []
        self.n_layers = n_layers

    @classmethod
    def like(cls, cache: ContextCache, rows: int, width: int) -> _RowCache:
        """An empty cache of `rows` rows, shaped as `cache`'s layers."""
        out = cls(len(cache.layers))
        for layer in cache.layers:
            _, heads, _, dim = layer.k.shape
            out.k.append(layer.k.new_zeros((rows, heads, width, dim)))
            out.v.append(layer.v.new_zeros((rows, heads, width, dim)))
        return out

    def grow(self, rows: int, width: int) -> None:
        """Append `rows` empty rows (they get a full pass before any span pass reads them) and
        widen to `width` tokens."""
        for i, (k, v) in enumerate(zip(self.k, self.v, strict=True)):
            empty = k.new_zeros((rows, k.shape[1], max(width, k.shape[2]), k.shape[3]))
            self.k[i] = torch.cat([_pad(k, width, 0, 2), empty])
            self.v[i] = torch.cat([_pad(v, width, 0, 2), empty])

    def write(self, rows: torch.Tensor, part: ContextCache) -> None:
        for i, layer in enumerate(part.layers):
            width = self.k[i].shape[2]
            self.k[i][rows] = _pad(layer.k, width, 0, 2)
            self.v[i][rows] = _pad(layer.v, width, 0, 2)

    def read(self, rows: torch.Tensor, attn: torch.Tensor) -> ContextCache:
        part = ContextCache(self.n_layers, attn)
        for layer, k, v in zip(part.layers, self.k, self.v, strict=True):
            layer.k, layer.v = k[rows], v[rows]
        return part

    def select(self, rows: torch.Tensor) -> None:
        self.k = [k[rows] for k in self.k]
        self.v = [v[rows] for v in self.v]


class ContinuousDecoder:
    """The running batch. Not thread-safe: one thread calls `join` and `step`."""

    def __init__(self, lm: LoadedModel, *, steps: int | None = 8, threshold: float | None = 0.9,
                 top_k: int | None = 40, top_p: float | None = None, context: int | None = 512,
                 cache_every: int | None = None, seed: int = 0) -> None:
        if cache_every is not None and cache_every < 1:
            raise ModelError(f"cache_every must be at least 1, got {cache_every}")
        self.lm = lm
        self.options = dict(threshold=threshold, steps=steps, top_k=top_k, top_p=top_p,
                            remask_low_confidence=None)
        self.context = context
        self.cache_every = cache_every
        self.cache: _RowCache | None = None
        self.generator = _generator(seed)
        self.requests: list[_Request] = []  # in row order: request i owns a contiguous range
        self.batch: _Rows | None = None
        self.temps = torch.zeros(0, device=lm.device)

    @property
    def rows(self) -> int:
        return sum(r.rows for r in self.requests)

    def prepare(self, canvas: Canvas) -> Prepared:
        if canvas.span_len < 1:
            raise ModelError(f"span_len must be at least 1, got {canvas.span_len}")
        ids, start = _layout(self.lm, canvas.prefix, [self.lm.mask_id] * canvas.span_len,
                             canvas.suffix, canvas.cond, self.context)
        return Prepared(ids, start, canvas.span_len)

    def join(self, key: Any, canvas: Prepared, samples: int, temperature: float) -> None:
        """Add a request; its rows take part from the next `step` on."""
        if samples < 1:
            raise ModelError("samples must be at least 1")
        rows = _build_rows(self.lm, [(canvas.ids, canvas.start, None)] * samples,
                           [canvas.span_len] * samples, [k == 0 for k in range(samples)], None)
        self.batch = rows if self.batch is None else self._cat(self.batch, rows)
        self.temps = torch.cat([self.temps, torch.full((samples,), float(temperature),
                                                       device=self.lm.device)])
        self.requests.append(_Request(key, samples, canvas.span_len))
        if self.cache is not None:
            self.cache.grow(samples, self.batch.ids.shape[1])

    @torch.inference_mode()
    def step(self) -> tuple[list[tuple[Any, list[Candidate]]], StepStats]:
        """One forward pass over every live row; the requests it finished, with their distinct
        fills best first."""
        if self.batch is None or not self.requests:
            return [], StepStats(0, 0, 0)
        batch = self.batch
        active = batch.masked.any(1).nonzero().flatten()
        computed = 0
        if len(active):
            due = self._due_rows()[active]
            logits, computed = self._logits(active[due], record=self.cache_every is not None)
            if not bool(due.all()):
                span = self._span_logits(active[~due])
                out = logits.new_empty((len(active), *logits.shape[1:]))
                out[due], out[~due] = logits, span
                logits, computed = out, computed + len(span)
            _unmask(self.lm, batch, active, logits, temperature=self.temps,
                    generator=self.generator, **self.options)
        stats = StepStats(len(self.requests), len(active), computed)
        for request in self.requests:
            request.passes += 1
            request.since_full = 0 if self._full_due(request) else request.since_full + 1
        return self._finished(), stats

    def abandon(self) -> list[Any]:
        """Drop every live request (after a failed pass); their keys."""
        keys = [r.key for r in self.requests]
        self.requests, self.batch, self.cache = [], None, None
        self.temps = self.temps[:0]
        return keys

    # -- internals -----------------------------------------------------------------------------

    def _full_due(self, request: _Request) -> bool:
        every = self.cache_every
        return every is None or request.since_full is None or request.since_full + 1 >= every

    def _due_rows(self) -> torch.Tensor:
        """[R] bool: rows whose request needs a full pass in this step."""
        return torch.cat([torch.full((r.rows,), self._full_due(r), dtype=torch.bool)
                          for r in self.requests]).to(self.lm.device)

    def _span_logits(self, rows: torch.Tensor) -> torch.Tensor:
        """Span logits of `rows` from their cached context (only span tokens run)."""
        batch, cache = self.batch, self.cache
        assert batch is not None and cache is not None
        part = cache.read(rows, batch.attn[rows])
        logits = self.lm.net.forward_cached(batch.ids[rows], batch.pos[rows], part)
        cache.write(rows, part)
        return logits

    def _logits(self, active: torch.Tensor, record: bool = False) -> tuple[torch.Tensor, int]:
        """Span logits [A, S, V] of the active rows by full passes; (logits, rows run through
        the network); with `record`, their keys/values go to the row cache.
        Identical rows (tokens, padding and span positions) are run once: a request's samples
        are identical before their first pass and often stay so for several (they commit the
        same confident tokens), so sharing their rows is exact and saves much of a pass."""
        batch = self.batch
        assert batch is not None
        if not len(active):
            return torch.empty((0, batch.pos.shape[1], self.lm.config.vocab_size),
                               device=self.lm.device), 0
        key = torch.cat([batch.ids[active], batch.attn[active], batch.pos[active]], dim=1)
        _, inverse, counts = torch.unique(key, dim=0, return_inverse=True, return_counts=True)
        # One representative row per distinct key (the first active row that has it).
        first = torch.full((len(counts),), len(active), device=active.device)
        first = first.scatter_reduce(0, inverse, torch.arange(len(active), device=active.device),
                                     reduce="amin")
        reps = active[first]
        widths = batch.attn[reps].sum(1)
        order = torch.argsort(widths, descending=True)
        out: torch.Tensor | None = None
        for group in self._groups(widths[order].tolist()):
            which = reps[order[group]]
            width = int(widths[order[group.start]])
            cache = self.lm.net.new_cache(batch.attn[which, :width]) if record else None
            logits = self.lm.net(batch.ids[which, :width], batch.attn[which, :width],
                                 positions=batch.pos[which], cache=cache)
            if cache is not None:
                self._record(order[group], inverse, active, cache)
            if out is None:
                out = logits.new_empty((len(reps), *logits.shape[1:]))
            out[order[group]] = logits
        assert out is not None
        return out[inverse], len(reps)

    def _record(self, members: torch.Tensor, inverse: torch.Tensor, active: torch.Tensor,
                cache: ContextCache) -> None:
        """Store a group pass's keys/values (row j: representative `members[j]`, an index into
        the pass's distinct rows) for every active row that shares them (`inverse`)."""
        assert self.batch is not None
        if self.cache is None:
            self.cache = _RowCache.like(cache, len(self.batch.ids), self.batch.ids.shape[1])
        slot = torch.full((int(inverse.max()) + 1,), -1, device=inverse.device)
        slot[members] = torch.arange(len(members), device=inverse.device)
        row = slot[inverse]
        mine = row >= 0
        self.cache.write(active[mine], cache.select(row[mine]))

    @staticmethod
    def _groups(widths: list[int]) -> list[slice]:
        """Runs of rows (sorted longest first) within GROUP_SHARE of their group's longest."""
        groups, start = [], 0
        for i, w in enumerate(widths):
            if w < GROUP_SHARE * widths[start]:
                groups.append(slice(start, i))
                start = i
        groups.append(slice(start, len(widths)))
        return groups

    def _finished(self) -> list[tuple[Any, list[Candidate]]]:
        batch = self.batch
        assert batch is not None
        # Re-masking is off, so every pass commits at least one token per active row; the cap
        # is a safety net like the sampler's.
        done_rows = ~batch.masked.any(1)
        keep = torch.ones_like(done_rows)
        finished, row = [], 0
        for request in self.requests:
            span = slice(row, row + request.rows)
            over = request.passes >= 4 * request.span_len + 8
            if bool(done_rows[span].all()) or over:
                keep[span] = False
                part = self._select(torch.arange(span.start, span.stop, device=keep.device))
                fills = _candidates(self.lm, part, [request.span_len] * request.rows)
                finished.append((request, _best_first(fills)))
            row += request.rows
        if finished:
            left = keep.nonzero().flatten()
            self.batch = self._select(left)
            self.temps = self.temps[left]
            if self.cache is not None:
                self.cache.select(left)
            gone = {id(r) for r, _ in finished}
            self.requests = [r for r in self.requests if id(r) not in gone]
        return [(r.key, fills) for r, fills in finished]

    def _select(self, rows: torch.Tensor) -> _Rows:
        batch = self.batch
        assert batch is not None
        return _Rows(*(getattr(batch, f.name)[rows] for f in fields(_Rows)))

    def _cat(self, a: _Rows, b: _Rows) -> _Rows:
        """Rows of both, padded to the wider token and span widths (pad tokens, unused
        slots)."""
        pad_id = self.lm.tokenizer.pad_id
        out = []
        for f in fields(_Rows):
            x, y = getattr(a, f.name), getattr(b, f.name)
            if x.dim() == 2:
                width = max(x.shape[1], y.shape[1])
                value = pad_id if f.name == "ids" else 0
                x, y = _pad(x, width, value), _pad(y, width, value)
            out.append(torch.cat([x, y]))
        return _Rows(*out)
