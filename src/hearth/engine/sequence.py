"""One request as the batching engine tracks it: its tokens (prompt + generated), sampling
params, status, the block table naming the KV blocks that hold its keys and values, and under a
constraint its own Matcher (so constrained and free sequences share a batch).

Plain Python (after nano-vllm's Sequence): the scheduler, block manager and model runner read
and write these fields; nothing here touches tensors except the sampler's seeded generator.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hearth.engine.sampling import SamplingParams
    from hearth.structured import Matcher


class SequenceStatus(enum.Enum):
    WAITING = "waiting"  # queued, or preempted: holds no blocks
    RUNNING = "running"  # holds blocks; prefilled, decoding one token per step
    FINISHED = "finished"  # done (eos, stop, length) or aborted: blocks given back


class Sequence:
    """A prompt and its continuation. `num_cached_tokens` of `token_ids` have K/V stored in the
    blocks of `block_table`; the rest (the prompt at admission, the newest token while
    decoding) run through the model in the next step."""

    def __init__(
        self,
        seq_id: int,
        prompt_ids: Iterable[int],
        params: SamplingParams,
        eos_token_ids: Iterable[int] = (),
        matcher: Matcher | None = None,
    ) -> None:
        self.seq_id = seq_id
        self.token_ids: list[int] = list(prompt_ids)
        if not self.token_ids:
            raise ValueError("the prompt is empty: give at least one token")
        self.num_prompt_tokens = len(self.token_ids)
        self.params = params
        self.eos_token_ids = frozenset(eos_token_ids)
        self.status = SequenceStatus.WAITING
        self.block_table: list[int] = []
        self.num_cached_tokens = 0
        self.finish_reason: str | None = None  # "eos" | "stop" | "length" | "abort" | "error"
        # params.constraint's state after token_ids (it has taken every generated token)
        self.matcher = matcher
        self.generator = params.generator()  # seeded sampling stays reproducible when batched
        self.num_preemptions = 0
        self.arrival_time = time.perf_counter()
        self.first_token_time: float | None = None

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_completion_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def completion_ids(self) -> list[int]:
        """Generated tokens, without a final EOS."""
        out = self.token_ids[self.num_prompt_tokens :]
        if self.finish_reason == "eos" and out and out[-1] in self.eos_token_ids:
            out = out[:-1]
        return out

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED

    def append(self, token_id: int) -> None:
        if self.first_token_time is None:
            self.first_token_time = time.perf_counter()
        self.token_ids.append(token_id)

    def __repr__(self) -> str:
        return (
            f"Sequence(id={self.seq_id}, tokens={self.num_tokens}, "
            f"cached={self.num_cached_tokens}, status={self.status.value})"
        )
