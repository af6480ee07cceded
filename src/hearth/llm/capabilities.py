"""Check, before asking, that a chat model can do what a caller needs (stream, tools, JSON
schema output, a context window of N tokens); plain attribute checks, no request is made.
"""

from __future__ import annotations

from typing import NamedTuple

from hearth.errors import CapabilityError
from hearth.types import ChatModel


class Capabilities(NamedTuple):
    stream: bool
    tools: bool
    json_schema: bool
    context_size: int


def capabilities(model: ChatModel) -> Capabilities:
    """What `model` declares it can do (the ChatModel capability attributes)."""
    return Capabilities(
        stream=bool(getattr(model, "can_stream", False)),
        tools=bool(getattr(model, "supports_tools", False)),
        json_schema=bool(getattr(model, "supports_json_schema", False)),
        context_size=int(getattr(model, "context_size", 0)),
    )


def require(
    model: ChatModel,
    *,
    stream: bool = False,
    tools: bool = False,
    json_schema: bool = False,
    context: int | None = None,
) -> ChatModel:
    """Return `model` if it has every capability asked for; otherwise raise one
    CapabilityError listing all that are missing and what to do about each."""
    have = capabilities(model)
    name = getattr(model, "name", type(model).__name__)
    missing = []
    if stream and not have.stream:
        missing.append("streaming (use chat() instead of stream(), or a model that streams)")
    if tools and not have.tools:
        missing.append("tool calling (choose a model whose backend supports tools; docs/models.md)")
    if json_schema and not have.json_schema:
        missing.append(
            "JSON schema output (choose a model whose backend supports it; docs/models.md)"
        )
    if context is not None and context > have.context_size:
        missing.append(
            f"a context of {context} tokens (it has {have.context_size}; raise context_size "
            "with HEARTH_CONTEXT_SIZE or context_size in hearth.toml, up to what the model "
            "holds, or choose a model with a larger window)"
        )
    if missing:
        raise CapabilityError(f"{name} lacks " + "; ".join(missing))
    return model
