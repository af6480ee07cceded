"""Structured outputs: constraints (JSON Schema, pydantic models, regexes, choices, Lark or GBNF
grammars) compiled once, then used to check texts, mask tokens while generating, and validate.

    from hearth.structured import compile
    c = compile({"type": "object", "properties": {"age": {"type": "integer"}}})
    c.accepts('{"age": 3}')  # True
"""

from hearth.structured.constraint import (
    Constraint,
    Grammar,
    Matcher,
    as_constraint,
    compile,
    gbnf,
    lark,
    validation_error,
)

__all__ = [
    "Constraint",
    "Grammar",
    "Matcher",
    "as_constraint",
    "compile",
    "gbnf",
    "lark",
    "validation_error",
]
