"""A small server on 127.0.0.1 speaking Anthropic's Messages API wire format, answering with
the real local GGUF: POST /v1/messages as JSON or as the SSE event sequence message_start,
content_block_start, ping, content_block_delta (text_delta or input_json_delta)...,
content_block_stop, message_delta (stop_reason, usage.output_tokens), message_stop.

Checks the key (x-api-key, or Authorization: Bearer as anthropic SDK 2.x sends it) and the
anthropic-version header like the real API, checks tools, tool_choice and that every tool_use
is answered by a tool_result in the next turn, applies stop_sequences itself (so it can report
stop_reason "stop_sequence"), and fails on demand (401, 429 with retry-after, 529 overloaded,
500) to test the Anthropic backend's retries and errors. A forced tool ("tool" or "any") is
written by the model under the tool's input_schema (hearth.structured masks its tokens), so a
tool_use input really fits. Hand-written: a fake of a paid API must check what the real one does.
"""

from __future__ import annotations

import json
import uuid

from hearth.types import Message
from tests.llm.wire_support import (
    Fault,
    ForcedCall,
    WireHandler,
    WireServer,
    text_of_call,
    tools_shown,
)

MODELS = ("claude-test-1",)


def anthropic_error(status: int, kind: str, message: str, **kw) -> Fault:
    return Fault(status, {"type": "error", "error": {"type": kind, "message": message}}, **kw)


def rate_limited(retry_after: float | None = None) -> Fault:
    headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
    return anthropic_error(429, "rate_limit_error", "Number of requests exceeded", headers=headers)


def overloaded() -> Fault:
    return anthropic_error(529, "overloaded_error", "Overloaded")


def api_error() -> Fault:
    return anthropic_error(500, "api_error", "Internal server error")


