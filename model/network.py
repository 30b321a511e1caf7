"""The bidirectional transformer: LLaMA/Qwen2 family (RMSNorm, RoPE, SwiGLU, grouped-query
attention) without a causal mask, so every position sees the whole canvas.

One module for our own models and for real open diffusion LMs: Qwen2-layout checkpoints (Dream,
DiffuCoder, Open-dCoder) predict token i from hidden state i-1 ("shifted"); `forward` undoes that,
so callers always get logits where position i predicts token i.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from greenpatch.model.errors import ModelError
from greenpatch.model.kernels import rms_norm
from torch import nn

# Named sizes, measured on a 2-core CPU (model/README.md): `tiny` for tests (trains in seconds),
# `mini` the embedded model's (2.4M parameters with its 4,096-token vocabulary), `small` and
# `base` larger (5-10M and ~15M parameters with an 8,192-token vocabulary).
SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=192),
    "mini": dict(dim=192, n_layers=4, n_heads=6, n_kv_heads=2, ffn_dim=512),
    "small": dict(dim=256, n_layers=6, n_heads=8, n_kv_heads=4, ffn_dim=768),
    "base": dict(dim=384, n_layers=8, n_heads=8, n_kv_heads=4, ffn_dim=1024),
}


@dataclass
class ModelConfig:
    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    max_seq_len: int = 2048
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    qkv_bias: bool = False
    tie_embeddings: bool = True
    shift_logits: bool = False
    mask_id: int = 0
    # Which tensor names a checkpoint uses: "greenpatch" (ours), "qwen2" or "llada".
    layout: str = "greenpatch"
    # Ours only: a per-token repair head (see `DiffusionLM.repair_logits`).
    repair_head: bool = False

    def __post_init__(self) -> None:
        if self.dim % self.n_heads:
            raise ModelError(f"dim {self.dim} is not a multiple of n_heads {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ModelError(f"n_heads {self.n_heads} is not a multiple of n_kv_heads "
                             f"{self.n_kv_heads}")
        if (self.dim // self.n_heads) % 2:
            raise ModelError("head dimension must be even for rotary embeddings")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**data)

    # -- named sizes ----------------------------------------------------------------------------

    @classmethod
    def sized(cls, size: str, **overrides) -> ModelConfig:
        """A named size (SIZES) with `overrides` (vocab_size, max_seq_len, mask_id...)."""
        if size not in SIZES:
            raise ModelError(f"unknown model size '{size}': choose one of {', '.join(SIZES)}")
        return cls(**{**SIZES[size], **overrides})

    @classmethod
    def tiny(cls, vocab_size: int = 512, **overrides) -> ModelConfig:
        """For tests: trains in seconds on a CPU."""
        return cls.sized("tiny", **{"vocab_size": vocab_size, "max_seq_len": 256, **overrides})

    # The shapes of real checkpoints. Loading one reads its own config.json (mask id included);
    # these are for sizing and tests.
    @classmethod
    def open_dcoder_0_5b(cls) -> ModelConfig:
        return cls(vocab_size=151936, dim=896, n_layers=24, n_heads=14, n_kv_heads=2,
                   ffn_dim=4864, max_seq_len=32768, rope_theta=1e6, norm_eps=1e-6,
                   qkv_bias=True, tie_embeddings=True, shift_logits=True, mask_id=151665,
                   layout="qwen2")

    @classmethod
    def dream_7b(cls) -> ModelConfig:
        return cls(vocab_size=152064, dim=3584, n_layers=28, n_heads=28, n_kv_heads=4,
                   ffn_dim=18944, max_seq_len=131072, rope_theta=1e6, norm_eps=1e-6,
                   qkv_bias=True, tie_embeddings=False, shift_logits=True, mask_id=151666,
                   layout="qwen2")

    @classmethod
    def llada_8b(cls) -> ModelConfig:
        return cls(vocab_size=126464, dim=4096, n_layers=32, n_heads=32, n_kv_heads=32,
                   ffn_dim=12288, max_seq_len=4096, rope_theta=500000.0, norm_eps=1e-5,
                   qkv_bias=False, tie_embeddings=False, shift_logits=False, mask_id=126336,
                   layout="llada")


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


def rope_tables(head_dim: int, length: int, theta: float, device: torch.device
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of shape [length, head_dim] in the rotate-half (LLaMA/Qwen2/LLaDA) layout."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim)
    angles = torch.outer(torch.arange(length, device=device).float(), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


class LayerKV:
    """One layer's stored keys and values [B, H_kv, T, D] (after RoPE) for the approximate
    context cache: context positions keep the keys/values of the last full pass, the positions
    being denoised get fresh ones at every pass."""

    def __init__(self) -> None:
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.query_pos: torch.Tensor | None = None  # [B, Q] while reading

    def merge(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.k is None or self.query_pos is None:  # a full pass: store
            self.k, self.v = k, v
            return k, v
        index = self.query_pos[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])
        self.k = self.k.scatter(2, index, k)
        self.v = self.v.scatter(2, index, v)
        return self.k, self.v


class ContextCache:
    """Keys/values of every layer from the last full pass over a batch (see `LayerKV`)."""

    def __init__(self, n_layers: int, attention_mask: torch.Tensor | None) -> None:
        self.layers = [LayerKV() for _ in range(n_layers)]
        self.attention_mask = attention_mask

    def select(self, rows: torch.Tensor) -> ContextCache:
        """The cache of a subset of the batch's rows (a copy)."""
        out = ContextCache(0, None if self.attention_mask is None else self.attention_mask[rows])
        for layer in self.layers:
            new = LayerKV()
            new.k, new.v = layer.k[rows], layer.v[rows]
            out.layers.append(new)
        return out

    def update(self, rows: torch.Tensor, part: ContextCache) -> None:
        for mine, theirs in zip(self.layers, part.layers, strict=True):
            mine.k[rows], mine.v[rows] = theirs.k, theirs.v


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                key_mask: torch.Tensor | None, kv: LayerKV | None = None) -> torch.Tensor:
        """With `kv` holding keys/values: x are the tokens at `kv.query_pos` only; their fresh
        keys/values replace the stored ones there and they attend to all stored positions.
        With an empty `kv`: a full pass that stores its keys/values."""
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if kv is not None:
            k, v = kv.merge(k, v)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=key_mask, is_causal=False,
            enable_gqa=self.n_kv_heads != self.n_heads,
        )
        return self.o_proj(y.transpose(1, 2).reshape(b, t, -1))


