"""The infill sampler: fill masked spans between a prefix and a suffix, many canvases and samples
at once, by iterative unmasking; score candidates; say which existing tokens the model disbelieves.

Decoding, per forward pass over the whole batch (every canvas x every sample is a row):
- the model predicts every still-masked position of the span;
- confidence-threshold parallel unmasking (Fast-dLLM): commit every masked position whose
  confidence p(token) reaches `threshold`, always at least the most confident one; with
  `threshold=None`, exactly one token per step (the baseline the benchmark compares against);
  with `steps`, enough per step to finish each block within that many passes;
- semi-autoregressive blocks: with `block_size`, the span is decoded block by block, left to right;
- low-confidence re-masking: with `remask_low_confidence`, an earlier committed token whose
  probability has since dropped below that value is masked again (once per position);
- a committed end token (eos/pad) ends the fill: later positions become end tokens too, and all
  end tokens are stripped from the text. Several span lengths per site give variable lengths.

A canvas is laid out as training documents are: [bos] file tokens [eos], bos only when the prefix
starts the file and eos only when the suffix ends it; conditioning text goes first, between
<|cond|> tokens, for tokenizers that have them.

Sample 0 of every canvas is greedy (temperature 0), so the model's mode is always a candidate;
the others are sampled with `temperature`, `top_k`, `top_p`. Everything is deterministic under
`seed`. Candidate scores are mean log-likelihoods per token (see `Candidate`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from greenpatch.model.checkpoint import LoadedModel
from greenpatch.model.errors import ModelError
from greenpatch.model.kernels import greedy_confidence
from greenpatch.model.network import ContextCache
from greenpatch.model.tokenizer import CodeTokenizer

# Options for an interactive fill (`agent infill`): at most 4 passes, 128 tokens of context,
# top-k sampling, and one full pass in 4 (the others run the span's tokens against cached
# context keys/values). `benchmarks/repair_speed.py` measures them against the defaults
# (passes until confident, 512 tokens, nucleus sampling, no cache) side by side.
INTERACTIVE = {"steps": 4, "context": 128, "top_k": 40, "top_p": None, "cache_every": 4}


@dataclass(frozen=True)
class Canvas:
    """One site to fill: `span_len` masked tokens between `prefix` and `suffix`."""
    prefix: str
    suffix: str
    span_len: int
    cond: str = ""


@dataclass(frozen=True)
class TokenCanvas:
    """A canvas already tokenized: `span_len` masked slots between prefix and suffix token ids,
    cut at token boundaries of one tokenization of the code (edit sampling re-masks tokens of
    the code as it is: no re-tokenization, and the edges are the ones the code has).
    `starts_file`/`ends_file`: the prefix begins the file / the suffix ends it."""
    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    span_len: int
    starts_file: bool = False
    ends_file: bool = False


@dataclass(frozen=True)
class Candidate:
    """A fill. `score` is the mean log-likelihood per token of the fill's tokens plus the end
    token that closed it (if any), each taken when it was committed; higher is better."""
    text: str
    score: float
    span_len: int = 0


@dataclass
class DecodeStats:
    """What a decoding call cost (for benchmarks): forward passes over the batch, passes summed
    over rows (a row stops costing once its span is filled), rows, span tokens filled, and
    spans (canvases: every sample of one)."""
    passes: int = 0
    row_passes: int = 0
    rows: int = 0
    tokens: int = 0
    spans: int = 0


# -- canvas layout ------------------------------------------------------------------------------

def frame(tok: CodeTokenizer, prefix_ids: list[int], middle_ids: list[int],
          suffix_ids: list[int], cond_ids: Sequence[int] = (), *, starts_file: bool = True,
          ends_file: bool = True) -> tuple[list[int], int]:
    """The token layout shared by training and sampling; returns (ids, index of the middle)."""
    head: list[int] = []
    cond_id = tok.special_id("cond")
    if cond_ids and cond_id is not None:
        head += [cond_id, *cond_ids, cond_id]
    if starts_file and tok.bos_id is not None:
        head.append(tok.bos_id)
    tail = [tok.eos_id] if ends_file and tok.eos_id is not None else []
    ids = head + prefix_ids + middle_ids + suffix_ids + tail
    return ids, len(head) + len(prefix_ids)


def _context_budget(lm: LoadedModel, context: int | None, span: int) -> int:
    limit = lm.config.max_seq_len if context is None else min(context, lm.config.max_seq_len)
    budget = limit - span - 4
    if budget < 0:
        raise ModelError(f"span of {span} tokens does not fit the model's {limit}-token window")
    return budget


def _layout(lm: LoadedModel, prefix: str, middle_ids: list[int], suffix: str, cond: str,
            context: int | None, encoded: dict | None = None
            ) -> tuple[list[int], int]:
    """Frame a canvas, keeping the prefix's tail and the suffix's head within the window
    (two thirds of the room for the prefix, whatever one side leaves to the other).
    `encoded` caches encodings across the canvases of one call (a site's span lengths share
    its prefix and suffix: a long file's prefix is most of the tokenizer's work)."""
    tok = lm.tokenizer
    cache = {} if encoded is None else encoded
    room = lm.config.max_seq_len if context is None else min(context, lm.config.max_seq_len)

    def encode(text: str, side: int) -> tuple[list[int], bool]:
        """Tokens of the text (side -1: its tail, 1: its head, 0: all), and whether they are
        all of it. Only the part the window can hold is tokenized, cut at a line start: byte-
        level pre-tokens never span a line start's text, so the tokens kept are the ones a
        whole-text encoding gives (a long file's prefix was most of an interactive fill's
        tokenizing)."""
        key = (text, side)
        if key not in cache:
            cache[key] = _encode_part(tok, text, side, room)
        return cache[key]

    cond_ids = encode(cond, 0)[0][-256:] if cond else []
    (pre, whole_pre), (suf, whole_suf) = encode(prefix, -1), encode(suffix, 1)
    return _crop(lm, pre, middle_ids, suf, cond_ids, context, whole_pre, whole_suf)


# Characters per token assumed when tokenizing only the part of a prefix or suffix that fits:
# code runs 3-4 characters per token; the part is re-tokenized whole if it came out short.
_CHARS_PER_TOKEN = 8


def _encode_part(tok: CodeTokenizer, text: str, side: int, room: int
                 ) -> tuple[list[int], bool]:
    chars = _CHARS_PER_TOKEN * (room + 16)
    if side == 0 or len(text) <= chars:
        return tok.encode(text), True
    if side < 0:
        cut = text.find("\n", len(text) - chars) + 1
        ids = tok.encode(text[cut:]) if cut > 0 else []
        if len(ids) >= room + 8:  # the first tokens may differ from a whole encoding's
            return ids, False
    else:
        cut = text.rfind("\n", 0, chars)
        ids = tok.encode(text[:cut]) if cut > 0 else []
        if len(ids) >= room + 8:
            return ids, False
    return tok.encode(text), True


def _crop(lm: LoadedModel, pre: Sequence[int], middle_ids: list[int], suf: Sequence[int],
          cond_ids: Sequence[int], context: int | None, starts_file: bool = True,
          ends_file: bool = True) -> tuple[list[int], int]:
    budget = _context_budget(lm, context, len(middle_ids)) - (len(cond_ids) + 2 if cond_ids
                                                               else 0)
    budget = max(budget, 0)
    keep_suf = min(len(suf), max(budget // 3, budget - len(pre)))
    keep_pre = min(len(pre), budget - keep_suf)
    return frame(lm.tokenizer, list(pre[len(pre) - keep_pre:]), middle_ids,
                 list(suf[:keep_suf]), cond_ids,
                 starts_file=starts_file and keep_pre == len(pre),
                 ends_file=ends_file and keep_suf == len(suf))


# -- the decoding loop --------------------------------------------------------------------------

@dataclass
class _Rows:
    """The batch being denoised: every row is one sample of one canvas."""
    ids: torch.Tensor        # [R, T] tokens, pad on the right
    attn: torch.Tensor       # [R, T] 1 for real tokens
    pos: torch.Tensor        # [R, S] positions of span slots in ids (0 for unused slots)
    slot: torch.Tensor       # [R, S] bool: slot is part of the span
    masked: torch.Tensor     # [R, S] bool: still masked
    logp: torch.Tensor       # [R, S] log p of the committed token when committed
    filled: torch.Tensor     # [R, S] bool: set to an end token because an earlier one ended it
    remasked: torch.Tensor   # [R, S] bool: has been re-masked once already
    greedy: torch.Tensor     # [R] bool
    block: torch.Tensor      # [R, S] block index of each slot
    block_steps: torch.Tensor  # [R] passes spent in the current block


def _build_rows(lm: LoadedModel, layouts: list[tuple[list[int], int, list[int] | None]],
                span_lens: list[int], greedy: list[bool], block_size: int | None) -> _Rows:
    """layouts: (ids, middle start, known middle tokens or None) per row; known tokens that are
    not the mask id start committed (partial re-masking)."""
    tok, dev = lm.tokenizer, lm.device
    r = len(layouts)
    t = max(len(ids) for ids, _, _ in layouts)
    s = max(max(span_lens), 1)
    ids = torch.full((r, t), tok.pad_id, dtype=torch.long)
    attn = torch.zeros((r, t), dtype=torch.long)
    pos = torch.zeros((r, s), dtype=torch.long)
    slot = torch.zeros((r, s), dtype=torch.bool)
    for i, (row, start, _) in enumerate(layouts):
        ids[i, : len(row)] = torch.tensor(row)
        attn[i, : len(row)] = 1
        pos[i, : span_lens[i]] = torch.arange(start, start + span_lens[i])
        slot[i, : span_lens[i]] = True
    masked = slot & (torch.gather(ids, 1, pos) == lm.mask_id)
    block = torch.arange(s).expand(r, s) // (block_size or s)
    return _Rows(ids.to(dev), attn.to(dev), pos.to(dev), slot.to(dev), masked.to(dev),
                 torch.zeros((r, s), device=dev), torch.zeros((r, s), dtype=torch.bool,
                                                              device=dev),
                 torch.zeros((r, s), dtype=torch.bool, device=dev),
                 torch.tensor(greedy, device=dev), block.to(dev),
                 torch.zeros(r, dtype=torch.long, device=dev))


def _filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Drop a token when the tokens before it already reach top_p (the first always stays).
        drop_sorted = probs.cumsum(-1) - probs >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, -math.inf)
    return logits


def _draw(scaled: torch.Tensor, top_k: int | None, top_p: float | None,
          generator: torch.Generator) -> torch.Tensor:
    """One token per row of temperature-scaled logits [N, V]. Plain top-k draws among the k
    best only: a multinomial over the whole vocabulary was a third of an interactive fill's
    time, for tokens of probability 0."""
    if top_k is not None and top_k < scaled.shape[-1] and top_p is None:
        values, index = torch.topk(scaled, top_k, dim=-1)
        draws = torch.multinomial(torch.softmax(values, -1).cpu(), 1, generator=generator)
        return index.gather(1, draws.to(index.device)).flatten()
    chosen = _filter_logits(scaled, top_k, top_p)
    draws = torch.multinomial(torch.softmax(chosen, -1).cpu(), 1, generator=generator)
    return draws.flatten().to(scaled.device)


def _predict(flat: torch.Tensor, greedy: torch.Tensor, temps: torch.Tensor,
             top_k: int | None, top_p: float | None, generator: torch.Generator
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per position of logits [N, V]: the token to commit and its log-probability under the
    model (temperature 1, unfiltered: the model's own belief, comparable across samples).
    `greedy` [N] bool and `temps` [N] per position; temperature 0 is greedy."""
    token, _, lse = greedy_confidence(flat)
    sampled = ~greedy & (temps > 0)
    if sampled.any():
        token = token.clone()
        token[sampled] = _draw(flat[sampled].float() / temps[sampled][:, None], top_k, top_p,
                               generator)
    logp = flat.float().gather(1, token[:, None]).flatten() - lse
    return token, logp


