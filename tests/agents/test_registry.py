"""The tool registry: schemas derived from type hints, the decorator, entry-point plugins
(a real dist-info folder on sys.path), unknown names, capabilities, and the built-in tools."""

from __future__ import annotations

import sys
from typing import Annotated

import pytest
from pydantic import BaseModel, Field

from hearth.agents import (
    REGISTRY,
    AgentContext,
    ToolEnv,
    ToolRefusedError,
    ToolRegistry,
    UnknownToolError,
    derive_schema,
    make_spec,
)
from hearth.agents.tools import calculator, normalise_expression
from hearth.structured import validation_error


class Place(BaseModel):
    city: str


def test_schema_is_derived_from_type_hints():
    def route(start: Place, end: Place, hops: int = 1,
              note: Annotated[str, Field(description="why")] = "") -> str:  # fmt: skip
        return "2 h"

    schema, inject, model = derive_schema(route, "route")
    assert inject is None
    assert schema["required"] == ["start", "end"] and schema["additionalProperties"] is False
    assert schema["properties"]["hops"] == {"default": 1, "type": "integer"}
    assert schema["properties"]["note"]["description"] == "why"
    ok = {"start": {"city": "Oslo"}, "end": {"city": "Bergen"}}
    assert validation_error(schema, ok) is None
    assert validation_error(schema, {**ok, "shell": "ls"}) is not None
    assert validation_error(schema, {"start": {"city": "Oslo"}}) is not None


def test_the_decorator_registers_a_typed_tool_that_gets_the_run_env():
    registry = ToolRegistry(entry_point_group=None)

    @registry.tool(description="Multiply a price by a count.")
    def total(price: float, count: int, env: ToolEnv) -> float:
        assert isinstance(env, ToolEnv)
        return price * count

    spec = registry.get("total")
    assert spec.inject == "env" and "env" not in spec.parameters["properties"]
    assert spec.description == "Multiply a price by a count."
    assert spec.call(ToolEnv(AgentContext()), {"price": 2.5, "count": 4}) == 10.0
    with pytest.raises(ValueError, match="already registered"):
        registry.tool(name="total")(lambda price: price)
    with pytest.raises(ValueError, match="args"):
        make_spec(lambda *xs: 0, name="bad")


def test_unknown_tools_and_missing_capabilities_are_clear_errors():
    with pytest.raises(UnknownToolError, match="unknown tool 'shell': known tools are .*calc"):
        REGISTRY.resolve(["calculator", "shell"], AgentContext())
    with pytest.raises(ToolRefusedError, match="needs an index"):
        REGISTRY.resolve(["search"], AgentContext())
    with pytest.raises(ToolRefusedError, match="--db"):
        REGISTRY.resolve(["sql"], AgentContext())

    registry = ToolRegistry(entry_point_group=None)
    registry.tool(name="fetch", network=True)(lambda url: "page")
    registry.tool(name="save", writes=True)(lambda text: "saved")
    with pytest.raises(ToolRefusedError, match="--allow-network"):
        registry.resolve(["fetch"], AgentContext())
    with pytest.raises(ToolRefusedError, match="--allow-writes"):
        registry.resolve(["save"], AgentContext())
    assert [s.name for s in registry.resolve(["fetch"], AgentContext(allow_network=True))] == [
        "fetch"
    ]


PLUGIN = '''
from hearth.agents import tool

@tool(name="shout", description="Upper-case a word.")
def shout(word: str) -> str:
    return word.upper()

def double(n: int) -> int:
    """Double a number."""
    return 2 * n

def broken():
    raise RuntimeError("never loads")
'''


@pytest.fixture
def plugin_on_path(tmp_path, monkeypatch):
    """A real installed-looking distribution: a module and a dist-info folder whose
    entry_points.txt names three tools, one of which fails to import."""
    (tmp_path / "hearth_demo_tools.py").write_text(PLUGIN, encoding="utf-8")
    info = tmp_path / "hearth_demo_tools-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hearth-demo-tools\n"
                                   "Version: 0.1\n", encoding="utf-8")  # fmt: skip
    (info / "entry_points.txt").write_text(
        "[hearth.tools]\nshout = hearth_demo_tools:shout\ndouble = hearth_demo_tools:double\n"
        "gone = hearth_demo_missing:nothing\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("hearth_demo_tools", None)
    REGISTRY.remove("shout")


def test_entry_point_plugins_load_lazily_and_a_broken_one_is_reported(plugin_on_path):
    registry = ToolRegistry()
    assert not registry._plugins_loaded
    double = registry.get("double")  # a plain typed function, named after its entry point
    assert double.origin.startswith("entry point") and double.description == "Double a number."
    assert double.call(ToolEnv(AgentContext()), {"n": 21}) == 42
    assert registry.get("shout").call(ToolEnv(AgentContext()), {"word": "hi"}) == "HI"
    assert "gone" in registry.problems
    with pytest.raises(UnknownToolError, match="plugin gone failed to load"):
        registry.get("gone")


def test_the_calculator_is_registered_and_forgives_how_models_write_arithmetic():
    spec = REGISTRY.get("calculator")
    assert spec.origin == "builtin" and spec.parameters["required"] == ["expression"]
    assert normalise_expression("17 × 23 =") == "17 * 23"
    assert normalise_expression("1,234 + 2^3") == "1234 + 2**3"
    assert calculator("12 x 7") == 84 and calculator("0.1 + 0.2") == 0.3
    for hostile in ["__import__('os').system('id')", "open('/etc/passwd').read()", "2 ** 999"]:
        with pytest.raises(ValueError):
            calculator(hostile)
