"""Local GGUF chat models on llama.cpp (llama-cpp-python), using the model's own chat template.

The template comes from the GGUF metadata (rendered by llama-cpp-python's Jinja2ChatFormatter),
so `count_tokens` is exact: it tokenizes the very prompt that generation is given.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth.errors import ContextWindowError, ModelNotFoundError
from hearth.llm.constrained import LogitsMask
from hearth.llm.tool_calls import (
    CLOSE,
    OPEN,
    ToolCallSplitter,
    ToolRequest,
    output_constraint,
    parse_tool_calls,
    request_for,
    template_messages,
    template_supports_tools,
    tool_messages,
)
from hearth.structured import Constraint, as_constraint
from hearth.types import ChatResult, Message, StreamEnd, Usage, generation_kwargs, text_deltas

GGUF_MAGIC = b"GGUF"


def prefer_passive_openmp() -> None:
    """Let llama.cpp's OpenMP threads sleep at barriers instead of spinning.

    On a busy machine (a server's other threads, the embedder, other processes) spinning
    threads steal the cores the computing ones need: measured on 2 cores, a soak of 1,000
    requests ran 616 in 900 s spinning vs all 1,000 in 158 s passive. libgomp reads the
    variable once, when it loads (torch loads it too), so call this before torch or llama_cpp
    are imported; a value the user set wins.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")


prefer_passive_openmp()  # for callers that import this module before anything heavy

THREADS_ENV = "HEARTH_LLAMA_THREADS"
# Below this file size a model's per-token arithmetic is too small to share between threads:
# with sleeping (passive) OpenMP threads, ggml's barriers between operations cost more than a
# second thread saves. Measured on 2 cores with SmolLM2-135M Q4_1 (94 MiB), ms per token with
# 1 vs 2 threads: 12.8 vs 24.7 quiet, 12.6 vs 18.4 with one busy process, 18.8 vs 21.8 with two.
SMALL_MODEL_BYTES = 300 * 2**20


def default_threads(path: Path) -> int:
    """llama.cpp threads for decoding the model at `path`: $HEARTH_LLAMA_THREADS if set, one
    thread for a small model (under 300 MiB), else every core this process may use. Reading
    the prompt always uses every core (measured: a 1,065-token RAG prompt plus 48 tokens took
    8.1 s on one thread, 5.3 s with the prompt on two)."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{THREADS_ENV} must be a whole number >= 1, not {value!r}")
        return int(value)
    if path.stat().st_size < SMALL_MODEL_BYTES:
        return 1
    return _cores()


def prompt_threads(decode_threads: int) -> int:
    """llama.cpp threads for reading a prompt: every core this process may use (a batch of
    prompt tokens has enough work per operation to share), never fewer than for decoding."""
    return max(decode_threads, _cores())


def _cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class GenerationParams:
    """Validated sampling parameters; unknown names are an error, not silently ignored."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 0.95
    stop: tuple[str, ...] = ()
    seed: int | None = None
    repeat_penalty: float = 1.0  # none: a penalty makes small models garble copied numbers
    tools: Any = None  # OpenAI function definitions (hearth.llm.tool_calls checks them)
    tool_choice: Any = None
    # the output must satisfy this: a hearth.structured Constraint, or what compile() takes
    constraint: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "constraint", as_constraint(self.constraint))
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature must be within 0..2, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be within (0, 1], got {self.top_p}")

    @classmethod
    def from_kwargs(cls, **params: Any) -> GenerationParams:
        return cls(**generation_kwargs(cls, params))


