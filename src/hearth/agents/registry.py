"""The tool registry: every tool an agent may call, built-in or the user's, typed by JSON
Schema and registered the same way (the `@tool` decorator or a `hearth.tools` entry point).

A tool declares the capabilities it needs (`network`, `writes`, context fields such as the
index or a database); `resolve` refuses one the run was not given. Hand-written: a dict of
specs; pydantic derives the input schema from type hints; importlib.metadata finds plugins.
"""

from __future__ import annotations

import inspect
import logging
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from hearth.agents.context import AgentContext, ToolEnv
from hearth.errors import HearthError

log = logging.getLogger("hearth.agents")

ENTRY_POINT_GROUP = "hearth.tools"
TOOL_TIMEOUT_S = 20.0  # a tool's own time limit unless it declares another

# context fields a tool may need, and what to tell a user who did not give them
NEEDS = {
    "search": "an index to search (ingest documents first: `hearth ingest PATH`)",
    "sql": "a database (pass --db FILE)",
}


class AgentError(HearthError):
    """An agent run cannot start as asked (unknown tool, a capability not given)."""


class UnknownToolError(AgentError):
    pass


class ToolRefusedError(AgentError):
    pass


@dataclass(frozen=True)
class ToolSpec:
    """A registered tool. `fn(**input)` runs it; `parameters` is its input's JSON Schema;
    `inject` names the parameter that receives the run's ToolEnv (None: it gets none);
    `model` is the pydantic model that checks and converts the input (None for a schema given
    by hand). `network` / `writes`: capabilities it needs, refused unless the run allows them;
    `needs`: AgentContext fields it reads; `uses_model`: it calls the agent's model."""

    name: str
    fn: Callable[..., Any]
    parameters: Mapping[str, Any]
    description: str = ""
    network: bool = False
    writes: bool = False
    needs: tuple[str, ...] = ()
    uses_model: bool = False
    timeout_s: float = TOOL_TIMEOUT_S
    inject: str | None = None
    model: type[BaseModel] | None = field(default=None, compare=False)
    origin: str = "builtin"

    def refusal(self, context: AgentContext) -> str | None:
        """Why this run may not use the tool (None: it may)."""
        if self.network and not context.allow_network:
            return (f"tool {self.name!r} needs network access, which this run was not given "
                    "(--allow-network enables it)")  # fmt: skip
        if self.writes and not context.allow_writes:
            return (f"tool {self.name!r} writes files, which this run was not allowed "
                    "(--allow-writes enables it)")  # fmt: skip
        for need in self.needs:
            if getattr(context, need, None) is None:
                return f"tool {self.name!r} needs {NEEDS.get(need, need)}"
        return None

    def call(self, env: ToolEnv, arguments: dict[str, Any]) -> Any:
        """Run the tool on an input already checked against `parameters`."""
        kwargs = dict(arguments)
        if self.model is not None:
            try:
                checked = self.model.model_validate(kwargs)
            except ValidationError as exc:
                raise ValueError(str(exc)) from None
            kwargs = {name: getattr(checked, name) for name in type(checked).model_fields}
        if self.inject:
            kwargs[self.inject] = env
        return self.fn(**kwargs)


def derive_schema(
    fn: Callable[..., Any], name: str
) -> tuple[dict[str, Any], str | None, type[BaseModel]]:
    """The input JSON Schema of `fn` from its type hints (pydantic), the name of its ToolEnv
    parameter if it has one, and the pydantic model that checks an input. Parameters without a
    default are required; `Annotated[str, Field(description=...)]` describes one."""
    hints = typing.get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    inject = None
    for p in inspect.signature(fn).parameters.values():
        hint = hints.get(p.name, Any)
        if hint is ToolEnv:
            inject = p.name
            continue
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ValueError(f"tool {name!r}: *args / **kwargs cannot be typed; name each input")
        fields[p.name] = (hint, ... if p.default is p.empty else p.default)
    model = create_model(f"{name}_input", __config__=ConfigDict(extra="forbid"), **fields)
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    schema.setdefault("properties", {})
    return schema, inject, model


