"""Claude models through Anthropic's Messages API, spoken by the official `anthropic` SDK;
Hearth adds the system-prompt mapping, tools and JSON answers in Anthropic's shapes, its retry
policy, usage and clear errors.

Hand-written: the SDK sends and parses, but mapping OpenAI-shaped tools, calls and results onto
Anthropic's content blocks, and a JSON Schema onto its tool mode, is Hearth's own convention.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any, NamedTuple

from hearth.errors import BackendError, CapabilityError
from hearth.llm.presets import resolve
from hearth.llm.remote import DEFAULT_CONNECT_TIMEOUT, RemoteChatModel, RemoteParams
from hearth.llm.retry import Failure, parse_retry_after
from hearth.structured import Constraint
from hearth.types import ChatResult, Message, StreamEnd, ToolCall

log = logging.getLogger(__name__)

# Anthropic's stop reasons folded onto Hearth's: running out of room is "length".
LENGTH_REASONS = frozenset({"max_tokens", "model_context_window_exceeded"})
# The tool a JSON Schema answer is given through (Anthropic's "JSON mode" is a forced tool call)
ANSWER_TOOL = "answer"
ANSWER_TOOL_DESCRIPTION = "Give your answer: call this with the answer as the input."
WRAPPED = "value"  # the property a non-object schema's answer travels in


def finish_reason(reason: str | None, calls: list[ToolCall] | None = None) -> str:
    """end_turn, stop_sequence... -> "stop"; max_tokens -> "length"; tool_use with calls ->
    "tool_calls" (the answer tool of a JSON Schema constraint is no call: "stop")."""
    if calls:
        return "tool_calls"
    return "length" if reason in LENGTH_REASONS else "stop"


class AnswerTool(NamedTuple):
    """A JSON Schema sent as Anthropic's tool mode: `tool` goes in `tools`, and the answer is
    the input of the forced call, unwrapped from {"value": ...} when the schema is no object."""

    tool: dict[str, Any]
    wrapped: bool

    def text(self, tool_input: Any) -> str:
        """The answer text hearth.generate parses: the call's input as JSON."""
        if self.wrapped and isinstance(tool_input, dict):
            tool_input = tool_input.get(WRAPPED)
        return json.dumps(tool_input, ensure_ascii=False)


def answer_tool(constraint: Constraint) -> AnswerTool:
    """Anthropic's tool mode for a JSON Schema: input_schema must be an object schema, so any
    other is wrapped as the required property "value" ($defs move up with it so refs resolve)."""
    schema = constraint.schema
    wrapped = not (isinstance(schema, dict) and schema.get("type") == "object")
    if wrapped:
        inner = dict(schema) if isinstance(schema, dict) else schema
        outer: dict[str, Any] = {"type": "object"}
        if isinstance(inner, dict):
            for key in ("$defs", "definitions"):
                if key in inner:
                    outer[key] = inner.pop(key)
        schema = {
            **outer,
            "properties": {WRAPPED: inner},
            "required": [WRAPPED],
            "additionalProperties": False,
        }
    tool = {"name": ANSWER_TOOL, "description": ANSWER_TOOL_DESCRIPTION, "input_schema": schema}
    return AnswerTool(tool, wrapped)


