"""The `hearth-agent` model: the last user message is the task, which hearth.agents carries out
with the index's search, the calculator and (when the server has a database) read-only SQL.

The answer is one text delta, then a Finish carrying the steps (tool, input, output) and the
passages the answer cites; the agent's budgets hold per request.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hearth.serve.errors import APIError
from hearth.serve.generation import Delta, Finish, Item, UsageRecorder
from hearth.serve.schemas import AgentOptions, ChatMessage
from hearth.serve.state import ServedIndex
from hearth.types import ChatModel

SERVED_TOOLS = ("search", "calculator", "sql")  # what a request may name (sql needs a db)


def agent_task(messages: list[ChatMessage]) -> str:
    """The task: the last message, which must be a non-empty user message."""
    last = messages[-1]
    task = last.text().strip()
    if last.role != "user" or not task:
        raise APIError(
            400,
            "hearth-agent carries out the last message, which must be a non-empty user message",
            code="invalid_value",
            param="messages",
        )
    return task


def agent_tools(index: ServedIndex, options: AgentOptions | None) -> list[str] | None:
    """The tools a request asks for, checked against what this server gives agents."""
    if options is None or options.tools is None:
        return None
    for name in options.tools:
        if name not in SERVED_TOOLS:
            known = ", ".join(SERVED_TOOLS)
            raise APIError(400, f"unknown tool {name!r}: hearth-agent has {known}",
                           code="invalid_value", param="agent.tools")  # fmt: skip
        if name == "sql" and index.agent_db is None:
            raise APIError(400, "this server has no database for the sql tool: start it with "
                           "`hearth serve --agent-db FILE`", code="invalid_value",
                           param="agent.tools")  # fmt: skip
    return list(dict.fromkeys(options.tools))


def agent_events(
    index: ServedIndex,
    model: ChatModel,
    task: str,
    options: AgentOptions | None,
    *,
    max_tokens: int,
) -> Iterator[Item]:
    """The answer as one Delta, then a Finish with the steps and citations. Blocking: run it
    in a worker thread."""
    from hearth.agents import run_agent

    options = options or AgentOptions()
    recorder = UsageRecorder(model)
    tools = agent_tools(index, options)
    result = run_agent(
        task,
        model=recorder,
        tools=tools,
        context=index.agent_context(recorder),
        max_steps=options.max_steps,
        time_budget_s=options.time_budget_s,
        max_tokens=max_tokens,
    )
    answer = result.answer or ""
    if answer:
        yield Delta(0, answer)
    reason = "stop" if result.stopped == "answer" else "length"
    extra: dict[str, Any] = result.to_json()
    yield Finish(
        0,
        reason,
        recorder.usage,
        answer=answer,
        citations=[_citation(c) for c in extra.pop("citations")],
        steps=extra["steps"],
        agent={k: extra[k] for k in ("stopped", "forced", "turns", "elapsed_ms", "tools")},
    )


def _citation(cited: dict[str, Any]) -> dict[str, Any]:
    """An agent's cited passage in the shape hearth-rag's citations have."""
    return {
        "n": cited["n"],
        "source": cited["source"],
        "document_id": cited.get("document_id"),
        "chunk_id": cited.get("chunk_id"),
        "start": cited["start"],
        "end": cited["end"],
        "text": cited["text"],
        "page": cited.get("page"),
        "headings": list(cited.get("headings") or ()),
    }
