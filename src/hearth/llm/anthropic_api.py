"""Claude models through Anthropic's Messages API, spoken by the official `anthropic` SDK;
Hearth adds the system-prompt mapping, its retry policy, usage and clear errors.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from hearth.errors import BackendError
from hearth.llm.presets import resolve
from hearth.llm.remote import DEFAULT_CONNECT_TIMEOUT, RemoteChatModel, RemoteParams
from hearth.llm.retry import Failure, parse_retry_after
from hearth.types import ChatResult, Message, StreamEnd

log = logging.getLogger(__name__)

# Anthropic's stop reasons folded onto Hearth's two: running out of room is "length".
LENGTH_REASONS = frozenset({"max_tokens", "model_context_window_exceeded"})


def finish_reason(reason: str | None) -> str:
    """end_turn, stop_sequence, tool_use... -> "stop"; max_tokens -> "length"."""
    return "length" if reason in LENGTH_REASONS else "stop"


class AnthropicModel(RemoteChatModel):
    """A ChatModel for one Claude model (POST {base_url}/v1/messages).

    System messages become the request's top-level `system` (joined by blank lines), and
    neighbouring messages of the same role are merged, as the API wants turns to alternate.
    The Messages API has no seed: a `seed` is accepted so callers can swap backends freely,
    and ignored with a warning. temperature/top_p are sent only when given. Token usage is
    the server's (message_start / message_delta); count_tokens() is an estimate.
    """

    def __init__(self, endpoint, context_size: int, **kw: Any):
        super().__init__(endpoint, context_size, **kw)
        # The SDK appends /v1/messages itself; accept a base URL written with /v1 as well.
        if self.base_url.endswith("/v1"):
            self.base_url = self.base_url[: -len("/v1")]
        self.url = f"{self.base_url}/v1/messages"
        self._warned_seed = False

    @classmethod
    def from_spec(cls, target: str, context_size: int, **kw: Any) -> AnthropicModel:
        endpoint = resolve("anthropic", target)
        name = f"anthropic:{target}" if endpoint.url_from == "spec" else None
        return cls(endpoint, context_size, name=name, **kw)

    def _make_client(self):
        import anthropic

        return anthropic.Anthropic(
            api_key=self.endpoint.api_key,
            base_url=self.base_url,
            max_retries=0,  # Hearth's RetryPolicy does the retrying
            timeout=anthropic.Timeout(
                self.timeout, connect=min(self.timeout, DEFAULT_CONNECT_TIMEOUT)
            ),
        )

    def _body(self, messages: list[Message], p: RemoteParams) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        turns: list[dict[str, str]] = []
        for m in messages:
            if m.role == "system":
                continue
            if turns and turns[-1]["role"] == m.role:
                turns[-1]["content"] += "\n\n" + m.content
            else:
                turns.append({"role": m.role, "content": m.content})
        body: dict[str, Any] = {"model": self.model, "max_tokens": p.max_tokens, "messages": turns}
        if system:
            body["system"] = system
        if p.stop:
            body["stop_sequences"] = list(p.stop)
        # This SDK's signature no longer lists them, so they travel as extra body fields.
        sampling = {k: getattr(p, k) for k in ("temperature", "top_p") if getattr(p, k) is not None}
        if sampling:
            body["extra_body"] = sampling
        if p.seed is not None and not self._warned_seed:
            self._warned_seed = True
            log.warning(
                "%s: Anthropic's Messages API has no seed; seed=%s ignored", self.name, p.seed
            )
        return body

    # -- the ChatModel interface ---------------------------------------------------------------

    def chat(self, messages: list[Message], **params: Any) -> ChatResult:
        body = self._body(messages, RemoteParams.from_kwargs(**params))
        message = self._call(lambda: self.client.messages.create(**body), "chat with")
        text = "".join(block.text for block in message.content if block.type == "text")
        usage = message.usage
        return ChatResult(
            text=text,
            model=self.name,
            finish_reason=finish_reason(message.stop_reason),
            usage=self._usage(
                messages,
                text,
                usage.input_tokens if usage else None,
                usage.output_tokens if usage else None,
            ),
        )

    def stream_events(self, messages: list[Message], **params: Any) -> Iterator[str | StreamEnd]:
        body = self._body(messages, RemoteParams.from_kwargs(**params))  # checked before next()
        return self._stream_events(messages, body)

    def _stream_events(self, messages: list[Message], body: dict[str, Any]):
        import anthropic

        stream = self._call(lambda: self.client.messages.create(**body, stream=True), "stream from")
        text, finish, prompt, completion = "", "stop", None, None
        try:
            for event in stream:  # the SDK drops `ping` and raises on `error` events
                if event.type == "message_start":
                    prompt = event.message.usage.input_tokens
                elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                    if event.delta.text:
                        text += event.delta.text
                        yield event.delta.text
                elif event.type == "message_delta":
                    finish = finish_reason(event.delta.stop_reason)
                    completion = event.usage.output_tokens  # cumulative: the final count
                    if event.usage.input_tokens is not None:
                        prompt = event.usage.input_tokens
        except anthropic.APIError as exc:  # broke after it began: no retry, text is already out
            raise BackendError(
                f"{self.name}: {self.url} failed mid-answer: {_detail(exc.body) or exc}",
                url=self.url,
            ) from exc
        finally:
            stream.close()  # a consumer that stops early closes the HTTP stream here
        yield StreamEnd(finish, self._usage(messages, text, prompt, completion))

    # -- failures ------------------------------------------------------------------------------

    def _classify(self, exc: Exception) -> Failure | None:
        import anthropic

        if isinstance(exc, anthropic.APIStatusError):
            return Failure(True, exc.status_code, parse_retry_after(exc.response.headers))
        if isinstance(exc, anthropic.APIConnectionError):  # timeouts included
            return Failure(True, None)
        return None

    def _error(self, exc: Exception, retries: int) -> Exception:
        import anthropic

        if isinstance(exc, anthropic.APIStatusError):
            return self.status_error(exc.status_code, _detail(exc.body), self.url, retries)
        if isinstance(exc, anthropic.APITimeoutError):
            return self.timeout_error(self.url, retries)
        if isinstance(exc, anthropic.APIConnectionError):
            return self.connection_error(self.url, retries, exc.__cause__ or exc)
        return exc


def _detail(body: object) -> str:
    """The message of an Anthropic error body {"type": "error", "error": {"type", "message"}}."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            kind, message = inner.get("type"), inner.get("message")
            return f"{kind}: {message}" if kind and message else str(message or inner)
        return str(inner)
    return "" if body is None else str(body)