def anthropic_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI function definitions as Anthropic tools (name, description, input_schema)."""
    out = []
    for tool in tools:
        fn = tool["function"]
        entry = {"name": fn["name"], "input_schema": fn["parameters"]}
        if fn.get("description"):
            entry["description"] = fn["description"]
        out.append(entry)
    return out


def anthropic_tool_choice(choice: Any) -> dict[str, Any] | None:
    """OpenAI's tool_choice in Anthropic's words: auto -> auto, required -> any, a named
    function -> tool, none -> none (None: not sent, the API's default is auto)."""
    if choice is None:
        return None
    if isinstance(choice, dict):
        return {"type": "tool", "name": choice["function"]["name"]}
    return {"type": {"auto": "auto", "required": "any", "none": "none"}[choice]}


def _blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(content, list):
        return content
    return [{"type": "text", "text": content}] if content else []


def _turn(m: Message) -> dict[str, Any]:
    """One non-system message as a Messages API turn: plain text stays a string; a call becomes
    a tool_use block, a tool's output a tool_result block in a user turn."""
    if m.role == "tool":
        result = {"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}
        return {"role": "user", "content": [result]}
    if m.role == "assistant" and m.tool_calls:
        uses = [
            {"type": "tool_use", "id": c.id, "name": c.name, "input": _arguments(c)}
            for c in m.tool_calls
        ]
        return {"role": "assistant", "content": _blocks(m.content) + uses}
    return {"role": m.role, "content": m.content}


def _arguments(call: ToolCall) -> Any:
    try:
        return json.loads(call.arguments or "{}")
    except ValueError:
        raise ValueError(
            f"tool call {call.id} ({call.name}): arguments are not JSON: {call.arguments[:80]!r}"
        ) from None


def _calls(blocks: list[Any]) -> list[ToolCall]:
    return [
        ToolCall(b.id, b.name, json.dumps(b.input, ensure_ascii=False))
        for b in blocks
        if b.type == "tool_use"
    ]


class AnthropicModel(RemoteChatModel):
    """A ChatModel for one Claude model (POST {base_url}/v1/messages).

    System messages become the request's top-level `system` (joined by blank lines), and
    neighbouring messages of the same role are merged, as the API wants turns to alternate.
    The Messages API has no seed: a `seed` is accepted so callers can swap backends freely,
    and ignored with a warning. temperature/top_p are sent only when given. Token usage is
    the server's (message_start / message_delta); count_tokens() is an estimate.

    `tools` / `tool_choice` are taken in OpenAI's shape and sent as Anthropic's (see
    anthropic_tools, anthropic_tool_choice); tool_use blocks come back as ToolCalls, calls
    and "tool" messages go out as tool_use / tool_result blocks. A JSON Schema constraint is
    sent as tool mode (answer_tool): the forced call's input, as JSON, is the answer text.
    """

    supports_tools = True
    supports_json_schema = True  # through tool mode (answer_tool)

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
        turns: list[dict[str, Any]] = []
        for i, m in enumerate(messages):
            if m.role == "system":
                continue
            if m.role == "tool" and not m.tool_call_id:
                raise ValueError(
                    f"messages[{i}]: a 'tool' message needs tool_call_id (the id of the call "
                    "it answers, from ChatResult.tool_calls)"
                )
            turn = _turn(m)
            if turns and turns[-1]["role"] == turn["role"]:
                last = turns[-1]
                if isinstance(last["content"], str) and isinstance(turn["content"], str):
                    last["content"] += "\n\n" + turn["content"]
                else:  # tool results and text share one user turn, results first
                    last["content"] = _blocks(last["content"]) + _blocks(turn["content"])
            else:
                turns.append(turn)
        body: dict[str, Any] = {"model": self.model, "max_tokens": p.max_tokens, "messages": turns}
        if system:
            body["system"] = system
        if p.stop:
            body["stop_sequences"] = list(p.stop)
        if p.tools:
            body["tools"] = anthropic_tools(p.tools)
            choice = anthropic_tool_choice(p.tool_choice)
            if choice is not None:
                body["tool_choice"] = choice
        if p.constraint is not None:
            if p.constraint.kind != "json":
                raise CapabilityError(
                    f"{self.name}: Anthropic's API takes JSON Schema constraints (as tool mode), "
                    f"not a {p.constraint.kind}; use hearth.generate, which checks and retries"
                )
            if p.tools:
                raise CapabilityError(
                    f"{self.name}: a JSON Schema answer is Anthropic's tool mode, which cannot "
                    "be combined with other tools in one request; ask for one or the other"
                )
            answer = answer_tool(p.constraint)
            body["tools"] = [answer.tool]
            body["tool_choice"] = {"type": "tool", "name": ANSWER_TOOL}
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

    def _prepare(self, messages: list[Message], params: dict[str, Any]):
        p = RemoteParams.from_kwargs(**params)
        body = self._body(messages, p)
        answer = answer_tool(p.constraint) if p.constraint is not None else None
        return body, answer

    # -- the ChatModel interface ---------------------------------------------------------------

    def chat(self, messages: list[Message], **params: Any) -> ChatResult:
        body, answer = self._prepare(messages, params)
        message = self._call(lambda: self.client.messages.create(**body), "chat with")
        text = "".join(block.text for block in message.content if block.type == "text")
        calls = _calls(message.content)
        if answer is not None:  # tool mode: the forced call's input is the answer
            given = [b.input for b in message.content if b.type == "tool_use"]
            text, calls = (answer.text(given[0]) if given else text), []
        usage = message.usage
        return ChatResult(
            text=text,
            model=self.name,
            finish_reason=finish_reason(message.stop_reason, calls),
            usage=self._usage(
                messages,
                text + "".join(c.name + c.arguments for c in calls),
                usage.input_tokens if usage else None,
                usage.output_tokens if usage else None,
            ),
            tool_calls=calls,
        )

    def stream_events(self, messages: list[Message], **params: Any) -> Iterator[str | StreamEnd]:
        body, answer = self._prepare(messages, params)  # checked before next()
        return self._stream_events(messages, body, answer)

    def _stream_events(self, messages: list[Message], body: dict[str, Any], answer):
        """Text deltas; tool_use blocks gather their input_json_delta pieces into calls. In
        tool mode an object answer streams as those pieces (the same JSON value chat() gives,
        spacing aside); a wrapped one comes whole at the end, unwrapped."""
        import anthropic

        stream = self._call(lambda: self.client.messages.create(**body, stream=True), "stream from")
        text, reason, prompt, completion = "", None, None, None
        uses: dict[int, list[str]] = {}  # index -> [id, name, input JSON so far]
        try:
            for event in stream:  # the SDK drops `ping` and raises on `error` events
                if event.type == "message_start":
                    prompt = event.message.usage.input_tokens
                elif event.type == "content_block_start":
                    block = event.content_block
                    if block.type == "tool_use":
                        uses[event.index] = [block.id, block.name, ""]
                elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                    if event.delta.text:
                        text += event.delta.text
                        yield event.delta.text
                elif event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                    piece = event.delta.partial_json
                    if event.index in uses and piece:
                        uses[event.index][2] += piece
                        if answer is not None and not answer.wrapped:
                            text += piece
                            yield piece
                elif event.type == "message_delta":
                    reason = event.delta.stop_reason
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
        calls = [_streamed_call(*uses[i]) for i in sorted(uses)]
        if answer is not None:
            if answer.wrapped and calls:
                try:
                    text = answer.text(json.loads(calls[0].arguments))
                except ValueError:  # cut off: what came, for hearth.generate to refuse
                    text = calls[0].arguments
                yield text
            calls = []
        said = text + "".join(c.name + c.arguments for c in calls)
        yield StreamEnd(
            finish_reason(reason, calls), self._usage(messages, said, prompt, completion), calls
        )

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


def _streamed_call(call_id: str, name: str, partial: str) -> ToolCall:
    """A streamed tool_use block as a ToolCall, its arguments written as chat() writes them."""
    try:
        arguments = json.dumps(json.loads(partial), ensure_ascii=False) if partial else "{}"
    except ValueError:  # cut off (max_tokens): keep what came, as OpenAI servers do
        arguments = partial
    return ToolCall(call_id, name, arguments)


def _detail(body: object) -> str:
    """The message of an Anthropic error body {"type": "error", "error": {"type", "message"}}."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            kind, message = inner.get("type"), inner.get("message")
            return f"{kind}: {message}" if kind and message else str(message or inner)
        return str(inner)
    return "" if body is None else str(body)
