"""Tool calls for local models: check OpenAI tool definitions, turn messages into what a chat
template expects, and parse the model's native call format back into OpenAI-shaped calls.

The native format here is the Hermes one that Qwen2.5 (and many fine-tunes) are trained on:
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, one block per call; small models
often write the same JSON without the tags. Hand-written: a few lines of parsing that each
backend (llama.cpp, Hearth's engine) shares, and the streaming split must hold back a
half-written tag or call that no library exposes.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from hearth.errors import CapabilityError
from hearth.types import Message, ToolCall

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_BLOCK = re.compile(re.escape(OPEN) + r"(.*?)(?:" + re.escape(CLOSE) + r"|\Z)", re.DOTALL)


def template_supports_tools(template: str | None) -> bool:
    """Whether a chat template renders `tools` and asks for Hermes-style <tool_call> blocks."""
    return bool(template) and "tools" in template and OPEN in template


@dataclass(frozen=True)
class ToolRequest:
    """Checked `tools` and `tool_choice` for one generation."""

    tools: list[dict[str, Any]]
    choice: str = "auto"  # "auto" | "required" | "function" (one named function)
    function: str | None = None  # the forced function's name when choice == "function"

    def prefix(self) -> str:
        """Text written at the start of the assistant's turn to force a call: the template's own
        call syntax up to where the model must go on."""
        if self.choice == "required":
            return OPEN + "\n"
        if self.choice == "function":
            return OPEN + '\n{"name": ' + json.dumps(self.function) + ', "arguments": '
        return ""

    def names(self) -> list[str]:
        return [t["function"]["name"] for t in self.tools]


def tool_request(tools: Any, tool_choice: Any = None) -> ToolRequest | None:
    """Check OpenAI-shaped `tools` / `tool_choice`; None when no tool may be called. A bad
    definition is a ValueError naming its index and field."""
    if tool_choice in (None, "auto") and not tools:
        return None
    if tool_choice == "none":
        return None
    if not isinstance(tools, list | tuple) or not tools:
        raise ValueError("tool_choice needs `tools`: a non-empty list of function definitions")
    checked = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise ValueError(f"tools[{i}]: expected {{'type': 'function', 'function': {{...}}}}")
        fn = tool.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise ValueError(f"tools[{i}].function.name: a non-empty string is required")
        params = fn.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(params, dict):
            raise ValueError(f"tools[{i}].function.parameters: must be a JSON Schema object")
        checked.append({"type": "function", "function": {**fn, "parameters": params}})
    names = [t["function"]["name"] for t in checked]
    if tool_choice in (None, "auto"):
        return ToolRequest(checked)
    if tool_choice == "required":
        return ToolRequest(checked, "required")
    if isinstance(tool_choice, dict):
        name = (tool_choice.get("function") or {}).get("name")
        if name not in names:
            raise ValueError(f"tool_choice names {name!r}, which is not in tools ({names})")
        return ToolRequest(checked, "function", name)
    raise ValueError(
        f"tool_choice {tool_choice!r}: use 'auto', 'none', 'required' or "
        "{'type': 'function', 'function': {'name': ...}}"
    )


def request_for(model: Any, tools: Any, tool_choice: Any) -> ToolRequest | None:
    """`tool_request` for `model`, which must have `supports_tools` if any tool may be called
    (else CapabilityError naming the model)."""
    request = tool_request(tools, tool_choice)
    if request is not None and not model.supports_tools:
        raise CapabilityError(
            f"{model.name} cannot call tools: its chat template has no tool-call format. Use a "
            "model that has one, e.g. local:qwen2.5-coder-0.5b or engine:qwen2.5-coder-0.5b"
        )
    return request


def template_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Messages as Hugging Face chat templates read them: a call's arguments as an object (the
    templates write them with `tojson`), not OpenAI's JSON text."""
    out = []
    for m in messages:
        d = m.as_dict()
        if m.tool_calls:
            d["tool_calls"] = [
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": _as_object(c.arguments)}}
                for c in m.tool_calls
            ]  # fmt: skip
        out.append(d)
    return out


