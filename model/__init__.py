"""The masked-diffusion code model.

Owns the tokenizer, the bidirectional transformer network, the noise schedule and loss, the infill
sampler (batched, confidence-threshold parallel unmasking, scoring, per-token disbelief), checkpoint
I/O for our own format and for open diffusion LMs (Qwen2 and LLaDA layouts), Triton kernels with
torch fallbacks, training, and the embedded default weights. It imports nothing else of ours and
knows nothing of tests.
"""
