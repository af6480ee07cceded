"""The KV block manager: fixed-size blocks of key/value slots, reference-counted, handed out to
sequences and taken back; full blocks are indexed by a hash of every token up to their end, so a
prompt that starts like an earlier one (a system prompt, a RAG context) reuses its blocks.

Hand-written (after vLLM's / nano-vllm's block managers). Shared blocks are always full and
never written again: a sequence appends into a private last block, so no copy-on-write is
needed. Freed blocks keep their contents and hash until they are handed out again, so a
prefix stays reusable after the request that computed it finished.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hearth.engine.sequence import Sequence


@dataclass
class Block:
    block_id: int
    ref_count: int = 0
    hash: bytes | None = None  # set once the block is full and its K/V belong to `token_ids`
    token_ids: tuple[int, ...] = ()


def chain_hash(token_ids: Seq[int], prefix_hash: bytes | None) -> bytes:
    """A digest of a block's tokens and (through `prefix_hash`) of every token before it."""
    h = hashlib.blake2b(prefix_hash or b"", digest_size=16)
    h.update(array("q", token_ids).tobytes())
    return h.digest()


class BlockManager:
    """`num_blocks` blocks of `block_size` token slots. Block ids index the paged K/V pool."""

    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True):
        if num_blocks < 1 or block_size < 1:
            raise ValueError("BlockManager needs num_blocks >= 1 and block_size >= 1")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        # Free blocks in eviction order (first = handed out next): blocks without a hash go
        # first, hashed ones in the order they were freed, so recent prefixes live longest.
        self.free: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))
        self.cached: dict[bytes, int] = {}  # hash -> block id holding those tokens
        self.prefix_hit_tokens = 0  # prompt tokens served from the cache (a statistic)

    # ---- questions --------------------------------------------------------------------------

    def blocks_needed(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    @property
    def num_free_blocks(self) -> int:
        return len(self.free)

    @property
    def num_used_blocks(self) -> int:
        return self.num_blocks - len(self.free)

    def ref_count(self, block_id: int) -> int:
        return self.blocks[block_id].ref_count

    def _shareable_blocks(self, seq: Sequence) -> int:
        """Full blocks before the one holding the last token: the last token always runs
        through the model (its logits pick the next token), so its block is never reused."""
        return (seq.num_tokens - 1) // self.block_size

    def _match(self, seq: Sequence) -> list[int]:
        """Ids of cached blocks equal to the sequence's leading full blocks (stops at a miss)."""
        if not self.enable_prefix_caching:
            return []
        hits: list[int] = []
        prefix: bytes | None = None
        bs = self.block_size
        for i in range(self._shareable_blocks(seq)):
            tokens = seq.token_ids[i * bs : (i + 1) * bs]
            prefix = chain_hash(tokens, prefix)
            block_id = self.cached.get(prefix)
            if block_id is None or self.blocks[block_id].token_ids != tuple(tokens):
                break
            hits.append(block_id)
        return hits

    def cached_prefix_tokens(self, seq: Sequence) -> int:
        """Tokens of `seq` that `allocate` would find in the cache (changes nothing)."""
        return len(self._match(seq)) * self.block_size

    def can_allocate(self, seq: Sequence) -> bool:
        hits = self._match(seq)
        revived = sum(1 for b in hits if self.blocks[b].ref_count == 0)  # they leave `free`
        fresh = self.blocks_needed(seq.num_tokens) - len(hits)
        return fresh + revived <= len(self.free)

    def can_append(self, seq: Sequence) -> bool:
        return not self._needs_block(seq) or len(self.free) > 0

    # ---- changes ----------------------------------------------------------------------------

    def allocate(self, seq: Sequence) -> None:
        """Give `seq` blocks for all its tokens, reusing cached ones for its leading full blocks;
        sets `seq.num_cached_tokens` to the tokens found there."""
        if seq.block_table:
            raise RuntimeError(f"sequence {seq.seq_id} already holds blocks")
        hits = self._match(seq)
        for block_id in hits:
            block = self.blocks[block_id]
            if block.ref_count == 0:
                del self.free[block_id]
            block.ref_count += 1
        seq.block_table = list(hits)
        seq.num_cached_tokens = len(hits) * self.block_size
        self.prefix_hit_tokens += seq.num_cached_tokens
        bs = self.block_size
        prefix = self.blocks[hits[-1]].hash if hits else None
        for i in range(len(hits), self.blocks_needed(seq.num_tokens)):
            block = self._take_free()
            seq.block_table.append(block.block_id)
            tokens = seq.token_ids[i * bs : (i + 1) * bs]
            if len(tokens) == bs and self.enable_prefix_caching:
                # Computed in the very step that allocates it: each layer writes every new
                # K/V before any sequence reads, so a batch-mate may already share it.
                prefix = chain_hash(tokens, prefix)
                self._register(block, prefix, tokens)

    def append_slot(self, seq: Sequence) -> None:
        """Before a decode step: make room for the newest token (a new block when the last one
        is full) and index the block that just filled up."""
        n, bs = seq.num_tokens, self.block_size
        if self._needs_block(seq):
            seq.block_table.append(self._take_free().block_id)
        full = (n - 1) // bs  # blocks whose tokens all have K/V now
        if self.enable_prefix_caching and (n - 1) % bs == 0 and full > 0:
            block = self.blocks[seq.block_table[full - 1]]
            if block.hash is None:
                prev = self.blocks[seq.block_table[full - 2]].hash if full > 1 else None
                if full == 1 or prev is not None:  # an unindexed parent breaks the chain
                    tokens = seq.token_ids[(full - 1) * bs : full * bs]
                    self._register(block, chain_hash(tokens, prev), tokens)

    def deallocate(self, seq: Sequence, keep_cache: bool = True) -> None:
        """Give back the sequence's blocks; `keep_cache=False` also forgets their hashes (their
        K/V may never have been written: a failed step)."""
        for block_id in reversed(seq.block_table):  # the prefix is evicted last
            block = self.blocks[block_id]
            if not keep_cache:
                self._forget(block)
            block.ref_count -= 1
            if block.ref_count == 0:
                self.free[block_id] = None
                if block.hash is None:
                    self.free.move_to_end(block_id, last=False)
        seq.block_table = []
        seq.num_cached_tokens = 0

    def reset_prefix_cache(self) -> None:
        for block in self.blocks:
            self._forget(block)

    # ---- internals --------------------------------------------------------------------------

    def _needs_block(self, seq: Sequence) -> bool:
        return len(seq.block_table) < self.blocks_needed(seq.num_tokens)

    def _take_free(self) -> Block:
        if not self.free:
            raise RuntimeError("no free KV blocks (the scheduler should have preempted)")
        block_id, _ = self.free.popitem(last=False)
        block = self.blocks[block_id]
        self._forget(block)
        block.ref_count = 1
        return block

    def _register(self, block: Block, digest: bytes, tokens: Seq[int]) -> None:
        block.hash, block.token_ids = digest, tuple(tokens)
        self.cached[digest] = block.block_id

    def _forget(self, block: Block) -> None:
        if block.hash is not None and self.cached.get(block.hash) == block.block_id:
            del self.cached[block.hash]
        block.hash, block.token_ids = None, ()
