"""A small OpenAI-format server on 127.0.0.1 for testing the OpenAI-compatible backend's
retries, timeouts and errors: POST /v1/chat/completions (JSON and SSE), GET /v1/models.

Faults are injected per request (see wire_support.Fault); answers come from the real GGUF.
Hearth's own `hearth serve` is tested separately in test_openai_against_hearth.py.
"""

from __future__ import annotations

import time
import uuid

from hearth.types import Message
from tests.llm.wire_support import Fault, WireHandler, WireServer

MODELS = ("smollm2-test",)


def openai_error(status: int, message: str, kind: str, code: str | None = None, **kw) -> Fault:
    return Fault(status, {"error": {"message": message, "type": kind, "code": code}}, **kw)


def rate_limited(retry_after: float | None = None) -> Fault:
    headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
    return openai_error(
        429, "Rate limit reached", "requests", "rate_limit_exceeded", headers=headers
    )


def server_error(status: int = 500) -> Fault:
    return openai_error(status, "The server had an error", "server_error")


class OpenAIHandler(WireHandler):
    def do_GET(self) -> None:
        self.read_json()
        if self.path != "/v1/models":
            self.send_json(404, {"error": {"message": "Not Found", "type": "not_found"}})
            return
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "test"} for m in MODELS]
        self.send_json(200, {"object": "list", "data": data})

    def do_POST(self) -> None:
        body = self.read_json()
        if self.path != "/v1/chat/completions":
            self.send_json(404, {"error": {"message": "Not Found", "type": "not_found"}})
            return
        if self.headers.get("authorization") != f"Bearer {self.wire.api_key}":
            self.send_json(
                401,
                {
                    "error": {
                        "message": "Incorrect API key provided",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                    }
                },
            )
            return
        if self.send_fault_if_any():
            return
        if body.get("model") not in MODELS:
            message = f"The model `{body.get('model')}` does not exist"
            self.send_json(404, openai_error(404, message, "invalid_request_error").body)
            return
        if self.wire.refuse_stream_options and "stream_options" in body:
            message = "Unrecognized request argument supplied: stream_options"
            self.send_json(400, openai_error(400, message, "invalid_request_error").body)
            return
        messages = [Message(m["role"], m["content"]) for m in body["messages"]]
        params = {
            "max_tokens": body.get("max_tokens") or body.get("max_completion_tokens") or 256,
            "temperature": body.get("temperature", 1.0),  # OpenAI's default
            "top_p": body.get("top_p"),
            "stop": body.get("stop"),
            "seed": body.get("seed"),
        }
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema":  # honoured as vLLM does: the model is constrained
            params["constraint"] = fmt["json_schema"]["schema"]
        if body.get("stream"):
            self.stream(body, messages, params)
        else:
            self.complete(body, messages, params)

    def complete(self, body, messages, params) -> None:
        result = self.wire.model.chat(messages, **params)
        answer = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.text},
                    "finish_reason": result.finish_reason,
                }
            ],
        }
        if not self.wire.omit_usage:
            answer["usage"] = {
                "prompt_tokens": result.usage.prompt_tokens,
                "completion_tokens": result.usage.completion_tokens,
                "total_tokens": result.usage.total_tokens,
            }
        self.send_json(200, answer)

    def stream(self, body, messages, params) -> None:
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body["model"],
        }

        def chunk(delta: dict, finish: str | None = None) -> dict:
            return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        self.start_sse()
        if not self.send_sse(chunk({"role": "assistant", "content": ""})):
            self.client_went_away()
            return
        end = self.stream_model(messages, params, lambda d: self.send_sse(chunk({"content": d})))
        if end is None:
            self.client_went_away()
            return
        self.send_sse(chunk({}, end.finish_reason))
        wants_usage = (body.get("stream_options") or {}).get("include_usage")
        if wants_usage and not self.wire.omit_usage:
            usage = {
                "prompt_tokens": end.usage.prompt_tokens,
                "completion_tokens": end.usage.completion_tokens,
                "total_tokens": end.usage.total_tokens,
            }
            self.send_sse({**base, "choices": [], "usage": usage})
        self.send_sse("[DONE]")


class OpenAIWireServer(WireServer):
    """`omit_usage`: answer without usage (as some servers do); `refuse_stream_options`:
    reject stream_options with a 400, as older OpenAI-compatible servers do."""

    handler = OpenAIHandler

    def __init__(self, model, api_key: str = "test-key") -> None:
        super().__init__(model, api_key)
        self.omit_usage = False
        self.refuse_stream_options = False

    def reset(self) -> None:
        super().reset()
        self.omit_usage = False
        self.refuse_stream_options = False
