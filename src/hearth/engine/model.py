"""The Llama-family transformer in plain PyTorch: RMSNorm, rotary embeddings (with scaling),
grouped-query attention (SDPA or a plain-math reference), SwiGLU MLP, tied embeddings.

Hand-written on purpose: this IS the product — every line shows what a KV cache, GQA or a
fused attention kernel buys, and tests hold it to transformers' logits within 1e-4. The decode
path is tuned for CPUs (docs/engine.md has the numbers): q/k/v and gate/up run as one matmul
each over weights stored once, weights are laid out the way MKL streams them fastest, RoPE
comes from a precomputed table.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from hearth.engine import kernels
from hearth.engine.config import ModelConfig
from hearth.engine.kv_cache import KVCache

AttnImpl = Literal["sdpa", "math"]


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in fp32 whatever the weights' dtype."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Written out: F.rms_norm is a composite of the same kernels on CPU, and slower.
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True).add_(self.eps))
        return self.weight * x.to(dtype)


# ---- rotary position embeddings -------------------------------------------------------------


def rope_inv_freq(config: ModelConfig, seq_len: int | None = None) -> torch.Tensor:
    """Inverse frequencies (head_dim / 2,) after the config's scaling (fp32)."""
    dim, base = config.head_dim, config.rope_theta
    sc = config.rope_scaling
    if (
        sc is not None
        and sc.kind == "dynamic"
        and seq_len
        and seq_len > config.max_position_embeddings
    ):
        ratio = sc.factor * seq_len / config.max_position_embeddings - (sc.factor - 1)
        base = base * ratio ** (dim / (dim - 2))
    inv = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    if config.rope_freq_factors is not None:  # llama.cpp's rope_freqs tensor
        inv = inv / torch.tensor(config.rope_freq_factors, dtype=torch.float32)
    if sc is None or sc.kind == "dynamic":
        return inv
    if sc.kind == "linear":
        return inv / sc.factor
    # llama3: divide low frequencies by factor, keep high ones, ramp in between
    old = sc.original_max_position_embeddings or config.max_position_embeddings
    low_wavelen, high_wavelen = old / sc.low_freq_factor, old / sc.high_freq_factor
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > low_wavelen, inv / sc.factor, inv)
    smooth = (old / wavelen - sc.low_freq_factor) / (sc.high_freq_factor - sc.low_freq_factor)
    smoothed = (1 - smooth) * scaled / sc.factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, smoothed, scaled)


