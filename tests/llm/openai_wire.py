"""A small OpenAI-format server on 127.0.0.1 for testing the OpenAI-compatible backend's
retries, timeouts, errors, tools and structured outputs: POST /v1/chat/completions (JSON and
SSE), GET /v1/models.

Faults are injected per request (see wire_support.Fault); answers come from the real GGUF,
constrained by hearth.structured where the request asks (response_format, a forced tool call,
vLLM's guided_* / structured_outputs fields), so what comes back really fits. Hand-written:
the point is a server that checks requests as OpenAI's does; Hearth's own `hearth serve` is
tested separately in test_openai_against_hearth.py.
"""

from __future__ import annotations

import json
import time
import uuid

from hearth.structured import gbnf, lark
from hearth.types import Message
from tests.llm.wire_support import (
    Fault,
    ForcedCall,
    WireHandler,
    WireServer,
    text_of_call,
    tools_shown,
)

MODELS = ("smollm2-test",)
GUIDED = ("regex", "choice", "grammar")


def openai_error(status: int, message: str, kind: str, code: str | None = None, **kw) -> Fault:
    return Fault(status, {"error": {"message": message, "type": kind, "code": code}}, **kw)


def bad_request(message: str) -> Fault:
    return openai_error(400, message, "invalid_request_error")


def rate_limited(retry_after: float | None = None) -> Fault:
    headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
    return openai_error(
        429, "Rate limit reached", "requests", "rate_limit_exceeded", headers=headers
    )


def server_error(status: int = 500) -> Fault:
    return openai_error(status, "The server had an error", "server_error")


def check_tools(body) -> Fault | None:
    """OpenAI's checks on `tools`, `tool_choice` and the calls and results in `messages`."""
    tools = body.get("tools")
    if tools is not None:
        for i, tool in enumerate(tools):
            fn = tool.get("function") if isinstance(tool, dict) else None
            if tool.get("type") != "function" or not isinstance(fn, dict):
                return bad_request(f"Invalid value for 'tools[{i}].type': expected 'function'.")
            if not isinstance(fn.get("name"), str) or not fn["name"]:
                return bad_request(f"Missing required parameter: 'tools[{i}].function.name'.")
    choice = body.get("tool_choice")
    if choice is not None and not tools:
        return bad_request("'tool_choice' is only allowed when 'tools' are specified.")
    names = [t["function"]["name"] for t in tools or []]
    if isinstance(choice, dict) and (choice.get("function") or {}).get("name") not in names:
        return bad_request(f"Invalid value for 'tool_choice': no function named {choice}.")
    if isinstance(choice, str) and choice not in ("auto", "none", "required"):
        return bad_request(f"Invalid value for 'tool_choice': {choice!r}.")
    open_ids: set[str] = set()  # calls of the latest assistant turn
    for i, m in enumerate(body["messages"]):
        for j, call in enumerate(m.get("tool_calls") or []):
            fn = call.get("function") or {}
            if call.get("type") != "function" or not call.get("id") or not fn.get("name"):
                return bad_request(f"Missing required parameter: 'messages[{i}].tool_calls[{j}]'.")
            if not isinstance(fn.get("arguments"), str):
                return bad_request(
                    f"Invalid type for 'messages[{i}].tool_calls[{j}].function.arguments': "
                    "expected a string."
                )
        if m.get("role") == "assistant":
            open_ids = {c["id"] for c in m.get("tool_calls") or []}
        elif m.get("role") == "tool" and m.get("tool_call_id") not in open_ids:
            return bad_request(
                "Invalid parameter: messages with role 'tool' must be a response to a preceeding "
                "message with 'tool_calls'."
            )
    return None


