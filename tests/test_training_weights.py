"""The shipped default model: it loads with no path, fits the package, and has skill on the
held-out package (click, kept out of training; read here from the installed copy)."""

from __future__ import annotations

import json
import keyword
import random
from pathlib import Path

import pytest
import torch
from greenpatch.model.checkpoint import EMBEDDED_DIR, LoadedModel, load_model, wrap
from greenpatch.model.data import TextSpan, pick_site
from greenpatch.model.network import DiffusionLM
from greenpatch.model.sampler import frame
from safetensors import safe_open

click = pytest.importorskip("click")
SITES = 40
# Measured on the shipped weights: 15 of the 27 single-token sites among these 40 are in the
# model's top 10 (16 for the weights before them, 11 for the first); the untrained network of
# the same shape gets 0 (see model/README.md). The same 15 with 1 and 2 torch threads and with AVX2
# kernels forced; 14-17 (control 0) when the sites are drawn with seeds 0-4 instead of 0.
MIN_HITS = 12


def easy_sites(count: int) -> list[TextSpan]:
    """Identifier tokens of click's source that also occur in the 400 characters before them
    (the model can copy them from context): the first `count` drawn with a fixed seed, files in
    sorted order, one site per file in turn. A fixed rule, not a hand-picked list."""
    files = sorted(Path(click.__file__).parent.glob("*.py"))
    texts = [f.read_text() for f in files]
    rng = random.Random(0)
    sites: list[TextSpan] = []
    for attempt in range(count * 200):
        site = pick_site(texts[attempt % len(texts)], rng, "token")
        word = site.middle if site else ""
        if (word.isidentifier() and not keyword.iskeyword(word) and len(word) > 2
                and word in site.prefix[-400:]):
            sites.append(site)
            if len(sites) == count:
                break
    return sites


def test_shipped_weights_are_small_half_precision_files():
    names = {p.name for p in EMBEDDED_DIR.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    total = sum(p.stat().st_size for p in EMBEDDED_DIR.iterdir())
    assert total <= 50 * 1024 * 1024
    with safe_open(str(EMBEDDED_DIR / "model.safetensors"), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}  # noqa: SIM118
    assert dtypes <= {torch.float16, torch.bfloat16}
    assert json.loads((EMBEDDED_DIR / "config.json").read_text())["format"] == "greenpatch"


def top10_hits(lm: LoadedModel, sites: list[TextSpan]) -> int:
    """Sites whose (single-token) middle is among the model's 10 most likely tokens for the
    masked position, 100 tokens of context on each side."""
    tok, hits = lm.tokenizer, 0
    for site in sites:
        (want,) = tok.encode(site.middle)
        ids, at = frame(tok, tok.encode(site.prefix)[-100:], [tok.mask_id],
                        tok.encode(site.suffix)[:100], starts_file=False, ends_file=False)
        with torch.no_grad():
            logits = lm.net(torch.tensor([ids]), positions=torch.tensor([[at]]))[0, 0]
        hits += want in logits.topk(10).indices.tolist()
    return hits


@pytest.mark.slow
def test_default_model_fills_easy_heldout_sites():
    lm = load_model(None, device="cpu")
    sites = [s for s in easy_sites(SITES) if len(lm.tokenizer.encode(s.middle)) == 1]
    assert len(sites) >= 20
    hits = top10_hits(lm, sites)
    # The same network untrained (same shape, tokenizer and layout) as the control.
    torch.manual_seed(0)
    control = wrap(DiffusionLM(lm.config).eval(), lm.tokenizer, "untrained")
    assert hits >= MIN_HITS, f"{hits} of {len(sites)} held-out sites recovered"
    assert hits >= top10_hits(control, sites) + 5
