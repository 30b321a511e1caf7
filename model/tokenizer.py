"""Byte-level BPE tokenizer for Python source, and loading of real models' `tokenizer.json`.

Byte-level means every byte sequence has an encoding, so any file round-trips exactly: no
normalizer, no prefix space, no stripping. Our special tokens take ids 0..7 so that they are
stable across vocabularies; a real model's tokenizer keeps its own ids and takes the mask id (and
friends) from the checkpoint's `config.json`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from greenpatch.model.errors import ModelError
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

MASK, PAD, BOS, EOS = "<|mask|>", "<|pad|>", "<|bos|>", "<|eos|>"
PREFIX, SUFFIX, MIDDLE, COND = "<|prefix|>", "<|suffix|>", "<|middle|>", "<|cond|>"
SPECIAL_TOKENS = [MASK, PAD, BOS, EOS, PREFIX, SUFFIX, MIDDLE, COND]

# Names of the special ids in a Hugging Face model config, by our role name.
_CONFIG_KEYS = {
    "mask": ("mask_token_id",),
    "pad": ("pad_token_id",),
    "bos": ("bos_token_id",),
    "eos": ("eos_token_id",),
}
# LLaDA's config carries no mask id; its tokenizer reserves this one.
LLADA_MASK_ID = 126336


class CodeTokenizer:
    """A `tokenizers.Tokenizer` plus the ids of the special roles the model needs."""

    def __init__(self, tokenizer: Tokenizer, special_ids: dict[str, int | None]) -> None:
        self._tok = tokenizer
        self._ids = special_ids
        if special_ids.get("mask") is None:
            raise ModelError("tokenizer has no mask token and the model config names none")

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path, config: dict | None = None) -> CodeTokenizer:
        """Load `tokenizer.json` (a file, or a directory holding one). Special ids come from the
        model `config` (or the directory's `config.json`) when it names them, else from our
        special tokens by text."""
        path = Path(path)
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():
            raise ModelError(f"no tokenizer.json at {path}")
        try:
            tok = Tokenizer.from_file(str(file))
        except Exception as exc:  # tokenizers raises a bare Exception on malformed JSON
            raise ModelError(f"cannot read tokenizer {file}: {str(exc).splitlines()[0]}") from None
        if config is None and (file.parent / "config.json").is_file():
            config = json.loads((file.parent / "config.json").read_text())
        return cls(tok, _special_ids(tok, config or {}))

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        out = directory / "tokenizer.json"
        self._tok.save(str(out))
        return out

    # -- text <-> ids ---------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids and, per token, the (start, end) character range of `text` it came from. A
        character split across several byte tokens gives each of them its full range."""
        enc = self._tok.encode(text, add_special_tokens=False)
        return enc.ids, [tuple(o) for o in enc.offsets]

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=False)

    def token_text(self, token_id: int) -> str | None:
        return self._tok.id_to_token(token_id)

    # -- special roles --------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def mask_id(self) -> int:
        return self._ids["mask"]  # type: ignore[return-value]

    @property
    def pad_id(self) -> int:
        """Padding; falls back to eos, then mask, for tokenizers that define no pad token."""
        for role in ("pad", "eos", "mask"):
            if self._ids.get(role) is not None:
                return self._ids[role]  # type: ignore[return-value]
        raise AssertionError("unreachable: mask id is always set")

    @property
    def bos_id(self) -> int | None:
        return self._ids.get("bos")

    @property
    def eos_id(self) -> int | None:
        return self._ids.get("eos")

    def special_id(self, role: str) -> int | None:
        """Id of a role: mask, pad, bos, eos, prefix, suffix, middle, cond (None if absent)."""
        return self._ids.get(role)

    @property
    def stop_ids(self) -> set[int]:
        """Tokens that end a fill early: eos and pad (stripped from the text)."""
        return {i for i in (self._ids.get("eos"), self._ids.get("pad")) if i is not None}


def _special_ids(tok: Tokenizer, config: dict) -> dict[str, int | None]:
    ids: dict[str, int | None] = {}
    for text in SPECIAL_TOKENS:
        ids[text.strip("<|>")] = tok.token_to_id(text)
    for role, keys in _CONFIG_KEYS.items():
        for key in keys:
            value = config.get(key)
            if isinstance(value, list):
                value = value[0] if value else None
            if isinstance(value, int):
                ids[role] = value
                break
    if _is_llada(config) and not isinstance(config.get("mask_token_id"), int):
        ids["mask"] = LLADA_MASK_ID
    return ids


def _is_llada(config: dict) -> bool:
    kinds = [config.get("model_type", "")] + list(config.get("architectures") or [])
    return any("llada" in str(k).lower() for k in kinds)


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, min_frequency: int = 2
) -> CodeTokenizer:
    """Train byte-level BPE on `texts`. Special tokens get ids 0..7; the 256 byte symbols are
    always in the vocabulary so nothing is ever unknown."""
    if vocab_size < len(SPECIAL_TOKENS) + 256:
        raise ModelError(f"vocab_size {vocab_size} is too small: need at least "
                         f"{len(SPECIAL_TOKENS) + 256} for special tokens and bytes")
    tok = Tokenizer(models.BPE())
    # The GPT-2 split regex keeps runs of spaces together: indentation becomes a few tokens.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return CodeTokenizer(tok, _special_ids(tok, {}))
