"""Request and response bodies of the HTTP API as pydantic models (they are the OpenAPI schema).

Requests are validated here (ranges, lengths, types), so routes see only values the backends
accept. Responses are built as plain dicts for speed; these models document them and the tests
check real responses against them.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_N = 8  # choices per request: each one is a full generation on a CPU
MAX_TOKENS_LIMIT = 1_000_000  # the model's context is the real bound
MAX_INPUTS = 2048  # embedding inputs per request (OpenAI's limit)
MAX_PROMPTS = 16
SEED_RANGE = dict(ge=-(2**63), le=2**63 - 1)

# pydantic already refuses lone surrogates ("\\ud800" in JSON), which no tokenizer takes.
Text = Annotated[str, Field(max_length=1_000_000)]
Short = Annotated[str, Field(max_length=1000)]


class _Open(BaseModel):
    """OpenAI clients send fields this server does not use (user, metadata...): ignore them."""

    model_config = ConfigDict(extra="allow")


# --------------------------------------------------------------------------- requests


class TextPart(BaseModel):
    type: Literal["text"]
    text: Text


class FunctionCall(_Open):
    name: str = Field(min_length=1, max_length=256)
    arguments: Text = Field(description="the arguments as JSON text")


class ToolCallOut(BaseModel):
    """A call the model made (`function.arguments` is JSON text that fits the tool's
    `parameters` schema)."""

    id: str = Field(max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class ToolCallIn(_Open):
    id: str = Field(max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | list[TextPart] | None = None
    name: str | None = Field(None, max_length=256)
    tool_calls: Annotated[list[ToolCallIn], Field(max_length=128)] | None = Field(
        None, description="assistant turns: the calls the model made"
    )
    tool_call_id: str | None = Field(
        None, max_length=256, description="tool turns: the call this result answers"
    )

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(_Open):
    include_usage: bool = False


class SearchFilters(BaseModel):
    """Only passages from sources matching `source_glob`, of these `file_types` (md, pdf...),
    from documents dated within `date_from`..`date_to` (inclusive)."""

    model_config = ConfigDict(extra="forbid")

    source_glob: Short | None = None
    file_types: list[Annotated[str, Field(min_length=1, max_length=32)]] | None = Field(
        None, max_length=32
    )
    date_from: date | None = Field(None, description="YYYY-MM-DD: documents dated on or after")
    date_to: date | None = Field(None, description="YYYY-MM-DD: documents dated on or before")

    @field_validator("source_glob")
    @classmethod
    def _glob_compiles(cls, pattern: str | None) -> str | None:
        from hearth.index.store import source_matches
        from hearth.ingest.globs import GlobError

        if pattern:
            try:
                source_matches(pattern, "/")
            except GlobError as exc:
                raise ValueError(str(exc)) from None
        return pattern


Retriever = Literal["hybrid", "bm25", "dense"]
Strategy = Literal[
    "standard", "multi-query", "hyde", "rag-fusion", "step-back", "decompose", "auto"
]
Rerank = Literal["none", "late-interaction", "llm-pointwise", "llm-listwise"]


class RagOptions(BaseModel):
    """Extra body field `hearth` for model `hearth-rag`."""

    model_config = ConfigDict(extra="forbid")

    k: int | None = Field(None, ge=1, le=50, description="passages to retrieve")
    extractive: bool = Field(False, description="quote the best supporting span, no paraphrase")
    retriever: Retriever | None = None
    strategy: Strategy | None = Field(None, description="query strategy (docs/retrieval.md)")
    rerank: Rerank | None = None
    filters: SearchFilters | None = None
    hops: int | None = Field(
        None, ge=1, le=4, description="hearth-graph only: graph hops from the question's entities"
    )


class AgentOptions(BaseModel):
    """Extra body field `agent` for model `hearth-agent`."""

    model_config = ConfigDict(extra="forbid")

    tools: list[Literal["search", "calculator", "sql"]] | None = Field(
        None, max_length=3, description="default: search and calculator (and sql with a database)"
    )
    max_steps: int = Field(5, ge=1, le=10, description="tool-calling turns at most")
    time_budget_s: float = Field(60.0, gt=0, le=300, description="seconds the run may take")


class SamplingFields(_Open):
    """What chat and text completions share."""

    model: str = Field(min_length=1, max_length=1000)
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_LIMIT)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    stop: Short | Annotated[list[Short], Field(max_length=4)] | None = None
    seed: int | None = Field(None, **SEED_RANGE)
    n: int = Field(1, ge=1, le=MAX_N)
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    user: str | None = Field(None, max_length=1000)
    hearth: RagOptions | None = None


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_LIMIT)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: Annotated[list[dict[str, Any]], Field(max_length=128)] | None = Field(
        None,
        description="functions the model may call ({'type': 'function', 'function': {'name', "
        "'description', 'parameters'}}); calls' arguments are held to each `parameters` schema",
    )
    tool_choice: str | dict[str, Any] | None = Field(
        None, description="'auto' (default with tools), 'none', 'required' or "
        "{'type': 'function', 'function': {'name': ...}}",
    )  # fmt: skip
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    agent: AgentOptions | None = Field(None, description="hearth-agent only: tools and budgets")


class CompletionRequest(SamplingFields):
    prompt: Text | Annotated[list[Text], Field(min_length=1, max_length=MAX_PROMPTS)]
    echo: bool | None = None
    suffix: str | None = Field(None, max_length=1000)
    best_of: int | None = Field(None, ge=1, le=MAX_N)
    logprobs: int | None = Field(None, ge=0, le=5)


class EmbeddingRequest(_Open):
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [{"model": "all-MiniLM-L6-v2", "input": ["reset the door code"]}]
        },
    )

    model: str = Field(min_length=1, max_length=1000)
    input: Text | Annotated[list[Text], Field(min_length=1, max_length=MAX_INPUTS)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, le=65536)
    user: str | None = Field(None, max_length=1000)


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=10_000)
    k: int | None = Field(None, ge=1, le=100)
    retriever: Retriever | None = None
    strategy: Strategy | None = Field(None, description="query strategy (docs/retrieval.md)")
    rerank: Rerank | None = None
    filters: SearchFilters | None = None
    self_query: bool = Field(
        False,
        description='read filters out of the query ("PDFs about pumps from 2024"); given '
        "filters win; the response's self_query shows the query and filters used",
    )


# --------------------------------------------------------------------------- responses


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str | None = None
    param: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    kind: Literal["chat", "rag", "agent", "embedding"] = Field(
        description="chat: a generation model; rag: answers from the index; embedding: vectors"
    )


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class PromptTokensDetails(BaseModel):
    cached_tokens: int = Field(0, description="prompt tokens taken from the prefix cache")


class UsageInfo(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None


class CitationOut(BaseModel):
    """A verified source: `text` == the document's text[start:end]."""

    n: int
    source: str
    document_id: int | None
    chunk_id: int | None
    start: int
    end: int
    text: str
    page: int | None
    headings: list[str]