def make_spec(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    schema: Mapping[str, Any] | None = None,
    origin: str = "user",
    **caps: Any,
) -> ToolSpec:
    """A ToolSpec for `fn`: the schema derived from its hints unless given; the description
    from its docstring's first paragraph unless given."""
    name = name or getattr(fn, "__name__", None)
    if not name:
        raise ValueError(f"give the tool a name: {fn!r} has no __name__")
    if description is None:
        doc = inspect.getdoc(fn) or ""
        description = " ".join(doc.split("\n\n")[0].split())
    if schema is None:
        parameters, inject, model = derive_schema(fn, name)
    else:
        if not isinstance(schema, Mapping) or schema.get("type") != "object":
            raise ValueError(f'tool {name!r}: schema must be a JSON Schema with "type": "object"')
        parameters, model = dict(schema), None
        hints = typing.get_type_hints(fn) if inspect.isfunction(fn) else {}
        inject = next((k for k, v in hints.items() if v is ToolEnv), None)
    return ToolSpec(name, fn, parameters, description, inject=inject, model=model,
                    origin=origin, **caps)  # fmt: skip


class ToolRegistry:
    """Tools by name. Built-ins register at import of hearth.agents.tools; plugins through the
    `hearth.tools` entry-point group, loaded the first time a name is looked up or listed."""

    def __init__(self, *, entry_point_group: str | None = ENTRY_POINT_GROUP) -> None:
        self._tools: dict[str, ToolSpec] = {}
        self._group = entry_point_group
        self._plugins_loaded = entry_point_group is None
        self.problems: dict[str, str] = {}  # entry point -> why it could not be loaded

    def add(self, spec: ToolSpec, *, replace_existing: bool = False) -> ToolSpec:
        old = self._tools.get(spec.name)
        if old is not None and not replace_existing and old.fn is not spec.fn:
            raise ValueError(f"a tool named {spec.name!r} is already registered ({old.origin})")
        self._tools[spec.name] = spec
        return spec

    def tool(self, fn: Callable[..., Any] | None = None, **options: Any):
        """Decorator: register `fn` as a tool (see `tool`)."""

        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            replace_existing = options.pop("replace", False)
            spec = self.add(make_spec(f, **options), replace_existing=replace_existing)
            f.__hearth_tool__ = spec  # type: ignore[attr-defined]
            return f

        return register(fn) if fn is not None else register

    def remove(self, name: str) -> None:
        self._tools.pop(name, None)

    def names(self) -> list[str]:
        self.load_plugins()
        return sorted(self._tools)

    def get(self, name: str) -> ToolSpec:
        if name not in self._tools:
            self.load_plugins()
        try:
            return self._tools[name]
        except KeyError:
            broken = "".join(f"; plugin {k} failed to load: {v}" for k, v in self.problems.items())
            raise UnknownToolError(
                f"unknown tool {name!r}: known tools are {', '.join(self.names())}{broken}"
            ) from None

    def resolve(self, names: Iterable[str], context: AgentContext) -> list[ToolSpec]:
        """The specs for `names`, each checked against what `context` gives: an unknown name
        is an UnknownToolError listing the known ones; a capability the run lacks is a
        ToolRefusedError saying how to grant it."""
        specs = []
        for name in dict.fromkeys(n.strip() for n in names if n.strip()):
            spec = self.get(name)
            why = spec.refusal(context)
            if why:
                raise ToolRefusedError(why)
            specs.append(spec)
        if not specs:
            raise AgentError("an agent needs at least one tool")
        return specs

    def load_plugins(self) -> None:
        """Load each `hearth.tools` entry point once. It may name a ToolSpec, a function the
        `@tool` decorator marked, or a plain typed function (named after the entry point). A
        plugin that fails is logged and reported in unknown-tool errors, never fatal."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self._group):
            try:
                obj = ep.load()
                if isinstance(obj, ToolSpec):
                    spec = obj
                elif isinstance(getattr(obj, "__hearth_tool__", None), ToolSpec):
                    spec = obj.__hearth_tool__
                elif callable(obj):
                    spec = make_spec(obj, name=ep.name, origin=f"entry point {ep.value}")
                else:
                    raise TypeError(f"{ep.value} is neither a ToolSpec nor a function")
                if spec.origin in ("builtin", "user"):
                    spec = replace(spec, origin=f"entry point {ep.value}")
                self.add(spec)
            except Exception as exc:  # noqa: BLE001 - one broken plugin must not stop the rest
                self.problems[ep.name] = f"{type(exc).__name__}: {exc}"
                log.warning("tool plugin %s (%s) failed to load: %s", ep.name, ep.value, exc)


REGISTRY = ToolRegistry()


def tool(fn: Callable[..., Any] | None = None, **options: Any):
    """Register a function as an agent tool in the default registry:

        @tool(description="Look up a product's price in euros.")
        def price(product: str) -> float: ...

    Options: name, description, schema (a JSON Schema instead of the hints), network /
    writes (capabilities the run must grant), needs, uses_model, timeout_s, replace. A
    parameter annotated `ToolEnv` receives the run's environment instead of model input."""
    return REGISTRY.tool(fn, **options)
