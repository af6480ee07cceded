"""OpenAI's `tools` / `tool_choice` checked for a served model, and the calls a model made written
back in OpenAI's shape: a message's `tool_calls`, or the stream's tool-call deltas.

Hand-written: the wire shapes are OpenAI's; prompting, constraining and parsing calls is
hearth.llm.tool_calls. A tool whose `parameters` schema cannot be enforced is a 400 naming the
keyword and where it is, as response_format does.
"""

from __future__ import annotations

from typing import Any

from hearth.errors import CapabilityError, ConstraintError
from hearth.llm.remote import RemoteChatModel
from hearth.llm.tool_calls import request_for
from hearth.serve.errors import APIError, unsupported
from hearth.types import ToolCall

ARGUMENT_PIECE = 24  # characters of arguments per streamed delta


def tool_params(tools: list[dict[str, Any]] | None, tool_choice: Any, model: Any) -> dict[str, Any]:
    """The `tools` / `tool_choice` keyword arguments for `model` ({} when no tool may be
    called: no tools, or tool_choice "none"). Definitions are checked, and for a model that
    masks tokens the constraint is compiled here, so a bad one is a 400 before generating."""
    if not tools and tool_choice in (None, "auto", "none"):
        return {}
    if tool_choice == "none":  # no call now; a remote API still needs the tools of past calls
        return {"tools": tools, "tool_choice": "none"}
    try:
        request = request_for(model, tools, tool_choice)
    except CapabilityError as exc:
        raise APIError(400, str(exc), code="model_not_supported", param="tools") from None
    except ValueError as exc:
        param = "tool_choice" if str(exc).startswith("tool_choice") else "tools"
        raise APIError(400, str(exc), param=param) from None
    if request is None:
        return {}
    if getattr(model, "masks_tokens", False) and not isinstance(model, RemoteChatModel):
        try:
            request.constraint()  # compiled once, cached for the generation itself
        except ConstraintError as exc:
            raise APIError(400, str(exc), code="invalid_schema", param=_param(exc.path)) from None
    return {"tools": tools, "tool_choice": tool_choice}


def _param(path: str | None) -> str:
    """`/tools/0/function/parameters/properties/x` as `tools[0].function.parameters...`."""
    parts = (path or "").strip("/").split("/")
    if len(parts) < 2 or parts[0] != "tools":
        return "tools"
    return f"tools[{parts[1]}]" + "".join("." + p for p in parts[2:])


def check_combination(response_format: dict[str, Any] | None, params: dict[str, Any]) -> None:
    """`response_format` beside callable tools is refused: a call's arguments already follow
    their schema, and a reply cannot be held to two grammars at once."""
    calls = params.get("tools") and params.get("tool_choice") != "none"
    if calls and (response_format or {}).get("type", "text") != "text":
        raise unsupported(
            "response_format",
            "cannot be combined with tools; the tools' parameters constrain the calls (send "
            "tool_choice 'none' for a reply in the response_format)",
        )


def message_calls(calls: list[ToolCall]) -> list[dict[str, Any]]:
    """A message's `tool_calls`."""
    return [call.as_openai() for call in calls]


def call_deltas(calls: list[ToolCall]) -> list[list[dict[str, Any]]]:
    """Stream deltas' `tool_calls` lists, OpenAI's way: per call, first its index, id, type and
    name with empty arguments, then pieces of its arguments (they join to the JSON text)."""
    deltas = []
    for i, call in enumerate(calls):
        head = {"name": call.name, "arguments": ""}
        deltas.append([{"index": i, "id": call.id, "type": "function", "function": head}])
        text = call.arguments
        for at in range(0, len(text), ARGUMENT_PIECE):
            piece = text[at : at + ARGUMENT_PIECE]
            deltas.append([{"index": i, "function": {"arguments": piece}}])
    return deltas
