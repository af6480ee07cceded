"""Paged KV storage for a batch of sequences of different lengths: one pool of fixed-size blocks
per layer for K and V, and the per-step view the model's attention writes to and reads from.

Hand-written (the idea of vLLM's PagedAttention, in plain PyTorch): a step scatters the new
tokens' K/V into their slots with `index_copy_`, then gathers each sequence's blocks with one
`index_select` into a reused buffer, padded to the longest sequence; a boolean mask hides the
padding. The view has KVCache's interface (`update`, `advance`, `length`), so LlamaModel runs
unchanged apart from taking the batch's mask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from hearth.engine.config import ModelConfig


class PagedKVPool:
    """K and V for all layers as (n_layers, num_blocks + 1, block_size, n_kv_heads, head_dim).

    The extra last block is scratch: padding tokens write there and padded block tables point
    there, so a step never needs a branch for them (the mask hides what it holds).
    """

    def __init__(
        self,
        n_layers: int,
        num_blocks: int,
        block_size: int,
        n_kv_heads: int,
        head_dim: int,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
    ) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError("PagedKVPool needs num_blocks >= 1 and block_size >= 1")
        shape = (n_layers, num_blocks + 1, block_size, n_kv_heads, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.num_blocks, self.block_size = num_blocks, block_size
        self.scratch_block = num_blocks
        self._buffers: dict[str, torch.Tensor] = {}

    @classmethod
    def for_model(
        cls,
        config: ModelConfig,
        num_blocks: int,
        block_size: int,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
    ) -> PagedKVPool:
        return cls(
            config.n_layers,
            num_blocks,
            block_size,
            config.n_kv_heads,
            config.head_dim,
            dtype,
            device,
        )

    @staticmethod
    def bytes_per_block(config: ModelConfig, block_size: int, dtype: torch.dtype) -> int:
        """K + V bytes of one block across all layers."""
        item = torch.empty((), dtype=dtype).element_size()
        return 2 * config.n_layers * block_size * config.n_kv_heads * config.head_dim * item

    @property
    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2

    def buffer(self, name: str, rows: int) -> torch.Tensor:
        """A reused (rows, block_size, kv_heads, head_dim) buffer: fresh multi-MB tensors every
        layer cost page faults that show up as much as the copy itself."""
        buf = self._buffers.get(name)
        if buf is None or buf.shape[0] < rows:
            buf = torch.empty((rows, *self.k.shape[2:]), dtype=self.k.dtype, device=self.k.device)
            self._buffers[name] = buf
        return buf[:rows]


class PagedBatchCache:
    """One step's view of the pool for a batch: what LlamaModel's attention calls as its cache.

    `slots` (batch * T,) is the flat pool slot (block * block_size + offset) of each new token,
    row-major over the (batch, T) input; `block_tables` (batch * max_blocks,) lists each row's
    blocks, padded with the scratch block. `update` returns keys/values of shape
    (batch, kv_heads, max_blocks * block_size, head_dim): key j is the token at position j.
    """

    def __init__(
        self, pool: PagedKVPool, slots: torch.Tensor, block_tables: torch.Tensor, batch: int
    ) -> None:
        self.pool = pool
        self.slots = slots
        self.block_tables = block_tables
        self.batch = batch
        self.num_keys = block_tables.numel() // batch * pool.block_size
        self.length = 0  # positions and the mask come with the batch, not from here

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new (batch, kv_heads, T, head_dim) K/V in their slots, then gather every
        row's blocks (the new tokens included) as padded (batch, kv_heads, keys, head_dim)."""
        pool = self.pool
        b, kv, _, d = k.shape
        flat_k = pool.k[layer].view(-1, kv, d)
        flat_v = pool.v[layer].view(-1, kv, d)
        flat_k.index_copy_(0, self.slots, k.transpose(1, 2).reshape(-1, kv, d))
        flat_v.index_copy_(0, self.slots, v.transpose(1, 2).reshape(-1, kv, d))
        rows = self.block_tables.numel()
        keys = pool.buffer("k", rows)
        values = pool.buffer("v", rows)
        torch.index_select(pool.k[layer], 0, self.block_tables, out=keys)
        torch.index_select(pool.v[layer], 0, self.block_tables, out=values)
        shape = (b, self.num_keys, kv, d)
        return keys.view(shape).transpose(1, 2), values.view(shape).transpose(1, 2)

    def advance(self, n: int) -> None:
        """Nothing to do: the scheduler tracks each sequence's length."""
