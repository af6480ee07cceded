"""EngineChatModel: the ChatModel protocol over Hearth's own batching engine (`engine:` specs),
so concurrent callers — the server runs each request in a thread — share batched forwards.

One background thread owns the LLMEngine and runs steps while requests exist; callers talk to
it through queues. Text deltas, stop strings and the finish reason come from
hearth.engine.decoding's release loop, the same one the single-sequence Generator uses.
A `constraint` (as LlamaCppModel takes it) masks the request's own row in the shared batch.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hearth.engine.config import PRECISIONS
from hearth.errors import (
    ConfigError,
    ContextWindowError,
    HearthError,
    ModelNotFoundError,
)
from hearth.llm.tool_calls import (
    ToolCallSplitter,
    ToolRequest,
    output_constraint,
    request_for,
    tool_messages,
)
from hearth.types import (
    ChatResult,
    Message,
    StreamEnd,
    Usage,
    chat_result,
    generation_kwargs,
    text_deltas,
)

if TYPE_CHECKING:
    from hearth.engine.llm_engine import LLMEngine, StepOutput
    from hearth.engine.model import LlamaModel
    from hearth.engine.sampling import SamplingParams
    from hearth.engine.tokenizer import Tokenizer

_FINISH = {"eos": "stop", "stop": "stop", "length": "length"}


@dataclass(frozen=True)
class ChatParams:
    """The protocol's generation parameters, checked; unknown names are a TypeError."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 0.95
    stop: tuple[str, ...] = ()
    seed: int | None = None
    tools: Any = None  # OpenAI function definitions (hearth.llm.tool_calls checks them)
    tool_choice: Any = None
    # the output must satisfy this: a hearth.structured Constraint, or what compile() takes
    constraint: Any = None

    def __post_init__(self) -> None:
        if self.constraint is not None:
            from hearth.structured import as_constraint

            object.__setattr__(self, "constraint", as_constraint(self.constraint))
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ValueError(f"max_tokens must be an integer >= 1, got {self.max_tokens!r}")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature must be within 0..2, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be within (0, 1], got {self.top_p}")

    @classmethod
    def from_kwargs(cls, **params: Any) -> ChatParams:
        return cls(**generation_kwargs(cls, params))

    def sampling(self, max_tokens: int, constraint: Any = None) -> SamplingParams:
        from hearth.engine.sampling import SamplingParams

        return SamplingParams(
            strategy="sample",  # temperature 0 is greedy
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=max_tokens,
            stop=self.stop,
            seed=self.seed,
            constraint=constraint if constraint is not None else self.constraint,
        )