def rope_cos_sin(
    config: ModelConfig, positions: torch.Tensor, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of shape (batch, 1, T, head_dim) for (batch, T) positions."""
    seq_len = int(positions.max()) + 1 if positions.numel() else 0
    inv = rope_inv_freq(config, seq_len).to(positions.device)
    freqs = positions.float()[..., None] * inv  # (B, T, head_dim / 2)
    emb = torch.cat((freqs, freqs), dim=-1)[:, None]
    return emb.cos().to(dtype), emb.sin().to(dtype)


def signed_sin(sin: torch.Tensor) -> torch.Tensor:
    """sin with its first half negated: rotate_half(x) * sin == x.roll(half) * signed_sin(sin)."""
    half = sin.shape[-1] // 2
    return torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor) -> torch.Tensor:
    """Rotate the (x1, x2) halves of each head by the position's angle (HF's half-split
    layout): x * cos + (-x2, x1) * sin, written with a roll (4 kernels instead of 6), bit for
    bit the same numbers. `sin_signed` comes from `signed_sin`."""
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * sin_signed


class RotaryTable:
    """cos / signed sin for positions 0..n-1, computed once per dtype and device and indexed
    by position each step (the same fp32 arithmetic as computing them fresh, so the same bits).
    Dynamic NTK scaling past the trained context changes every frequency with the length:
    those steps compute afresh."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.tables: dict[tuple[Any, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(
        self, positions: torch.Tensor, seq_len: int, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, signed sin of shape (batch, T, 1, head_dim) for (batch, T) positions."""
        c = self.config
        limit = None
        if c.rope_scaling is not None and c.rope_scaling.kind == "dynamic":
            limit = c.max_position_embeddings
            if seq_len > limit:
                cos, sin = rope_cos_sin(c, positions, dtype)
                return cos.transpose(1, 2), signed_sin(sin).transpose(1, 2)
        key = (positions.device, dtype)
        table = self.tables.get(key)
        if table is None or table[0].shape[0] < seq_len:
            n = max(seq_len, 2 * table[0].shape[0] if table is not None else 256)
            n = min(n, limit) if limit else n
            cos, sin = rope_cos_sin(c, torch.arange(n, device=positions.device)[None], dtype)
            table = self.tables[key] = (cos[0, 0], signed_sin(sin[0, 0]))
        return table[0][positions][:, :, None], table[1][positions][:, :, None]


# ---- attention --------------------------------------------------------------------------------


def attention_math(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """Reference path: softmax(Q K^T / sqrt(d) + mask) V, with K/V heads repeated for GQA."""
    n_rep = q.shape[1] // k.shape[1]
    if n_rep > 1:
        k = k.repeat_interleave(n_rep, dim=1)
        v = v.repeat_interleave(n_rep, dim=1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    return probs @ v


def attention_sdpa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """Fused path: PyTorch picks flash / memory-efficient / math kernels; GQA without copies."""
    gqa = q.shape[1] != k.shape[1]
    # the model's own 2-D causal mask with no cached prefix; a batch's 4-D mask is used as is
    causal = mask is not None and mask.dim() == 2 and mask.shape[-1] == mask.shape[-2]
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=None if causal else mask, is_causal=causal, enable_gqa=gqa
    )


ATTENTION = {"sdpa": attention_sdpa, "math": attention_math}


# ---- fused projections --------------------------------------------------------------------------


class SharedFusion:
    """One weight for several nn.Linear parts (concatenated along their outputs): the parts'
    parameters become views into it, so each number is stored once and a step runs one matmul.

    Replacing a part's tensor (`load_state_dict(assign=True)`, `p.data = ...`, a swapped module)
    ends the sharing: `valid()` notices and the caller falls back to the parts. In-place edits
    of the parts reach the fused weight, since it is the same memory.
    """

    def __init__(self, parts: list[nn.Linear], transposed: bool) -> None:
        weight = torch.cat([p.weight.detach() for p in parts])
        if transposed:  # (in, out) row-major underneath: MKL's gemv streams it faster
            weight = weight.t().contiguous().t()
        has_bias = [p.bias is not None for p in parts]
        bias = torch.cat([p.bias.detach() for p in parts]) if all(has_bias) else None
        start = 0
        for p in parts:
            end = start + p.out_features
            grad = p.weight.requires_grad
            p.weight = nn.Parameter(weight[start:end], requires_grad=grad)
            if bias is not None:
                p.bias = nn.Parameter(bias[start:end], requires_grad=p.bias.requires_grad)
            start = end
        self.weight, self.bias, self.parts = weight, bias, parts
        self.ptrs = self._ptrs()

    @staticmethod
    def build(parts: list[nn.Linear]) -> SharedFusion | None:
        """Fuse plain nn.Linear parts of one dtype with the same inputs; None if they are not."""
        if not all(type(p) is nn.Linear for p in parts):
            return None
        if len({(p.in_features, p.weight.dtype, p.weight.device) for p in parts}) != 1:
            return None
        if len({p.bias is None for p in parts}) != 1:
            return None
        out = sum(p.out_features for p in parts)
        return SharedFusion(parts, transposed=out >= parts[0].in_features)

    def _ptrs(self) -> tuple[int, ...]:
        return tuple(t.data_ptr() for p in self.parts for t in (p.weight, p.bias) if t is not None)

    def valid(self) -> bool:
        return self._ptrs() == self.ptrs

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.linear(x, self.weight, self.bias)


def _project(
    x: torch.Tensor, fused: nn.Module | None, shared: SharedFusion | None, parts: list[nn.Module]
) -> torch.Tensor:
    """The parts' outputs concatenated: through a quantized fused module when `quantize` made
    one, else one matmul over shared storage, else part by part."""
    if fused is not None:
        return fused(x)
    if shared is not None and shared.valid():
        return shared(x)
    return torch.cat([p(x) for p in parts], dim=-1)


def _apply_linear(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """module(x), a plain nn.Linear on the kernel that suits x's row count."""
    if type(module) is nn.Linear:
        return kernels.linear(x, module.weight, module.bias)
    return module(x)


