"""LLMEngine: continuous batching over our LlamaModel. `add_request` queues a prompt; each
`step()` is schedule (which sequences run), run (one batched forward), postprocess (append
tokens, retire finished sequences); `generate` runs a list of prompts to the end. A request
under a constraint (SamplingParams.constraint) masks its own row with its own Matcher.

Hand-written after nano-vllm's LLMEngine; the block manager, scheduler, sequence and model
runner live in files of their own. Not thread-safe: one thread drives `step()` (see
chat_model.py for the server's threads).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from hearth.engine.block_manager import BlockManager
from hearth.engine.sampling import SamplingParams
from hearth.engine.scheduler import Scheduler
from hearth.engine.sequence import Sequence
from hearth.errors import ConfigError, ContextWindowError

if TYPE_CHECKING:
    from hearth.engine.model import LlamaModel
    from hearth.engine.tokenizer import Tokenizer
    from hearth.structured import Matcher


@dataclass(frozen=True)
class EngineConfig:
    """Engine sizes; checked on creation. The KV pool gets `num_blocks` blocks, or as many as
    `kv_cache_mb` holds when num_blocks is None."""

    block_size: int = 16
    num_blocks: int | None = None
    kv_cache_mb: float = 256.0
    max_num_seqs: int = 32
    max_num_batched_tokens: int = 4096
    max_model_len: int | None = None  # default: the model's context
    enable_prefix_caching: bool = True

    def __post_init__(self) -> None:
        checks = [
            ("block_size", self.block_size >= 1),
            ("num_blocks", self.num_blocks is None or self.num_blocks >= 1),
            ("kv_cache_mb", self.kv_cache_mb > 0),
            ("max_num_seqs", self.max_num_seqs >= 1),
            ("max_num_batched_tokens", self.max_num_batched_tokens >= 1),
            ("max_model_len", self.max_model_len is None or self.max_model_len >= 2),
        ]
        for name, ok in checks:
            if not ok:
                value = getattr(self, name)
                raise ConfigError(f"EngineConfig.{name} must be positive, got {value}")


class StepOutput(NamedTuple):
    """One sequence's new token from one step (the EOS token too, when that ended it)."""

    seq_id: int
    token_id: int
    finished: bool
    finish_reason: str | None


class EngineOutput(NamedTuple):
    """A finished request: its tokens (no EOS, cut at a stop string), text and why it ended."""

    seq_id: int
    prompt_ids: list[int]
    token_ids: list[int]
    text: str
    finish_reason: str


