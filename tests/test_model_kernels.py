"""Triton kernels match their torch references (run by Triton's interpreter on CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from greenpatch.model import kernels

pytest.importorskip("triton")

CHECK = textwrap.dedent("""
    import torch
    from greenpatch.model import kernels as K
    torch.manual_seed(0)
    for rows, dim in [(1, 8), (5, 48), (3, 100)]:
        x, w = torch.randn(rows, dim) * 3, torch.rand(dim) + 0.5
        got, want = K.rms_norm_triton(x, w, 1e-6), K.rms_norm_torch(x, w, 1e-6)
        assert got.shape == want.shape, (got.shape, want.shape)
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-5), (got - want).abs().max()
    x3 = torch.randn(2, 3, 16)
    assert torch.allclose(K.rms_norm_triton(x3, torch.ones(16), 1e-5),
                          K.rms_norm_torch(x3, torch.ones(16), 1e-5), atol=1e-5)
    # Vocabularies spanning several blocks (block = 4096), ties, and a temperature.
    for n, vocab, temp in [(4, 300, 1.0), (3, 5000, 0.7), (2, 9000, 1.3)]:
        logits = torch.randn(n, vocab) * 4
        logits[0, 7] = logits[0, vocab - 3] = 60.0     # tie: the lower index wins
        logits[1, vocab - 1] = 80.0                      # maximum in the last, partial block
        t1, c1, l1 = K.greedy_confidence_triton(logits, temp)
        t2, c2, l2 = K.greedy_confidence_torch(logits, temp)
        assert torch.equal(t1, t2), (t1, t2)
        assert torch.allclose(c1, c2, atol=1e-5), (c1, c2)
        assert torch.allclose(l1, l2, atol=1e-4, rtol=1e-5), (l1, l2)
    print("ok")
""")


def test_triton_kernels_match_torch_under_interpreter() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


def test_dispatch_uses_torch_on_cpu() -> None:
    x, w = torch.randn(3, 16), torch.rand(16)
    assert torch.equal(kernels.rms_norm(x, w, 1e-6), kernels.rms_norm_torch(x, w, 1e-6))
    logits = torch.randn(4, 50)
    for got, want in zip(kernels.greedy_confidence(logits), kernels.greedy_confidence_torch(logits),
                         strict=True):
        assert torch.equal(got, want)
    assert torch.allclose(kernels.greedy_confidence_torch(logits)[1],
                          torch.softmax(logits, -1).max(-1).values)
