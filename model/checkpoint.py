"""Checkpoints: our own format and the layouts of real open diffusion LMs, in both directions.

- greenpatch (ours): config.json `{"format": "greenpatch", "model": {...ModelConfig}}`,
  model.safetensors with our parameter names, tokenizer.json.
- qwen2 (Dream-7B, DiffuCoder-7B, Dream-Coder-7B, Open-dCoder-0.5B): Hugging Face Qwen2 config
  and tensor names (`model.layers.N.self_attn.q_proj.weight`...), shifted logits, mask id from
  the config.
- llada (LLaDA-8B): `model.transformer.blocks.N...` names, unshifted, mask id 126336.

Everything is read from a local directory; nothing is downloaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from greenpatch.model.errors import ModelError
from greenpatch.model.network import DiffusionLM, ModelConfig
from greenpatch.model.tokenizer import CodeTokenizer
from safetensors import safe_open
from safetensors.torch import save_file

EMBEDDED_DIR = Path(__file__).parent / "weights"
FORMAT = "greenpatch"


@dataclass
class LoadedModel:
    """A network ready for inference, with the tokenizer and config that go with it."""
    net: DiffusionLM
    tokenizer: CodeTokenizer
    config: ModelConfig
    device: torch.device
    dtype: torch.dtype
    name: str

    @property
    def mask_id(self) -> int:
        return self.tokenizer.mask_id


def select_device(device: str | torch.device | None = None) -> tuple[torch.device, torch.dtype]:
    """cuda with bf16 when available, else cpu with fp32; an explicit device keeps its choice."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return device, torch.bfloat16
    return device, torch.float32


# -- tensor name maps: our parameter name -> the checkpoint's, per layout -------------------------

def _block_names(layout: str, i: int) -> dict[str, str]:
    if layout == "qwen2":
        p = f"model.layers.{i}."
        names = {
            "attn_norm.weight": "input_layernorm.weight",
            "attn.q_proj.weight": "self_attn.q_proj.weight",
            "attn.k_proj.weight": "self_attn.k_proj.weight",
            "attn.v_proj.weight": "self_attn.v_proj.weight",
            "attn.q_proj.bias": "self_attn.q_proj.bias",
            "attn.k_proj.bias": "self_attn.k_proj.bias",
            "attn.v_proj.bias": "self_attn.v_proj.bias",
            "attn.o_proj.weight": "self_attn.o_proj.weight",
            "ffn_norm.weight": "post_attention_layernorm.weight",
            "ffn.gate_proj.weight": "mlp.gate_proj.weight",
            "ffn.up_proj.weight": "mlp.up_proj.weight",
            "ffn.down_proj.weight": "mlp.down_proj.weight",
        }
    elif layout == "llada":
        p = f"model.transformer.blocks.{i}."
        names = {
            "attn_norm.weight": "attn_norm.weight",
            "attn.q_proj.weight": "q_proj.weight",
            "attn.k_proj.weight": "k_proj.weight",
            "attn.v_proj.weight": "v_proj.weight",
            "attn.q_proj.bias": "q_proj.bias",
            "attn.k_proj.bias": "k_proj.bias",
            "attn.v_proj.bias": "v_proj.bias",
            "attn.o_proj.weight": "attn_out.weight",
            "ffn_norm.weight": "ff_norm.weight",
            "ffn.gate_proj.weight": "ff_proj.weight",
            "ffn.up_proj.weight": "up_proj.weight",
            "ffn.down_proj.weight": "ff_out.weight",
        }
    else:
        return {}
    return {f"blocks.{i}.{ours}": p + theirs for ours, theirs in names.items()}


def name_map(config: ModelConfig, layout: str) -> dict[str, str]:
    """Our parameter name -> tensor name in a checkpoint of `layout`, for this config."""
    net_names = _expected_names(config)
    if layout == FORMAT:
        return {n: n for n in net_names}
    if config.repair_head:
        raise ModelError(f"the {layout} layout has no repair head: save in our format")
    top = {
        "qwen2": {"embed.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
                  "lm_head.weight": "lm_head.weight"},
        "llada": {"embed.weight": "model.transformer.wte.weight",
                  "norm.weight": "model.transformer.ln_f.weight",
                  "lm_head.weight": "model.transformer.ff_out.weight"},
    }[layout]
    mapping = dict(top)
    for i in range(config.n_layers):
        mapping.update(_block_names(layout, i))
    return {ours: mapping[ours] for ours in net_names}


