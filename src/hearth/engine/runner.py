"""The model runner: turns the scheduled sequences into one batched forward (input ids,
positions, slots, block tables, attention mask), runs LlamaModel once for all of them, and
picks each sequence's next token with hearth.engine.sampling.

Hand-written: rows are left-padded so every row's last column is its newest token, which is
the only one a step needs logits for (`last_only`); pad rows write to the pool's scratch slot.
A constrained sequence's row is masked by its own Matcher before its token is picked.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from typing import TYPE_CHECKING, NamedTuple

import torch

from hearth.engine.masking import mask_rows
from hearth.engine.paged_cache import PagedBatchCache, PagedKVPool
from hearth.engine.sampling import sample_next

if TYPE_CHECKING:
    from hearth.engine.model import LlamaModel
    from hearth.engine.sequence import Sequence


class ModelInputs(NamedTuple):
    input_ids: torch.Tensor  # (batch, T), left-padded
    positions: torch.Tensor  # (batch, T); pad columns hold 0
    attn_mask: torch.Tensor  # (batch, 1, T, keys) bool: query may attend key
    cache: PagedBatchCache


class ModelRunner:
    """Runs steps of a batch through `model`, with K/V in `pool`."""

    def __init__(self, model: LlamaModel, pool: PagedKVPool) -> None:
        self.model = model
        self.pool = pool
        self.block_size = pool.block_size
        self.forwards = 0
        self.max_batch = 0  # the most sequences one forward has carried (a statistic)

    def prepare(self, seqs: Seq[Sequence]) -> ModelInputs:
        """Each sequence runs its tokens from `num_cached_tokens` on: the whole uncached prompt
        at prefill, the newest token when decoding."""
        bs, scratch = self.block_size, self.pool.scratch_block
        news = [seq.num_tokens - seq.num_cached_tokens for seq in seqs]
        t = max(news)
        max_blocks = max(len(seq.block_table) for seq in seqs)
        ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        tables: list[int] = []
        for seq, n in zip(seqs, news, strict=True):
            pad = t - n
            start = seq.num_cached_tokens
            table = seq.block_table
            ids += [0] * pad + seq.token_ids[start:]
            positions += [0] * pad + list(range(start, start + n))
            slots += [scratch * bs] * pad
            slots += [table[p // bs] * bs + p % bs for p in range(start, start + n)]
            tables += table + [scratch] * (max_blocks - len(table))
        b = len(seqs)
        pos = torch.tensor(positions, dtype=torch.long).view(b, t)
        num_keys = max_blocks * bs
        # key j is position j of the row's sequence; a query sees keys up to its own position.
        # Pad queries (position 0) see key 0 only: a softmax over nothing would give NaNs.
        mask = (torch.arange(num_keys)[None, None, :] <= pos[:, :, None])[:, None]
        cache = PagedBatchCache(
            self.pool,
            torch.tensor(slots, dtype=torch.long),
            torch.tensor(tables, dtype=torch.long),
            b,
        )
        return ModelInputs(torch.tensor(ids, dtype=torch.long).view(b, t), pos, mask, cache)

    def run(self, seqs: Seq[Sequence]) -> list[int]:
        """One forward for all `seqs`; their next token ids, in order."""
        inputs = self.prepare(seqs)
        with torch.inference_mode():
            logits = self.model(
                inputs.input_ids,
                inputs.positions,
                kv_cache=inputs.cache,
                last_only=True,
                attn_mask=inputs.attn_mask,
            )[:, -1]
            tokens = self.sample(seqs, logits)
        self.forwards += 1
        self.max_batch = max(self.max_batch, len(seqs))
        return tokens

    @staticmethod
    def sample(seqs: Seq[Sequence], logits: torch.Tensor) -> list[int]:
        """Plain greedy rows share one argmax; rows with penalties or sampling go one by one
        through sample_next with their own seeded generator (as the single-sequence loop).
        Constrained rows are masked first, each by its own matcher; the others are untouched."""
        if any(seq.matcher is not None for seq in seqs):
            logits = mask_rows(logits, [seq.matcher for seq in seqs])
        plain = [seq.params.is_plain_greedy for seq in seqs]
        out = logits.float().argmax(dim=-1).tolist() if any(plain) else [0] * len(seqs)
        for i, seq in enumerate(seqs):
            if not plain[i]:
                seen = torch.tensor([seq.token_ids], dtype=torch.long)
                token = sample_next(logits[i : i + 1], seen, seq.params, seq.generator)
                out[i] = int(token[0])
        return out