class _Failed:
    """Sent to a waiting request when the engine loop raised."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Closed(Exception):
    """Ends the engine thread."""


class EngineChatModel:
    """A ChatModel on our PyTorch engine. Cheap to build; weights load on first use.

    `precision` "bf16" or "int8" quantizes the weights (hearth.engine.quant): on CPUs with
    AVX512-BF16, bf16 batches decode much faster than fp32 (benchmarks/engine_batching.py).
    Engine sizes (`block_size`, `kv_cache_mb`, `max_num_seqs`, ...) are EngineConfig fields;
    the KV pool always holds at least one full context.
    """

    can_stream = True
    supports_json_schema = True  # token masks from hearth.structured (llguidance)
    masks_tokens = True  # any constraint: schemas, regexes, choices, grammars

    def __init__(
        self,
        path: str | Path,
        context_size: int = 2048,
        *,
        name: str | None = None,
        precision: str | None = None,
        model: LlamaModel | None = None,
        tokenizer: Tokenizer | None = None,
        **engine_config: Any,
    ) -> None:
        self.path = Path(path).expanduser()
        if model is None and not self.path.exists():
            raise ModelNotFoundError(
                f"model not found: {self.path}. Pass an existing .gguf file or safetensors "
                "folder (e.g. --model engine:/path/to/model.gguf) or use engine:smollm2."
            )
        # fp32 unless asked: served requests are batched, and in fp32 a batched request's tokens
        # equal the same request run alone (tests/serve/test_engine_backend.py)
        precision = precision or "fp32"
        if precision not in PRECISIONS:
            raise ConfigError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
        from hearth.engine.llm_engine import EngineConfig

        EngineConfig(**engine_config)  # a bad size fails here, not on the first request
        self.name = name or f"engine:{self.path.name}"
        self.context_size = context_size
        self.precision = precision
        self._engine_config = engine_config
        self._model, self._tokenizer = model, tokenizer
        self._engine: LLMEngine | None = None
        self._load_lock = threading.Lock()
        self._tok_lock = threading.Lock()  # HF fast tokenizers are not safe to share
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._outboxes: dict[int, queue.SimpleQueue] = {}
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._supports_tools: bool | None = None

    @property
    def supports_tools(self) -> bool:
        """Whether the model's chat template takes tools (Hermes <tool_call> format)."""
        if self._supports_tools is None:
            from hearth.llm.tool_calls import template_supports_tools

            if self._tokenizer is not None:
                template = self._tokenizer.chat_template
            elif self.path.suffix == ".gguf":
                from hearth.llm.gguf_info import read_metadata

                template = read_metadata(self.path).get("tokenizer.chat_template")
            else:
                template = _folder_template(self.path)
            self._supports_tools = template_supports_tools(template)
        return self._supports_tools

    @classmethod
    def from_spec(cls, target: str, context_size: int = 2048, **kw: Any) -> EngineChatModel:
        """An embedded model's name (`smollm2`, `qwen2.5-coder-0.5b`: its file verified by
        hash), a .gguf path, or a safetensors folder."""
        from hearth.llm import catalog, embedded_path

        embedded = catalog.find(target)
        if embedded is not None:
            path = embedded_path(embedded.name)
            return cls(path, context_size, name=f"engine:{embedded.name}", **kw)
        path = Path(target).expanduser().resolve()
        return cls(path, context_size, name=f"engine:{path.name}", **kw)

    # -- loading -------------------------------------------------------------------------------

    def warm_up(self) -> EngineChatModel:
        """Load the weights and start the engine thread now (otherwise the first call does)."""
        self._load()
        return self

    @property
    def engine(self) -> LLMEngine:
        return self._load()

    def _load(self) -> LLMEngine:
        if self._engine is not None:
            self._start_thread()
            return self._engine
        with self._load_lock:
            if self._engine is None:
                from hearth.engine.llm_engine import EngineConfig, LLMEngine, load_model
                from hearth.engine.paged_cache import PagedKVPool
                from hearth.engine.tokenizer import load_tokenizer

                model = self._model or load_model(self.path, self.precision)
                tokenizer = self._tokenizer or load_tokenizer(self.path)
                cfg = dict(self._engine_config)
                cfg.setdefault("max_model_len", self.context_size)
                bs = cfg.get("block_size", 16)
                w = model.embed_tokens.weight
                need_mb = (
                    -(-self.context_size // bs)
                    * PagedKVPool.bytes_per_block(model.config, bs, w.dtype)
                    / 2**20
                )
                cfg["kv_cache_mb"] = max(cfg.get("kv_cache_mb", 256.0), need_mb)
                engine = LLMEngine(model, tokenizer, EngineConfig(**cfg))
                self._model, self._tokenizer = model, tokenizer
                self._engine = engine
        self._start_thread()
        return self._engine

    def _start_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._load_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name=f"hearth-engine-{self.name}", daemon=True
                )
                self._thread.start()

    # -- the engine thread ---------------------------------------------------------------------

    def close(self) -> None:
        """Stop the engine thread (pending requests fail); the weights stay loaded."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._inbox.put(("close",))
            thread.join()

    def _loop(self) -> None:
        try:
            self._run_loop()
        except _Closed:
            return

    def _run_loop(self) -> None:
        engine = self._engine
        while True:
            if not engine.has_unfinished():
                self._handle(self._inbox.get())  # idle: sleep until a request comes
            while True:  # everything that arrived during the last step joins the next
                try:
                    self._handle(self._inbox.get_nowait())
                except queue.Empty:
                    break
            if not engine.has_unfinished():
                continue
            try:
                outputs = engine.step()
            except BaseException as exc:  # noqa: BLE001 - every waiting caller must hear of it
                for rid in list(self._outboxes):
                    engine.abort(rid)
                    self._outboxes.pop(rid).put(_Failed(exc))
                continue
            for out in outputs:
                box = self._outboxes.get(out.seq_id)
                if box is not None:
                    box.put(out)
                if out.finished:
                    self._outboxes.pop(out.seq_id, None)

    def _handle(self, command: tuple) -> None:
        if command[0] == "close":
            for rid in list(self._outboxes):
                self._engine.abort(rid)
                self._outboxes.pop(rid).put(_Failed(HearthError(f"{self.name} was closed")))
            raise _Closed
        if command[0] == "add":
            _, rid, prompt_ids, params, eos, matcher, box = command
            try:
                self._engine.add_request(
                    prompt_ids, params, eos_token_ids=eos, seq_id=rid, matcher=matcher
                )
            except Exception as exc:  # noqa: BLE001 - handed to the caller's thread
                box.put(_Failed(exc))
                return
            self._outboxes[rid] = box
        elif command[0] == "abort":
            self._engine.abort(command[1])
            self._outboxes.pop(command[1], None)

    # -- the ChatModel interface ---------------------------------------------------------------

    def batch_stats(self) -> dict[str, Any] | None:
        """The engine's numbers for /metrics (None before it is loaded); read from another
        thread, so approximate."""
        engine = self._engine
        if engine is None:
            return None
        sched, blocks = engine.scheduler, engine.block_manager
        return {
            "running": len(sched.running),
            "waiting": len(sched.waiting),
            "slots": sched.max_num_seqs,
            "kv_cells": blocks.num_blocks * blocks.block_size,
            "kv_used": blocks.num_used_blocks * blocks.block_size,
            "prefix_tokens_reused": blocks.prefix_hit_tokens,
            "preempted": sched.num_preemptions,
        }

    def count_tokens(self, messages: list[Message]) -> int:
        return len(self._encode(messages))

    def _encode(self, messages: list[Message], tools: ToolRequest | None = None) -> list[int]:
        self._load()
        with self._tok_lock:
            tok = self._tokenizer
            messages = tool_messages(messages, tools, self.supports_tools)
            text = tok.render_chat(messages, tools=tools.template_tools() if tools else None)
            if tools is not None:
                text += tools.prefix()  # a forced call: the turn starts with its syntax
            return tok.encode(text, add_special_tokens=False)

    def _decode(self, ids: list[int]) -> str:
        with self._tok_lock:
            return self._tokenizer.decode(ids)

    def _matcher(self, sampling: SamplingParams):
        """A fresh Matcher for the request's constraint (None without one)."""
        if sampling.constraint is None:
            return None
        with self._tok_lock:  # the first call reads the vocabulary out of the HF tokenizer
            vocabulary = self._tokenizer.structured()
        return sampling.constraint.matcher(vocabulary)

    def chat(self, messages: list[Message], **params: Any) -> ChatResult:
        return chat_result(self.stream_events(messages, **params), self.name)

    def stream(self, messages: list[Message], **params: Any) -> Iterator[str]:
        return text_deltas(self.stream_events(messages, **params))

    def stream_events(self, messages: list[Message], **params: Any) -> Iterator[str | StreamEnd]:
        chat_params = ChatParams.from_kwargs(**params)  # a bad parameter fails right here
        tools = request_for(self, chat_params.tools, chat_params.tool_choice)
        constraint = output_constraint(chat_params, tools)  # and a bad schema, here too
        return self._stream_events(messages, chat_params, tools, constraint)

    def _stream_events(self, messages: list[Message], params: ChatParams, tools, constraint):
        from hearth.engine.decoding import _release

        prompt_ids = self._encode(messages, tools)
        splitter = ToolCallSplitter(tools.prefix(), tools.names()) if tools else None
        room = self.context_size - len(prompt_ids)
        if room < 1:
            raise ContextWindowError(
                f"the prompt takes {len(prompt_ids)} tokens but {self.name} has a context of "
                f"{self.context_size}; shorten the input or raise context_size"
            )
        sampling = params.sampling(min(params.max_tokens, room), constraint)
        matcher = self._matcher(sampling)  # here, not on the engine thread (the first takes ~1 s)
        eos = self._tokenizer.eos_token_id
        eos_ids = () if eos is None else (eos,)
        rid = next(self._ids)
        box: queue.SimpleQueue = queue.SimpleQueue()
        finished = False
        ended_by = None  # the engine's finish reason

        def tokens() -> Iterator[int]:
            nonlocal finished, ended_by
            while not finished:
                item: StepOutput | _Failed = box.get()
                if isinstance(item, _Failed):
                    finished = True
                    if isinstance(item.error, HearthError):
                        raise item.error
                    raise HearthError(f"{self.name}: generation failed ({item.error})") from (
                        item.error
                    )
                finished = item.finished
                ended_by = item.finish_reason
                if ended_by == "error":  # the constraint refused the token the model chose
                    raise HearthError(f"{self.name}: generation left its constraint")
                yield item.token_id

        def complete() -> bool:  # the constraint is: the engine ended the request with "stop"
            return matcher is not None and ended_by == "stop"

        self._inbox.put(("add", rid, prompt_ids, sampling, eos_ids, matcher, box))
        completion, reason = 0, "length"
        try:
            for delta in _release(tokens(), sampling, self._decode, eos_ids, complete):
                completion += len(delta.token_ids)
                reason = delta.finish_reason or reason
                shown = splitter.feed(delta.text) if splitter and delta.text else delta.text
                if shown:
                    yield shown
        finally:
            if not finished:  # closed early, or a stop string the engine has not seen yet
                self._inbox.put(("abort", rid))
        calls = []
        if splitter is not None:
            rest, calls = splitter.finish()
            if rest:
                yield rest
        finish = "tool_calls" if calls else _FINISH.get(reason, "stop")
        yield StreamEnd(finish, Usage(len(prompt_ids), completion), calls)

    def __repr__(self) -> str:
        return f"EngineChatModel({str(self.path)!r}, context_size={self.context_size})"


def _folder_template(folder: Path) -> str | None:
    """A Hugging Face folder's chat template (chat_template.jinja or tokenizer_config.json)."""
    import json

    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    template = config.get("chat_template")
    return template if isinstance(template, str) else None


def _load_engine(target: str, context_size: int, **kw: Any) -> EngineChatModel:
    """engine:smollm2 | engine:qwen2.5-coder-0.5b | engine:/path/model.gguf | engine:/path/folder"""
    return EngineChatModel.from_spec(target, context_size, **kw)


def register_backend() -> None:
    """Put `engine:` in hearth.llm's registry (run through the `hearth.backends` entry point,
    so hearth.llm never imports the engine)."""
    from hearth.llm.registry import register

    register("engine", _load_engine)
