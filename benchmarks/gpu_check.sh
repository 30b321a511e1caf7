#!/usr/bin/env bash
# On a machine with CUDA: the decoding benchmark, a Dream-format (Qwen2-layout) checkpoint decoded
# on cuda with the Triton kernels active (checked against their torch references), and agent
# serve's throughput on cuda. Without CUDA it says it skipped and exits 0.
#
#   bash benchmarks/gpu_check.sh          (uses .venv/bin/python if present, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: skipped: no CUDA device here (torch.cuda.is_available() is False)"
    exit 0
fi
"$PY" -c 'import triton' 2>/dev/null || {
    echo "gpu_check: triton is not installed (pip install 'greenpatch[gpu]'): kernels would not run"
    exit 1
}

echo "== decoding benchmark on $("$PY" -c 'import torch; print(torch.cuda.get_device_name())')"
"$PY" benchmarks/model_decoding.py --synthetic

echo "== a Dream-format checkpoint on cuda, Triton kernels active"
"$PY" - <<'PY'
import tempfile, time

import torch

from greenpatch.model import kernels
from greenpatch.model.checkpoint import load_model, save_model, wrap
from greenpatch.model.network import DiffusionLM, ModelConfig
from greenpatch.model.sampler import Canvas, DecodeStats, infill

with tempfile.TemporaryDirectory() as tmp:
    # A checkpoint in the layout Dream, DiffuCoder and Open-dCoder ship (Qwen2 tensor names,
    # q/k/v biases, shifted logits), written with random weights at the embedded model's size
    # and tokenizer: what is checked is that such a checkpoint loads and decodes on cuda.
    tok = load_model(device="cpu").tokenizer
    size = load_model(device="cpu").config
    config = ModelConfig(vocab_size=size.vocab_size, dim=size.dim, n_layers=size.n_layers,
                         n_heads=size.n_heads, n_kv_heads=size.n_kv_heads, ffn_dim=size.ffn_dim,
                         max_seq_len=size.max_seq_len, qkv_bias=True, tie_embeddings=False,
                         shift_logits=True, mask_id=tok.mask_id, layout="qwen2")
    save_model(wrap(DiffusionLM(config), tok), tmp, layout="qwen2")
    lm = load_model(tmp, device="cuda")
assert lm.config.layout == "qwen2" and lm.device.type == "cuda", (lm.config.layout, lm.device)
probe = torch.randn(64, lm.config.vocab_size, device="cuda")
assert kernels._use_triton(probe), "the Triton path is not taken on cuda"
token, conf, lse = kernels.greedy_confidence(probe)
ref = kernels.greedy_confidence_torch(probe)
assert torch.equal(token, ref[0]) and torch.allclose(lse, ref[2], atol=1e-3)
print(f"checkpoint layout {lm.config.layout}, {lm.dtype} on {torch.cuda.get_device_name()}; "
      "greedy_confidence (Triton) matches its torch reference")
code = "def mean(values):\n    total = sum(values)\n    return total / len(values)\n"
canvases = [Canvas(code[:i], code[i + 5:], 6) for i in range(10, 70, 4)]
stats = DecodeStats()
infill(lm, canvases, 16, steps=6, stats=stats)  # warm up
torch.cuda.synchronize()
stats = DecodeStats()
began = time.perf_counter()
infill(lm, canvases, 16, steps=6, stats=stats)
torch.cuda.synchronize()
seconds = time.perf_counter() - began
print(f"{stats.rows} rows ({len(canvases)} canvases x 16 samples), {stats.passes} passes, "
      f"{stats.tokens / seconds:.0f} span tokens/s")
PY

echo "== agent serve on cuda"
"$PY" benchmarks/serve_throughput.py --device cuda --seconds 10
