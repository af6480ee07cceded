"""The few core types every stage shares: documents, chunks, scored hits, chat messages.

Kept small and dependency-free so any folder (ingest, index, rag, llm, serve) may import them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable


@dataclass
class Document:
    """One source file after loading.

    `text` is the extracted text; every chunk span indexes into it. Loader-specific
    structure lives in `metadata` as span tables over `text`:
      - "pages": [[start, end, page_number], ...] for PDFs (1-based pages)
      - "json_paths": [[start, end, "$.a.b[0]"], ...] for JSON/JSONL
      - "rows": [[start, end, row_number], ...] for CSV
    """

    source: str  # absolute path (or URI) of the original file
    media_type: str  # e.g. "text/markdown", "application/pdf"
    text: str
    content_hash: str  # sha256 hex of the raw file bytes
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def file_type(self) -> str:
        """Short type name used by filters: md, txt, html, pdf, json, jsonl, csv."""
        return self.metadata.get("file_type", "")


@dataclass
class Chunk:
    """A passage of a document: text == document.text[start:end], exactly."""

    text: str
    start: int
    end: int
    headings: list[str] = field(default_factory=list)  # heading path, outermost first
    page: int | None = None  # 1-based page for paged sources
    metadata: dict[str, Any] = field(default_factory=dict)
    # Filled in by the store:
    id: int | None = None
    document_id: int | None = None
    source: str = ""
    ordinal: int = 0  # position of the chunk within its document


@dataclass
class ScoredChunk:
    """A retrieved chunk with its final score and the per-retriever evidence behind it."""

    chunk: Chunk
    score: float
    scores: dict[str, float] = field(default_factory=dict)  # e.g. {"bm25": 7.1, "dense": 0.62}
    # Other chunks with the same text (whitespace aside) that this hit stands for: a file
    # copied to two folders, a boilerplate paragraph, an inherited method listed twice.
    duplicates: list[Chunk] = field(default_factory=list)


@dataclass(frozen=True)
class Filters:
    """Retrieval filters. `source_glob` matches the absolute path, the path relative to the
    current directory, or any path suffix ("docs/*.md", "*.pdf"); `file_types` are short
    type names (md, pdf, ...); `date_from` / `date_to` ("YYYY-MM-DD", inclusive) bound the
    document's date (its own, else the file's mtime; a document without one fails them)."""

    source_glob: str | None = None
    file_types: tuple[str, ...] | None = None
    date_from: str | None = None
    date_to: str | None = None

    def is_empty(self) -> bool:
        return not (self.source_glob or self.file_types or self.date_from or self.date_to)

    def as_dict(self) -> dict[str, Any]:
        """The filters that are set, by name."""
        out = {"source_glob": self.source_glob, "file_types": self.file_types,
               "date_from": self.date_from, "date_to": self.date_to}  # fmt: skip
        return {name: list(v) if isinstance(v, tuple) else v for name, v in out.items() if v}


Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class ToolCall:
    """A function call a model asked for, in OpenAI's shape: `arguments` is JSON text."""

    id: str
    name: str
    arguments: str = "{}"

    def as_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass
class Message:
    """One chat turn. An assistant turn may carry `tool_calls`; a "tool" turn answers one of
    them (`tool_call_id`) with the tool's output in `content`."""

    role: Role
    content: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None  # the tool's name, on a "tool" turn

    def as_dict(self) -> dict[str, Any]:
        """OpenAI's wire shape (only the fields that are set)."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [c.as_openai() for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens whose KV came from a prefix cache (not recomputed)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class ChatResult:
    text: str
    model: str
    finish_reason: str = "stop"  # "stop" | "length" | "tool_calls"
    usage: Usage = field(default_factory=Usage)
    tool_calls: list[ToolCall] = field(default_factory=list)


@dataclass
class StreamEnd:
    """The last item of `ChatModel.stream_events`: why generation stopped, what it cost, and
    the tool calls the model made (their text is not streamed as content)."""

    finish_reason: str = "stop"  # "stop" | "length" | "tool_calls"
    usage: Usage = field(default_factory=Usage)
    tool_calls: list[ToolCall] = field(default_factory=list)


def generation_kwargs(accepted: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Checked keyword arguments for a backend's params dataclass `accepted`: unknown names are a
    TypeError, a single stop string becomes a tuple, and None means "use the default"."""
    fields = set(accepted.__dataclass_fields__)
    unknown = set(params) - fields
    if unknown:
        raise TypeError(
            f"unknown generation parameter(s) {sorted(unknown)}; accepted: {sorted(fields)}"
        )
    given = {k: v for k, v in params.items() if v is not None}
    stop = given.pop("stop", ())
    given["stop"] = (stop,) if isinstance(stop, str) else tuple(stop)
    return given


def text_deltas(
    events: Iterator[str | StreamEnd], on_end: Callable[[StreamEnd], Any] | None = None
) -> Iterator[str]:
    """The text deltas of a `stream_events` iterator (how every backend's `stream` is made).

    `on_end` sees the StreamEnd; closing the result closes `events`, stopping generation."""
    try:
        for event in events:
            if isinstance(event, str):
                yield event
            elif on_end is not None:
                on_end(event)
    finally:
        events.close()


def chat_result(events: Iterator[str | StreamEnd], model: str) -> ChatResult:
    """The ChatResult of a whole `stream_events` iterator (how streaming backends make chat())."""
    parts: list[str] = []
    end = StreamEnd()
    for event in events:
        if isinstance(event, str):
            parts.append(event)
        else:
            end = event
    return ChatResult("".join(parts), model, end.finish_reason, end.usage, end.tool_calls)


@runtime_checkable
class ChatModel(Protocol):
    """What every LLM backend implements (local GGUF, OpenAI-compatible HTTP, Anthropic...).

    Capabilities are attributes so callers can check before they ask.
    Common params: max_tokens, temperature, top_p, stop, seed; unknown ones are a TypeError.
    Models that take `tools` (OpenAI function definitions) and `tool_choice` ("auto", "none",
    "required" or {"type": "function", "function": {"name"}}) return the calls in
    `ChatResult.tool_calls` / `StreamEnd.tool_calls`: those with `supports_tools` (a native tool
    format: the chat template's, or the server's API) and those with `masks_tokens` (tools in a
    system message, calls held to their schemas by token masks). `supports_json_schema`: a
    `constraint` of JSON Schema kind is enforced natively; `masks_tokens`: any constraint is.
    """

    name: str
    context_size: int  # tokens the model can attend to (prompt + completion)
    can_stream: bool
    supports_tools: bool
    supports_json_schema: bool

    def chat(self, messages: list[Message], **params: Any) -> ChatResult: ...

    def stream(self, messages: list[Message], **params: Any) -> Iterator[str]:
        """Yield text deltas as they are generated."""
        ...

    def stream_events(self, messages: list[Message], **params: Any) -> Iterator[str | StreamEnd]:
        """Text deltas, then exactly one StreamEnd (finish reason and token usage).

        Closing the iterator early stops generation (a client that went away)."""
        ...

    def count_tokens(self, messages: list[Message]) -> int:
        """Prompt tokens these messages take once the model's chat template is applied."""
        ...


@runtime_checkable
class Embedder(Protocol):
    name: str  # stored in the index; reopening with another name is an error
    dim: int

    def embed(self, texts: list[str]) -> Any:
        """Return an (n, dim) float32 numpy array of L2-normalised vectors."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens the embedder's own tokenizer produces for `text` (no special tokens)."""
        ...