def _expected_names(config: ModelConfig) -> list[str]:
    """DiffusionLM's parameter names for a config, without building it (a tied head shares the
    embedding's parameter and is not listed)."""
    per_block = ["attn_norm.weight", "attn.q_proj.weight", "attn.k_proj.weight",
                 "attn.v_proj.weight", "attn.o_proj.weight", "ffn_norm.weight",
                 "ffn.gate_proj.weight", "ffn.up_proj.weight", "ffn.down_proj.weight"]
    if config.qkv_bias:
        per_block += ["attn.q_proj.bias", "attn.k_proj.bias", "attn.v_proj.bias"]
    names = ["embed.weight", "norm.weight"]
    names += [f"blocks.{i}.{n}" for i in range(config.n_layers) for n in per_block]
    if not config.tie_embeddings:
        names.append("lm_head.weight")
    if config.repair_head:
        names += ["repair.weight", "repair.bias"]
    return names


# -- Hugging Face configs -----------------------------------------------------------------------

def _layout_of(hf: dict) -> str:
    if hf.get("format") == FORMAT:
        return FORMAT
    kinds = [str(hf.get("model_type", ""))] + [str(a) for a in hf.get("architectures") or []]
    lowered = " ".join(kinds).lower()
    if "llada" in lowered:
        return "llada"
    if "qwen2" in lowered or "dream" in lowered:
        return "qwen2"
    raise ModelError(f"unknown model architecture {kinds[0] or kinds[1:]!r}: supported are "
                     "greenpatch, Qwen2-layout (Dream, DiffuCoder, Open-dCoder) and LLaDA")


def _need(hf: dict, *keys: str):
    for key in keys:
        if key in hf:
            return hf[key]
    raise ModelError(f"model config.json lacks '{keys[0]}'")


def _rope_theta(hf: dict) -> float:
    # transformers >= 5 nests it under rope_parameters.
    theta = hf.get("rope_theta") or (hf.get("rope_parameters") or {}).get("rope_theta")
    return float(theta or 10000.0)


def config_from_hf(hf: dict, mask_id: int) -> ModelConfig:
    layout = _layout_of(hf)
    if layout == FORMAT:
        return ModelConfig.from_dict(hf["model"])
    if layout == "qwen2":
        heads = _need(hf, "num_attention_heads")
        return ModelConfig(
            vocab_size=_need(hf, "vocab_size"), dim=_need(hf, "hidden_size"),
            n_layers=_need(hf, "num_hidden_layers"), n_heads=heads,
            n_kv_heads=hf.get("num_key_value_heads") or heads,
            ffn_dim=_need(hf, "intermediate_size"),
            max_seq_len=hf.get("max_position_embeddings", 32768),
            rope_theta=_rope_theta(hf), norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            qkv_bias=True,
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)), shift_logits=True,
            mask_id=mask_id, layout="qwen2")
    heads = _need(hf, "n_heads")
    return ModelConfig(
        vocab_size=_need(hf, "embedding_size", "vocab_size"), dim=_need(hf, "d_model"),
        n_layers=_need(hf, "n_layers"), n_heads=heads, n_kv_heads=hf.get("n_kv_heads") or heads,
        ffn_dim=_need(hf, "mlp_hidden_size"), max_seq_len=hf.get("max_sequence_length", 4096),
        rope_theta=_rope_theta(hf), norm_eps=float(hf.get("rms_norm_eps", 1e-5)),
        qkv_bias=bool(hf.get("include_qkv_bias", False) or hf.get("include_bias", False)),
        tie_embeddings=bool(hf.get("weight_tying", False)), shift_logits=False,
        mask_id=mask_id, layout="llada")