class SwiGLU(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.up_proj = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.down_proj = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn = SwiGLU(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                key_mask: torch.Tensor | None, kv: LayerKV | None = None) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin, key_mask, kv)
        return x + self.ffn(self.ffn_norm(x))


class DiffusionLM(nn.Module):
    """Token ids -> logits for every position (unshifted: logit i predicts token i)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.dim)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.lm_head = nn.Linear(config.dim, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        # Two logits per token: [0] this token was corrupted (replaced-token detection, as
        # ELECTRA), [1] a statement is missing after the line this newline token ends.
        self.repair = nn.Linear(config.dim, 2) if config.repair_head else None
        self._rope: tuple[torch.Tensor, torch.Tensor] | None = None
        self.apply(self._init_weights)
        if self.repair is not None:
            # Both events are rare (a few tokens of a window): start at a prior of ~1%, so the
            # first steps do not spend themselves pushing every logit down.
            nn.init.constant_(self.repair.bias, -4.6)
        for name, p in self.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                # Residual projections scaled down with depth (GPT-2), for stable early training.
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _rope_for(self, length: int, device: torch.device, dtype: torch.dtype
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        cached = self._rope
        if cached is None or cached[0].shape[0] < length or cached[0].device != device:
            cached = rope_tables(self.config.head_dim, max(length, 256), self.config.rope_theta,
                                 device)
            self._rope = cached
        cos, sin = cached
        return cos[:length].to(dtype), sin[:length].to(dtype)

    def hidden_states(self, input_ids: torch.Tensor,
                      attention_mask: torch.Tensor | None = None,
                      cache: ContextCache | None = None) -> torch.Tensor:
        """Final normed hidden states [B, T, D]. `attention_mask` [B, T]: 1 for real tokens, 0
        for padding that no position may attend to. An empty `cache` records keys/values."""
        _, t = input_ids.shape
        x = self.embed(input_ids)
        cos, sin = self._rope_for(t, x.device, x.dtype)
        key_mask = None
        if attention_mask is not None:
            key_mask = attention_mask.bool()[:, None, None, :]
        layers = cache.layers if cache is not None else [None] * len(self.blocks)
        for block, kv in zip(self.blocks, layers, strict=True):
            x = block(x, cos, sin, key_mask, kv)
        return self.norm(x)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                positions: torch.Tensor | None = None, cache: ContextCache | None = None
                ) -> torch.Tensor:
        """Logits [B, T, V]; with `positions` [B, P] (indices into T), only those: [B, P, V].
        Asking for the few positions being denoised skips most of the vocabulary projection.
        An empty `cache` (`new_cache`) is filled with this pass's keys and values."""
        h = self.hidden_states(input_ids, attention_mask, cache)
        if self.config.shift_logits:
            # Hidden state i-1 predicts token i; position 0 borrows its own (as Dream does).
            h = torch.cat([h[:, :1], h[:, :-1]], dim=1)
        if positions is not None:
            h = torch.gather(h, 1, positions[..., None].expand(-1, -1, h.shape[-1]))
        return self.lm_head(h)

    def repair_logits(self, input_ids: torch.Tensor,
                      attention_mask: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass over clean-looking (unmasked) code: token logits [B, T, V] and repair logits
        [B, T, 2] (corrupted; statement missing after this token's newline)."""
        h, repair = self.repair_hidden(input_ids, attention_mask)
        return self.lm_head(h), repair

    def repair_hidden(self, input_ids: torch.Tensor,
                      attention_mask: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """As `repair_logits`, with the hidden states [B, T, D] in place of the token logits:
        the vocabulary projection is a third of a small model's pass, and a scorer needs it at
        a few positions only (`lm_head` on those)."""
        if self.repair is None:
            raise ModelError("this model has no repair head")
        h = self.hidden_states(input_ids, attention_mask)
        return h, self.repair(h)

    def new_cache(self, attention_mask: torch.Tensor | None = None) -> ContextCache:
        return ContextCache(len(self.blocks), attention_mask)

    def forward_cached(self, input_ids: torch.Tensor, positions: torch.Tensor,
                       cache: ContextCache) -> torch.Tensor:
        """Approximate logits [B, P, V] at `positions` [B, P] from a filled `cache`: only the
        tokens at those positions (and, for shifted models, the one before each) are run through
        the network; every other position contributes the keys/values of the last full pass."""
        query = positions
        if self.config.shift_logits:
            query = torch.cat([(positions[:, :1] - 1).clamp(min=0), positions], dim=1)
        x = self.embed(torch.gather(input_ids, 1, query))
        cos_all, sin_all = self._rope_for(input_ids.shape[1], x.device, x.dtype)
        cos, sin = cos_all[query][:, None], sin_all[query][:, None]
        key_mask = None
        if cache.attention_mask is not None:
            key_mask = cache.attention_mask.bool()[:, None, None, :]
        for block, kv in zip(self.blocks, cache.layers, strict=True):
            kv.query_pos = query
            x = block(x, cos, sin, key_mask, kv)
            kv.query_pos = None
        h = self.norm(x)
        if self.config.shift_logits:
            # Position p reads the hidden state at p - 1: the query just before it. Positions are
            # contiguous spans in the sampler; for others the nearest query before is used.
            h = h[:, :-1]
        return self.lm_head(h)
