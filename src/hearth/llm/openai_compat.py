"""Chat models behind any OpenAI-compatible server (OpenAI, OpenRouter, vLLM, Ollama, TGI,
llama.cpp server, LM Studio, Hearth's own `hearth serve`...), spoken through the official
`openai` SDK; Hearth adds the presets, its retry policy and clear errors.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from hearth.errors import BackendError, CapabilityError
from hearth.llm.presets import resolve
from hearth.llm.remote import DEFAULT_CONNECT_TIMEOUT, RemoteChatModel, RemoteParams
from hearth.llm.retry import Failure, parse_retry_after
from hearth.types import ChatResult, Message, StreamEnd

log = logging.getLogger(__name__)


def finish_reason(reason: str | None) -> str:
    """OpenAI's finish reasons folded onto Hearth's two: "length" or "stop"."""
    return "length" if reason == "length" else "stop"


class OpenAICompatModel(RemoteChatModel):
    """A ChatModel for one model on an OpenAI-compatible server (POST {base_url}/chat/completions).

    Build it with `hearth.llm.load("openai:gpt-4o-mini")`, `load("ollama:llama3.2")`,
    `load("openai:MODEL@http://host:8000/v1")`... Keyword options: `timeout` (seconds per
    attempt; for streams, the longest silence between chunks), `max_retries` or `retry`
    (a RetryPolicy), `stream_usage` (ask for usage in streams; turned off by itself when a
    server refuses `stream_options`).
    """

    supports_json_schema = True  # response_format json_schema (vLLM, Ollama, OpenAI, TGI...)

    def __init__(self, endpoint, context_size: int, *, stream_usage: bool = True, **kw: Any):
        super().__init__(endpoint, context_size, **kw)
        self.stream_usage = stream_usage
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
            "messages": [m.as_dict() for m in messages],
            self.max_tokens_field: p.max_tokens,
        }
        for key in ("temperature", "top_p", "seed"):
            if getattr(p, key) is not None:
                body[key] = getattr(p, key)
        if p.stop:
            body["stop"] = list(p.stop)
        if p.constraint is not None:
            if p.constraint.kind != "json":
                raise CapabilityError(
                    f"{self.name}: an OpenAI-compatible server takes JSON Schema constraints, "
                    f"not a {p.constraint.kind}; use hearth.generate, which checks and retries"
                )
            schema = p.constraint.schema
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": schema, "strict": False},
            }
        return body

    # -- the ChatModel interface ---------------------------------------------------------------

    def chat(self, messages: list[Message], **params: Any) -> ChatResult:
        body = self._body(messages, RemoteParams.from_kwargs(**params))
        response = self._call(lambda: self.client.chat.completions.create(**body), "chat with")
        if not response.choices:
            raise BackendError(f"{self.name}: {self.url} answered with no choices", url=self.url)
        choice = response.choices[0]
        text = choice.message.content or ""
        usage = response.usage
        return ChatResult(
            text=text,
            model=self.name,
            finish_reason=finish_reason(choice.finish_reason),
            usage=self._usage(
                messages,
                text,
                usage.prompt_tokens if usage else None,
                usage.completion_tokens if usage else None,
            ),
        )

    def stream_events(self, messages: list[Message], **params: Any) -> Iterator[str | StreamEnd]:
        body = self._body(messages, RemoteParams.from_kwargs(**params))  # checked before next()
        return self._stream_events(messages, body)

    def _stream_events(self, messages: list[Message], body: dict[str, Any]):
        import openai

        stream = self._open_stream(body)
        text, finish, prompt, completion = "", "stop", None, None
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
                if choice.finish_reason:
                    finish = finish_reason(choice.finish_reason)
        except openai.APIError as exc:  # the stream broke after it began: no retry, text is out
            raise self._error(exc, 0) from exc
        finally:
            stream.close()  # a consumer that stops early closes the HTTP stream here
        yield StreamEnd(finish, self._usage(messages, text, prompt, completion))

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
