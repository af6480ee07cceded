"""Continuous batching on llama.cpp: concurrent generations of one model share each decode step,
with a prefix cache across requests and prompt-lookup speculation.

One thread owns a llama.cpp context with one KV stream per slot. Each step is one llama_batch:
the next token of every generating sequence (plus prompt-lookup drafts at temperature 0, as
many as are likely to pay for their rows: see StepCost), and pieces of newly admitted prompts
(a long piece alone, in turn with the streams, so a long prompt does not stall them). Each
sequence samples with its own llama.cpp sampler chain (the chain llama-cpp-python's
`create_completion` builds; plain greedy is one numpy argmax over all rows), its own stop
strings and token budget. A finished sequence's KV stays in its slot as a cached prefix: the
next prompt that starts the same way takes that slot (or a copy of a better one) and computes
only the rest; least recently used slots are reused first. A disconnected client's sequence is
dropped at the next step. Greedy output does not depend on the other traffic (see
SAME_KERNEL_ROWS and the flash-attention note below).

Hand-written: the scheduling is the product; the arithmetic, the KV cache and the samplers are
llama.cpp's, reached through llama-cpp-python's low-level bindings. Measured against llama.cpp's
own server in benchmarks/serve_load.py.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from hearth.errors import ContextWindowError, HearthError
from hearth.llm.llamacpp import (
    THREADS_ENV,
    GenerationParams,
    LlamaCppModel,
    _cores,
)
from hearth.llm.prefix_store import PrefixStore, common_prefix
from hearth.llm.tool_calls import ToolCallSplitter, output_constraint
from hearth.types import ChatResult, Message, StreamEnd, Usage, chat_result, text_deltas

log = logging.getLogger("hearth.llm")

DEFAULT_SLOTS = 16
# The KV cells: every slot's full context when that fits this share of the memory at hand
# (at most MAX_KV_BYTES), else an equal share of what fits (at least one context in all).
KV_MEMORY_SHARE = 0.25
MAX_KV_BYTES = 4 * 2**30
PREFILL_CHUNK = 256  # prompt tokens read per step (the streams wait that long)
DRAFT_TOKENS = 6  # prompt-lookup drafts per sequence and step
NGRAM_MAX, NGRAM_MIN = 3, 2
# On a CPU every row of a step costs compute (measured, SmolLM2 on 2 AVX2 cores: 15 ms for one
# row, 54 ms for 8, 108 ms for 16), so a draft row pays only when the token it may win is worth
# more than the row costs. StepCost learns the step time as base + per_row * rows from the steps
# themselves; each sequence's chance that its next lookup token is right is learned from every
# token it generates (the lookup is checked whether or not it was fed: a shadow draft costs no
# compute). A draft at depth j (right with chance p**j) is fed while
# p**j >= per_row * streams / step_time, the step's own tokens per unit of time.
DRAFT_PRIOR = (1.0, 1.0)  # pseudo-counts (right, wrong) of a new sequence's lookup tokens
DRAFT_MEMORY = 0.9  # weight of earlier lookup outcomes at each new one
# ggml's CPU matmuls switch kernels at 64 rows in a batch (measured with SmolLM2 and Qwen2.5:
# below it each row's logits are the same whatever else is in the batch, from 64 on they
# change in the last bits). Drafts never carry a step across it, so turning prompt lookup on
# leaves every sequence's greedy output as it was.
SAME_KERNEL_ROWS = 64
COPY_AT_LEAST = 16  # prefix tokens another slot must add to be worth copying its cells
# A slot's cells are saved to host memory when the slot is given up while holding a prefix no
# other slot holds (llama.cpp's server does the same with --cache-ram): this share of the memory
# at hand, at most MAX_HOST_CACHE_BYTES.
HOST_CACHE_SHARE = 0.10
MAX_HOST_CACHE_BYTES = 2**30


@dataclass(frozen=True)
class BatchConfig:
    """How a BatchedLlamaCpp shares its model. None: chosen from the model and the memory."""

    slots: int = DEFAULT_SLOTS  # sequences generating at once
    kv_cells: int | None = None  # KV cells of all slots together (each slot gets an equal share)
    prefix_cache: bool = True
    speculative: bool = True  # prompt-lookup drafts for greedy sequences
    prefill_chunk: int = PREFILL_CHUNK
    draft_tokens: int = DRAFT_TOKENS
    host_cache_bytes: int | None = None  # prefixes saved in host memory (0: none)

    def __post_init__(self) -> None:
        if not 1 <= self.slots <= 128:
            raise ValueError(f"slots must be within 1..128, not {self.slots}")
        if not 1 <= self.prefill_chunk <= 4096:
            raise ValueError(f"prefill_chunk must be within 1..4096, not {self.prefill_chunk}")


def kv_bytes_per_token(metadata: dict[str, Any]) -> int:
    """Bytes one token takes in an f16 KV cache, from the GGUF metadata (0 when unknown)."""
    arch = metadata.get("general.architecture", "")

    def number(key: str) -> int:
        value = metadata.get(f"{arch}.{key}")
        return int(value[0] if isinstance(value, list) else value or 0)

    layers, heads = number("block_count"), number("attention.head_count")
    kv_heads = number("attention.head_count_kv") or heads
    head_dim = number("attention.key_length") or (
        number("embedding_length") // heads if heads else 0
    )
    return 2 * 2 * layers * kv_heads * head_dim


def available_memory() -> int:
    """Bytes of memory this process could still use (MemAvailable; 8 GiB when unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 2**30


def default_kv_cells(slots: int, context_size: int, per_token: int, memory: int) -> int:
    """Every slot's full context if that fits the budget, else what fits (>= one context)."""
    budget = min(int(memory * KV_MEMORY_SHARE), MAX_KV_BYTES)
    fits = budget // per_token if per_token else slots * context_size
    return max(context_size, min(slots * context_size, fits))


class StepCost:
    """A step's decode time as base + per_row * rows, fitted by least squares to recent steps
    (each new one weighs 1, older ones fade by DECAY) plus two prior points, so the fit is
    defined from the first step and stays so while every step has the same number of rows."""

    DECAY = 0.98
    PRIOR = ((1, 0.015), (8, 0.054))  # (rows, seconds): SmolLM2, 2 AVX2 cores (see above)

    def __init__(self) -> None:
        self._prior = self._sums(self.PRIOR)
        self._seen = [0.0] * 5  # weight, sum x, sum y, sum x*x, sum x*y

    @staticmethod
    def _sums(points) -> list[float]:
        return [
            float(len(points)),
            sum(x for x, _ in points),
            sum(y for _, y in points),
            sum(x * x for x, _ in points),
            sum(x * y for x, y in points),
        ]

    def add(self, rows: int, seconds: float) -> None:
        point = (1.0, rows, seconds, rows * rows, rows * seconds)
        self._seen = [self.DECAY * a + b for a, b in zip(self._seen, point, strict=True)]

    def fit(self) -> tuple[float, float]:
        """(base, per_row) in seconds."""
        w, x, y, xx, xy = (a + b for a, b in zip(self._prior, self._seen, strict=True))
        spread = w * xx - x * x
        per_row = (w * xy - x * y) / spread if spread > 0 else 0.0
        per_row = max(per_row, 1e-6)
        return max((y - per_row * x) / w, 0.0), per_row

    def draft_threshold(self, streams: int) -> float:
        """The chance a draft row must have of being right to pay for itself: its cost over
        the time the step takes per token it yields anyway."""
        base, per_row = self.fit()
        return per_row * max(streams, 1) / (base + per_row * max(streams, 1))


@dataclass
class BatchStats:
    """What /metrics and the benchmarks show about the batcher."""

    steps: int = 0
    batch_tokens: int = 0  # summed over steps
    sequences_in_steps: int = 0  # summed over steps
    prefix_hits: int = 0
    prefix_tokens_reused: int = 0
    prompt_tokens: int = 0
    drafts_proposed: int = 0
    drafts_accepted: int = 0
    evicted: int = 0
    host_saves: int = 0  # prefixes saved to host memory as their slot was given up
    host_restores: int = 0  # prompts that began with a prefix restored from host memory
    decode_seconds: float = 0.0  # inside llama_decode
    step_seconds: float = 0.0  # whole steps: planning, decode, sampling, handing out text


@dataclass
class _Seq:
    """One generation inside the batcher (touched only by the batcher's thread once admitted)."""

    prompt: list[int]
    params: GenerationParams
    stops: tuple[str, ...]
    events: queue.SimpleQueue
    seed: int
    slot: int = -1
    tokens: list[int] = field(default_factory=list)  # prompt + generated, in the KV or pending
    n_past: int = 0  # tokens of `tokens` whose KV is computed
    generated: int = 0
    sampler: Any = None
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))
    held: str = ""  # text not yet sent: it may be the start of a stop string
    cancelled: bool = False
    reused: int = 0  # prompt tokens taken from the prefix cache
    ngrams: dict[tuple[int, ...], int] = field(default_factory=dict)  # for prompt lookup
    indexed: int = 0  # tokens whose n-grams are in `ngrams`
    right: float = DRAFT_PRIOR[0]  # lookup tokens that matched what was generated (decayed)
    wrong: float = DRAFT_PRIOR[1]  # and those that did not
    lookup: list[int] = field(default_factory=list)  # this step's lookup tokens (fed or not)
    matcher: Any = None  # hearth.structured Matcher: the tokens its constraint allows next

    @property
    def prefilling(self) -> bool:
        return self.n_past < len(self.tokens) - 1