def _as_object(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def parse_tool_calls(text: str, names: list[str] | None = None) -> tuple[str, list[ToolCall]]:
    """Split generated text into the content around the calls and the calls themselves.

    Calls are `<tool_call>` blocks; a last block cut off before `</tool_call>` (the turn ended)
    still counts if it parses. Small models often drop the tags and answer with the bare JSON
    call (Qwen2.5-Coder-0.5B does): with `names` (the offered tools), a reply that is nothing
    but such JSON objects, fenced or not, is read as calls too. A block whose JSON does not
    parse, or names a function not in `names`, stays in the content as the model wrote it.
    """
    calls: list[ToolCall] = []
    kept: list[str] = []
    last = 0
    for match in _BLOCK.finditer(text):
        call = _parse_call(match.group(1), names)
        if call is None:
            continue
        kept.append(text[last : match.start()])
        last = match.end()
        calls.append(call)
    if calls:
        kept.append(text[last:])
        return "".join(kept).strip(), calls
    if names is not None:
        bare = _bare_calls(text, names)
        if bare:
            return "", bare
    return text, []


def _unfence(body: str) -> str:
    body = body.strip()
    if body.startswith("```"):  # ```json ... ```
        body = body[3:].removeprefix("json").strip()
        body = body.removesuffix("```").strip()
    return body


def _parse_call(body: str, names: list[str] | None) -> ToolCall | None:
    try:
        obj = json.loads(_unfence(body))
    except ValueError:
        return None
    return _call_from(obj, names)


def _call_from(obj: Any, names: list[str] | None) -> ToolCall | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    if names is not None and obj["name"] not in names:
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    arguments = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    return ToolCall(new_call_id(), obj["name"], arguments)


def _bare_calls(text: str, names: list[str]) -> list[ToolCall]:
    """Calls from a reply made only of JSON call objects (one, a list, or several in a row)."""
    body = _unfence(text)
    decoder = json.JSONDecoder()
    objs: list[Any] = []
    at = 0
    while at < len(body):
        try:
            obj, at = decoder.raw_decode(body, at)
        except ValueError:
            return []
        objs.extend(obj if isinstance(obj, list) else [obj])
        while at < len(body) and body[at] in " \t\r\n,":
            at += 1
    calls = [_call_from(o, names) for o in objs]
    return calls if calls and all(calls) else []  # type: ignore[return-value]


class ToolCallSplitter:
    """Streams content while a model may write tool calls. Text before `<tool_call>` passes
    through as it comes (minus a tail that could be the start of the tag); from the tag on it
    is held, and so is a reply that opens with `{` or a code fence (a bare JSON call);
    `finish()` parses what was held."""

    def __init__(self, prefix: str = "", names: list[str] | None = None) -> None:
        self._held = prefix  # a forced call's prefix: part of the turn, never shown
        self._holding = bool(prefix)
        self._started = False  # has visible text been let through yet?
        self._names = names

    def feed(self, delta: str) -> str:
        """The part of `delta` that is safe to show now."""
        if self._holding:
            self._held += delta
            return ""
        text = self._held + delta
        if not self._started:
            head = text.lstrip()
            if not head:
                self._held = text
                return ""
            if head[0] in "{`[":
                self._holding = True
                self._held = text
                return ""
            self._started = True
        at = text.find(OPEN)
        if at >= 0:
            self._holding = True
            self._held = text[at:]
            return text[:at]
        keep = _partial_tag_suffix(text)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def finish(self) -> tuple[str, list[ToolCall]]:
        """(content still to show, the calls)."""
        held, self._held = self._held, ""
        if not self._holding:
            return held, []
        return parse_tool_calls(held, self._names)


def _partial_tag_suffix(text: str) -> int:
    """Length of the longest end of `text` that is a proper start of `<tool_call>`."""
    for n in range(min(len(OPEN) - 1, len(text)), 0, -1):
        if OPEN.startswith(text[-n:]):
            return n
    return 0