def config_to_hf(config: ModelConfig, layout: str, tokenizer: CodeTokenizer) -> dict:
    if layout == FORMAT:
        return {"format": FORMAT, "model": config.to_dict()}
    specials = {"mask_token_id": tokenizer.mask_id, "pad_token_id": tokenizer.pad_id,
                "bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id}
    if layout == "qwen2":
        if not config.qkv_bias:
            raise ModelError("the qwen2 layout needs qkv_bias=True")
        return {
            "architectures": ["DreamModel"], "model_type": "Dream",
            "vocab_size": config.vocab_size, "hidden_size": config.dim,
            "num_hidden_layers": config.n_layers, "num_attention_heads": config.n_heads,
            "num_key_value_heads": config.n_kv_heads, "intermediate_size": config.ffn_dim,
            "max_position_embeddings": config.max_seq_len, "rope_theta": config.rope_theta,
            "rms_norm_eps": config.norm_eps, "tie_word_embeddings": config.tie_embeddings,
            "hidden_act": "silu", **specials,
        }
    if layout == "llada":
        return {
            "architectures": ["LLaDAModelLM"], "model_type": "llada",
            "vocab_size": config.vocab_size, "embedding_size": config.vocab_size,
            "d_model": config.dim, "n_layers": config.n_layers, "n_heads": config.n_heads,
            "n_kv_heads": config.n_kv_heads, "mlp_hidden_size": config.ffn_dim,
            "max_sequence_length": config.max_seq_len, "rope_theta": config.rope_theta,
            "rms_norm_eps": config.norm_eps, "include_bias": False,
            "include_qkv_bias": config.qkv_bias, "weight_tying": config.tie_embeddings,
            "activation_type": "silu", "block_type": "llama", **specials,
        }
    raise ModelError(f"unknown checkpoint layout {layout!r}")


# -- load / save --------------------------------------------------------------------------------

def _tensor_files(directory: Path) -> list[Path]:
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise ModelError(f"no *.safetensors weights in {directory}")
    return files


def load_model(path: Path | str | None = None, device: str | torch.device | None = None
               ) -> LoadedModel:
    """Load a model directory (ours, Qwen2-layout or LLaDA-layout); None: the embedded model."""
    if path is None:
        if not (EMBEDDED_DIR / "config.json").is_file():
            raise ModelError("no embedded model yet: pass --model PATH")
        path = EMBEDDED_DIR
    directory = Path(path)
    if not directory.exists():
        raise ModelError(f"model directory not found: {directory}")
    if not directory.is_dir():
        raise ModelError(f"model path is not a directory: {directory}")
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise ModelError(f"not a model directory (no config.json): {directory}")
    try:
        hf = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot parse {config_file}: {exc}") from None
    layout = _layout_of(hf)
    tokenizer = CodeTokenizer.load(directory, config=hf if layout != FORMAT else {})
    config = config_from_hf(hf, tokenizer.mask_id)
    if tokenizer.vocab_size > config.vocab_size:
        raise ModelError(f"tokenizer has {tokenizer.vocab_size} tokens but the model only "
                         f"{config.vocab_size}")
    dev, dtype = select_device(device)
    # Built without memory, then filled: a 7B model is never initialized only to be overwritten.
    with torch.device("meta"):
        net = DiffusionLM(config)
    net.to_empty(device=dev)
    if config.tie_embeddings:
        net.lm_head.weight = net.embed.weight
    _load_weights(net, directory, layout)
    net.to(dtype=dtype).eval()
    return LoadedModel(net, tokenizer, config, dev, dtype, name=str(directory))


def _load_weights(net: DiffusionLM, directory: Path, layout: str) -> None:
    mapping = name_map(net.config, layout)
    params = dict(net.named_parameters())
    found: dict[str, torch.Tensor] = {}
    wanted = {theirs: ours for ours, theirs in mapping.items()}
    for file in _tensor_files(directory):
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                if key in wanted:
                    found[wanted[key]] = handle.get_tensor(key)
    missing = [mapping[n] for n in params if n not in found]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ModelError(f"checkpoint {directory} is missing tensor {missing[0]}{more}")
    with torch.no_grad():
        for name, tensor in found.items():
            if tuple(tensor.shape) != tuple(params[name].shape):
                raise ModelError(f"shape mismatch for {mapping[name]}: checkpoint has "
                                 f"{tuple(tensor.shape)}, config expects "
                                 f"{tuple(params[name].shape)}")
            params[name].copy_(tensor.to(params[name].dtype))


def save_model(lm: LoadedModel, directory: Path | str, layout: str = FORMAT) -> Path:
    """Write config.json + model.safetensors + tokenizer.json in our format (or, for export and
    tests, in the qwen2 / llada layouts)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    hf = config_to_hf(lm.config, layout, lm.tokenizer)
    mapping = name_map(lm.config, layout)
    tensors = {mapping[name]: p.detach().to("cpu", torch.float32).contiguous()
               for name, p in lm.net.named_parameters()}
    save_file(tensors, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
    lm.tokenizer.save(directory)
    return directory


def wrap(net: DiffusionLM, tokenizer: CodeTokenizer, name: str = "in-memory") -> LoadedModel:
    """A LoadedModel around a network already in memory (e.g. just trained)."""
    param = next(net.parameters())
    return LoadedModel(net, tokenizer, net.config, param.device, param.dtype, name)
