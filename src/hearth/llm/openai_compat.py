"""Chat models behind any OpenAI-compatible server (OpenAI, OpenRouter, vLLM, Ollama, TGI,
llama.cpp server, LM Studio, Hearth's own `hearth serve`...), spoken through the official
`openai` SDK; Hearth adds the presets, its retry policy, clear errors, tool calls in the
server's own shape and structured outputs (response_format; vLLM's guided decoding).

Hand-written: the SDK sends and parses, but folding streamed tool-call deltas into calls and
choosing each server's structured-output fields is a few lines no library offers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from hearth.errors import BackendError, CapabilityError
from hearth.llm.presets import resolve
from hearth.llm.remote import DEFAULT_CONNECT_TIMEOUT, RemoteChatModel, RemoteParams
from hearth.llm.retry import Failure, parse_retry_after
from hearth.llm.tool_calls import new_call_id
from hearth.structured import Constraint
from hearth.types import ChatResult, Message, StreamEnd, ToolCall

log = logging.getLogger(__name__)

# Presets whose servers mask tokens for regexes, choices and grammars (vLLM's guided decoding).
GUIDED_PRESETS = frozenset({"vllm"})


def finish_reason(reason: str | None, calls: list[ToolCall] | None = None) -> str:
    """OpenAI's finish reasons folded onto Hearth's: "tool_calls" when calls came back (vLLM
    says "stop" after a named call), else "length" or "stop"."""
    if calls:
        return "tool_calls"
    return "length" if reason == "length" else "stop"


def wire_message(m: Message, index: int = 0) -> dict[str, Any]:
    """One message in OpenAI's wire shape: an assistant turn's calls with JSON-text arguments
    (content null when it said nothing else), a "tool" turn with the tool_call_id it answers."""
    if m.role == "tool":
        if not m.tool_call_id:
            raise ValueError(
                f"messages[{index}]: a 'tool' message needs tool_call_id (the id of the call "
                "it answers, from ChatResult.tool_calls)"
            )
        return {"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content}
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["tool_calls"] = [c.as_openai() for c in m.tool_calls]
        if not m.content:
            out["content"] = None
    if m.name is not None:
        out["name"] = m.name
    return out


def guided_fields(constraint: Constraint) -> dict[str, Any]:
    """vLLM's structured-output request for a regex / choice / grammar constraint, in both of
    its spellings: `guided_regex` / `guided_choice` / `guided_grammar` (vLLM before 0.12) and
    `structured_outputs: {regex | choice | grammar}` (0.10.2 on; the guided_* names were
    removed in 0.12). vLLM ignores, with a warning, the fields it does not know, and the
    versions that know both get the same constraint either way. A grammar is sent as written:
    GBNF goes to xgrammar as is (its EBNF is a GBNF superset); vLLM converts a Lark grammar
    to EBNF for xgrammar, and a server run with the guidance backend takes llguidance's Lark
    (Hearth's own dialect) directly."""
    if constraint.kind == "grammar":
        key, value = "grammar", constraint.source.text
    elif constraint.kind in ("regex", "choice"):
        key, value = constraint.kind, constraint.source
    else:
        raise ValueError(f"no guided-decoding field for a {constraint.kind} constraint")
    return {f"guided_{key}": value, "structured_outputs": {key: value}}


@dataclass
class _PartialCall:
    """A tool call being streamed: OpenAI sends its id and name first, then argument pieces."""

    id: str = ""
    name: str = ""
    arguments: str = ""

    def add(self, delta: Any) -> None:
        self.id = self.id or (delta.id or "")
        fn = delta.function
        if fn is not None:
            if fn.name and fn.name != self.name:  # some servers repeat the whole name
                self.name += fn.name
            self.arguments += fn.arguments or ""

    def call(self) -> ToolCall:
        return ToolCall(self.id or new_call_id(), self.name, self.arguments or "{}")


def tool_calls_of(message: Any) -> list[ToolCall]:
    """The function calls in a chat.completion message (other tool kinds are skipped)."""
    calls = []
    for call in getattr(message, "tool_calls", None) or []:
        fn = getattr(call, "function", None)
        if fn is None or not fn.name:
            log.warning("skipping a tool call that is not a function call: %r", call)
            continue
        calls.append(ToolCall(call.id or new_call_id(), fn.name, fn.arguments or "{}"))
    return calls


class OpenAICompatModel(RemoteChatModel):
    """A ChatModel for one model on an OpenAI-compatible server (POST {base_url}/chat/completions).

    Build it with `hearth.llm.load("openai:gpt-4o-mini")`, `load("ollama:llama3.2")`,
    `load("openai:MODEL@http://host:8000/v1")`... Keyword options: `timeout` (seconds per
    attempt; for streams, the longest silence between chunks), `max_retries` or `retry`
    (a RetryPolicy), `stream_usage` (ask for usage in streams; turned off by itself when a
    server refuses `stream_options`), `guided` (the server does vLLM's guided decoding: True
    for vllm: specs; pass guided=True for a vLLM server reached as openai:MODEL@URL).

    `tools` / `tool_choice` go to the server as they are (OpenAI's shape); its `tool_calls`
    come back as ChatResult.tool_calls / StreamEnd.tool_calls with finish_reason "tool_calls".
    A JSON Schema constraint is sent as `response_format` json_schema; regexes, choices and
    grammars only to vLLM (see guided_fields), anywhere else they are a CapabilityError
    (hearth.generate then shows the pattern to the model and validates the answer).
    """

    supports_tools = True  # `tools` / `tool_choice`, as OpenAI defined them
    supports_json_schema = True  # response_format json_schema (vLLM, Ollama, OpenAI, TGI...)

    def __init__(
        self,
        endpoint,
        context_size: int,
        *,
        stream_usage: bool = True,
        guided: bool | None = None,
        **kw: Any,
    ):
        super().__init__(endpoint, context_size, **kw)
        self.stream_usage = stream_usage
        self.guided = endpoint.preset.prefix in GUIDED_PRESETS if guided is None else guided
        # hearth.generate sends every kind of constraint to a model that masks tokens
        self.masks_tokens = self.guided
        # Only OpenAI's own API wants max_completion_tokens; other servers know max_tokens.
        hosted = endpoint.url_from == "preset"
        self.max_tokens_field = endpoint.preset.max_tokens_field if hosted else "max_tokens"
        self.url = f"{self.base_url}/chat/completions"

    @classmethod
    def from_spec(cls, prefix: str, target: str, context_size: int, **kw: Any):
        endpoint = resolve(prefix, target)
        name = f"{prefix}:{target}" if endpoint.url_from == "spec" else None
        return cls(endpoint, context_size, name=name, **kw)

    def _make_client(self):
        import openai

        return openai.OpenAI(
            api_key=self.endpoint.api_key,
            base_url=self.base_url,
            max_retries=0,  # Hearth's RetryPolicy does the retrying
            timeout=openai.Timeout(
                self.timeout, connect=min(self.timeout, DEFAULT_CONNECT_TIMEOUT)
            ),
        )

    def _body(self, messages: list[Message], p: RemoteParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [wire_message(m, i) for i, m in enumerate(messages)],
            self.max_tokens_field: p.max_tokens,
        }
        for key in ("temperature", "top_p", "seed"):
            if getattr(p, key) is not None:
                body[key] = getattr(p, key)
        if p.stop:
            body["stop"] = list(p.stop)
        if p.tools:
            body["tools"] = p.tools
            if p.tool_choice is not None:
                body["tool_choice"] = p.tool_choice
        if p.constraint is not None:
            body.update(self._constraint_fields(p.constraint))
        return body

    def _constraint_fields(self, constraint: Constraint) -> dict[str, Any]:
        if constraint.kind == "json":
            schema = constraint.schema
            return {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "output", "schema": schema, "strict": False},
                }
            }
        if self.guided:
            return {"extra_body": guided_fields(constraint)}  # merged into the JSON body
        raise CapabilityError(
            f"{self.name}: an OpenAI-compatible server takes JSON Schema constraints, not a "
            f"{constraint.kind}; vLLM takes all kinds (a vllm: spec, or guided=True), or use "
            "hearth.generate, which checks and retries"
        )

    # -- the ChatModel interface ---------------------------------------------------------------

    def chat(self, messages: list[Message], **params: Any) -> ChatResult:
        body = self._body(messages, RemoteParams.from_kwargs(**params))
        response = self._call(lambda: self.client.chat.completions.create(**body), "chat with")
        if not response.choices:
            raise BackendError(f"{self.name}: {self.url} answered with no choices", url=self.url)
        choice = response.choices[0]
        text = choice.message.content or ""
        calls = tool_calls_of(choice.message)
        usage = response.usage
        return ChatResult(
            text=text,
            model=self.name,
            finish_reason=finish_reason(choice.finish_reason, calls),
            usage=self._usage(
                messages,
                text + "".join(c.name + c.arguments for c in calls),
                usage.prompt_tokens if usage else None,
                usage.completion_tokens if usage else None,
            ),
            tool_calls=calls,
        )

    def stream_events(self, messages: list[Message], **params: Any) -> Iterator[str | StreamEnd]:
        body = self._body(messages, RemoteParams.from_kwargs(**params))  # checked before next()
        return self._stream_events(messages, body)

    def _stream_events(self, messages: list[Message], body: dict[str, Any]):
        import openai

        stream = self._open_stream(body)
        text, finish, prompt, completion = "", None, None, None
        partial: dict[int, _PartialCall] = {}  # streamed tool calls by their index
        try:
            for chunk in stream:
                if chunk.usage:  # the extra last chunk that stream_options.include_usage asks for
                    prompt, completion = chunk.usage.prompt_tokens, chunk.usage.completion_tokens
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                delta = choice.delta.content if choice.delta else None
                if delta:
                    text += delta
                    yield delta
                for piece in (choice.delta.tool_calls if choice.delta else None) or []:
                    partial.setdefault(piece.index or 0, _PartialCall()).add(piece)
                if choice.finish_reason:
                    finish = choice.finish_reason
        except openai.APIError as exc:  # the stream broke after it began: no retry, text is out
            raise self._error(exc, 0) from exc
        finally:
            stream.close()  # a consumer that stops early closes the HTTP stream here
        calls = [partial[i].call() for i in sorted(partial)]
        said = text + "".join(c.name + c.arguments for c in calls)
        yield StreamEnd(
            finish_reason(finish, calls), self._usage(messages, said, prompt, completion), calls
        )

    def _open_stream(self, body: dict[str, Any]):
        def attempt():
            extra = {"stream_options": {"include_usage": True}} if self.stream_usage else {}
            return self.client.chat.completions.create(**body, stream=True, **extra)

        try:
            return self._call(attempt, "stream from")
        except BackendError as err:
            # Older servers refuse stream_options: stream without it, estimate the usage.
            refused = err.status in (400, 422) and "stream_options" in str(err)
            if not (self.stream_usage and refused):
                raise
            log.info("%s refuses stream_options; streaming without usage", self.base_url)
            self.stream_usage = False
            return self._call(attempt, "stream from")

    # -- failures ------------------------------------------------------------------------------

    def _classify(self, exc: Exception) -> Failure | None:
        import openai

        if isinstance(exc, openai.APIStatusError):
            return Failure(True, exc.status_code, parse_retry_after(exc.response.headers))
        if isinstance(exc, openai.APIConnectionError):  # timeouts included
            return Failure(True, None)
        return None

    def _error(self, exc: Exception, retries: int) -> Exception:
        import openai

        if isinstance(exc, openai.APIStatusError):
            return self.status_error(exc.status_code, _detail(exc.body), self.url, retries)
        if isinstance(exc, openai.APITimeoutError):
            return self.timeout_error(self.url, retries)
        if isinstance(exc, openai.APIConnectionError):
            return self.connection_error(self.url, retries, exc.__cause__ or exc)
        if isinstance(exc, openai.APIError):
            return BackendError(f"{self.name}: {self.url} failed mid-answer: {exc}", url=self.url)
        return exc


def _detail(body: object) -> str:
    """The server's own error message, whatever shape its error body has."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return str(inner.get("message") or inner)
        return str(inner)
    return "" if body is None else str(body)