def relayout_linear(linear: nn.Linear) -> None:
    """Store a wide (out >= in) weight as (in, out) row-major underneath, same values and
    shape: F.linear then hands MKL the layout its single-row gemv streams fastest."""
    w = linear.weight
    if w.dim() == 2 and w.shape[0] >= w.shape[1] and w.is_contiguous() and w.device.type == "cpu":
        linear.weight = nn.Parameter(w.detach().t().contiguous().t(), requires_grad=w.requires_grad)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig, layer: int) -> None:
        super().__init__()
        c, bias = config, config.attention_bias
        self.layer = layer
        self.n_heads, self.n_kv_heads, self.head_dim = c.n_heads, c.n_kv_heads, c.head_dim
        self.q_proj = nn.Linear(c.hidden_size, c.n_heads * c.head_dim, bias=bias)
        self.k_proj = nn.Linear(c.hidden_size, c.n_kv_heads * c.head_dim, bias=bias)
        self.v_proj = nn.Linear(c.hidden_size, c.n_kv_heads * c.head_dim, bias=bias)
        self.o_proj = nn.Linear(c.n_heads * c.head_dim, c.hidden_size, bias=False)
        self.register_module("qkv_proj", None)  # quantize(): one module for q, k and v
        self.shared: SharedFusion | None = None  # LlamaModel.fuse_weights()

    def fuse(self) -> None:
        self.shared = SharedFusion.build([self.q_proj, self.k_proj, self.v_proj])

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        cache: KVCache | None,
        impl: AttnImpl,
    ) -> torch.Tensor:
        b, t, _ = x.shape
        h, kv = self.n_heads, self.n_kv_heads
        parts = [self.q_proj, self.k_proj, self.v_proj]
        qkv = _project(x, self.qkv_proj, self.shared, parts).view(b, t, h + 2 * kv, -1)
        qk = apply_rope(qkv[:, :, : h + kv], cos, sin)  # q and k heads rotated together
        q = qk[:, :, :h].transpose(1, 2)  # (b, heads, t, head_dim) views, no copies
        k = qk[:, :, h:].transpose(1, 2)
        v = qkv[:, :, h + kv :].transpose(1, 2)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)
        out = ATTENTION[impl](q, k, v, mask)
        return _apply_linear(self.o_proj, out.transpose(1, 2).reshape(b, t, -1))


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.register_module("gate_up_proj", None)  # quantize(): one module for gate and up
        self.shared: SharedFusion | None = None  # LlamaModel.fuse_weights()

    def fuse(self) -> None:
        self.shared = SharedFusion.build([self.gate_proj, self.up_proj])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [self.gate_proj, self.up_proj]
        gate, up = _project(x, self.gate_up_proj, self.shared, parts).chunk(2, dim=-1)
        return _apply_linear(self.down_proj, F.silu(gate) * up)


class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig, layer: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config, layer)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        cache: KVCache | None,
        impl: AttnImpl,
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, impl)
        return x + self.mlp(self.post_attention_layernorm(x))


# ---- the model --------------------------------------------------------------------------------