class LlamaCppModel:
    """A ChatModel over one local .gguf file. Cheap to build; weights load on first use.

    Tools go through the GGUF's chat template when it renders them in the Hermes format
    (<tool_call> blocks, as Qwen2.5's does; `supports_tools` says so without loading weights),
    else in a system message (hearth.llm.tool_calls.tool_messages); either way token masks hold
    the model to valid calls whose arguments follow the tool's parameters schema.
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
        n_threads: int | None = None,
        seed: int = 0,
        n_batch: int = 512,
    ) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise ModelNotFoundError(
                f"model file not found: {self.path}. Pass an existing .gguf file "
                "(e.g. --model /path/to/model.gguf) or use local:smollm2."
            )
        with self.path.open("rb") as f:
            if f.read(4) != GGUF_MAGIC:
                raise ModelNotFoundError(
                    f"{self.path} is not a GGUF file (no GGUF header); convert the model to GGUF "
                    "with llama.cpp's convert_hf_to_gguf.py"
                )
        self.name = name or f"local:{self.path.name}"
        self.context_size = context_size
        # decode steps: one token's arithmetic (see default_threads); prompt reading (batches
        # of up to n_batch tokens) has enough per operation to use every core
        self.n_threads = n_threads or default_threads(self.path)
        self.n_threads_batch = prompt_threads(self.n_threads)
        self.seed = seed
        self.n_batch = n_batch
        self.last_finish_reason: str | None = None  # of the latest stream()
        self._llama = None
        self._formatter = None
        self._supports_tools: bool | None = None
        self._structured = None  # the llguidance tokenizer over this model's vocabulary
        self._lock = threading.RLock()  # one llama.cpp context: one generation at a time

    @property
    def supports_tools(self) -> bool:
        """Whether the model's own chat template takes tools (read from the GGUF header)."""
        if self._supports_tools is None:
            from hearth.llm.gguf_info import read_metadata

            template = read_metadata(self.path).get("tokenizer.chat_template")
            self._supports_tools = template_supports_tools(template)
        return self._supports_tools

    # -- loading -------------------------------------------------------------------------------

    def warm_up(self) -> LlamaCppModel:
        """Load the weights now (otherwise the first call does)."""
        self._load()
        return self

    def _load(self):
        if self._llama is not None:
            return self._llama
        with self._lock:
            if self._llama is None:
                from llama_cpp import Llama

                try:
                    llama = Llama(
                        model_path=str(self.path),
                        n_ctx=self.context_size,
                        n_batch=min(self.n_batch, self.context_size),
                        n_threads=self.n_threads,
                        n_threads_batch=self.n_threads_batch,
                        seed=self.seed,
                        verbose=False,
                    )
                except (ValueError, RuntimeError) as exc:
                    raise ModelNotFoundError(f"cannot load GGUF model {self.path}: {exc}") from exc
                self._formatter = _chat_formatter(llama)
                self._llama = llama
        return self._llama

    def structured_tokenizer(self):
        """This model's vocabulary as hearth.structured masks it: read once, kept with the
        model (it calls into the model's own vocabulary, so it must not outlive it)."""
        if self._structured is None:
            from hearth.structured.tokenizers import llama_tokenizer

            llama = self._load()
            with self._lock:
                if self._structured is None:
                    tags = frozenset({OPEN.encode(), CLOSE.encode()})  # kept as text
                    self._structured = llama_tokenizer(llama._model.vocab, tags)
        return self._structured

    # -- the ChatModel interface ---------------------------------------------------------------

    def render(self, messages: list[Message], **params: Any) -> str:
        """The prompt text the chat template makes of `messages` (generation prompt included;
        `tools` / `tool_choice` as for chat())."""
        gen = GenerationParams.from_kwargs(**params)
        return self._prepare(messages, self._tool_request(gen))[0].prompt

    def count_tokens(self, messages: list[Message]) -> int:
        return len(self._prepare(messages)[1])

    def _tool_request(self, gen: GenerationParams) -> ToolRequest | None:
        return request_for(self, gen.tools, gen.tool_choice)

    def _prepare(self, messages: list[Message], tools: ToolRequest | None = None):
        """The rendered template (prompt, stop strings, stop criteria) and its tokens."""
        llama = self._load()
        messages = tool_messages(messages, tools, self.supports_tools)
        rendered = self._formatter(
            messages=template_messages(messages), tools=tools.template_tools() if tools else None
        )
        if tools is not None and tools.prefix():
            rendered.prompt += tools.prefix()  # a forced call: the turn starts with its syntax
        # The template writes any special tokens itself, so no BOS is added here (this is what
        # llama-cpp-python's own chat handler does for Jinja2 templates).
        tokens = llama.tokenize(rendered.prompt.encode("utf-8"), add_bos=False, special=True)
        return rendered, tokens

    def chat(self, messages: list[Message], **params: Any) -> ChatResult:
        gen = GenerationParams.from_kwargs(**params)
        tools = self._tool_request(gen)
        constraint = output_constraint(gen, tools)
        with self._lock:
            _, response = self._complete(messages, gen, False, tools, constraint)
        choice = response["choices"][0]
        usage = response.get("usage") or {}
        text, calls = choice["text"], []
        if tools is not None:
            text, calls = parse_tool_calls(tools.prefix() + text, tools.names())
        return ChatResult(
            text=text,
            model=self.name,
            finish_reason="tool_calls" if calls else (choice.get("finish_reason") or "stop"),
            usage=Usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)),
            tool_calls=calls,
        )

    def stream(self, messages: list[Message], **params: Any) -> Iterator[str]:
        return text_deltas(self.stream_events(messages, **params), self._note_end)

    def _note_end(self, end: StreamEnd) -> None:
        self.last_finish_reason = end.finish_reason

    def stream_events(self, messages: list[Message], **params: Any) -> Iterator[str | StreamEnd]:
        gen = GenerationParams.from_kwargs(**params)  # validate before the first next()
        tools = self._tool_request(gen)
        return self._stream_events(messages, gen, tools, output_constraint(gen, tools))

    def _stream_events(self, messages: list[Message], gen: GenerationParams, tools, constraint):
        with self._lock:
            self.last_finish_reason = None
            finish, text = "stop", ""
            splitter = ToolCallSplitter(tools.prefix(), tools.names()) if tools else None
            prompt_tokens, parts = self._complete(messages, gen, True, tools, constraint)
            try:
                for part in parts:
                    choice = part["choices"][0]
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
                    delta = choice["text"]
                    if not delta:
                        continue
                    text += delta
                    shown = splitter.feed(delta) if splitter else delta
                    if shown:
                        yield shown
            finally:
                parts.close()  # a consumer that stops early stops llama.cpp here
            calls = []
            if splitter is not None:
                rest, calls = splitter.finish()
                if rest:
                    yield rest
            # Parts are not tokens (stop-string look-ahead merges them): count the text itself.
            tokens = self._llama.tokenize(text.encode("utf-8"), add_bos=False) if text else []
            yield StreamEnd(
                "tool_calls" if calls else finish, Usage(prompt_tokens, len(tokens)), calls
            )

    def _complete(
        self,
        messages: list[Message],
        gen: GenerationParams,
        stream: bool,
        tools: ToolRequest | None = None,
        constraint: Constraint | None = None,
    ):
        """The one call into llama.cpp that chat() and stream() share: (prompt tokens, what
        create_completion returns). `constraint`: what output_constraint() made of gen and
        tools."""
        rendered, tokens = self._prepare(messages, tools)
        if len(tokens) >= self.context_size:
            raise ContextWindowError(
                f"the prompt takes {len(tokens)} tokens but {self.name} has a context of "
                f"{self.context_size}; shorten the input or raise context_size"
            )
        criteria, processors = rendered.stopping_criteria, None
        if constraint is not None:
            from llama_cpp import LogitsProcessorList, StoppingCriteriaList

            mask = LogitsMask(constraint.matcher(self.structured_tokenizer()), len(tokens))
            processors = LogitsProcessorList([mask])
            criteria = StoppingCriteriaList([*(criteria or []), mask.stop])
        return len(tokens), self._llama.create_completion(
            prompt=tokens,
            logits_processor=processors,
            max_tokens=gen.max_tokens,
            temperature=gen.temperature,
            top_p=gen.top_p,
            repeat_penalty=gen.repeat_penalty,
            stop=list(gen.stop) + list(rendered.stop or []),
            stopping_criteria=criteria,
            seed=self.seed if gen.seed is None else gen.seed,
            stream=stream,
            model=self.name,
        )

    def __repr__(self) -> str:
        return f"LlamaCppModel({str(self.path)!r}, context_size={self.context_size})"


def _chat_formatter(llama):
    """The GGUF's own chat template as a Jinja2ChatFormatter (what llama-cpp-python's chat
    completion uses); ChatML when the file carries no template."""
    from llama_cpp.llama_chat_format import CHATML_CHAT_TEMPLATE, Jinja2ChatFormatter

    template = llama.metadata.get("tokenizer.chat_template") or CHATML_CHAT_TEMPLATE
    eos_id, bos_id = llama.token_eos(), llama.token_bos()
    eos = llama.detokenize([eos_id], special=True).decode("utf-8", "replace") if eos_id >= 0 else ""
    bos = llama.detokenize([bos_id], special=True).decode("utf-8", "replace") if bos_id >= 0 else ""
    return Jinja2ChatFormatter(
        template=template, eos_token=eos, bos_token=bos, stop_token_ids=[eos_id]
    )
