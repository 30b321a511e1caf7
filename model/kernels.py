"""Triton kernels for the sampler's and network's hot spots, each with the torch reference it
must match. Dispatch picks Triton for CUDA tensors at inference time, torch everywhere else
(CPU, training with autograd, Triton not installed).

- `rms_norm`: one pass over each row instead of torch's pow/mean/rsqrt/mul chain.
- `greedy_confidence`: for every masked position, the most likely token, its probability and the
  log-partition function, in one streaming pass over the vocabulary (an online softmax), without
  materializing the [positions, vocab] probability matrix. This is the per-step cost of
  confidence-threshold decoding.

Tests run the Triton versions on CPU with TRITON_INTERPRET=1 (set before triton is imported).
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # Triton is optional: the torch references serve CPU and plain installs.
    triton = None


# -- torch references ---------------------------------------------------------------------------

def rms_norm_torch(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    xf = x.float()
    normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * normed.to(x.dtype)


def greedy_confidence_torch(logits: torch.Tensor, temperature: float = 1.0
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """logits [N, V] -> (token [N] int64, confidence p(token) [N], logsumexp [N]) of
    softmax(logits / temperature), all float32."""
    scaled = logits.float() / temperature
    lse = torch.logsumexp(scaled, dim=-1)
    best, token = scaled.max(dim=-1)
    return token, torch.exp(best - lse), lse


# -- Triton kernels -----------------------------------------------------------------------------

if triton is not None:

    @triton.jit
    def _rms_norm_kernel(x_ptr, w_ptr, out_ptr, stride_x, stride_out, n_cols, eps,
                         BLOCK: tl.constexpr):
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        valid = cols < n_cols
        x = tl.load(x_ptr + row * stride_x + cols, mask=valid, other=0.0).to(tl.float32)
        rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / n_cols + eps)
        w = tl.load(w_ptr + cols, mask=valid, other=0.0).to(tl.float32)
        # Round the normalized value to the input dtype before the weight, like the reference.
        y = (x * rstd).to(out_ptr.dtype.element_ty).to(tl.float32) * w
        tl.store(out_ptr + row * stride_out + cols, y.to(out_ptr.dtype.element_ty), mask=valid)

    @triton.jit
    def _greedy_confidence_kernel(logits_ptr, token_ptr, conf_ptr, lse_ptr, stride_row, n_vocab,
                                  inv_temperature, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        offs = tl.arange(0, BLOCK)
        run_max = -float("inf")
        run_sum = 0.0
        run_arg = 0
        for start in range(0, n_vocab, BLOCK):
            cols = start + offs
            x = tl.load(logits_ptr + row * stride_row + cols, mask=cols < n_vocab,
                        other=-float("inf")).to(tl.float32) * inv_temperature
            block_max = tl.max(x, axis=0)
            # First index of the block maximum, so ties resolve like torch.max (lowest index).
            block_arg = tl.min(tl.where(x == block_max, cols, n_vocab), axis=0)
            new_max = tl.maximum(run_max, block_max)
            run_sum = run_sum * tl.exp(run_max - new_max) + tl.sum(tl.exp(x - new_max), axis=0)
            run_arg = tl.where(block_max > run_max, block_arg, run_arg)
            run_max = new_max
        lse = run_max + tl.log(run_sum)
        tl.store(token_ptr + row, run_arg.to(tl.int64))
        tl.store(conf_ptr + row, tl.exp(run_max - lse))
        tl.store(lse_ptr + row, lse)


def rms_norm_triton(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    if triton is None:
        raise RuntimeError("triton is not installed")
    shape = x.shape
    rows = x.reshape(-1, shape[-1]).contiguous()
    out = torch.empty_like(rows, dtype=torch.promote_types(x.dtype, weight.dtype))
    block = triton.next_power_of_2(shape[-1])
    _rms_norm_kernel[(rows.shape[0],)](rows, weight.contiguous(), out, rows.stride(0),
                                       out.stride(0), shape[-1], eps, BLOCK=block)
    return out.view(shape)


def greedy_confidence_triton(logits: torch.Tensor, temperature: float = 1.0
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if triton is None:
        raise RuntimeError("triton is not installed")
    rows = logits.contiguous()
    n, vocab = rows.shape
    token = torch.empty(n, dtype=torch.int64, device=rows.device)
    conf = torch.empty(n, dtype=torch.float32, device=rows.device)
    lse = torch.empty(n, dtype=torch.float32, device=rows.device)
    block = min(4096, triton.next_power_of_2(vocab))
    _greedy_confidence_kernel[(n,)](rows, token, conf, lse, rows.stride(0), vocab,
                                    1.0 / temperature, BLOCK=block)
    return token, conf, lse


# -- dispatch -----------------------------------------------------------------------------------

def _use_triton(t: torch.Tensor) -> bool:
    # The kernels have no backward: with autograd on (training) the torch path runs.
    return triton is not None and t.is_cuda and not torch.is_grad_enabled()


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    if _use_triton(x):
        return rms_norm_triton(x, weight, eps)
    return rms_norm_torch(x, weight, eps)


def greedy_confidence(logits: torch.Tensor, temperature: float = 1.0
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if _use_triton(logits):
        return greedy_confidence_triton(logits, temperature)
    return greedy_confidence_torch(logits, temperature)