def model_messages(body) -> list[Message]:
    """The conversation as plain messages the small model reads (a real server's chat template
    renders calls and results its own way)."""
    out = []
    for m in body["messages"]:
        content = m.get("content") or ""
        if m["role"] == "tool":
            out.append(Message("user", f"Tool result ({m['tool_call_id']}): {content}"))
            continue
        calls = [
            text_of_call(c["function"]["name"], c["function"]["arguments"])
            for c in m.get("tool_calls") or []
        ]
        out.append(Message(m["role"], "\n".join([content, *calls]).strip()))
    return out


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
        problem = check_tools(body)
        if problem:
            self.send_json(problem.status, problem.body)
            return
        messages = model_messages(body)
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
        guided = self.guided(body)
        if guided is not None:
            params["constraint"] = guided
        forced = self.forced_call(body)
        if forced is not None:
            messages.insert(0, tools_shown(forced.tools, self.descriptions(body)))
        if body.get("stream"):
            self.stream(body, messages, params, forced)
        else:
            self.complete(body, messages, params, forced)

    def guided(self, body):
        """vLLM's guided decoding: `structured_outputs` (vLLM 0.10.2 on), or the guided_*
        fields of older servers (`legacy_guided`); a grammar with ::= is GBNF, else Lark."""
        if self.wire.legacy_guided:
            asked = {k: body[f"guided_{k}"] for k in GUIDED if f"guided_{k}" in body}
        else:
            asked = body.get("structured_outputs") or {}
        if "grammar" in asked:
            text = asked["grammar"]
            return gbnf(text) if "::=" in text else lark(text)
        if "choice" in asked:
            return list(asked["choice"])
        return asked.get("regex")

    def descriptions(self, body) -> dict[str, str]:
        return {t["function"]["name"]: t["function"].get("description", "") for t in body["tools"]}

    def forced_call(self, body) -> ForcedCall | None:
        """tool_choice "required" or a named function: the model writes a call (its arguments
        under the tool's parameters schema). "auto" here leaves the small model to answer."""
        choice = body.get("tool_choice")
        if not body.get("tools") or choice not in ("required",) and not isinstance(choice, dict):
            return None
        tools = {
            t["function"]["name"]: t["function"].get("parameters", {"type": "object"})
            for t in body["tools"]
        }
        return ForcedCall(tools, choice["function"]["name"] if isinstance(choice, dict) else None)

    def envelope(self, body, kind: str) -> dict:
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": kind,
            "created": int(time.time()),
            "model": body["model"],
        }

    def usage(self, end) -> dict:
        return {
            "prompt_tokens": end.usage.prompt_tokens,
            "completion_tokens": end.usage.completion_tokens,
            "total_tokens": end.usage.total_tokens,
        }

    def complete(self, body, messages, params, forced) -> None:
        if forced is not None:
            text, end = self.generate_call(messages, params, forced)
            call = forced.split(text)
            calls = [] if call is None else [self.call_json(*call)]
            message = {"role": "assistant", "content": None, "tool_calls": calls}
            # OpenAI (and vLLM) end a named call with "stop", a "required" one with "tool_calls"
            finish = "length" if call is None else "stop" if forced.name else "tool_calls"
        else:
            result = self.wire.model.chat(messages, **params)
            message = {"role": "assistant", "content": result.text}
            finish, end = result.finish_reason, result
        answer = self.envelope(body, "chat.completion")
        answer["choices"] = [{"index": 0, "message": message, "finish_reason": finish}]
        if not self.wire.omit_usage:
            answer["usage"] = self.usage(end)
        self.send_json(200, answer)

    def call_json(self, name: str, arguments) -> dict:
        return {
            "id": f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)},
        }

    def stream(self, body, messages, params, forced) -> None:
        base = self.envelope(body, "chat.completion.chunk")

        def chunk(delta: dict, finish: str | None = None) -> dict:
            return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        def call_delta(piece: dict) -> bool:
            return self.send_sse(chunk({"tool_calls": [{"index": 0, **piece}]}))

        self.start_sse()
        if not self.send_sse(chunk({"role": "assistant", "content": ""})):
            self.client_went_away()
            return
        if forced is not None and forced.name is not None:
            # a named call streams as OpenAI's do: id and name first, then argument pieces
            head = self.call_json(forced.name, {})
            head["function"]["arguments"] = ""
            opened = call_delta(head)
            text, end = self.generate_call(
                messages,
                params,
                forced,
                lambda d: opened and call_delta({"function": {"arguments": d}}),
            )
            finish = "stop" if forced.split(text) else "length"
        elif forced is not None:  # which tool is known once the call is written
            text, end = self.generate_call(messages, params, forced)
            call = forced.split(text)
            if call is not None:
                whole = self.call_json(*call)
                arguments, whole["function"]["arguments"] = whole["function"]["arguments"], ""
                half = len(arguments) // 2
                for piece in (
                    whole,
                    {"function": {"arguments": arguments[:half]}},
                    {"function": {"arguments": arguments[half:]}},
                ):
                    call_delta(piece)
            finish = "tool_calls" if call else "length"
        else:
            end = self.stream_model(
                messages, params, lambda d: self.send_sse(chunk({"content": d}))
            )
            finish = end.finish_reason if end is not None else None
        if end is None:
            self.client_went_away()
            return
        self.send_sse(chunk({}, finish))
        wants_usage = (body.get("stream_options") or {}).get("include_usage")
        if wants_usage and not self.wire.omit_usage:
            self.send_sse({**base, "choices": [], "usage": self.usage(end)})
        self.send_sse("[DONE]")


class OpenAIWireServer(WireServer):
    """`omit_usage`: answer without usage (as some servers do); `refuse_stream_options`:
    reject stream_options with a 400, as older OpenAI-compatible servers do;
    `legacy_guided`: read vLLM's guided_* fields (before 0.12) instead of
    `structured_outputs`."""

    handler = OpenAIHandler

    def __init__(self, model, api_key: str = "test-key") -> None:
        super().__init__(model, api_key)
        self.omit_usage = False
        self.refuse_stream_options = False
        self.legacy_guided = False

    def reset(self) -> None:
        super().reset()
        self.omit_usage = False
        self.refuse_stream_options = False
        self.legacy_guided = False