class StopCut:
    """Cuts streamed text at the first stop sequence, holding back what may be its start."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = stops
        self.pending = ""
        self.hit: str | None = None

    def feed(self, delta: str) -> str:
        self.pending += delta
        found = [(self.pending.find(s), s) for s in self.stops if s in self.pending]
        if found:
            at, self.hit = min(found)
            out, self.pending = self.pending[:at], ""
            return out
        keep = max((len(s) for s in self.stops), default=1) - 1
        cut = len(self.pending) - keep if keep else len(self.pending)
        out, self.pending = self.pending[: max(cut, 0)], self.pending[max(cut, 0) :]
        return out

    def rest(self) -> str:
        out, self.pending = self.pending, ""
        return out


class AnthropicHandler(WireHandler):
    def do_POST(self) -> None:
        body = self.read_json()
        if self.path != "/v1/messages":
            self.send_json(404, anthropic_error(404, "not_found_error", "Not found").body)
            return
        if self.api_key() != self.wire.api_key:
            fault = anthropic_error(401, "authentication_error", "invalid x-api-key")
            self.send_json(401, fault.body)
            return
        if not self.headers.get("anthropic-version"):
            fault = anthropic_error(400, "invalid_request_error", "anthropic-version: required")
            self.send_json(400, fault.body)
            return
        if self.send_fault_if_any():
            return
        problem = self.invalid(body)
        if problem:
            self.send_json(problem.status, problem.body)
            return
        messages = [Message(m["role"], model_text(m["content"])) for m in body["messages"]]
        if body.get("system"):
            messages.insert(0, Message("system", body["system"]))
        params = {
            "max_tokens": body["max_tokens"],
            "temperature": body.get("temperature", 1.0),  # the API's default
            "top_p": body.get("top_p"),
        }
        forced = forced_call(body)
        if forced is not None:
            described = {t["name"]: t.get("description", "") for t in body["tools"]}
            messages.insert(0, tools_shown(forced.tools, described))
            if body.get("stream"):
                self.stream_call(body, messages, params, forced)
            else:
                self.complete_call(body, messages, params, forced)
        elif body.get("stream"):
            self.stream(body, messages, params)
        else:
            self.complete(body, messages, params)

    def api_key(self) -> str | None:
        """The key from x-api-key, or from Authorization: Bearer (which SDK 2.x sends)."""
        bearer = self.headers.get("authorization") or ""
        if bearer.startswith("Bearer "):
            return bearer[len("Bearer ") :]
        return self.headers.get("x-api-key")

    def invalid(self, body) -> Fault | None:
        if body.get("model") not in MODELS:
            return anthropic_error(404, "not_found_error", f"model: {body.get('model')}")
        if not isinstance(body.get("max_tokens"), int):
            return anthropic_error(400, "invalid_request_error", "max_tokens: Field required")
        roles = [m.get("role") for m in body.get("messages", [])]
        if not roles or "system" in roles:
            return anthropic_error(
                400,
                "invalid_request_error",
                "messages: roles must be 'user' or 'assistant'; use the top-level system",
            )
        if "seed" in body:
            return anthropic_error(
                400, "invalid_request_error", "seed: Extra inputs are not permitted"
            )
        return check_tools(body)

    def generate(self, messages, params, stops, on_text) -> tuple[str, str | None, int]:
        """Run the model, cutting at stop sequences; returns (stop_reason, stop_sequence,
        output_tokens)."""
        cut = StopCut(stops)
        pieces = 0

        def take(delta: str) -> bool:
            nonlocal pieces
            pieces += 1
            text = cut.feed(delta)
            if text and not on_text(text):
                return False
            return cut.hit is None

        end = self.stream_model(messages, params, take)
        if cut.hit is not None:
            return "stop_sequence", cut.hit, pieces
        if end is None:
            return "gone", None, pieces
        rest = cut.rest()
        if rest and not on_text(rest):
            return "gone", None, pieces
        reason = "max_tokens" if end.finish_reason == "length" else "end_turn"
        return reason, None, end.usage.completion_tokens

    def message(self, body, text, stop_reason, stop_sequence, usage) -> dict:
        return {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [{"type": "text", "text": text}] if text is not None else [],
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": usage,
        }

    def complete(self, body, messages, params) -> None:
        parts: list[str] = []
        reason, sequence, output = self.generate(
            messages, params, body.get("stop_sequences") or [], lambda t: parts.append(t) or True
        )
        usage = {"input_tokens": self.wire.model.count_tokens(messages), "output_tokens": output}
        self.send_json(200, self.message(body, "".join(parts), reason, sequence, usage))

    def stream(self, body, messages, params) -> None:
        send = self.send_sse
        input_tokens = self.wire.model.count_tokens(messages)
        start = self.message(
            body, None, None, None, {"input_tokens": input_tokens, "output_tokens": 1}
        )
        self.start_sse()
        opened = (
            send({"type": "message_start", "message": start}, "message_start")
            and send(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
                "content_block_start",
            )
            and send({"type": "ping"}, "ping")
        )

        def on_text(text: str) -> bool:
            delta = {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": text},
            }
            return send(delta, "content_block_delta")

        reason, sequence, output = (
            self.generate(messages, params, body.get("stop_sequences") or [], on_text)
            if opened
            else ("gone", None, 0)
        )
        if reason == "gone":
            self.client_went_away()
            return
        send({"type": "content_block_stop", "index": 0}, "content_block_stop")
        send(
            {
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": sequence},
                "usage": {"output_tokens": output},
            },
            "message_delta",
        )
        send({"type": "message_stop"}, "message_stop")

    # -- forced tool calls (tool_choice "tool" or "any") --------------------------------------

    def tool_use(self, name: str, tool_input) -> dict:
        return {
            "type": "tool_use",
            "id": f"toolu_{uuid.uuid4().hex[:24]}",
            "name": name,
            "input": tool_input,
        }

    def complete_call(self, body, messages, params, forced: ForcedCall) -> None:
        text, end = self.generate_call(messages, params, forced)
        call = forced.split(text)
        usage = {
            "input_tokens": self.wire.model.count_tokens(messages),
            "output_tokens": end.usage.completion_tokens,
        }
        answer = self.message(body, None, "tool_use" if call else "max_tokens", None, usage)
        answer["content"] = [self.tool_use(*call)] if call else []
        self.send_json(200, answer)

    def stream_call(self, body, messages, params, forced: ForcedCall) -> None:
        send = self.send_sse
        input_tokens = self.wire.model.count_tokens(messages)
        start = self.message(
            body, None, None, None, {"input_tokens": input_tokens, "output_tokens": 1}
        )
        self.start_sse()
        if not send({"type": "message_start", "message": start}, "message_start"):
            self.client_went_away()
            return

        def block_start(name: str) -> bool:
            block = {**self.tool_use(name, {})}
            return send(
                {"type": "content_block_start", "index": 0, "content_block": block},
                "content_block_start",
            )

        def piece(partial: str) -> bool:
            delta = {"type": "input_json_delta", "partial_json": partial}
            return send(
                {"type": "content_block_delta", "index": 0, "delta": delta}, "content_block_delta"
            )

        if forced.name is not None:  # the input streams as the model writes it
            opened = block_start(forced.name)
            text, end = self.generate_call(messages, params, forced, lambda d: opened and piece(d))
            call = forced.split(text)
        else:  # which tool is known once the call is written
            text, end = self.generate_call(messages, params, forced)
            call = forced.split(text)
            if call is not None:
                partial = json.dumps(call[1])
                half = len(partial) // 2
                block_start(call[0]) and piece(partial[:half]) and piece(partial[half:])
        if end is None:
            self.client_went_away()
            return
        send({"type": "content_block_stop", "index": 0}, "content_block_stop")
        send(
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": "tool_use" if call else "max_tokens",
                    "stop_sequence": None,
                },
                "usage": {"output_tokens": end.usage.completion_tokens},
            },
            "message_delta",
        )
        send({"type": "message_stop"}, "message_stop")


def check_tools(body) -> Fault | None:
    """The API's checks on tools, tool_choice and tool_use / tool_result pairing."""

    def bad(message: str) -> Fault:
        return anthropic_error(400, "invalid_request_error", message)

    names = []
    for i, tool in enumerate(body.get("tools") or []):
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            return bad(f"tools.{i}.custom.name: Field required")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            return bad(f"tools.{i}.custom.input_schema.type: Input should be 'object'")
        names.append(tool["name"])
    choice = body.get("tool_choice")
    if choice is not None:
        if not names:
            return bad("tool_choice may only be specified while providing tools.")
        if choice.get("type") not in ("auto", "any", "tool", "none"):
            return bad(f"tool_choice.type: Input tag {choice.get('type')!r} does not match")
        if choice["type"] == "tool" and choice.get("name") not in names:
            return bad(f"Tool '{choice.get('name')}' not found in provided tools")
    turns = body["messages"]
    for i, turn in enumerate(turns):
        blocks = turn["content"] if isinstance(turn["content"], list) else []
        uses = [b["id"] for b in blocks if b.get("type") == "tool_use"]
        if uses:
            after = turns[i + 1]["content"] if i + 1 < len(turns) else []
            answered = {b.get("tool_use_id") for b in after if isinstance(b, dict)}
            missing = [u for u in uses if u not in answered]
            if missing:
                return bad(
                    f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(missing)}. Each `tool_use` block must have "
                    "a corresponding `tool_result` block in the next message."
                )
        before = turns[i - 1]["content"] if i else []
        offered = {b.get("id") for b in before if isinstance(b, dict)}
        for j, block in enumerate(blocks):
            if block.get("type") == "tool_result" and block.get("tool_use_id") not in offered:
                return bad(
                    f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                    f"`tool_result` blocks: {block.get('tool_use_id')}. Each `tool_result` "
                    "block must have a corresponding `tool_use` block in the previous message."
                )
    return None


def forced_call(body) -> ForcedCall | None:
    """tool_choice "tool" (one named tool) or "any": the model must write a call."""
    choice = body.get("tool_choice") or {}
    if choice.get("type") not in ("tool", "any"):
        return None
    tools = {t["name"]: t["input_schema"] for t in body["tools"]}
    return ForcedCall(tools, choice.get("name") if choice["type"] == "tool" else None)


def model_text(content) -> str:
    """A turn's content blocks as the text the small model reads."""
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        if block["type"] == "text":
            parts.append(block["text"])
        elif block["type"] == "tool_use":
            parts.append(text_of_call(block["name"], block["input"]))
        elif block["type"] == "tool_result":
            result = block.get("content", "")
            if isinstance(result, list):
                result = "".join(b.get("text", "") for b in result)
            parts.append(f"Tool result ({block['tool_use_id']}): {result}")
    return "\n".join(parts)


class AnthropicWireServer(WireServer):
    handler = AnthropicHandler
