"""`generate(model, prompt, schema=...)`: an answer that satisfies a constraint, from any chat
model. Every model is shown the schema; models that mask tokens (llama.cpp, Hearth's engine,
vLLM through its guided decoding) generate under any constraint, other remote servers get JSON
Schemas as their own structured-output request (OpenAI-compatible response_format, Anthropic's
tool mode); an answer that does not validate is sent back with the validation error for another
try, within a retry budget. The result always validates, or StructuredOutputError.

Hand-written: the retry loop is a few lines; the checking is hearth.structured's.
"""

from __future__ import annotations

import json
from typing import Any

from hearth.errors import StructuredOutputError
from hearth.structured import Constraint, as_constraint
from hearth.types import ChatModel, Message

RETRIES = 2
SHOW_SCHEMA = "Answer with JSON only, matching this JSON Schema:\n{schema}"
SHOW_PATTERN = "Answer with text only, matching this {kind}: {source}"
RETRY = "That answer is not valid: {problem}\nAnswer again, with the corrected output only."
# A greedy answer cut off at max_tokens is mostly a small model looping inside a string or a
# list; shown its own loop it loops again, so it is asked afresh, sampled
RESAMPLE_TEMPERATURE = 0.7


def generate(
    model: ChatModel | str,
    prompt: str | list[Message],
    schema: Any = None,
    *,
    retries: int = RETRIES,
    **params: Any,
) -> Any:
    """The parsed, validated answer to `prompt` under `schema` (anything hearth.structured's
    compile takes; a pydantic model gives an instance), or the text when `schema` is None."""
    if isinstance(model, str):
        from hearth import llm

        model = llm.load(model)
    messages = [Message("user", prompt)] if isinstance(prompt, str) else list(prompt)
    params = {"temperature": 0.0, **params}
    if schema is None:
        return model.chat(messages, **params).text
    constraint = as_constraint(schema)
    native = getattr(model, "masks_tokens", False) or (
        constraint.kind == "json" and getattr(model, "supports_json_schema", False)
    )
    messages = [Message("system", _instruction(constraint)), *messages]
    problem, text, sampled = "", "", {}
    for attempt in range(retries + 1):
        # a server's own structured mode may still fail (an old Ollama ignores the schema):
        # its answer is checked like any other
        asked = {**params, **sampled, "constraint": constraint} if native else {**params, **sampled}
        reply = model.chat(messages, **asked)
        text = reply.text
        try:
            return constraint.parse(_unfenced(text))
        except StructuredOutputError as exc:
            problem = str(exc)
        if reply.finish_reason == "length":
            problem = f"cut off at max_tokens ({problem})"
            seed = (params.get("seed") or 0) + attempt + 1  # never the same draw again
            sampled = {"temperature": params.get("temperature") or RESAMPLE_TEMPERATURE,
                       "seed": seed}  # fmt: skip
            continue
        messages += [Message("assistant", text), Message("user", RETRY.format(problem=problem))]
    raise StructuredOutputError(
        f"{getattr(model, 'name', model)} gave no valid answer in {retries + 1} tries: {problem}",
        output=text,
        attempts=retries + 1,
    )


def _instruction(constraint: Constraint) -> str:
    if constraint.kind == "json":
        return SHOW_SCHEMA.format(schema=json.dumps(constraint.schema))
    return SHOW_PATTERN.format(kind=constraint.kind, source=constraint.source)


def _unfenced(text: str) -> str:
    """The answer without a markdown code fence around it (chat models add one)."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.split("\n", 1)[-1] if "\n" in stripped else ""
        stripped = stripped.rsplit("```", 1)[0]
    return stripped.strip()
