"""A small server on 127.0.0.1 speaking Anthropic's Messages API wire format, answering with
the real local GGUF: POST /v1/messages as JSON or as the SSE event sequence message_start,
content_block_start, ping, content_block_delta (text_delta)..., content_block_stop,
message_delta (stop_reason, usage.output_tokens), message_stop.

Checks the key (x-api-key, or Authorization: Bearer as anthropic SDK 2.x sends it) and the
anthropic-version header like the real API, applies stop_sequences itself (so it
can report stop_reason "stop_sequence"), and fails on demand (401, 429 with retry-after,
529 overloaded, 500) to test the Anthropic backend's retries and errors.
"""

from __future__ import annotations

import uuid

from hearth.types import Message
from tests.llm.wire_support import Fault, WireHandler, WireServer

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
        messages = [Message(m["role"], m["content"]) for m in body["messages"]]
        if body.get("system"):
            messages.insert(0, Message("system", body["system"]))
        params = {
            "max_tokens": body["max_tokens"],
            "temperature": body.get("temperature", 1.0),  # the API's default
            "top_p": body.get("top_p"),
        }
        if body.get("stream"):
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
        return None

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


class AnthropicWireServer(WireServer):
    handler = AnthropicHandler
