"""Hearth: a local-first LLM application engine.

Point it at documents, ask questions, get answers with exact, verified citations.
"""

import importlib
from typing import Any

__version__ = "0.1.0"


def generate(model: Any, prompt: Any, schema: Any = None, **params: Any) -> Any:
    """The answer of `model` (a ChatModel or a spec such as "local:smollm2") to `prompt`,
    parsed and validated against `schema` (a JSON Schema, pydantic model, regex, choices or
    grammar); see hearth.llm.structured_output. The package root is a facade: the import
    happens on the first call, so `import hearth` stays light."""
    module = importlib.import_module("hearth.llm.structured_output")
    return module.generate(model, prompt, schema, **params)
