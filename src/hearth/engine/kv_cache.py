"""A preallocated key/value cache: each decoding step computes K and V for the new token only
and attends over everything stored, instead of re-running the whole prefix.

Hand-written because this is what the engine exists to show: with the cache, a decode step
costs one token's worth of matmuls; without it, the whole sequence's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from hearth.engine.config import ModelConfig


class KVCache:
    """K and V for `batch_size` sequences of up to `max_len` tokens, all layers.

    Storage is (n_layers, batch, n_kv_heads, max_len, head_dim) for K and V: with GQA only the
    n_kv_heads are stored, which is the memory GQA saves. The model writes each layer's new
    K/V with `update`, then calls `advance` once per forward.
    """

    def __init__(
        self,
        n_layers: int,
        n_kv_heads: int,
        head_dim: int,
        max_len: int,
        batch_size: int = 1,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
    ) -> None:
        if max_len < 1 or batch_size < 1:
            raise ValueError("KVCache needs max_len >= 1 and batch_size >= 1")
        shape = (n_layers, batch_size, n_kv_heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.max_len = max_len
        self.length = 0  # tokens stored (the same for every sequence of the batch)

    @classmethod
    def for_model(
        cls,
        config: ModelConfig,
        max_len: int,
        batch_size: int = 1,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
    ) -> KVCache:
        return cls(
            config.n_layers, config.n_kv_heads, config.head_dim, max_len, batch_size, dtype, device
        )

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    @property
    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store new (batch, n_kv_heads, T, head_dim) K/V after the current length; return
        views of all K/V this layer can attend to (stored + new)."""
        end = self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KVCache full: {end} tokens > max_len={self.max_len}")
        self.k[layer, :, :, self.length : end] = k
        self.v[layer, :, :, self.length : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, n: int) -> None:
        self.length += n

    def truncate(self, length: int) -> None:
        """Forget tokens after `length` (a rejected speculative draft, a retried step)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot truncate a cache of {self.length} tokens to {length}")
        self.length = length

    def reset(self) -> None:
        self.length = 0

    def reorder(self, index: torch.Tensor) -> None:
        """Pick sequences by `index` along the batch (beam search keeps its best beams)."""
        self.k = self.k.index_select(1, index)
        self.v = self.v.index_select(1, index)