def _commit_mask(conf: torch.Tensor, eligible: torch.Tensor, threshold: float | None,
                 at_least: torch.Tensor) -> torch.Tensor:
    """Which eligible positions to commit: all at or above threshold, and at least the
    `at_least` [R] most confident per row (at least one for rows with anything eligible)."""
    scored = conf.masked_fill(~eligible, -1.0)
    commit = eligible & (scored >= threshold) if threshold is not None else torch.zeros_like(
        eligible)
    k_max = int(at_least.max()) if len(at_least) else 0
    if k_max > 0:
        top = torch.topk(scored, min(k_max, scored.shape[1]), dim=1).indices
        rank_ok = torch.arange(top.shape[1], device=conf.device)[None, :] < at_least[:, None]
        best = torch.zeros_like(eligible).scatter(1, top, rank_ok)
        commit |= best & eligible
    return commit


def _banned(tok: CodeTokenizer) -> list[int]:
    """Tokens a fill may never contain: the mask itself and the layout markers."""
    roles = ("mask", "bos", "prefix", "suffix", "middle", "cond")
    ids = {tok.special_id(r) for r in roles} - tok.stop_ids
    return sorted(i for i in ids if i is not None)


class _CachedPasses:
    """Forward passes for the decoding loop: exact full passes, or with `every`, a full pass
    that caches every position's keys/values, then `every - 1` cheap passes that run only the
    span tokens against that (approximate, slightly stale) context. Finished rows are dropped.
    The rows come in groups of `samples` identical rows (the samples of one canvas): the first
    pass runs one row per group and shares its result (exact: they are the same input)."""

    def __init__(self, every: int | None, samples: int) -> None:
        self.every = every
        self.samples = samples
        self.cache: ContextCache | None = None
        self.rows: torch.Tensor | None = None
        self.width = 0
        self.since = 0
        self.first = True

    def logits(self, lm: LoadedModel, active: torch.Tensor, ids: torch.Tensor,
               attn: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        if self.first:
            self.first = False
            if self.samples > 1:
                return self._shared_first(lm, active, ids, attn, pos)
        if self.every is None or self.cache is None or self.since + 1 >= self.every:
            # Trim columns past the longest active row: finished long rows cost nothing.
            width = int(attn.sum(1).max())
            cache = None if self.every is None else lm.net.new_cache(attn[:, :width])
            out = lm.net(ids[:, :width], attn[:, :width], positions=pos, cache=cache)
            self.cache, self.rows, self.width, self.since = cache, active, width, 0
            return out
        self.since += 1
        assert self.rows is not None
        if len(active) == len(self.rows):
            return lm.net.forward_cached(ids[:, :self.width], pos, self.cache)
        which = torch.searchsorted(self.rows, active)
        part = self.cache.select(which)
        out = lm.net.forward_cached(ids[:, :self.width], pos, part)
        self.cache.update(which, part)
        return out

    def _shared_first(self, lm: LoadedModel, active: torch.Tensor, ids: torch.Tensor,
                      attn: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        reps = torch.arange(0, len(active), self.samples, device=active.device)
        inverse = torch.arange(len(active), device=active.device) // self.samples
        width = int(attn.sum(1).max())
        cache = None if self.every is None else lm.net.new_cache(attn[reps, :width])
        out = lm.net(ids[reps, :width], attn[reps, :width], positions=pos[reps], cache=cache)
        self.cache = None if cache is None else cache.select(inverse)
        self.rows, self.width, self.since = active, width, 0
        return out[inverse]


def _denoise(lm: LoadedModel, rows: _Rows, *, threshold: float | None, steps: int | None,
             temperature: float, top_k: int | None, top_p: float | None,
             remask_low_confidence: float | None, generator: torch.Generator,
             cache_every: int | None = None, samples: int = 1) -> tuple[int, int]:
    """Unmask every span slot of every row (rows in groups of `samples` identical ones);
    returns (forward passes, passes summed over rows)."""
    passes = row_passes = 0
    cached = _CachedPasses(cache_every, samples)
    max_passes = 4 * rows.slot.shape[1] + 8  # re-masking is bounded; this is a safety net
    while rows.masked.any() and passes < max_passes:
        active = rows.masked.any(1).nonzero().flatten()
        logits = cached.logits(lm, active, rows.ids[active], rows.attn[active], rows.pos[active])
        _unmask(lm, rows, active, logits, threshold=threshold, steps=steps,
                temperature=temperature, top_k=top_k, top_p=top_p,
                remask_low_confidence=remask_low_confidence, generator=generator)
        passes += 1
        row_passes += len(active)
    return passes, row_passes


def _unmask(lm: LoadedModel, rows: _Rows, active: torch.Tensor, logits: torch.Tensor, *,
            threshold: float | None, steps: int | None, temperature: float | torch.Tensor,
            top_k: int | None, top_p: float | None, remask_low_confidence: float | None,
            generator: torch.Generator) -> None:
    """One denoising pass's update of the `active` rows from their span logits [A, S, V]:
    commit, end fills, re-mask. Also the step of continuous batching (model.continuous)."""
    stop = torch.tensor(sorted(lm.tokenizer.stop_ids), device=lm.device, dtype=torch.long)
    banned = torch.tensor(_banned(lm.tokenizer), device=lm.device, dtype=torch.long)
    ids, pos = rows.ids[active], rows.pos[active]
    masked = rows.masked[active]
    current_block = rows.block[active].masked_fill(~masked, 1 << 30).min(1).values
    eligible = masked & (rows.block[active] == current_block[:, None])
    # Only eligible positions can be committed (and an end token that ends a fill is one of
    # them): predicting just those skips the softmax and top-k of every other slot.
    temps = torch.as_tensor(temperature, dtype=torch.float, device=logits.device)
    temps = (temps[active] if temps.dim() else temps.expand(len(active)))[:, None].expand_as(
        eligible)
    greedy = rows.greedy[active][:, None].expand_as(eligible)
    picked = logits[eligible]
    picked[:, banned] = -math.inf
    token = torch.zeros_like(ids.gather(1, pos))
    logp = torch.zeros(eligible.shape, device=logits.device)
    token[eligible], logp[eligible] = _predict(picked, greedy[eligible], temps[eligible], top_k,
                                               top_p, generator)
    remaining = eligible.sum(1)
    if steps is not None:
        left = (steps - rows.block_steps[active]).clamp(min=1)
        at_least = (remaining + left - 1) // left
    else:
        at_least = (remaining > 0).long()
    commit = _commit_mask(logp.exp(), eligible, threshold, at_least)

    # An end token ends the fill: every later slot becomes an end token too.
    is_stop = torch.isin(token, stop) & commit
    after_stop = (is_stop.long().cumsum(1) - is_stop.long()) > 0
    fill = after_stop & rows.slot[active] & ~is_stop
    first_stop = torch.where(is_stop.any(1), is_stop.float().argmax(1), 0)
    fill_token = token.gather(1, first_stop[:, None]).expand_as(token)
    new_token = torch.where(fill, fill_token, token)
    commit = (commit & ~fill) | (fill & (masked | ~rows.filled[active]))

    remask = torch.zeros_like(commit)
    if remask_low_confidence is not None:
        span_tokens = ids.gather(1, pos)
        now = logits.float().log_softmax(-1).gather(2, span_tokens[..., None]).squeeze(2)
        remask = (rows.slot[active] & ~masked & ~rows.filled[active] & ~commit
                  & ~rows.remasked[active] & (now.exp() < remask_low_confidence))

    new_ids = ids.scatter(1, pos, torch.where(commit, new_token, ids.gather(1, pos)))
    new_ids = new_ids.scatter(1, pos, torch.where(remask, lm.mask_id, new_ids.gather(1, pos)))
    rows.ids[active] = new_ids
    rows.masked[active] = (masked & ~commit) | remask
    rows.logp[active] = torch.where(commit & ~fill, logp, rows.logp[active])
    rows.filled[active] = (rows.filled[active] | fill) & ~remask
    rows.remasked[active] |= remask
    block_changed = rows.block[active].masked_fill(~rows.masked[active], 1 << 30).min(1)
    rows.block_steps[active] = torch.where(block_changed.values != current_block, 0,
                                           rows.block_steps[active] + 1)


def _candidates(lm: LoadedModel, rows: _Rows, span_lens: list[int]) -> list[Candidate]:
    stop = lm.tokenizer.stop_ids
    span_tokens = rows.ids.gather(1, rows.pos).tolist()
    logps = rows.logp.tolist()
    out = []
    for i, n in enumerate(span_lens):
        tokens = span_tokens[i][:n]
        end = next((j for j, t in enumerate(tokens) if t in stop), n)
        counted = logps[i][: min(end + 1, n)]
        score = sum(counted) / len(counted) if counted else 0.0
        out.append(Candidate(lm.tokenizer.decode(tokens[:end]), score, n))
    return out


def _best_first(cands: Iterable[Candidate]) -> list[Candidate]:
    best: dict[str, Candidate] = {}
    for c in cands:
        if c.text not in best or c.score > best[c.text].score:
            best[c.text] = c
    return sorted(best.values(), key=lambda c: -c.score)


def _generator(seed: int) -> torch.Generator:
    g = torch.Generator(device="cpu")  # multinomial draws happen on the CPU for determinism
    g.manual_seed(seed)
    return g


@torch.inference_mode()
def infill(lm: LoadedModel, canvases: Sequence[Canvas | TokenCanvas], samples: int = 4, *,
           steps: int | None = None, threshold: float | None = 0.9, temperature: float = 0.8,
           top_k: int | None = None, top_p: float | None = 0.95,
           remask_low_confidence: float | None = None, block_size: int | None = None,
           context: int | None = 512, seed: int = 0, greedy_first: bool = True,
           cache_every: int | None = None, stats: DecodeStats | None = None
           ) -> list[list[Candidate]]:
    """Fill every canvas `samples` times in one batch; per canvas, distinct fills best first.
    `greedy_first=False` samples every row (sample 0 is greedy by default). `cache_every=k`
    makes one full pass in k and runs only the span tokens in between, against cached context
    keys/values (approximate, much cheaper for long contexts). `stats`, when given, is updated
    with the cost of the call."""
    if samples < 1:
        raise ModelError("samples must be at least 1")
    if not canvases:
        return []
    layouts, span_lens, greedy = [], [], []
    encoded: dict = {}
    for canvas in canvases:
        if canvas.span_len < 1:
            raise ModelError(f"span_len must be at least 1, got {canvas.span_len}")
        middle = [lm.mask_id] * canvas.span_len
        if isinstance(canvas, TokenCanvas):
            ids, start = _crop(lm, canvas.prefix, middle, canvas.suffix, (), context,
                               canvas.starts_file, canvas.ends_file)
        else:
            ids, start = _layout(lm, canvas.prefix, middle, canvas.suffix, canvas.cond, context,
                                 encoded)
        for k in range(samples):
            layouts.append((ids, start, None))
            span_lens.append(canvas.span_len)
            greedy.append(greedy_first and k == 0)
    rows = _build_rows(lm, layouts, span_lens, greedy, block_size)
    passes, row_passes = _denoise(
        lm, rows, threshold=threshold, steps=steps, temperature=temperature, top_k=top_k,
        top_p=top_p, remask_low_confidence=remask_low_confidence, generator=_generator(seed),
        cache_every=cache_every, samples=samples)
    if stats is not None:
        stats.passes += passes
        stats.row_passes += row_passes
        stats.rows += len(span_lens)
        stats.tokens += sum(span_lens)
        stats.spans += len(canvases)
    flat = _candidates(lm, rows, span_lens)
    return [_best_first(flat[i * samples:(i + 1) * samples]) for i in range(len(canvases))]


def span_lengths(lm: LoadedModel, original: str, extra: Sequence[int] = (0, 3, 8)) -> list[int]:
    """Span lengths worth trying for a site whose current text is `original`: its token count
    plus some slack (fills may end early, so longer spans cover shorter rewrites)."""
    n = len(lm.tokenizer.encode(original))
    return sorted({max(1, n + e) for e in extra})


def infill_site(lm: LoadedModel, prefix: str, suffix: str, lengths: Iterable[int],
                samples: int = 4, cond: str = "", **options) -> list[Candidate]:
    """One site, several span lengths, decoded in one batch; distinct fills best first."""
    canvases = [Canvas(prefix, suffix, n, cond) for n in lengths]
    return _best_first(c for per in infill(lm, canvases, samples, **options) for c in per)


@torch.inference_mode()
def beam_infill(lm: LoadedModel, prefix: str, suffix: str, length: int, k: int = 10, *,
                cond: str = "", context: int | None = 512) -> list[Candidate]:
    """The k most likely fills of at most `length` tokens, best first: a beam over the masked
    span, one position at a time left to right, the model re-run on each beam's partial fill.
    A fill shorter than the span ends with end tokens (as training pads fills that end
    early), and a beam that ended stays ended. Scores are the mean log-probability over the
    span's positions, so fills of one site compare directly. Random samples approximate the
    top of the distribution poorly on short spans, where a repair's fills mostly are."""
    if length < 1 or k < 1:
        raise ModelError("beam_infill needs length >= 1 and k >= 1")
    tok = lm.tokenizer
    end = tok.eos_id if tok.eos_id is not None else tok.pad_id
    layout, start = _layout(lm, prefix, [lm.mask_id] * length, suffix, cond, context)
    base = torch.tensor(layout, device=lm.device)
    banned = torch.tensor(_banned(tok), device=lm.device)
    beams: list[tuple[list[int], float]] = [([], 0.0)]
    for pos in range(length):
        batch = base.repeat(len(beams), 1)
        for row, (tokens, _) in enumerate(beams):
            if tokens:
                batch[row, start : start + len(tokens)] = torch.tensor(tokens, device=lm.device)
        where = torch.full((len(beams), 1), start + pos, device=lm.device)
        logits = lm.net(batch, positions=where).float()[:, 0]
        logits[:, banned] = float("-inf")
        logp = logits.log_softmax(-1)
        grown: list[tuple[list[int], float]] = []
        for row, (tokens, total) in enumerate(beams):
            if tokens and tokens[-1] == end:  # ended: only more end tokens may follow
                grown.append((tokens + [end], total + float(logp[row, end])))
                continue
            if pos == 0:  # an empty fill is a deletion, not an infill
                logp[row, end] = float("-inf")
            values, ids = logp[row].topk(k)
            grown += [(tokens + [int(i)], total + float(v))
                      for v, i in zip(values.tolist(), ids.tolist(), strict=True)]
        grown.sort(key=lambda beam: -beam[1])
        beams = grown[:k]
    out = []
    for tokens, total in beams:
        cut = tokens.index(end) if end in tokens else len(tokens)
        out.append(Candidate(tok.decode(tokens[:cut]), total / length, length))
    return _best_first(out)


def middle_offsets(lm: LoadedModel, middle: str) -> list[tuple[int, int]]:
    """Character range of every token of `middle`, to build a `keep` mask for `remask`."""
    return lm.tokenizer.encode_with_offsets(middle)[1]


@torch.inference_mode()
def remask(lm: LoadedModel, prefix: str, middle: str, suffix: str,
           keep: Sequence[bool] | Sequence[tuple[int, int]], samples: int = 4, *,
           cond: str = "", context: int | None = 512, seed: int = 0,
           **options) -> list[Candidate]:
    """Feedback round: keep some tokens of an existing fill, re-noise and re-fill the rest.
    `keep` is one bool per token of `middle` (see `middle_offsets`) or character ranges of
    `middle` to keep (a token is kept when it lies inside one)."""
    ids, offsets = lm.tokenizer.encode_with_offsets(middle)
    if not ids:
        raise ModelError("remask needs a non-empty middle")
    if keep and isinstance(keep[0], tuple):
        ranges = list(keep)
        keep_tok = [any(a <= s and e <= b for a, b in ranges) for s, e in offsets]
    else:
        keep_tok = [bool(k) for k in keep]
    if len(keep_tok) != len(ids):
        raise ModelError(f"keep has {len(keep_tok)} entries but the middle has {len(ids)} tokens")
    noisy = [t if k else lm.mask_id for t, k in zip(ids, keep_tok, strict=True)]
    layout, start = _layout(lm, prefix, noisy, suffix, cond, context)
    rows = _build_rows(lm, [(layout, start, noisy)] * samples, [len(ids)] * samples,
                       [k == 0 for k in range(samples)], options.pop("block_size", None))
    defaults = dict(threshold=0.9, steps=None, temperature=0.8, top_k=None, top_p=0.95,
                    remask_low_confidence=None, cache_every=None)
    _denoise(lm, rows, **{**defaults, **options}, generator=_generator(seed),
             samples=samples)
    # Kept tokens were never scored while decoding: score complete candidates the same way.
    texts = {c.text for c in _candidates(lm, rows, [len(ids)] * samples)}
    return _best_first(Candidate(t, score(lm, prefix, t, suffix, cond=cond, context=context),
                                 len(ids)) for t in texts)


@torch.inference_mode()
def score(lm: LoadedModel, prefix: str, middle: str, suffix: str, *, cond: str = "",
          context: int | None = 512) -> float:
    """Mean log-likelihood per token of `middle` between prefix and suffix: each token is
    masked in turn (one batched pass), pseudo-log-likelihood. An empty middle scores 0."""
    ids = lm.tokenizer.encode(middle)
    if not ids:
        return 0.0
    layout, start = _layout(lm, prefix, ids, suffix, cond, context)
    n = len(ids)
    batch = torch.tensor(layout, device=lm.device).repeat(n, 1)
    where = torch.arange(n, device=lm.device)
    batch[where, start + where] = lm.mask_id
    logits = lm.net(batch, positions=(start + where)[:, None]).float()[:, 0]
    logp = logits.log_softmax(-1).gather(1, torch.tensor(ids, device=lm.device)[:, None])
    return float(logp.mean())


@torch.inference_mode()
def disbelief(lm: LoadedModel, text: str, *, window: int = 512, masked: bool = False
              ) -> list[tuple[int, int, float]]:
    """(char start, char end, 1 - p(token)) for every token of `text`: how much the model
    disbelieves each existing token. Default: one pass with every token visible, meaningful
    for models trained with substitution noise. `masked=True` masks each token in turn
    (costly: one row per token) for models trained without it. Long text is scored in
    overlapping windows, each token from the window where it is most central."""
    ids, offsets = lm.tokenizer.encode_with_offsets(text)
    n = len(ids)
    if n == 0:
        return []
    window = min(window, lm.config.max_seq_len - 2)
    stride = max(1, window // 2)
    starts = list(range(0, max(n - window, 0) + 1, stride))
    if starts[-1] + window < n:
        starts.append(n - window)
    centers = torch.tensor([s + min(window, n) / 2 for s in starts])
    owner = (torch.arange(n)[:, None] - centers[None, :]).abs().argmin(1).tolist()
    probs = [0.0] * n
    tok = lm.tokenizer
    for w, s in enumerate(starts):
        mine = [i for i in range(s, min(s + window, n)) if owner[i] == w]
        if not mine:
            continue
        chunk, begin = frame(tok, [], ids[s:s + window], [], starts_file=s == 0,
                             ends_file=s + window >= n)
        for i, p in zip(mine, _token_probs(lm, chunk, begin, [i - s for i in mine], masked),
                        strict=True):
            probs[i] = p
    return [(a, b, 1.0 - p) for (a, b), p in zip(offsets, probs, strict=True)]


def _token_probs(lm: LoadedModel, chunk: list[int], begin: int, local: list[int],
                 masked: bool) -> list[float]:
    base = torch.tensor(chunk, device=lm.device)
    where = torch.tensor(local, device=lm.device) + begin
    targets = base[where]
    if not masked:
        logits = lm.net(base[None], positions=where[None]).float()[0]
        return logits.log_softmax(-1).gather(1, targets[:, None]).exp().flatten().tolist()
    out: list[float] = []
    for part in torch.split(torch.arange(len(local), device=lm.device), 64):
        batch = base.repeat(len(part), 1)
        batch[torch.arange(len(part)), where[part]] = lm.mask_id
        logits = lm.net(batch, positions=where[part][:, None]).float()[:, 0]
        p = logits.log_softmax(-1).gather(1, targets[part][:, None]).exp()
        out += p.flatten().tolist()
    return out


@torch.inference_mode()
def score_fills(lm: LoadedModel, prefix: str, suffix: str, fills: Sequence[str], *,
                cond: str = "", context: int | None = 512) -> list[float]:
    """Mean log-probability of each fill, read off ONE pass over the span fully masked: all
    fills of a site share that canvas, so ranking many candidates (model samples and model-free
    mutations alike) costs one forward pass. Shorter fills are padded with end tokens, the way
    training pads fills that end early."""
    tok = lm.tokenizer
    encoded = [tok.encode(f) for f in fills]
    if not encoded:
        return []
    filler = tok.eos_id if tok.eos_id is not None else tok.pad_id
    n = max(len(e) for e in encoded) + 1
    layout, start = _layout(lm, prefix, [lm.mask_id] * n, suffix, cond, context)
    where = torch.arange(start, start + n, device=lm.device)
    batch = torch.tensor(layout, device=lm.device)[None]
    logp = lm.net(batch, positions=where[None]).float()[0].log_softmax(-1)
    targets = torch.tensor([e + [filler] * (n - len(e)) for e in encoded], device=lm.device)
    return logp.gather(1, targets.T).T.mean(1).tolist()