class LlamaCppBatcher:
    """The step thread over one llama.cpp context: `submit` a tokenized prompt, read events."""

    def __init__(self, model: LlamaCppModel, config: BatchConfig) -> None:
        import llama_cpp
        from llama_cpp import llama_cpp as C

        self._C = C
        self.model = model
        llama = model._load()
        self._vocab = llama._model.vocab
        self._n_vocab = llama.n_vocab()
        from hearth.llm.gguf_info import read_metadata

        per_token = kv_bytes_per_token(read_metadata(model.path))
        cells = config.kv_cells or default_kv_cells(
            config.slots, model.context_size, per_token, available_memory()
        )
        self.config = config
        self.n_seq = config.slots
        # each slot is its own stream of cells (not one unified pool): attention then reads a
        # sequence's own cells only, measured 85 vs 95-120 ms for a step of 16 sequences of
        # 100 tokens (102 vs 136-151 ms at 400 tokens), and a sequence's cells stay in order
        self.context_size = min(model.context_size, cells // config.slots)
        self.kv_cells = self.context_size * config.slots
        params = C.llama_context_default_params()
        # llama.cpp's CPU flash attention computes each query row on its own over its own
        # stream's cells, so a token's logits do not depend on what else is in the batch:
        # prompt-lookup drafts and batching leave greedy output unchanged (measured; with plain
        # attention both changed it after a few dozen tokens)
        params.flash_attn_type = C.LLAMA_FLASH_ATTN_TYPE_ENABLED
        params.n_ctx = self.kv_cells
        self.step_tokens = max(config.prefill_chunk, config.slots * (1 + config.draft_tokens))
        params.n_batch = params.n_ubatch = self.step_tokens
        params.n_seq_max = self.n_seq
        # every core, for one row too: with flash attention on, one SmolLM2 row took 10.9 ms on
        # 2 threads vs 12.2 ms on 1 (Qwen2.5-Coder 30.9 vs 42.8); HEARTH_LLAMA_THREADS overrides
        threads = int(os.environ.get(THREADS_ENV, "").strip() or _cores())
        params.n_threads = threads
        params.n_threads_batch = max(threads, _cores())
        params.kv_unified = False
        params.no_perf = True
        self._ctx = C.llama_init_from_model(llama._model.model, params)
        if not self._ctx:
            raise HearthError(
                f"llama.cpp could not make a context of {self.kv_cells} KV cells for {model.name}; "
                "lower --max-concurrency or the context size"
            )
        self._mem = C.llama_get_memory(self._ctx)
        self._batch = C.llama_batch_init(self.step_tokens, 0, 1)
        self._sampler_cls = llama_cpp._internals.LlamaSampler
        self.stats = BatchStats()
        self._cost = StepCost()
        host_budget = config.host_cache_bytes
        if host_budget is None:
            host_budget = min(int(available_memory() * HOST_CACHE_SHARE), MAX_HOST_CACHE_BYTES)
        self._host = PrefixStore(host_budget if config.prefix_cache else 0)
        self._holder: list[_Seq | None] = [None] * self.n_seq  # the sequence in each slot
        self._kept: list[list[int]] = [[] for _ in range(self.n_seq)]  # idle slots' tokens
        self._last_used = [0.0] * self.n_seq
        self._active: list[_Seq] = []
        self._incoming: deque[_Seq] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self._copy_sources: set[int] = set()  # slots copied from since the last decode
        self._alone_turn = True  # whether a prompt piece read alone goes next (see _plan)
        self._pieces: dict[int, bytes] = {}  # token -> its text's bytes (one C call per token id)
        self._eog: dict[int, bool] = {}  # token -> whether it ends generation
        self._thread = threading.Thread(target=self._run, name="hearth-llama-batch", daemon=True)
        self._thread.start()

    # -- the public side (any thread) ------------------------------------------------------

    @property
    def running(self) -> int:
        return len(self._active)

    @property
    def waiting(self) -> int:
        return len(self._incoming)

    def kv_used(self) -> int:
        """KV cells holding a token, running or kept as a cached prefix (counted in Python:
        llama.cpp's cache must not be read while the step thread decodes)."""
        return sum(len(self._content(s)) for s in range(self.n_seq))

    @property
    def cached_prefixes(self) -> int:
        return sum(1 for s in range(self.n_seq) if self._holder[s] is None and self._kept[s])

    @property
    def host_cache_bytes(self) -> int:
        return self._host.bytes

    def submit(self, prompt: list[int], params: GenerationParams, stops: tuple[str, ...], seed):
        if len(prompt) >= self.context_size:
            raise ContextWindowError(
                f"the prompt takes {len(prompt)} tokens but each of {self.model.name}'s "
                f"{self.config.slots} batch slots holds {self.context_size}; shorten the input, "
                "raise context_size or serve fewer slots (--max-concurrency)"
            )
        seq = _Seq(list(prompt), params, stops, queue.SimpleQueue(), seed)
        if params.constraint is not None:  # built here, off the step thread
            seq.matcher = params.constraint.matcher(self.model.structured_tokenizer())
        seq.tokens = list(prompt)
        with self._cv:
            if self._closed:
                raise HearthError(f"{self.model.name}: the batcher is closed")
            self._incoming.append(seq)
            self._cv.notify()
        return seq

    def cancel(self, seq: _Seq) -> None:
        with self._cv:
            seq.cancelled = True
            self._cv.notify()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout=30)
        if not self._thread.is_alive() and self._ctx:
            self._C.llama_batch_free(self._batch)
            self._C.llama_free(self._ctx)
            self._ctx = None

    # -- the step thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._closed and not self._incoming and not self._active:
                    self._cv.wait()
                if self._closed:
                    for seq in [*self._active, *self._incoming]:
                        seq.events.put(("error", HearthError("the server is shutting down")))
                    return
                waiting: list[_Seq] = []
                while self._incoming and len(self._active) < self.config.slots:
                    seq = self._incoming.popleft()
                    try:
                        if self._prefix_in_flight(seq):
                            waiting.append(seq)
                        else:
                            self._admit(seq)
                    except Exception as exc:  # this request fails; the loop goes on
                        log.exception("admitting a sequence failed")
                        seq.events.put(("error", exc))
                self._incoming.extendleft(reversed(waiting))
            self._drop_cancelled()
            if self._active:
                try:
                    self._step()
                except Exception as exc:  # a llama.cpp failure ends these requests, not the loop
                    log.exception("batched decode failed")
                    for seq in list(self._active):
                        self._finish(seq, None, error=exc)

    def _content(self, slot: int) -> list[int]:
        holder = self._holder[slot]
        return holder.tokens[: holder.n_past] if holder is not None else self._kept[slot]

    def _admit(self, seq: _Seq) -> None:
        """Give `seq` an idle slot and the longest beginning of its prompt held anywhere.
        An idle slot whose kept tokens all begin the prompt is extended in place; otherwise an
        idle slot is taken (see _eviction_order; what it kept goes to host memory unless held
        elsewhere) and the longest prefix is copied in: another slot's cells (running or idle)
        or a state saved in host memory, when that adds at least COPY_AT_LEAST tokens. So one
        cached passage set does not push out another that merely shares the instruction."""
        C, mem = self._C, self._mem
        idle = [s for s in range(self.n_seq) if self._holder[s] is None]
        limit = len(seq.tokens) - 1  # the last prompt token is read again: it gives the logits
        slot, reuse, source, longest, saved, in_host = -1, 0, -1, 0, None, 0
        if self.config.prefix_cache:
            for s in idle:
                n = common_prefix(self._kept[s], seq.tokens)
                if self._kept[s] and n == len(self._kept[s]) and n > reuse:
                    slot, reuse = s, n
            for other in range(self.n_seq):
                n = common_prefix(self._content(other), seq.tokens)
                if n > longest:
                    source, longest = other, n
            if len(self._host):
                saved, in_host = self._host.longest(tuple(seq.tokens))
        reuse, longest, in_host = min(reuse, limit), min(longest, limit), min(in_host, limit)
        # llama.cpp copies a stream's cells at the next decode, but writes a restored state at
        # once: a slot still to be copied from this round must not be restored into
        targets = [s for s in idle if s not in self._copy_sources]
        if in_host >= max(reuse, longest) + COPY_AT_LEAST and targets:
            if slot < 0 or slot in self._copy_sources:  # (an in-place slot holds less: it may go)
                slot = self._give_up(targets)
            C.llama_memory_seq_rm(mem, slot, -1, -1)
            state = self._host.get(saved)
            reuse = in_host if C.llama_state_seq_set_data(self._ctx, state, len(state), slot) else 0
            self.stats.host_restores += reuse > 0
            C.llama_memory_seq_rm(mem, slot, reuse, -1)
        elif slot < 0 or longest >= reuse + COPY_AT_LEAST:
            if slot < 0:
                slot = self._give_up(idle)
            reuse = longest if longest >= COPY_AT_LEAST else 0
            if reuse and source != slot:
                C.llama_memory_seq_rm(mem, slot, -1, -1)
                C.llama_memory_seq_cp(mem, source, slot, -1, -1)  # whole streams only, then cut
                self._copy_sources.add(source)
            C.llama_memory_seq_rm(mem, slot, reuse, -1)
        else:
            C.llama_memory_seq_rm(mem, slot, reuse, -1)
        self._kept[slot] = []
        self._holder[slot] = seq
        seq.slot = slot
        if reuse > 0:
            self.stats.prefix_hits += 1
            self.stats.prefix_tokens_reused += reuse
        seq.n_past = seq.reused = reuse
        self.stats.prompt_tokens += len(seq.prompt)
        seq.sampler = self._sampler(seq)
        self._active.append(seq)

    def _give_up(self, idle: list[int]) -> int:
        """The idle slot to reuse; what it kept is saved to host memory first, unless another
        slot or a saved state already holds (nearly all of) it."""
        slot = min(idle, key=self._eviction_order)
        kept = self._kept[slot]
        if not kept:
            return slot
        self.stats.evicted += 1
        tokens = tuple(kept)
        saved, shared = self._host.longest(tokens)
        extends = saved is None or shared == len(saved)  # (the saved one is then replaced)
        # a slot that differs from a saved state by its question and answer only is not saved
        adds = len(kept) - shared >= (COPY_AT_LEAST if extends else len(kept) / 2)
        if self._host.budget and adds and self._own_tokens(slot) >= COPY_AT_LEAST:
            size = self._C.llama_state_seq_get_size(self._ctx, slot)
            state = (ctypes.c_uint8 * size)()
            if self._C.llama_state_seq_get_data(self._ctx, state, size, slot) == size:
                self._host.put(tokens, state)
                self.stats.host_saves += 1
        return slot

    def _eviction_order(self, slot: int) -> tuple[bool, bool, float]:
        """Idle slots in the order they are given up: empty ones, then those that hold little
        (under one prompt piece) beyond what another slot also holds, then the rest; least
        recently used first within each. So the only copy of a passage set outlives a copy."""
        if not self._kept[slot]:
            return False, False, self._last_used[slot]
        own = self._own_tokens(slot) >= self.config.prefill_chunk
        return True, own, self._last_used[slot]

    def _own_tokens(self, slot: int) -> int:
        """How many of the tokens `slot` keeps no other slot holds."""
        kept = self._kept[slot]
        shared = max(
            (common_prefix(kept, self._content(s)) for s in range(self.n_seq) if s != slot),
            default=0,
        )
        return len(kept) - shared

    def _prefix_in_flight(self, seq: _Seq) -> bool:
        """Whether a prompt being read right now shares at least COPY_AT_LEAST more tokens with
        `seq` than any slot holds: then `seq` waits for it and copies its cells, rather than
        reading the same passages beside it (RAG requests about one topic arrive together)."""
        if not self.config.prefix_cache:
            return False
        held = max((common_prefix(self._content(s), seq.tokens) for s in range(self.n_seq)),
                   default=0)  # fmt: skip
        for other in self._active:
            if other.prefilling:
                shared = min(common_prefix(other.prompt, seq.tokens), len(other.prompt) - 1)
                if shared >= held + COPY_AT_LEAST and shared > other.n_past:
                    return True
        return False

    def _sampler(self, seq: _Seq):
        """The chain llama-cpp-python's create_completion builds for these parameters; None for
        plain greedy decoding, which takes the argmax of all such rows at once (numpy) instead
        of one sampler call per row."""
        p = seq.params
        if p.temperature == 0.0 and p.repeat_penalty == 1.0:
            return None
        sampler = self._sampler_cls()
        sampler.add_penalties(self._n_vocab, 64, p.repeat_penalty, 0.0, 0.0)
        if p.temperature == 0.0:
            sampler.add_greedy()
        else:
            sampler.add_top_k(40)
            sampler.add_typical(1.0, 1)
            sampler.add_top_p(p.top_p, 1)
            sampler.add_min_p(0.05, 1)
            sampler.add_temp(p.temperature)
            sampler.add_dist(seq.seed)
        return sampler

    def _drop_cancelled(self) -> None:
        for seq in [s for s in self._active if s.cancelled]:
            self._finish(seq, None, keep=False)

    def _lookup(self, seq: _Seq) -> list[int]:
        """Prompt lookup: the tokens that followed the latest earlier occurrence of the last
        n-gram (n = 3, then 2) in the prompt and the text so far (at most draft_tokens, and no
        more than the sequence may still generate)."""
        cfg = self.config
        if not cfg.speculative or seq.sampler is not None or seq.matcher is not None:
            return []
        room = min(
            cfg.draft_tokens,
            seq.params.max_tokens - seq.generated - 1,
            self.context_size - len(seq.tokens) - 1,
        )
        if room <= 0:
            return []
        tokens, index = seq.tokens, seq.ngrams
        # index every n-gram that ends before the last token: n-gram -> the index that followed
        for end in range(seq.indexed, len(tokens)):
            for n in range(NGRAM_MIN, min(NGRAM_MAX, end) + 1):
                index[tuple(tokens[end - n : end])] = end
        seq.indexed = len(tokens)
        for n in range(NGRAM_MAX, NGRAM_MIN - 1, -1):
            follower = index.get(tuple(tokens[-n:])) if len(tokens) > n else None
            if follower is not None:
                return tokens[follower : follower + room]
        return []

    @staticmethod
    def _draft_depth(seq: _Seq, threshold: float, room: int) -> int:
        """How many of `seq.lookup` to feed: while the chance that all up to here are right
        is at least `threshold`."""
        right = seq.right / (seq.right + seq.wrong)
        depth, chance = 0, right
        while depth < min(room, len(seq.lookup)) and chance >= threshold:
            depth += 1
            chance *= right
        return depth

    def _piece(self, seq: _Seq) -> int:
        """Prompt tokens `seq` reads next: prompts are read in pieces of `prefill_chunk` from
        where the cached prefix ended, so how a prompt is cut never depends on the traffic."""
        read = seq.n_past - seq.reused
        return min(self.config.prefill_chunk - read % self.config.prefill_chunk,
                   len(seq.tokens) - seq.n_past)  # fmt: skip

    def _plan(self) -> tuple[list[_Seq], list[_Seq], int]:
        """This step's generating sequences, the prompts it reads a piece of, and the room left
        for drafts. Steps below SAME_KERNEL_ROWS mix streams, drafts and short pieces (each
        row's numbers are then independent of the others); a piece of SAME_KERNEL_ROWS or more,
        or one that does not fit beside the streams, is read alone, in turn with the streams.
        So what a sequence generates does not depend on what else runs."""
        generating = [s for s in self._active if not s.prefilling]
        waiting = [s for s in self._active if s.prefilling]
        limit = SAME_KERNEL_ROWS - 1
        alone = [s for s in waiting if len(generating) + self._piece(s) > limit]
        rows, pieces = len(generating), []
        for seq in waiting:
            if rows + self._piece(seq) <= limit:
                pieces.append(seq)
                rows += self._piece(seq)
        if alone and (self._alone_turn or rows == 0):
            self._alone_turn = False
            return [], [alone[0]], 0
        self._alone_turn = True
        return generating, pieces, max(limit - rows, 0)

    def _step(self) -> None:
        started = time.perf_counter()
        self._step_inner()
        self.stats.step_seconds += time.perf_counter() - started

    def _step_inner(self) -> None:
        C = self._C
        generating, pieces, room = self._plan()
        threshold = self._cost.draft_threshold(len(generating))
        # (seq, its rows, drafts, prompt tokens read, whether it samples after its last row)
        groups: list[tuple[_Seq, list[tuple[int, int, int, bool]], list[int], int, bool]] = []
        for seq in generating:
            seq.lookup = self._lookup(seq)
            drafts = seq.lookup[: self._draft_depth(seq, threshold, room)]
            room -= len(drafts)
            feed = [seq.tokens[seq.n_past], *drafts]
            rows_of = [(t, seq.n_past + i, seq.slot, True) for i, t in enumerate(feed)]
            groups.append((seq, rows_of, drafts, 0, True))
        reads = [(seq, self._piece(seq)) for seq in pieces]
        for seq, n in reads:
            done = seq.n_past + n == len(seq.tokens)
            rows_of = [
                (seq.tokens[seq.n_past + i], seq.n_past + i, seq.slot, done and i == n - 1)
                for i in range(n)
            ]
            groups.append((seq, rows_of, [], n, done))
        # llama.cpp splits a batch over separate KV streams into sub-batches of consecutive
        # sequence ids: rows in slot order keep it one
        groups.sort(key=lambda g: g[0].slot)
        rows: list[tuple[int, int, int, bool]] = []  # token, position, slot, wants logits
        sample_at: list[tuple[_Seq, int, list[int]]] = []  # seq, its first logits row, drafts
        for seq, rows_of, drafts, read, samples in groups:
            if samples:
                first = len(rows) + (len(rows_of) - 1 if read else 0)
                sample_at.append((seq, first, drafts))
            rows += rows_of
        batch = self._batch
        for i, (token, pos, slot, logits) in enumerate(rows):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = slot
            batch.logits[i] = logits
        batch.n_tokens = len(rows)
        decode_started = time.perf_counter()
        rc = C.llama_decode(self._ctx, batch)
        self._copy_sources.clear()  # the copies are done
        took = time.perf_counter() - decode_started
        self.stats.decode_seconds += took
        if not pieces and rc == 0:  # every row wants logits: the rows drafts would add
            self._cost.add(len(rows), took)
        if rc == 1:  # no room in the KV pool: free some, retry next step
            self._make_room()
            return
        if rc != 0:
            raise HearthError(f"llama_decode failed with {rc}")
        self.stats.steps += 1
        self.stats.batch_tokens += len(rows)
        self.stats.sequences_in_steps += len(generating) + len(reads)
        for seq, n in reads:
            done = seq.n_past + n == len(seq.tokens)
            seq.n_past += n - 1 if done else n  # the last prompt token is counted by _sample
        logits, ordinal = self._logits(rows)
        for seq, row, _ in sample_at:
            if seq.matcher is not None:  # (no drafts: one row) masked in llama.cpp's buffer
                seq.matcher.mask_logits(logits[ordinal[row]])
        picks = self._greedy_picks(sample_at, logits, ordinal)
        for seq, row, drafts in sample_at:
            if seq in self._active:
                self._sample(seq, row, drafts, picks)

    def _logits(self, rows) -> tuple[np.ndarray, dict[int, int]]:
        """This step's logits (a writable view of llama.cpp's buffer) and batch row -> its
        logits row (llama.cpp keeps the rows that asked for logits contiguous, in order)."""
        ordinal, n = {}, 0
        for i, (_, _, _, wants) in enumerate(rows):
            if wants:
                ordinal[i] = n
                n += 1
        logits = np.ctypeslib.as_array(
            self._C.llama_get_logits(self._ctx), shape=(n, self._n_vocab)
        )
        return logits, ordinal

    @staticmethod
    def _greedy_picks(sample_at, logits: np.ndarray, ordinal: dict[int, int]) -> dict[int, int]:
        """Row -> argmax token for the rows of greedy sequences, in one numpy call."""
        wanted = [
            row + j
            for seq, row, drafts in sample_at
            if seq.sampler is None
            for j in range(len(drafts) + 1)
        ]
        if not wanted:
            return {}
        tokens = logits[[ordinal[r] for r in wanted]].argmax(axis=1)
        return dict(zip(wanted, tokens.tolist(), strict=True))

    def _sample(self, seq: _Seq, first: int, drafts: list[int], picks: dict[int, int]) -> None:
        """Sample after the fed token (and after each draft that turned out right); drop the
        KV of the wrong drafts; score this step's lookup against what was sampled."""
        accepted, sampled = 0, []
        for j in range(len(drafts) + 1):
            if seq.sampler is None:
                token = picks[first + j]
            else:
                token = self._C.llama_sampler_sample(seq.sampler.sampler, self._ctx, first + j)
            sampled.append(token)
            seq.n_past += 1  # the token fed at this row is now in the KV
            if not self._emit(seq, token):
                break
            if j < len(drafts) and token == drafts[j]:
                accepted += 1
                continue
            break
        for guess, token in zip(seq.lookup, sampled, strict=False):
            hit = guess == token
            seq.right = DRAFT_MEMORY * seq.right + hit
            seq.wrong = DRAFT_MEMORY * seq.wrong + (not hit)
            if not hit:
                break
        if drafts:
            self.stats.drafts_proposed += len(drafts)
            self.stats.drafts_accepted += accepted
            if seq in self._active:
                self._C.llama_memory_seq_rm(self._mem, seq.slot, seq.n_past, -1)

    def _emit(self, seq: _Seq, token: int) -> bool:
        """Take `token` as the next one of `seq`; False when the sequence is finished."""
        if self._is_eog(token):
            self._finish(seq, "stop")
            return False
        seq.tokens.append(token)
        seq.generated += 1
        seq.held += seq.decoder.decode(self._token_bytes(token))
        complete = False
        if seq.matcher is not None:
            if not seq.matcher.advance(token):  # the mask allowed it: a bug, not the model's
                self._finish(seq, None, error=HearthError(f"constraint: {seq.matcher.error}"))
                return False
            complete = seq.matcher.done
        stop_at = min((i for s in seq.stops if (i := seq.held.find(s)) >= 0), default=-1)
        if stop_at >= 0:
            seq.held = seq.held[:stop_at]
            self._finish(seq, "stop")
            return False
        # send all but what could still become a stop string
        keep = max((_overlap(seq.held, s) for s in seq.stops), default=0)
        if len(seq.held) > keep:
            seq.events.put(("text", seq.held[: len(seq.held) - keep]))
            seq.held = seq.held[len(seq.held) - keep :]
        if complete:
            self._finish(seq, "stop")
            return False
        if seq.generated >= seq.params.max_tokens or len(seq.tokens) >= self.context_size:
            self._finish(seq, "length")
            return False
        return True

    def _is_eog(self, token: int) -> bool:
        known = self._eog.get(token)
        if known is None:
            known = self._eog[token] = bool(self._C.llama_vocab_is_eog(self._vocab, token))
        return known

    def _token_bytes(self, token: int) -> bytes:
        known = self._pieces.get(token)
        if known is not None:
            return known
        self._pieces[token] = piece = self._piece_of(token)
        return piece

    def _piece_of(self, token: int) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = self._C.llama_token_to_piece(self._vocab, token, buf, 64, 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self._C.llama_token_to_piece(self._vocab, token, buf, -n, 0, False)
        return buf.raw[:n]

    def _finish(self, seq: _Seq, reason: str | None, *, keep: bool = True, error=None) -> None:
        """End `seq`: tell its reader, keep its KV as a cached prefix (or free it)."""
        if seq not in self._active:
            return
        self._active.remove(seq)
        if seq.sampler is not None:
            seq.sampler.close()
        self._holder[seq.slot] = None
        self._last_used[seq.slot] = time.monotonic()
        if keep and self.config.prefix_cache and seq.n_past > 0 and error is None:
            self._C.llama_memory_seq_rm(self._mem, seq.slot, seq.n_past, -1)
            self._kept[seq.slot] = seq.tokens[: seq.n_past]
        else:
            self._C.llama_memory_seq_rm(self._mem, seq.slot, -1, -1)
            self._kept[seq.slot] = []
        # the reader hears last, when the slot and its cells are already settled
        if error is not None:
            seq.events.put(("error", error))
        elif reason is not None:
            seq.held += seq.decoder.decode(b"", final=True)
            if seq.held:
                seq.events.put(("text", seq.held))
            seq.events.put(("end", reason, len(seq.prompt), seq.generated, seq.reused))

    def _make_room(self) -> None:
        """llama.cpp found no cells: each slot holds one context, and `_emit` ends a sequence
        before it outgrows it, so this is a bug; end the newest sequence rather than loop."""
        seq = self._active[-1]
        self._finish(
            seq,
            None,
            keep=False,
            error=HearthError(f"{self.model.name}: no KV cells left in slot {seq.slot}"),
        )


def _overlap(text: str, stop: str) -> int:
    """Length of the longest end of `text` that is a beginning of `stop`."""
    for n in range(min(len(text), len(stop) - 1), 0, -1):
        if text.endswith(stop[:n]):
            return n
    return 0


class BatchedLlamaCpp:
    """A LlamaCppModel whose generations run in a LlamaCppBatcher: the same ChatModel, but any
    number of threads may stream from it at once and they share each decode step."""

    can_stream = True

    def __init__(self, inner: LlamaCppModel, config: BatchConfig | None = None) -> None:
        self.inner = inner
        self.config = config or BatchConfig()
        self._batcher: LlamaCppBatcher | None = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def batcher(self) -> LlamaCppBatcher:
        if self._batcher is None:
            with self._lock:
                if self._batcher is None:
                    self._batcher = LlamaCppBatcher(self.inner, self.config)
        return self._batcher

    def warm_up(self) -> BatchedLlamaCpp:
        self.batcher  # noqa: B018 - builds the context now
        return self

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()

    def chat(self, messages: list[Message], **params: Any) -> ChatResult:
        return chat_result(self.stream_events(messages, **params), self.name)

    def stream(self, messages: list[Message], **params: Any) -> Iterator[str]:
        return text_deltas(self.stream_events(messages, **params))

    def stream_events(self, messages: list[Message], **params: Any) -> Iterator[str | StreamEnd]:
        gen = GenerationParams.from_kwargs(**params)  # validate before the first next()
        tools = self.inner._tool_request(gen)
        if tools is not None:  # the sequence's matcher holds it to valid calls
            gen = replace(gen, constraint=output_constraint(gen, tools))
        return self._stream_events(messages, gen, tools)

    def _stream_events(self, messages, gen: GenerationParams, tools):
        inner = self.inner
        rendered, tokens = inner._prepare(messages, tools)  # submit() checks the length
        stops = tuple(s for s in (*gen.stop, *(rendered.stop or [])) if s)
        seed = inner.seed if gen.seed is None else gen.seed
        batcher = self.batcher
        seq = batcher.submit(tokens, gen, stops, seed)
        splitter = ToolCallSplitter(tools.prefix(), tools.names()) if tools else None
        done = False
        try:
            while True:
                kind, *rest = seq.events.get()
                if kind == "error":
                    done = True
                    raise rest[0]
                if kind == "text":
                    shown = splitter.feed(rest[0]) if splitter else rest[0]
                    if shown:
                        yield shown
                    continue
                done = True
                finish, n_prompt, n_out, n_cached = rest
                calls = []
                if splitter is not None:
                    text, calls = splitter.finish()
                    if text:
                        yield text
                usage = Usage(n_prompt, n_out, n_cached)
                yield StreamEnd("tool_calls" if calls else finish, usage, calls)
                return
        finally:
            if not done:
                batcher.cancel(seq)  # the reader left: free the slot at the next step

    def batch_stats(self) -> dict[str, Any] | None:
        """The batcher's numbers for /metrics and benchmarks (None before its first use)."""
        batcher = self._batcher
        if batcher is None:
            return None
        return {
            "running": batcher.running,
            "waiting": batcher.waiting,
            "slots": batcher.config.slots,
            "kv_cells": batcher.kv_cells,
            "kv_used": batcher.kv_used(),
            "cached_prefixes": batcher.cached_prefixes,
            "host_cache_bytes": batcher.host_cache_bytes,
            **vars(batcher.stats),
        }

    def __repr__(self) -> str:
        return f"BatchedLlamaCpp({self.inner!r}, slots={self.config.slots})"
