"""The continuous-batching scheduler: every step it admits waiting sequences while KV blocks are
free (a prefill step), or else advances every running sequence by one token (a decode step),
preempting the newest ones when blocks run out; finished sequences leave after each step.

Hand-written after nano-vllm's Scheduler. A preempted sequence gives its blocks back and is
recomputed later from its tokens (prompt + generated so far); its own blocks often are still
in the prefix cache then, so the recompute is cheap.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from collections.abc import Sequence as Seq
from typing import NamedTuple

from hearth.engine.block_manager import BlockManager
from hearth.engine.sequence import Sequence, SequenceStatus

log = logging.getLogger("hearth.engine")


class ScheduledBatch(NamedTuple):
    seqs: list[Sequence]
    is_prefill: bool


class Scheduler:
    """Queues of waiting and running sequences over one BlockManager.

    `max_num_seqs` caps a batch; `max_num_batched_tokens` caps a prefill step's padded size
    (rows x longest new part), though a single long prompt is always let in alone.
    """

    def __init__(
        self, block_manager: BlockManager, max_num_seqs: int, max_num_batched_tokens: int
    ) -> None:
        if max_num_seqs < 1 or max_num_batched_tokens < 1:
            raise ValueError("max_num_seqs and max_num_batched_tokens must be >= 1")
        self.block_manager = block_manager
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: deque[Sequence] = deque()
        self.num_preemptions = 0

    def add(self, seq: Sequence) -> None:
        seq.status = SequenceStatus.WAITING
        self.waiting.append(seq)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> ScheduledBatch | None:
        """The next step's sequences: newcomers if any fit (prefill), else all running ones."""
        batch = self._admit()
        if batch:
            return ScheduledBatch(batch, True)
        batch = self._decode()
        return ScheduledBatch(batch, False) if batch else None

    def _admit(self) -> list[Sequence]:
        bm = self.block_manager
        admitted: list[Sequence] = []
        longest = 0
        while self.waiting and len(self.running) + len(admitted) < self.max_num_seqs:
            seq = self.waiting[0]
            new = seq.num_tokens - bm.cached_prefix_tokens(seq)
            cost = (len(admitted) + 1) * max(longest, new)
            if admitted and cost > self.max_num_batched_tokens:
                break
            if not bm.can_allocate(seq):
                break
            bm.allocate(seq)
            longest = max(longest, seq.num_tokens - seq.num_cached_tokens)
            seq.status = SequenceStatus.RUNNING
            self.waiting.popleft()
            admitted.append(seq)
        self.running.extend(admitted)
        return admitted

    def _decode(self) -> list[Sequence]:
        bm = self.block_manager
        scheduled: list[Sequence] = []
        while self.running and len(scheduled) < self.max_num_seqs:
            seq = self.running.popleft()
            while not bm.can_append(seq):
                if self.running:
                    self._preempt(self.running.pop())  # the newest gives way
                else:
                    self._preempt(seq)
                    break
            else:
                bm.append_slot(seq)
                scheduled.append(seq)
        self.running.extendleft(reversed(scheduled))
        return scheduled

    def _preempt(self, seq: Sequence) -> None:
        self.block_manager.deallocate(seq)
        seq.status = SequenceStatus.WAITING
        seq.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(seq)

    def postprocess(
        self,
        seqs: Seq[Sequence],
        token_ids: Seq[int],
        stopped: Callable[[Sequence], bool] | None = None,
    ) -> list[Sequence]:
        """Append each sequence's new token (a constrained one's matcher takes it too); retire
        those that hit EOS, complete their constraint ("stop"), hit max_tokens or (by `stopped`,
        which sees the text) a stop string. Returns the finished ones."""
        finished: list[Sequence] = []
        for seq, token in zip(seqs, token_ids, strict=True):
            seq.num_cached_tokens = seq.num_tokens  # the step stored K/V for all its tokens
            seq.append(token)
            refused = complete = False
            if seq.matcher is not None and token not in seq.eos_token_ids:
                refused = not seq.matcher.advance(token)
                complete = seq.matcher.done
            if token in seq.eos_token_ids:
                reason = "eos"
            elif refused:  # the mask allows only what it takes: a matcher in error
                log.warning("sequence %s: %s", seq.seq_id, seq.matcher.error)
                reason = "error"
            elif complete:
                reason = "stop"
            elif stopped is not None and seq.params.stop and stopped(seq):
                reason = "stop"
            elif seq.num_completion_tokens >= seq.params.max_tokens:
                reason = "length"
            else:
                continue
            self._finish(seq, reason)
            finished.append(seq)
        return finished

    def abort(self, seq_id: int) -> Sequence | None:
        """Drop a sequence wherever it is (a client went away); its blocks are freed."""
        for queue in (self.waiting, self.running):
            for seq in queue:
                if seq.seq_id == seq_id:
                    self._finish(seq, "abort")
                    return seq
        return None

    def _finish(self, seq: Sequence, reason: str) -> None:
        if seq.status is SequenceStatus.RUNNING:
            self.block_manager.deallocate(seq)
            self.running.remove(seq)
        elif seq.status is SequenceStatus.WAITING:
            self.waiting.remove(seq)
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = reason

    def fail(self, seqs: Seq[Sequence]) -> None:
        """A step raised: drop its sequences and the cache entries their blocks may claim."""
        for seq in seqs:
            if seq.status is SequenceStatus.RUNNING:
                self.block_manager.deallocate(seq, keep_cache=False)
                self.running.remove(seq)
            seq.status = SequenceStatus.FINISHED
            seq.finish_reason = "error"
