"""Lower-precision weights for the engine: bf16 everywhere, or int8 weight-only linear layers
(one scale per output channel) — fewer bytes of weights read per decoded token, which is what
bounds single-stream decoding on a CPU.

Weight-only: activations, norms, attention and the KV cache stay fp32 (torch's CPU attention
is many times slower in bf16 than in fp32); only each matmul's input is rounded to bf16 for the
kernel. torch does the arithmetic: bf16 matmuls run through oneDNN on weights packed once
(`torch.ops.mkldnn`), int8 ones through `torch._weight_int8pack_mm` (int8 weights, bf16
inputs). Where a kernel is missing, a plain dequantize-then-matmul fallback gives the same
numbers; it is also the baseline the kernel is measured against (benchmarks/engine_decode.py).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import nn

from hearth.engine.config import PRECISIONS
from hearth.errors import ConfigError

if TYPE_CHECKING:
    from hearth.engine.model import LlamaModel

Precision = Literal["fp32", "bf16", "int8"]
# what the int8 kernel and oneDNN's packed matmul take as input (and bf16 weights are stored in)
LOW_DTYPE = torch.bfloat16


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric per-output-channel int8: weight ≈ q * scale[:, None] + offset[:, None], each
    row's [min, max] spread over the 256 levels.

    Asymmetric because GGUF's Q4_1 rows (the embedded model's source) are not centred on 0:
    symmetric absmax scaling wastes levels, and measured +0.8% perplexity instead of about 0.
    """
    w = weight.detach().float()
    lo, hi = w.amin(dim=1), w.amax(dim=1)
    scale = (hi - lo).clamp(min=1e-12) / 255.0
    zero = torch.round(-lo / scale) - 128.0  # the level that stands for 0.0
    q = (torch.round(w / scale[:, None]) + zero[:, None]).clamp(-128, 127).to(torch.int8)
    return q, scale, -scale * zero


