"""Generator: load an engine model + tokenizer once, then run any decoding strategy through the
KV cache (prefill once, one new token per step) and report tokens per second.

Hand-written because the cache is what the engine exists to show: `CachedStep` plugs into
decoding.py's plain `step(input_ids) -> logits` protocol, so every strategy loop stays the same.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hearth.engine.config import default_precision
from hearth.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from hearth.engine.decoding import BeamTree, Delta
    from hearth.engine.model import LlamaModel
    from hearth.engine.sampling import SamplingParams
    from hearth.engine.tokenizer import Tokenizer


class CachedStep:
    """A decoding `step` backed by a KV cache: ids (batch x seq) -> last logits (batch x vocab).

    Each call must extend the previous call's rows by one token (in any order, rows may repeat:
    beam search picks parents); the cache is reordered to those parents and only the new
    column is run. Anything else (a new prompt, a new batch size) resets and prefills.
    """

    def __init__(self, model: LlamaModel, max_len: int) -> None:
        self.model = model
        self.max_len = max_len
        self.cache = None
        self.prev: torch.Tensor | None = None  # ids the cache holds, one row per cache row
        self.prefill_tokens = 0
        self.decode_steps = 0

    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        parents = self._parents(input_ids)
        if parents is None:
            return self._prefill(input_ids)
        import torch

        if not torch.equal(parents, torch.arange(len(parents))):
            self.cache.reorder(parents)
        logits = self.model(input_ids[:, -1:], kv_cache=self.cache, last_only=True)[:, -1]
        self.prev = input_ids
        self.decode_steps += 1
        return logits

    def _parents(self, ids: torch.Tensor) -> torch.Tensor | None:
        """For each row of `ids`, a cache row holding exactly its prefix; None if any lacks one."""
        import torch

        prev = self.prev
        if prev is None or ids.shape[1] != prev.shape[1] + 1:
            return None
        same = (ids[:, None, :-1] == prev[None, :, :]).all(dim=-1)  # rows x cache rows
        if not bool(same.any(dim=1).all()):
            return None
        return same.to(torch.int8).argmax(dim=1)

    def _prefill(self, ids: torch.Tensor) -> torch.Tensor:
        """Run the prompt once; identical rows (beam search's start) share one forward."""
        import torch

        rows = ids.shape[0]
        unique = bool((ids == ids[:1]).all())
        first = ids[:1] if unique else ids
        self.cache = self.model.new_cache(self.max_len, first.shape[0])
        logits = self.model(first, kv_cache=self.cache, last_only=True)[:, -1]
        if unique and rows > 1:
            self.cache.reorder(torch.zeros(rows, dtype=torch.long))
            logits = logits.expand(rows, -1).clone()
        self.prev = ids
        self.prefill_tokens += first.numel()
        return logits


def uncached_step(model: LlamaModel):
    """The plain step: the whole sequence through the model every call (the baseline)."""

    def step(input_ids: torch.Tensor) -> torch.Tensor:
        return model(input_ids, last_only=True)[:, -1]

    return step


def hidden_step(model: LlamaModel):
    """ids -> (last logits, final-norm hidden states of every position), for contrastive search."""

    def step(input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen: list[Any] = []
        handle = model.norm.register_forward_hook(lambda _m, _i, out: seen.append(out))
        try:
            logits = model(input_ids)
        finally:
            handle.remove()
        return logits[:, -1], seen[0]

    return step


@dataclass
class GenerationReport:
    """One generation: text and tokens (EOS excluded), speed, and the beam tree if any.

    `seconds` runs from the request to the last token: reading the prompt and any first-use
    work (oneDNN weight layouts made on the first multi-row matmul) are in it.
    `warmup_seconds` is what the Generator spent before it (loading and quantizing the weights,
    compiling): paid once per process, reported beside the speed rather than hidden."""

    text: str
    token_ids: list[int]
    finish_reason: str
    strategy: str
    prompt_tokens: int
    seconds: float
    tree: BeamTree | None = None
    draft_tokens_accepted: int = 0
    draft_tokens_proposed: int = 0
    warmup_seconds: float = 0.0
    precision: str = "fp32"

    @property
    def tokens_per_second(self) -> float:
        return len(self.token_ids) / self.seconds if self.seconds > 0 else 0.0

    @property
    def tokens_per_second_with_warmup(self) -> float:
        """What one `hearth generate` run delivers, loading included."""
        total = self.seconds + self.warmup_seconds
        return len(self.token_ids) / total if total > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "token_ids": self.token_ids,
            "tokens_per_second": round(self.tokens_per_second, 2),
            "seconds": round(self.seconds, 3),
            "warmup_seconds": round(self.warmup_seconds, 3),
            "tokens_per_second_with_warmup": round(self.tokens_per_second_with_warmup, 2),
            "precision": self.precision,
            "strategy": self.strategy,
            "draft_tokens_accepted": self.draft_tokens_accepted,
            "draft_tokens_proposed": self.draft_tokens_proposed,
        }


class Generator:
    """Text in, text out through our engine. Cheap to create; `warm_up()` loads the weights.

    `use_cache=False` runs the uncached baseline (every step re-reads the whole sequence).
    `precision` "bf16" or "int8" quantizes the loaded fp32 weights (hearth.engine.quant).
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        dtype: str = "float32",
        use_cache: bool = True,
        precision: str | None = None,
    ) -> None:
        if precision is None:  # the model's measured default (fp32 for an unmeasured model)
            precision = default_precision(model_path) if dtype == "float32" else "fp32"
        if dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"dtype {dtype!r}: use float32, bfloat16 or float16")
        if precision not in ("fp32", "bf16", "int8"):
            raise ConfigError(f"precision {precision!r}: use fp32, bf16 or int8")
        if precision != "fp32" and dtype != "float32":
            raise ConfigError(
                f"precision {precision} quantizes fp32 weights: pass precision='fp32' with "
                f"dtype={dtype!r}, or leave dtype float32"
            )
        self.precision = precision
        self.model_path = Path(model_path) if model_path is not None else None
        self.dtype = dtype
        self.use_cache = use_cache
        self.model: LlamaModel | None = None
        self.tokenizer: Tokenizer | None = None
        self.warmup_seconds = 0.0  # loading + quantizing, measured by warm_up()

    def warm_up(self) -> Generator:
        if self.model is not None:
            return self
        started = time.perf_counter()
        import torch

        from hearth.engine.model import LlamaModel
        from hearth.engine.tokenizer import load_tokenizer
        from hearth.engine.weights import default_model_path

        path = self.model_path or default_model_path()
        if not path.exists():
            raise ConfigError(f"model file {path} not found: give a local .gguf file or folder")
        torch.set_grad_enabled(False)
        self.model = LlamaModel.from_pretrained(path, dtype=getattr(torch, self.dtype))
        if self.precision != "fp32":
            from hearth.engine.quant import quantize

            quantize(self.model, self.precision)
        self.tokenizer = load_tokenizer(path)
        self.warmup_seconds = time.perf_counter() - started
        return self

    # --- prompts ---

    def encode(self, prompt: str | Sequence[int], *, chat: bool = False) -> list[int]:
        self.warm_up()
        if not isinstance(prompt, str):
            return list(prompt)
        if chat:
            return self.tokenizer.encode(
                self.tokenizer.render_chat([{"role": "user", "content": prompt}]),
                add_special_tokens=False,
            )
        return self.tokenizer.encode(prompt)

    def decode(self, ids: Sequence[int]) -> str:
        self.warm_up()
        return self.tokenizer.decode(list(ids))

    # --- running ---

    def _eos(self) -> list[int]:
        eos = self.tokenizer.eos_token_id
        return [] if eos is None else [eos]

    def _steps(self, prompt_len: int, params: SamplingParams) -> dict[str, Any]:
        if params.strategy == "contrastive":
            return {"step": None, "step_with_hidden": hidden_step(self.model)}
        if not self.use_cache:
            return {"step": uncached_step(self.model)}
        return {"step": CachedStep(self.model, prompt_len + params.max_tokens + 1)}

    def run(
        self,
        prompt: str | Sequence[int],
        params: SamplingParams,
        *,
        chat: bool = False,
        speculative: str = "none",
        draft_model: str | Path | None = None,
    ) -> GenerationReport:
        """Generate to the end with `params`; the report says how fast.

        `speculative`: "none", "prompt-lookup" (n-gram drafts from the context) or "draft"
        (`draft_model`, a smaller model sharing the tokenizer; without one, the first quarter
        of the target's layers as a self-speculative draft).
        """
        from hearth.engine.decoding import generate
        from hearth.engine.masking import matcher_for

        ids = self.encode(prompt, chat=chat)
        self._check_room(ids, params)
        if speculative != "none":
            return self._run_speculative(ids, params, speculative, draft_model)
        start = time.perf_counter()
        result = generate(
            prompt_ids=ids,
            params=params,
            eos_token_ids=self._eos(),
            detokenize=self.decode,
            matcher=matcher_for(params, self.tokenizer),
            **self._steps(len(ids), params),
        )
        seconds = time.perf_counter() - start
        return GenerationReport(
            result.text,
            result.token_ids,
            result.finish_reason,
            params.strategy,
            len(ids),
            seconds,
            result.tree,
            warmup_seconds=self.warmup_seconds,
            precision=self.precision,
        )

    def _run_speculative(
        self,
        ids: list[int],
        params: SamplingParams,
        kind: str,
        draft_model: str | Path | None,
    ) -> GenerationReport:
        from hearth.engine.masking import matcher_for
        from hearth.engine.model import LlamaModel
        from hearth.engine.speculative import (
            ModelDrafter,
            PromptLookupDrafter,
            speculative_generate,
            truncated_draft,
        )

        if params.strategy not in ("greedy", "sample"):
            raise ConfigError(
                f"speculative decoding runs greedy or sample, not {params.strategy!r}"
            )
        if kind == "prompt-lookup":
            drafter = PromptLookupDrafter()
        elif kind == "draft" and draft_model is not None:
            import torch

            dtype = getattr(torch, self.dtype)
            draft = LlamaModel.from_pretrained(Path(draft_model), dtype=dtype)
            if self.precision != "fp32":
                from hearth.engine.quant import quantize

                quantize(draft, self.precision)
            drafter = ModelDrafter(draft, max_len=len(ids) + params.max_tokens + 16)
        elif kind == "draft":
            layers = max(1, self.model.config.n_layers // 4)
            drafter = ModelDrafter(
                truncated_draft(self.model, layers), max_len=len(ids) + params.max_tokens + 16
            )
        else:
            raise ConfigError(f"--speculative {kind!r}: use none, prompt-lookup or draft")
        matcher = matcher_for(params, self.tokenizer)
        start = time.perf_counter()
        result = speculative_generate(
            self.model, ids, drafter, params, eos_token_ids=self._eos(), matcher=matcher
        )
        seconds = time.perf_counter() - start
        return GenerationReport(
            self.decode(result.token_ids),
            result.token_ids,
            result.finish_reason,
            params.strategy,
            len(ids),
            seconds,
            draft_tokens_accepted=result.draft_tokens_accepted,
            draft_tokens_proposed=result.draft_tokens_proposed,
            warmup_seconds=self.warmup_seconds,
            precision=self.precision,
        )

    def stream(
        self, prompt: str | Sequence[int], params: SamplingParams, *, chat: bool = False
    ) -> Iterator[Delta]:
        """Deltas as tokens are decided (beam search yields once, at the end)."""
        from hearth.engine.decoding import stream
        from hearth.engine.masking import matcher_for

        ids = self.encode(prompt, chat=chat)
        self._check_room(ids, params)
        yield from stream(
            prompt_ids=ids,
            params=params,
            eos_token_ids=self._eos(),
            detokenize=self.decode,
            matcher=matcher_for(params, self.tokenizer),
            **self._steps(len(ids), params),
        )

    def _check_room(self, ids: list[int], params: SamplingParams) -> None:
        if not ids:
            raise ConfigError("the prompt is empty: give some text")
        limit = self.model.config.max_position_embeddings
        if limit and len(ids) + params.max_tokens > limit:
            raise ConfigError(
                f"prompt ({len(ids)} tokens) + max_tokens ({params.max_tokens}) exceeds the "
                f"model's context of {limit} tokens: shorten the prompt or lower max_tokens"
            )
