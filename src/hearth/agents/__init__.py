"""Agents: a ReAct / function-calling loop over typed, registered, sandboxed tools.

    from hearth.agents import AgentContext, run_agent
    result = run_agent("What is 17 * 23?", model=llm.load("local:qwen2.5-coder-0.5b"),
                       context=AgentContext.from_retriever(pipeline, index_dir=index))
    result.answer, result.steps, result.to_json()

Tools register with `@hearth.agents.tool` or the `hearth.tools` entry-point group; built in
are search (the index, cited), calculator and sql (read-only, on the given database).
"""

from hearth.agents.context import AgentContext, Citation, ToolEnv
from hearth.agents.loop import AgentResult, AgentStep, default_tools, run_agent
from hearth.agents.registry import (
    ENTRY_POINT_GROUP,
    REGISTRY,
    AgentError,
    ToolRefusedError,
    ToolRegistry,
    ToolSpec,
    UnknownToolError,
    derive_schema,
    make_spec,
    tool,
)
from hearth.agents.sandbox import SandboxError, screen_task

__all__ = [
    "ENTRY_POINT_GROUP",
    "REGISTRY",
    "AgentContext",
    "AgentError",
    "AgentResult",
    "AgentStep",
    "Citation",
    "SandboxError",
    "ToolEnv",
    "ToolRefusedError",
    "ToolRegistry",
    "ToolSpec",
    "UnknownToolError",
    "default_tools",
    "derive_schema",
    "make_spec",
    "run_agent",
    "screen_task",
    "tool",
]