def _concat(parts: list[nn.Linear]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weights (and biases, if every part has one) of same-input layers, outputs stacked."""
    weight = torch.cat([p.weight.detach() for p in parts])
    biases = [p.bias for p in parts]
    if any(b is None for b in biases):
        return weight, None
    return weight, torch.cat([b.detach() for b in biases])


class Int8Linear(nn.Module):
    """y = x @ (q * scale + offset)^T + bias, with int8 q (out, in) and a scale and an offset
    per output row: computed as the int8 matmul scaled, plus sum(x) * offset.

    Three ways to run it: `torch._weight_int8pack_mm` (the default); with `matvec` set (by
    `quantize(..., compile=True)`), single rows go through an inductor-compiled loop that
    dequantizes inside the dot products; `use_kernel=False` dequantizes the whole weight each
    call, then runs a plain matmul (the fallback, and the baseline for the kernels' speed).
    """

    def __init__(
        self,
        weight: torch.Tensor,
        scale: torch.Tensor,
        offset: torch.Tensor,
        bias: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        rows = weight.shape[:1]
        if weight.dtype != torch.int8 or weight.dim() != 2 or scale.shape != rows:
            raise ValueError("Int8Linear needs an int8 (out, in) weight and (out,) scales")
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight", weight.contiguous())
        self.register_buffer("scale", scale.float())
        self.register_buffer("offset", offset.float())
        self.register_buffer("bias", None if bias is None else bias.detach().float())
        # the kernel takes its scales in its input dtype
        self.register_buffer("scale_low", scale.to(LOW_DTYPE), persistent=False)
        self.use_kernel = hasattr(torch, "_weight_int8pack_mm")
        self.matvec: Callable[..., torch.Tensor] | None = None

    @classmethod
    def from_linears(cls, parts: list[nn.Linear]) -> Int8Linear:
        """Quantize one or more Linear layers with the same input, outputs concatenated."""
        weight, bias = _concat(parts)
        return cls(*quantize_int8(weight.float()), bias)

    def dequantized(self) -> torch.Tensor:
        """The (out, in) fp32 weight these int8 numbers stand for."""
        return self.weight.float() * self.scale[:, None] + self.offset[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, self.in_features)
        if self.matvec is not None and x2.shape[0] == 1:
            y = self.matvec(x2, self.weight, self.scale, self.offset).to(x.dtype)
        elif self.use_kernel:
            low = x2.to(LOW_DTYPE).contiguous()
            y = torch._weight_int8pack_mm(low, self.weight, self.scale_low).to(x.dtype)
            y = torch.addcmul(y, x2.sum(dim=-1, keepdim=True), self.offset.to(x.dtype))
        else:
            y = F.linear(x2, self.dequantized().to(x.dtype))
        if self.bias is not None:
            y = y + self.bias.to(x.dtype)
        return y.view(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        how = "compiled matvec" if self.matvec else "kernel" if self.use_kernel else "dequantize"
        return f"in={self.in_features}, out={self.out_features}, {how}"


def int8_matvec(
    x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor
) -> torch.Tensor:
    """One row x (1, in) times an int8 (out, in) weight, dequantized inside the reduction.
    Eager torch would materialize the products; inductor fuses this into one loop that reads
    each int8 weight once (see `compile_int8_matvec`)."""
    return (x[:, None, :] * q.to(x.dtype)).sum(-1) * scale + x.sum(-1, keepdim=True) * offset


def compile_int8_matvec(layers: list[Int8Linear]) -> float:
    """Compile `int8_matvec` (one graph, dynamic shapes) and run it once per layer shape and
    grad mode, so the compile happens here and not at the first token. Returns the seconds it
    took; raises what torch.compile raises (no C++ compiler, ...)."""
    import time

    start = time.perf_counter()
    fn = torch.compile(int8_matvec, dynamic=True, fullgraph=True)
    shapes = {(m.weight.shape, m.weight.device) for m in layers}
    for mode in (torch.no_grad, torch.inference_mode):
        with mode():
            for (out_features, in_features), device in shapes:
                x = torch.zeros(1, in_features, device=device)
                q = torch.zeros(out_features, in_features, dtype=torch.int8, device=device)
                v = torch.zeros(out_features, device=device)
                fn(x, q, v, v)
    for m in layers:
        m.matvec = fn
    return time.perf_counter() - start


class PackedLinear(nn.Module):
    """A bf16 Linear whose weight oneDNN reorders once into its blocked layout; a plain bf16
    F.linear would reorder it on every call, which on a CPU costs more than the matmul."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        w = weight.detach().to(LOW_DTYPE).contiguous()
        self.out_features, self.in_features = w.shape
        self.register_buffer("bias", None if bias is None else bias.detach().to(LOW_DTYPE))
        # an opaque oneDNN tensor: kept off the state dict, CPU only
        self.packed = torch.ops.mkldnn._reorder_linear_weight(w)

    @classmethod
    def from_linears(cls, parts: list[nn.Linear]) -> nn.Module:
        """One packed bf16 layer for parts with the same input (outputs concatenated); a
        `Bf16Linear` where oneDNN cannot pack (no mkldnn build, a non-CPU device, a CPU
        without AVX512 / AVX-NE-CONVERT)."""
        weight, bias = _concat(parts)
        weight = weight.to(LOW_DTYPE)
        try:
            if weight.device.type != "cpu":
                raise RuntimeError("oneDNN packing is CPU only")
            return cls(weight, bias)
        except (RuntimeError, AttributeError):
            return Bf16Linear(weight, bias)

    @property
    def nbytes(self) -> int:
        return self.out_features * self.in_features * 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.mkldnn._linear_pointwise(
            x.to(LOW_DTYPE), self.packed, self.bias, "none", [], ""
        )
        return y.to(x.dtype)  # the activations stay in the caller's dtype

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, oneDNN packed bf16"


class Bf16Linear(nn.Module):
    """bf16 weights without oneDNN's packing: the input rounded to bf16, the output back in the
    caller's dtype (a plain bf16 nn.Linear would refuse fp32 activations). Few rows run torch's
    bf16 matmul; on a CPU, many rows (prefill, perplexity) upcast the weight and run the fp32
    matmul instead, since torch's bf16 matmul without AVX512 is several times slower there.
    Both multiply the same bf16 numbers."""

    upcast_rows = 16

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        w = weight.detach().to(LOW_DTYPE).contiguous()
        self.weight = nn.Parameter(w, requires_grad=False)
        b = None if bias is None else nn.Parameter(bias.detach().to(LOW_DTYPE), requires_grad=False)
        self.bias = b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = x.to(LOW_DTYPE)
        if x.device.type == "cpu" and x.numel() >= self.upcast_rows * self.in_features:
            bias = None if self.bias is None else self.bias.float()
            return F.linear(low.float(), self.weight.float(), bias).to(x.dtype)
        return F.linear(low, self.weight, self.bias).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, bf16 (unpacked)"


class _HeadWeight(nn.Module):
    """Stand-in for a tied lm_head's `weight` owner, so both helpers below take Linear-likes."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = weight
        self.bias = None


def quantize(
    model: LlamaModel, precision: str, *, use_kernel: bool = True, compile: bool = False
) -> LlamaModel:
    """Turn a loaded fp32 model into `precision` in place (and return it).

    fp32: nothing to do. bf16 / int8: every linear layer (q/k/v fused, o, gate/up fused, down,
    and the lm_head) holds bf16 weights packed for oneDNN / int8 weights with a scale and an
    offset per output channel. With tied embeddings the head gets its own low-precision copy
    and the lookup table stays fp32 (it reads one row per token). Norms, activations and the
    KV cache stay fp32. `use_kernel=False` makes int8 layers dequantize-then-matmul (the
    measured baseline). `compile=True` (int8) runs decode steps' single rows through an
    inductor-compiled matvec (needs a C++ compiler; compiling takes seconds, once per process
    and cache); if compiling fails, a warning says so and the kernel is used.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if model.quantized is not None:
        raise ConfigError(
            f"this model is already {model.quantized}: load it again to change its precision"
        )
    if precision == "fp32":
        if model.dtype != torch.float32:
            raise ConfigError(f"fp32 needs an fp32 model; this one holds {model.dtype}")
        return model
    if model.dtype != torch.float32:
        raise ConfigError(f"quantize a model loaded in fp32 (this one holds {model.dtype})")

    def make(parts: list[nn.Module]) -> nn.Module:
        if precision == "int8":
            layer = Int8Linear.from_linears(parts)  # type: ignore[arg-type]
            layer.use_kernel = layer.use_kernel and use_kernel
            return layer
        return PackedLinear.from_linears(parts)  # type: ignore[arg-type]

    with torch.no_grad():
        for layer in model.layers:
            attn, mlp = layer.self_attn, layer.mlp
            attn.qkv_proj = make([attn.q_proj, attn.k_proj, attn.v_proj])
            attn.q_proj = attn.k_proj = attn.v_proj = None
            attn.o_proj = make([attn.o_proj])
            attn.shared = None
            mlp.gate_up_proj = make([mlp.gate_proj, mlp.up_proj])
            mlp.gate_proj = mlp.up_proj = None
            mlp.down_proj = make([mlp.down_proj])
            mlp.shared = None
        head = model.lm_head or _HeadWeight(model.embed_tokens.weight)
        model.lm_head = make([head])
        model.head_copy = None  # the fp32 (in, out) head copy fuse_weights made
        # the lookup table reads one row per token: plain (vocab, hidden) rows again
        embed = model.embed_tokens.weight.detach().contiguous()
        model.embed_tokens.weight = nn.Parameter(embed, requires_grad=False)
    model.quantized = precision
    if compile and precision == "int8":
        layers = [m for m in model.modules() if isinstance(m, Int8Linear)]
        try:
            model.compile_seconds = compile_int8_matvec(layers)
        except Exception as e:  # noqa: BLE001 - inductor fails in many ways; the kernel works
            warnings.warn(
                f"torch.compile of the int8 matvec failed ({type(e).__name__}: {e}); "
                "int8 layers use torch._weight_int8pack_mm instead. A C++ compiler (g++) is "
                "needed for compile=True.",
                stacklevel=2,
            )
    return model


def decode_weight_bytes(model: LlamaModel) -> int:
    """Bytes of weights one decode step reads: every layer's weights and the head; of the
    embedding table only one row (unless it is the tied head, which reads all of it)."""
    total = 0
    embed = model.embed_tokens.weight
    for t in [*model.parameters(), *model.buffers()]:
        if t is embed and model.lm_head is not None:
            total += embed.shape[1] * embed.element_size()
            continue
        total += t.numel() * t.element_size()
    total += sum(m.nbytes for m in model.modules() if isinstance(m, PackedLinear))
    return total