class LLMEngine:
    """Many sequences through one model, batched step by step."""

    def __init__(
        self,
        model: LlamaModel,
        tokenizer: Tokenizer | None = None,
        config: EngineConfig | None = None,
    ) -> None:
        from hearth.engine.paged_cache import PagedKVPool
        from hearth.engine.runner import ModelRunner

        self.model = model
        self.tokenizer = tokenizer
        self.config = config = config or EngineConfig()
        mc = model.config
        self.max_model_len = min(config.max_model_len or mc.max_position_embeddings,
                                 mc.max_position_embeddings)  # fmt: skip
        w = model.embed_tokens.weight
        num_blocks = config.num_blocks or max(
            1,
            int(config.kv_cache_mb * 2**20)
            // PagedKVPool.bytes_per_block(mc, config.block_size, w.dtype),
        )
        self.block_manager = BlockManager(
            num_blocks, config.block_size, config.enable_prefix_caching
        )
        self.scheduler = Scheduler(
            self.block_manager, config.max_num_seqs, config.max_num_batched_tokens
        )
        pool = PagedKVPool.for_model(mc, num_blocks, config.block_size, w.dtype, w.device)
        self.runner = ModelRunner(model, pool)
        self._ids = itertools.count()
        self._seqs: dict[int, Sequence] = {}  # unfinished ones

    @classmethod
    def from_path(
        cls, path: str | Path | None = None, precision: str | None = None, **config: Any
    ) -> LLMEngine:
        """Load a .gguf (default: the embedded SmolLM2) or safetensors folder and its tokenizer,
        in `precision` (default: the model's measured one, hearth.engine.config)."""
        from hearth.engine.config import default_precision
        from hearth.engine.tokenizer import load_tokenizer

        precision = precision or default_precision(path)
        model = load_model(path, precision)
        return cls(model, load_tokenizer(model.source), EngineConfig(**config))

    # ---- requests ---------------------------------------------------------------------------

    def add_request(
        self,
        prompt: str | Seq[int],
        params: SamplingParams | None = None,
        *,
        eos_token_ids: Seq[int] | None = None,
        seq_id: int | None = None,
        matcher: Matcher | None = None,
    ) -> int:
        """Queue a prompt (text or token ids); its id. `eos_token_ids` default to the
        tokenizer's EOS; pass () to run to max_tokens. Under params.constraint, `matcher` is
        the request's fresh Matcher (made here when not given: matcher_for)."""
        params = params or SamplingParams()
        if params.strategy not in ("greedy", "sample"):
            raise ConfigError(
                f"the batching engine runs greedy or sample, not {params.strategy!r} "
                "(use hearth.engine.Generator for beam or contrastive search)"
            )
        if params.stop and self.tokenizer is None:
            raise ConfigError("stop strings need the engine's tokenizer to see the text")
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise ConfigError("a text prompt needs the engine's tokenizer; pass token ids")
            prompt = self.tokenizer.encode(prompt)
        if eos_token_ids is None:
            eos = self.tokenizer.eos_token_id if self.tokenizer is not None else None
            eos_token_ids = () if eos is None else (eos,)
        total = len(prompt) + params.max_tokens
        if total > self.max_model_len:
            raise ContextWindowError(
                f"prompt ({len(prompt)} tokens) + max_tokens ({params.max_tokens}) exceeds the "
                f"engine's context of {self.max_model_len}: shorten the prompt or lower max_tokens"
            )
        bm = self.block_manager
        if bm.blocks_needed(total) > bm.num_blocks:
            raise ConfigError(
                f"a request of {total} tokens needs {bm.blocks_needed(total)} KV blocks but the "
                f"engine has {bm.num_blocks}: raise EngineConfig.kv_cache_mb or num_blocks"
            )
        if params.constraint is not None and matcher is None:
            from hearth.engine.masking import matcher_for

            matcher = matcher_for(params, self.tokenizer)
        seq_id = next(self._ids) if seq_id is None else seq_id
        if seq_id in self._seqs:
            raise ValueError(f"request id {seq_id} is already running")
        seq = Sequence(seq_id, prompt, params, eos_token_ids, matcher)
        self._seqs[seq_id] = seq
        self.scheduler.add(seq)
        return seq_id

    def abort(self, seq_id: int) -> bool:
        """Stop a request and free its blocks; False if it had already finished."""
        seq = self.scheduler.abort(seq_id)
        self._seqs.pop(seq_id, None)
        return seq is not None

    def has_unfinished(self) -> bool:
        return self.scheduler.has_unfinished()

    def sequence(self, seq_id: int) -> Sequence | None:
        return self._seqs.get(seq_id)

    # ---- the loop ---------------------------------------------------------------------------

    def step(self) -> list[StepOutput]:
        """Schedule, run, postprocess: one forward for every scheduled sequence."""
        batch = self.scheduler.schedule()
        if batch is None:
            return []
        try:
            tokens = self.runner.run(batch.seqs)
        except BaseException:
            self.scheduler.fail(batch.seqs)
            for seq in batch.seqs:
                self._seqs.pop(seq.seq_id, None)
            raise
        finished = {
            seq.seq_id for seq in self.scheduler.postprocess(batch.seqs, tokens, self._stop_check())
        }
        outputs = []
        for seq, token in zip(batch.seqs, tokens, strict=True):
            done = seq.seq_id in finished
            if done:
                self._seqs.pop(seq.seq_id, None)
            outputs.append(StepOutput(seq.seq_id, token, done, seq.finish_reason if done else None))
        return outputs

    def _stop_check(self) -> Callable[[Sequence], bool] | None:
        if self.tokenizer is None:
            return None
        return self._stopped

    def _stopped(self, seq: Sequence) -> bool:
        """Did the newest token complete a stop string? Earlier steps checked everything
        before it, so only a tail of the completion is decoded (constant work per step):
        4 tokens per character of the longest stop string covers byte-level tokens, and 8
        more keep a decoder's start-of-text rules (a dropped leading space) off the match."""
        stops = seq.params.stop
        window = 4 * max(len(s) for s in stops) + 8
        return _find_stop(self.decode(seq.completion_ids[-window:]), stops) >= 0

    def generate(
        self,
        prompts: Seq[str | Seq[int]],
        params: SamplingParams | Seq[SamplingParams] | None = None,
        *,
        eos_token_ids: Seq[int] | None = None,
    ) -> list[EngineOutput]:
        """Run every prompt to the end, batched; outputs in the prompts' order."""
        if params is None or isinstance(params, SamplingParams):
            params = [params or SamplingParams()] * len(prompts)
        seqs = []
        for prompt, p in zip(prompts, params, strict=True):
            seq_id = self.add_request(prompt, p, eos_token_ids=eos_token_ids)
            seqs.append(self._seqs[seq_id])
        while self.has_unfinished():
            self.step()
        return [self.output(seq) for seq in seqs]

    def output(self, seq: Sequence) -> EngineOutput:
        ids = seq.completion_ids
        text = self.decode(ids) if self.tokenizer is not None else ""
        if seq.finish_reason == "stop":  # cut as the single-sequence loop cuts
            from hearth.engine.decoding import _join, _release

            ids, text = _join(list(_release(iter(ids), seq.params, self.decode, ())))
        return EngineOutput(
            seq.seq_id, seq.token_ids[: seq.num_prompt_tokens], ids, text, seq.finish_reason or ""
        )

    def decode(self, ids: Seq[int]) -> str:
        return self.tokenizer.decode(list(ids))


def load_model(path: str | Path | None, precision: str = "fp32") -> LlamaModel:
    """The model's weights in fp32, or quantized to bf16 / int8 by hearth.engine.quant."""
    from hearth.engine.model import LlamaModel

    model = LlamaModel.from_pretrained(path)
    if precision == "fp32":
        return model
    from hearth.engine.quant import quantize

    return quantize(model, precision)


def _find_stop(text: str, stops: Seq[str]) -> int:
    """Where the earliest stop string starts in `text`, or -1."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else -1
