"""Tokenizer: byte-exact round trips, offsets, special ids, loading real models' tokenizer.json."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import pytest
from greenpatch.model.errors import ModelError
from greenpatch.model.tokenizer import LLADA_MASK_ID, SPECIAL_TOKENS, CodeTokenizer, train_tokenizer
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

STDLIB = Path(sysconfig.get_paths()["stdlib"])
ODD = (
    "def f(x):\r\n\treturn x  \t# caf\u00e9 \u2603 \U0001f600\r\n\n\n   \x0c\n"
    "\u00a0x = '\\u00e9'\r  trailing   \n\t \t mixed\n\u200b\ufeff"
)


def stdlib_sources() -> list[str]:
    files = sorted((STDLIB / "json").glob("*.py")) + sorted((STDLIB / "email").glob("*.py"))
    return [f.read_text(encoding="utf-8") for f in files]


@pytest.fixture(scope="module")
def tok() -> CodeTokenizer:
    return train_tokenizer(stdlib_sources(), vocab_size=1200)


def test_special_tokens_have_stable_low_ids(tok: CodeTokenizer) -> None:
    assert [tok.token_text(i) for i in range(len(SPECIAL_TOKENS))] == SPECIAL_TOKENS
    assert (tok.mask_id, tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    assert tok.special_id("cond") == 7
    assert tok.vocab_size == 1200


def test_round_trips_stdlib_files_and_odd_text(tok: CodeTokenizer) -> None:
    # Files not seen in training, plus whitespace and unicode edge cases.
    unseen = [p.read_text(encoding="utf-8") for p in sorted((STDLIB / "unittest").glob("*.py"))]
    for text in unseen + [ODD, "", " ", "\t\t", "\r\n", "\r", "x" * 500]:
        assert tok.decode(tok.encode(text)) == text
    # BPE actually merged: real code is much shorter in tokens than in characters (measured:
    # 1.92 characters per token; BPE counts, no floating point).
    assert len(tok.encode(unseen[0])) < len(unseen[0]) / 1.5


def test_offsets_cover_the_text(tok: CodeTokenizer) -> None:
    ids, offsets = tok.encode_with_offsets(ODD)
    assert len(ids) == len(offsets)
    assert offsets[0][0] == 0 and offsets[-1][1] == len(ODD)
    # Consecutive tokens never go backwards; each token's text is inside its range.
    for (s0, e0), (s1, e1) in zip(offsets, offsets[1:], strict=False):
        assert s0 <= s1 and e0 <= e1 and s0 < e0
    first = tok.decode(ids[:1])
    assert ODD[offsets[0][0]:offsets[0][1]] == first


def test_save_and_load(tok: CodeTokenizer, tmp_path: Path) -> None:
    tok.save(tmp_path)
    again = CodeTokenizer.load(tmp_path)
    assert again.encode(ODD) == tok.encode(ODD)
    assert again.mask_id == tok.mask_id
    again_file = CodeTokenizer.load(tmp_path / "tokenizer.json")
    assert again_file.decode(again_file.encode(ODD)) == ODD


def qwen2_style_tokenizer(texts: list[str]) -> Tokenizer:
    """A tokenizer.json built the way Qwen2's is: NFC, regex split, byte-level, added specials
    at the end of the vocabulary."""
    pattern = (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
        r"|\s*[\r\n]+|\s+(?!\S)|\s+"
    )
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|mask|>"])
    return tok


def test_loads_qwen2_style_tokenizer_with_mask_id_from_config(tmp_path: Path) -> None:
    raw = qwen2_style_tokenizer(stdlib_sources())
    raw.save(str(tmp_path / "tokenizer.json"))
    mask = raw.token_to_id("<|mask|>")
    eos = raw.token_to_id("<|endoftext|>")
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "Dream", "mask_token_id": mask, "pad_token_id": eos,
        "eos_token_id": eos, "bos_token_id": raw.token_to_id("<|im_start|>"),
    }))
    tok = CodeTokenizer.load(tmp_path)
    assert tok.mask_id == mask and tok.eos_id == eos and tok.pad_id == eos
    assert tok.special_id("prefix") is None
    text = "def g(a, b):\n    return a + b  # sum\n"
    assert tok.decode(tok.encode(text)) == text


def test_llada_mask_id_defaults_when_config_names_none(tmp_path: Path) -> None:
    raw = qwen2_style_tokenizer(stdlib_sources()[:3])
    raw.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llada",
                                                      "eos_token_id": 1}))
    tok = CodeTokenizer.load(tmp_path)
    assert tok.mask_id == LLADA_MASK_ID and tok.eos_id == 1


def test_missing_or_broken_tokenizer_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no tokenizer.json"):
        CodeTokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot read tokenizer"):
        CodeTokenizer.load(tmp_path)
    with pytest.raises(ModelError, match="too small"):
        train_tokenizer(["x"], vocab_size=100)
