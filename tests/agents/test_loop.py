"""The agent loop's own logic with a scripted model (the point is the loop, not the model):
step and time budgets, a tool's own time limit, the repeat stop and the final answer turn,
the trace (on_step, logging, JSON) and citations of the passages the answer used."""

from __future__ import annotations

import logging
import time

import pytest

from hearth.agents import AgentContext, ToolRegistry, run_agent
from hearth.agents.registry import REGISTRY
from hearth.types import Chunk, ScoredChunk

from .scripted import Scripted, call


@pytest.fixture
def slow_registry():
    registry = ToolRegistry(entry_point_group=None)
    registry.add(REGISTRY.get("calculator"))

    @registry.tool(name="nap", timeout_s=0.5, description="Sleep.")
    def nap(seconds: float) -> str:
        time.sleep(seconds)
        return "rested"

    return registry


def test_an_answer_ends_the_run_and_every_step_is_traced(caplog):
    model = Scripted([call("calculator", expression="17 * 23"), "It is 391."])
    seen = []
    with caplog.at_level(logging.INFO, logger="hearth.agents"):
        result = run_agent("What is 17 * 23?", model=model, tools=["calculator"],
                           on_step=seen.append)  # fmt: skip
    assert result.answer == "It is 391." and result.stopped == "answer" and not result.forced
    (step,) = result.steps
    assert seen == [step] and step.tool == "calculator" and step.output == "391" and step.ok
    assert step.input == {"expression": "17 * 23"} and step.elapsed_ms >= 0
    data = result.to_json()
    assert data["steps"][0] | {"elapsed_ms": 0} == {"tool": "calculator", "input":
        {"expression": "17 * 23"}, "output": "391", "ok": True, "thought": "",
        "elapsed_ms": 0}  # fmt: skip
    assert data["turns"] == 2 and data["mode"] == "native" and data["tools"] == ["calculator"]
    assert "agent step 1: calculator" in caplog.text and "stopped=answer" in caplog.text


def test_the_step_budget_ends_a_loop_and_one_last_turn_asks_for_the_answer():
    model = Scripted([call("calculator", i, expression=f"{i} + 1") for i in range(3)]
                     + ["The answer is 3."])  # fmt: skip
    result = run_agent("Count.", model=model, tools=["calculator"], max_steps=3)
    assert [s.output for s in result.steps] == ["1", "2", "3"]
    assert result.stopped == "max_steps" and result.forced and result.answer == "The answer is 3."
    final_prompt, params = model.seen[-1]
    assert "tools" not in params and 'calculator({"expression": "2 + 1"}) -> 3' in (
        final_prompt[-1].content
    )


def test_a_repeated_call_stops_the_loop_early():
    model = Scripted([call("calculator", 0, expression="2 + 2"),
                      call("calculator", 1, expression="2 + 2"), "4"])  # fmt: skip
    result = run_agent("2 + 2?", model=model, tools=["calculator"], max_steps=6)
    assert len(result.steps) == 2 and not result.steps[1].ok
    assert result.answer == "4" and result.forced and result.stopped == "answer"


def test_an_unfinished_tool_call_written_as_text_is_not_taken_for_the_answer():
    model = Scripted([call("calculator", expression="6 * 7"),
                      '{"name": "calculator", "arguments": {"expression": "42 * 1000000',
                      "It is 42."])  # fmt: skip
    result = run_agent("6 * 7?", model=model, tools=["calculator"])
    assert result.answer == "It is 42." and result.forced
    unfinished = Scripted(['{"name": "calculator", "arguments": {"expression": "3 * 1000000'])
    nothing = run_agent("3 * a price?", model=unfinished, tools=["calculator"])
    assert nothing.answer is None and nothing.stopped == "no_answer" and not nothing.steps


def test_a_tool_is_held_to_its_own_time_limit(slow_registry):
    model = Scripted([call("nap", seconds=3), "Done."])
    started = time.monotonic()
    result = run_agent("Rest.", model=model, tools=["nap"], registry=slow_registry)
    assert time.monotonic() - started < 2.5
    assert result.steps[0].output.startswith("error: nap failed: TimeoutError: no result within")
    assert result.answer == "Done."


def test_the_time_budget_is_checked_between_steps(slow_registry):
    slow_registry.add(slow_registry.get("nap").__class__(
        **{**slow_registry.get("nap").__dict__, "name": "long_nap", "timeout_s": 30}))  # fmt: skip
    model = Scripted([call("long_nap", i, seconds=0.6 + i / 100) for i in range(10)])
    started = time.monotonic()
    result = run_agent("Rest a lot.", model=model, tools=["long_nap"], registry=slow_registry,
                       time_budget_s=1.0, max_steps=10)  # fmt: skip
    assert time.monotonic() - started < 2.0
    assert result.stopped == "time" and result.answer is None and 1 <= len(result.steps) <= 2


def test_citations_are_the_passages_the_answer_marks():
    """The search callable is a list of two real Chunks: the point is the [n] bookkeeping."""
    chunks = [Chunk("The door code is 4711.", 0, 22, source="/docs/handbook.md"),
              Chunk("Coffee costs 12 euros.", 30, 52, source="/docs/coffee.md")]  # fmt: skip
    context = AgentContext(search=lambda q, k: [ScoredChunk(c, 1.0) for c in chunks][:k])
    model = Scripted([call("search", query="door code"), "The code is 4711 [1]."])
    result = run_agent("What is the door code?", model=model, context=context)
    assert result.tools == ["search", "calculator"]
    assert result.steps[0].output.startswith("[1] handbook.md: The door code is 4711.")
    assert [c.as_dict() for c in result.citations] == [
        {"n": 1, "source": "/docs/handbook.md", "start": 0, "end": 22,
         "text": "The door code is 4711.", "document_id": None, "chunk_id": None,
         "page": None, "headings": []}]  # fmt: skip
    assert result.to_json()["citations"][0]["source"] == "/docs/handbook.md"
