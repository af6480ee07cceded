"""OpenAI's `response_format` as a hearth.structured constraint: `{"type": "json_object"}` (any
JSON object) and `{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`. A
schema that cannot be enforced is a 400 naming the keyword and where it is."""

from __future__ import annotations

from typing import Any

from hearth.errors import ConstraintError
from hearth.serve.errors import APIError, unsupported
from hearth.structured import Constraint, compile

PARAM = "response_format"


def constraint_for(response_format: dict[str, Any] | None, model: Any) -> Constraint | None:
    """The constraint `response_format` asks of `model` (None for plain text)."""
    kind = (response_format or {}).get("type", "text")
    if kind == "text":
        return None
    if kind == "json_object":
        schema: Any = {"type": "object"}
    elif kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict | bool):
            raise unsupported(
                PARAM, "json_schema must be an object with a 'name' and a 'schema' object"
            )
        schema = spec.get("schema", {})
    else:
        raise unsupported(PARAM, f"type {kind!r}: use 'text', 'json_object' or 'json_schema'")
    if not getattr(model, "supports_json_schema", False):
        raise unsupported(PARAM, f"model {model.name} cannot constrain its output")
    try:
        return compile(schema)
    except ConstraintError as exc:
        param = f"{PARAM}.json_schema.schema" + (exc.path or "").replace("/", ".")
        raise APIError(400, str(exc), code="invalid_schema", param=param) from None