class AgentStepOut(BaseModel):
    """One tool call of hearth-agent: what it asked and what came back (`ok` false: an
    error the agent read, such as a refusal or an unknown tool)."""

    model_config = ConfigDict(extra="allow")

    tool: str | None
    input: dict[str, Any] | None
    output: str
    ok: bool = True


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = Field(description="null when the reply is only tool calls")
    tool_calls: list[ToolCallOut] | None = None
    citations: list[CitationOut] | None = Field(
        None,
        description="hearth-rag and hearth-graph: the sources the answer's [n] markers name; "
        "hearth-agent: the passages its searches found that the answer uses",
    )
    steps: list[AgentStepOut] | None = Field(
        None, description="hearth-agent only: its tool calls, in order"
    )
    agent: dict[str, Any] | None = Field(
        None, description="hearth-agent only: stopped (answer, max_steps, time), turns, time"
    )


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: UsageInfo


class ChunkFunction(BaseModel):
    name: str | None = None
    arguments: str | None = None


class ChunkToolCall(BaseModel):
    """A piece of a tool call: the first carries `id`, `type` and `function.name`, the next
    ones pieces of `function.arguments` (joined, they are the arguments' JSON text)."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: ChunkFunction


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ChunkToolCall] | None = None
    citations: list[CitationOut] | None = Field(
        None, description="hearth-rag, final chunk of each choice: the verified sources"
    )
    answer: str | None = Field(
        None, description="hearth-rag, final chunk of each choice: the verified answer text"
    )
    steps: list[AgentStepOut] | None = Field(
        None, description="hearth-agent, final chunk: its tool calls, in order"
    )
    agent: dict[str, Any] | None = Field(
        None, description="hearth-agent, final chunk: why it stopped, turns, time"
    )


class ChunkChoice(BaseModel):
    index: int
    delta: ChunkDelta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    """One `data:` line of a streamed chat completion (the stream ends with `data: [DONE]`)."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: UsageInfo | None = None


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: str | None
    logprobs: None = None
    citations: list[CitationOut] | None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: UsageInfo | None = None


class EmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="floats, or base64 of little-endian float32")


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: EmbeddingUsage


class SkippedFile(BaseModel):
    path: str
    reason: str


class IngestReport(BaseModel):
    added: int
    updated: int
    unchanged: int
    removed: int
    skipped: list[SkippedFile]
    documents: int = Field(description="documents in the index afterwards")
    chunks: int = Field(description="chunks in the index afterwards")


class DocumentInfo(BaseModel):
    id: int
    source: str
    media_type: str
    file_type: str
    chunks: int
    bytes: int
    ingested_at: float
    content_hash: str


class DocumentList(BaseModel):
    object: Literal["list"] = "list"
    data: list[DocumentInfo]


class DocumentDetail(BaseModel):
    id: int
    source: str
    media_type: str
    file_type: str
    content_hash: str
    text: str
    metadata: dict[str, Any]


class Deleted(BaseModel):
    id: int
    deleted: bool


class SearchCopy(BaseModel):
    source: str
    document_id: int | None
    chunk_id: int | None


class SearchHit(BaseModel):
    source: str
    document_id: int | None
    chunk_id: int | None
    score: float
    start: int
    end: int
    text: str
    page: int | None
    headings: list[str]
    duplicates: list[SearchCopy] = Field(
        description="other chunks with the same text (whitespace aside), folded into this hit"
    )


class SearchResult(BaseModel):
    hits: list[SearchHit]
    stages: dict[str, Any] | None = Field(
        None, description="what the strategy's and reranker's model calls generated, per stage"
    )
    self_query: dict[str, Any] | None = Field(
        None, description="with self_query: the query searched, the filters used, notes"
    )


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    ready: bool = Field(description="models warmed up (requests before that wait for loading)")
    models: list[str]
    queue_depth: int
    generations_running: int


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the error statuses a route may answer with."""
    described = {
        400: "Malformed JSON or an unsupported parameter",
        401: "Missing or invalid API key",
        403: "No API keys configured and the client is not on this machine",
        404: "Unknown model, document or route",
        413: "Request body over the server's --max-upload-mb",
        422: "The body does not match the schema",
        429: "Over the per-key rate limit, or the generation queue is full (see Retry-After)",
        500: "Internal error (details in the server log)",
    }
    return {s: {"model": ErrorResponse, "description": described[s]} for s in statuses}
