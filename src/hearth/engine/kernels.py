"""Which CPU kernel runs an fp32 linear layer: MKL on the decode layout for one row, oneDNN on a
prepacked copy of the weight for two rows or more (speculative verification, batches, prefill).

Hand-written dispatch (torch picks MKL for every row count). Measured by
benchmarks/engine_kernels.py: MKL streams one row's weights fast, but a forward's linears at 3
to 16 rows run 1.7-2.2x faster through oneDNN on weights it reordered once into its blocked
layout; oneDNN's 3-row kernel costs what one row does, so 2 rows are padded to 3. The packed
copy is made on a weight's first multi-row call and kept on the tensor; an in-place edit of the
weight (its version changes) makes a new one. It costs one more copy of each weight in memory,
which `set_onednn_min_rows(None)` avoids.

All of that was measured on an AVX512 CPU. On an AVX2-only CPU (an AMD EPYC without AVX512,
benchmarks/engine_kernels.py) oneDNN's fp32 kernels
summed 2.4-4.5x further from the exact result than MKL and were slower on wide inputs (0.6-0.9x
on the 4,864-input down projection), so there the default is MKL for every row count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _default_min_rows() -> int | None:
    """2 where the route was measured faster and as accurate (AVX512 CPUs), else None."""
    return 2 if torch.backends.cpu.get_cpu_capability().startswith("AVX512") else None


# rows from which a linear goes through oneDNN's packed weight; None: never
_MIN_ROWS: int | None = _default_min_rows()
# fewer rows than this are padded with zero rows up to it (see linear())
_PAD_TO_ROWS = 3
# the batch size oneDNN is told to pack for (its layout is chosen for it; any size runs)
_PACK_FOR_ROWS = 16
# oneDNN sums each output over the inputs in one fp32 chain, which loses about twice MKL's
# precision at 1,536 inputs (SmolLM2's MLP down projection); wider weights are split into
# pieces of at most this many inputs and the pieces' outputs added, for 15% more time.
_MAX_INNER = 1024


def set_onednn_min_rows(rows: int | None) -> None:
    """Route fp32 linears with at least `rows` rows to oneDNN (None: always MKL; the default
    is 2 on AVX512 CPUs, None elsewhere)."""
    global _MIN_ROWS
    if rows is not None and rows < 1:
        raise ValueError(f"rows must be >= 1 or None, got {rows}")
    _MIN_ROWS = rows


def onednn_min_rows() -> int | None:
    return _MIN_ROWS


def _usable(weight: torch.Tensor) -> bool:
    return (
        weight.dtype == torch.float32
        and weight.device.type == "cpu"
        and weight.dim() == 2
        and torch.backends.mkldnn.is_available()
    )


def packed(weight: torch.Tensor) -> list[tuple[slice, torch.Tensor]]:
    """oneDNN's prepacked copies of an (out, in) fp32 weight, one per slice of at most
    `_MAX_INNER` inputs; made once per weight version."""
    cached = getattr(weight, "_hearth_packed", None)
    if cached is not None and cached[0] == weight._version:
        return cached[1]
    w = weight.detach()
    inner = w.shape[1]
    n = -(-inner // _MAX_INNER)  # ceil: pieces of equal size
    step = -(-inner // n)
    packs = []
    for start in range(0, inner, step):
        part = slice(start, min(start + step, inner))
        pack = torch.ops.mkldnn._reorder_linear_weight(w[:, part].contiguous(), _PACK_FOR_ROWS)
        packs.append((part, pack))
    weight._hearth_packed = (weight._version, packs)
    return packs


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear(x, weight, bias), on the kernel that is fastest for x's number of rows."""
    rows = x.numel() // max(x.shape[-1], 1)
    if (
        _MIN_ROWS is None
        or rows < _MIN_ROWS
        or x.dtype != torch.float32
        or torch.is_grad_enabled()
        or not _usable(weight)
    ):
        return F.linear(x, weight, bias)
    if rows < _PAD_TO_ROWS:
        # oneDNN's few-row kernels are slow here; the 3-row one costs what one row does
        flat = x.reshape(rows, x.shape[-1])
        padded = torch.cat([flat, flat.new_zeros(_PAD_TO_ROWS - rows, x.shape[-1])])
        return linear(padded, weight, bias)[:rows].reshape(*x.shape[:-1], -1)
    packs = packed(weight)
    if len(packs) == 1:
        return _onednn(x.contiguous(), packs[0][1], bias)
    y = _onednn(x[..., packs[0][0]].contiguous(), packs[0][1], bias)
    for part, pack in packs[1:]:
        y += _onednn(x[..., part].contiguous(), pack, None)
    return y


def _onednn(x: torch.Tensor, pack: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, pack, bias, "none", [], "")