class LlamaModel(nn.Module):
    """Token ids in, next-token logits out; pass a KVCache to decode incrementally.

    `attn_impl` picks the attention path: "sdpa" (fused kernels) or "math" (the reference).
    Parameter names follow Hugging Face's (without the "model." prefix), so safetensors load
    as they are.
    """

    def __init__(self, config: ModelConfig, attn_impl: AttnImpl = "sdpa") -> None:
        super().__init__()
        if attn_impl not in ATTENTION:
            raise ValueError(f"attn_impl {attn_impl!r}: use one of {', '.join(ATTENTION)}")
        self.config = config
        self.attn_impl: AttnImpl = attn_impl
        self.source: Path | None = None  # the file or folder the weights came from
        self.quantized: str | None = None  # "bf16" / "int8" after hearth.engine.quant.quantize
        self.rotary = RotaryTable(config)
        # fuse_weights(): (weight's data_ptr, its version, the head weight stored (in, out))
        self.head_copy: tuple[int, int, torch.Tensor] | None = None
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(config.n_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        # with tied embeddings, quantize() may still set a (quantized) lm_head of its own
        self.lm_head = (
            None
            if config.tie_word_embeddings
            else nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        )

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path | None = None,
        dtype: torch.dtype = torch.float32,
        attn_impl: AttnImpl = "sdpa",
        device: Any = None,
        fuse: bool = True,
    ) -> LlamaModel:
        """Load a .gguf (default: the embedded SmolLM2) or a safetensors folder; eval mode.
        `fuse` runs `fuse_weights()` (the fast decode layout; same numbers)."""
        from hearth.engine.weights import load_checkpoint

        ckpt = load_checkpoint(path, dtype=dtype)
        with torch.device("meta"):
            model = cls(ckpt.config, attn_impl=attn_impl)
        state = ckpt.state_dict
        if ckpt.config.tie_word_embeddings:
            state.pop("lm_head.weight", None)
        model.load_state_dict(state, strict=True, assign=True)
        model.source = ckpt.path
        model = model.to(device).eval() if device is not None else model.eval()
        if fuse:
            model.fuse_weights()
        return model

    @property
    def dtype(self) -> torch.dtype:
        """The activations' (and KV cache's) dtype."""
        return self.embed_tokens.weight.dtype

    def fuse_weights(self) -> LlamaModel:
        """Lay the weights out for fast decoding, keeping every parameter's name, shape and
        value: q/k/v and gate/up concatenated into one tensor each (the parts become views),
        wide matrices stored (in, out) underneath. Moving or casting the model re-fuses.

        The head (vocab x hidden, the biggest matrix) keeps its own layout for the embedding
        lookup and gets an (in, out) copy for one-row decode steps: one more copy of the head
        in memory, not in the bytes a step reads. Matmuls of several rows (speculative
        verification, batches, prefill) go through `hearth.engine.kernels` instead.
        """
        for layer in self.layers:
            layer.self_attn.fuse()
            layer.mlp.fuse()
            if type(layer.self_attn.o_proj) is nn.Linear:
                relayout_linear(layer.self_attn.o_proj)
        self.head_copy = None
        head = self._head_weight()
        if head is not None and head.device.type == "cpu":
            self.head_copy = (head.data_ptr(), head._version, head.detach().t().contiguous())
        self._fused = True
        return self

    def _head_weight(self) -> torch.Tensor | None:
        """The plain (vocab, hidden) head weight, or None once quantize() replaced the head."""
        if self.lm_head is None:
            return self.embed_tokens.weight
        return self.lm_head.weight if type(self.lm_head) is nn.Linear else None

    def project_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden states (batch, T, hidden) -> logits through the head."""
        w = self._head_weight()
        if w is None:
            return self.lm_head(x)  # a quantized head
        copy = self.head_copy
        if (
            copy is not None
            and x.shape[0] * x.shape[1] < (kernels.onednn_min_rows() or 3)
            and copy[0] == w.data_ptr()
            and copy[1] == w._version  # an in-place edit of the weight retires the copy
        ):
            return x @ copy[2]
        return kernels.linear(x, w)

    def _apply(self, fn: Any, recurse: bool = True) -> LlamaModel:
        """.to() / .bfloat16() give every parameter new memory: fuse again over it."""
        out = super()._apply(fn, recurse)
        if getattr(self, "_fused", False):
            self.fuse_weights()
        return out

    def new_cache(self, max_len: int, batch_size: int = 1) -> KVCache:
        """A KV cache sized for this model, on its device and in its dtype."""
        w = self.embed_tokens.weight
        return KVCache.for_model(self.config, max_len, batch_size, w.dtype, w.device)

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        last_only: bool = False,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (batch, T, vocab) for (batch, T) ids — or (T, vocab) for 1-D ids.

        With `kv_cache`, the T new tokens follow the cache's `kv_cache.length` stored ones and
        are appended to it. `positions` default to their index in the sequence.
        `last_only` projects only the last position (all a decode step needs).
        `attn_mask` (bool, broadcastable to (batch, 1, T, keys), True = may attend) replaces
        the causal mask: a batch of sequences of different lengths brings its own.
        """
        squeeze = input_ids.dim() == 1
        if squeeze:
            input_ids = input_ids[None]
        t = input_ids.shape[1]
        start = kv_cache.length if kv_cache is not None else 0
        if positions is None:
            positions = torch.arange(start, start + t, device=input_ids.device)
            seq_len = start + t
        else:
            seq_len = int(positions.max()) + 1 if positions.numel() else 0
        if positions.dim() == 1:
            positions = positions[None].expand(input_ids.shape[0], -1)
        x = self.embed_tokens(input_ids)
        cos, sin = self.rotary(positions, seq_len, x.dtype)
        # mask[i, j]: query i (absolute start + i) may see key j; none for a single new token
        mask = attn_mask
        if mask is None and t > 1:
            q_pos = torch.arange(start, start + t, device=x.device)[:, None]
            mask = torch.arange(start + t, device=x.device)[None, :] <= q_pos
        for layer in self.layers:
            x = layer(x, cos, sin, mask, kv_cache, self.attn_impl)
        if kv_cache is not None:
            kv_cache.advance(t)
        logits = self.project_logits(self.norm(x[:, -1:] if last_only else x))
        return logits[0] if squeeze else logits
