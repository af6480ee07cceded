"""Prompt templates as data: a Jinja file renders a list of chat turns (system / user /
assistant), which a model's chat() then puts through the model's own chat template, so no
prompt here ever writes a special token.

A template marks each turn with a call block, and text outside the blocks must be blank:

    {% call message("system") %}You answer in one word.{% endcall %}
    {% for ex in examples %}
    {% call message("user") %}{{ ex.input }}{% endcall %}
    {% call message("assistant") %}{{ ex.output }}{% endcall %}
    {% endfor %}
    {% call message("user") %}{{ question }}{% endcall %}

Rendering is jinja2's, in its immutable sandbox with StrictUndefined (a missing variable is an
error naming the template, never an empty string); hand-written is only the turn collector.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from hearth.errors import ConfigError
from hearth.types import Message

ROLES = ("system", "user", "assistant")
RESERVED = "message"  # the one name a template's variables may not use
SUFFIX = ".jinja"


def builtin_names() -> list[str]:
    """The templates shipped with Hearth (hearth/llm/techniques/templates/*.jinja)."""
    folder = resources.files(__package__).joinpath("templates")
    return sorted(p.name[: -len(SUFFIX)] for p in folder.iterdir() if p.name.endswith(SUFFIX))


@dataclass(frozen=True)
class PromptTemplate:
    """A chat prompt as a Jinja template. Build it with `load` (a built-in name or a file) or
    `from_string`; `render(**variables)` gives the turns."""

    source: str
    name: str = "<string>"
    defaults: Mapping[str, Any] = field(default_factory=dict, compare=False)
    _compiled: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        import jinja2

        try:
            compiled = _environment().from_string(self.source)
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(
                f"prompt template {self.name}, line {exc.lineno}: {exc.message}"
            ) from None
        object.__setattr__(self, "_compiled", compiled)

    @classmethod
    def load(cls, template: str | Path | PromptTemplate) -> PromptTemplate:
        """A template by built-in name ("few_shot"; see `builtin_names()`), or from a .jinja
        file. A PromptTemplate is returned as it is."""
        if isinstance(template, PromptTemplate):
            return template
        text = str(template)
        if isinstance(template, str) and text in builtin_names():
            file = resources.files(__package__).joinpath("templates", text + SUFFIX)
            return cls(file.read_text(encoding="utf-8"), text)
        path = Path(text).expanduser()
        if path.is_file():
            return cls(path.read_text(encoding="utf-8"), str(path))
        raise ConfigError(
            f"prompt template {text!r}: no such file, and not a built-in template "
            f"({', '.join(builtin_names())}); pass a .jinja file or one of those names"
        )

    @classmethod
    def from_string(cls, source: str, name: str = "<string>") -> PromptTemplate:
        return cls(source, name)

    def bind(self, **variables: Any) -> PromptTemplate:
        """This template with `variables` filled in ahead (a render's own variables win): how
        a technique takes a template that needs more than the technique passes."""
        return replace(self, defaults={**self.defaults, **variables})

    def render(self, **variables: Any) -> list[Message]:
        """The turns the template makes of `variables` (ConfigError naming the template when a
        variable is missing, a role is unknown, text stands outside a turn, or no turn comes)."""
        import jinja2

        variables = {**self.defaults, **variables}
        if RESERVED in variables:
            raise ConfigError(f"prompt template {self.name}: {RESERVED!r} is a reserved name")
        turns: list[Message] = []

        def message(role: str, caller: Any = None) -> str:
            if role not in ROLES:
                raise ConfigError(
                    f"prompt template {self.name}: role {role!r}; use one of {', '.join(ROLES)}"
                )
            turns.append(Message(role, caller().strip() if caller else ""))
            return ""

        try:
            outside = self._compiled.render(**variables, message=message)
        except jinja2.UndefinedError as exc:
            raise ConfigError(
                f"prompt template {self.name}: {exc.message}; pass it as a variable"
            ) from None
        except jinja2.TemplateError as exc:
            raise ConfigError(f"prompt template {self.name}: {exc}") from None
        if outside.strip():
            raise ConfigError(
                f"prompt template {self.name}: text outside a message block "
                f"({outside.strip()[:60]!r}); put it inside {{% call message(role) %}}"
            )
        if not turns:
            raise ConfigError(f"prompt template {self.name} made no messages")
        return turns


@cache
def _environment() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, autoescape=False
    )
    # plain JSON (jinja2's own tojson escapes <, > and & for HTML)
    env.filters["tojson"] = lambda value, indent=None: json.dumps(
        value, ensure_ascii=False, indent=indent
    )
    return env
