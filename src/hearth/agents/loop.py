"""The agent: a ReAct loop (hearth.llm.techniques.react: native tool calls where the model has
them, schema-held JSON actions where it does not) over registered, sandboxed tools, within a
step and a wall-clock budget, every step timed, logged and handed to `on_step`.

Small models loop (they call the same tool again with the same input) or stop without
answering; the loop stops a repeat and asks once for the answer from the results so far.
Hand-written: the budgets, the trace and the final turn; react does the thinking loop.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from hearth.agents import tools as _builtin  # noqa: F401 - registers the built-in tools
from hearth.agents.context import AgentContext, Citation, ToolEnv
from hearth.agents.registry import REGISTRY, ToolRegistry, ToolSpec
from hearth.agents.sandbox import Policy, python_roots, run_sandboxed, screen_task
from hearth.llm.techniques.prompt import PromptTemplate
from hearth.llm.techniques.react import Step, Tool, react
from hearth.types import ChatModel, Message

log = logging.getLogger("hearth.agents")

MAX_STEPS = 6
TIME_BUDGET_S = 120.0
STEP_TOKENS = 256
ANSWER_TOKENS = 160
MAX_CITATIONS = 5
# appended to each tool result the model reads (small models otherwise call on and on); the
# trace records the result without it
NUDGE = "\n(If this answers the task, reply now with the final answer.)"
_REPEAT = "already called with this input"
# a tool call the model wrote as text but did not finish (it ran out of tokens): not an answer
_CALL_TEXT = re.compile(r'^\s*(<tool_call>|```(json)?\s*\{|\{\s*"(name|tool)"\s*:)')
_MARKER = re.compile(r"\[(\d{1,3})\]")

# The react prompt with an agent's rules spelled out (small models need them): look facts up,
# compute with the calculator, answer as soon as a result says enough. Variables as react.jinja.
AGENT_PROMPT = PromptTemplate.from_string(
    """
{% call message("system") %}
You complete the user's task step by step with tools.
Rules:
- Facts from the user's documents or database (codes, prices, times, names, counts) are not
in your memory: look them up with a tool first, never guess them.
- Do arithmetic with the calculator, using the numbers from the task and from tool results.
- Call each tool with a new input; never repeat a call.
- As soon as the results answer the task, give the final answer: the number or fact, with [n]
for each passage you used.
{% if native %}
Call a tool when you need one; when you know the answer, reply with it in plain text.
{% else %}
Each reply is one JSON object: either
{"thought": "...", "tool": "<tool name>", "input": {...arguments...}}
to call a tool, or
{"thought": "...", "final_answer": "..."}
once you know the answer.

Tools:
{% for tool in tools %}
- {{ tool.name }}: {{ tool.description }} Input: {{ tool.parameters | tojson }}
{% endfor %}
{% endif %}
{% endcall %}
{% call message("user") %}{{ question }}{% endcall %}
{% for step in steps %}
{% call message("assistant") %}{{ step.action | tojson }}{% endcall %}
{% call message("user") %}Observation: {{ step.output }}{% endcall %}
{% endfor %}
""",
    "hearth.agents",
)

Stopped = Literal["answer", "max_steps", "time", "refused", "no_answer"]


@dataclass(frozen=True)
class AgentStep:
    """One tool call as it happened: what the model thought, the tool and its input, what came
    back, whether it worked, and the wall time since the previous step (model turn + tool)."""

    tool: str
    input: dict[str, Any] | None
    output: str
    ok: bool
    thought: str
    elapsed_ms: float

    def as_dict(self) -> dict[str, Any]:
        return {"tool": self.tool, "input": self.input, "output": self.output, "ok": self.ok,
                "thought": self.thought, "elapsed_ms": round(self.elapsed_ms, 1)}  # fmt: skip


@dataclass
class AgentResult:
    """The answer (None when no answer came within the budgets), the tool steps, why the run
    stopped ("answer"; "max_steps" / "time": a budget ran out; "refused": the task screen;
    "no_answer": the model stopped without one), the passages the answer cites, and whether
    the answer came from the final "answer now" turn (`forced`) rather than the model."""

    answer: str | None
    steps: list[AgentStep]
    stopped: Stopped
    citations: list[Citation] = field(default_factory=list)
    forced: bool = False
    turns: int = 0  # model turns taken (tool-calling turns and the answering one)
    elapsed_ms: float = 0.0
    model: str = ""
    tools: list[str] = field(default_factory=list)
    mode: str = ""  # "native" (the model's tool calls) | "json" (JSON actions) | ""

    def to_json(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "steps": [s.as_dict() for s in self.steps],
            "stopped": self.stopped,
            "citations": [c.as_dict() for c in self.citations],
            "forced": self.forced,
            "turns": self.turns,
            "elapsed_ms": round(self.elapsed_ms, 1),
            "model": self.model,
            "tools": self.tools,
            "mode": self.mode,
        }


def default_tools(context: AgentContext) -> list[str]:
    """search (when there is an index), calculator, and sql (when there is a database)."""
    names = ["search"] if context.search is not None else []
    return names + ["calculator"] + (["sql"] if context.sql is not None else [])


def bind(spec: ToolSpec, env: ToolEnv, policy: Policy, deadline: float) -> Tool:
    """The spec as a react Tool whose every call runs sandboxed, within the tool's own time
    limit and what is left of the run's."""

    def call(**arguments: Any) -> Any:
        limit = max(0.0, min(spec.timeout_s, deadline - time.monotonic()))
        outcome = run_sandboxed(lambda: spec.call(env, arguments), policy, limit)
        if not outcome.finished:
            if spec.uses_model:
                env.abandoned = True  # it may still be using the model: no more turns
            raise TimeoutError(f"no result within {limit:.1f} s")
        if outcome.error is not None:
            raise outcome.error
        value = outcome.value
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        return text + NUDGE

    return Tool(spec.name, call, spec.parameters, spec.description)


def run_agent(
    task: str,
    *,
    model: ChatModel,
    tools: Iterable[str] | None = None,
    context: AgentContext | None = None,
    max_steps: int = MAX_STEPS,
    time_budget_s: float = TIME_BUDGET_S,
    on_step: Callable[[AgentStep], Any] | None = None,
    native: bool | None = None,
    guard: bool = True,
    registry: ToolRegistry | None = None,
    max_tokens: int = STEP_TOKENS,
    template: PromptTemplate = AGENT_PROMPT,
) -> AgentResult:
    """Carry out `task` with `tools` (names in the registry; default: `default_tools`).

    The loop ends on the model's answer, after `max_steps` tool-calling turns, or when
    `time_budget_s` has passed (checked before each model turn; each tool call is also held
    to its own limit). A task that plainly asks to break out is refused before any turn
    (`guard`); the tools could not do it anyway. Unknown tools or capabilities the context
    does not give are AgentErrors before anything runs."""
    if max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}")
    if time_budget_s <= 0:
        raise ValueError(f"time_budget_s must be positive, got {time_budget_s}")
    context = context or AgentContext()
    registry = registry or REGISTRY
    names = list(tools) if tools is not None else default_tools(context)
    specs = registry.resolve(names, context)
    started = time.monotonic()
    deadline = started + time_budget_s
    result = AgentResult(None, [], "answer", model=getattr(model, "name", ""),
                         tools=[s.name for s in specs])  # fmt: skip

    def finish() -> AgentResult:
        result.elapsed_ms = (time.monotonic() - started) * 1000
        log.info("agent stopped=%s steps=%d turns=%d in %.0f ms", result.stopped,
                 len(result.steps), result.turns, result.elapsed_ms)  # fmt: skip
        return result

    refusal = screen_task(task, allow_network=context.allow_network,
                          allow_writes=context.allow_writes) if guard else None  # fmt: skip
    if refusal:
        result.answer, result.stopped = refusal, "refused"
        log.warning("agent refused a task: %s", refusal)
        return finish()

    env = ToolEnv(context, model)
    roots = tuple(str(p) for p in context.read_roots)
    if context.db is not None and "://" not in str(context.db):
        roots += (str(context.db),)
    policy_for = {
        s.name: Policy(network=s.network and context.allow_network,
                       writes=s.writes and context.allow_writes,
                       read_roots=tuple(_real(r) for r in roots) + python_roots())
        for s in specs
    }  # fmt: skip
    table = [bind(s, env, policy_for[s.name], deadline) for s in specs]
    mark = [started]
    turns_with_calls: list[str] = []

    def record(step: Step) -> bool | None:
        now = time.monotonic()
        elapsed, mark[0] = (now - mark[0]) * 1000, now
        if step.tool is None:  # the model's answer
            log.info("agent answer after %.0f ms: %s", elapsed, step.output[:200])
            return None
        output = step.output.replace(NUDGE, "")
        s = AgentStep(step.tool, step.input, output, step.ok, step.thought, elapsed)
        result.steps.append(s)
        turns_with_calls.append(step.thought)
        log.info("agent step %d: %s(%s) ok=%s %.0f ms -> %s", len(result.steps), s.tool,
                 json.dumps(s.input, default=str)[:200], s.ok, elapsed, s.output[:200])  # fmt: skip
        if on_step is not None:
            on_step(s)
        if env.abandoned:
            return False
        if not step.ok and _REPEAT in step.output:
            return False  # the model is looping: stop and ask for the answer
        return None

    mode = native if native is not None else bool(getattr(model, "supports_tools", False))
    result.mode = "native" if mode else "json"
    out = react(model, task, table, max_steps, native=mode, on_step=record, deadline=deadline,
                template=template, max_tokens=max_tokens)  # fmt: skip
    result.turns = _turns(out)
    answer = (out.answer or "").strip()
    if out.stopped == "answer" and answer and not _CALL_TEXT.match(answer):
        result.answer = answer
    elif env.abandoned or time.monotonic() >= deadline:
        result.stopped = "time"
    else:
        # the step budget ran out, the model looped, or it answered with nothing
        result.answer = _answer_now(model, task, result.steps)
        result.forced, result.turns = True, result.turns + 1
        result.stopped = "max_steps" if out.stopped == "max_steps" else "answer"
        if result.answer is None and result.stopped == "answer":
            result.stopped = "no_answer"  # e.g. a call written as text that never finished
    result.citations = _cited(result.answer or "", env.citations, result.steps)
    return finish()


def _turns(out: Any) -> int:
    """Model turns react took: natively one per batch of calls, else one per JSON action; and
    the answering turn."""
    batches = sum(1 for m in out.messages if m.role == "assistant" and m.tool_calls)
    calls = batches or sum(1 for s in out.steps if s.tool is not None)
    return calls + (1 if out.stopped == "answer" else 0)


def _answer_now(model: ChatModel, task: str, steps: list[AgentStep]) -> str | None:
    """One plain turn: the question and every tool result so far, asking for the answer."""
    results = [f"- {s.tool}({json.dumps(s.input, ensure_ascii=False)}) -> {s.output}"
               for s in steps if s.ok]  # fmt: skip
    if not results:
        return None
    messages = [
        Message("system", "Answer the user's question using only the tool results given. "
                "Reply with the answer in one or two sentences; cite passages as [n]."),
        Message("user", f"Question: {task}\n\nTool results:\n" + "\n".join(results)
                + "\n\nAnswer:"),
    ]  # fmt: skip
    try:
        text = model.chat(messages, max_tokens=ANSWER_TOKENS, temperature=0.0).text.strip()
    except Exception as exc:  # noqa: BLE001 - the steps so far are still worth returning
        log.warning("agent: the final answer turn failed: %s", exc)
        return None
    return text or None


def _cited(answer: str, citations: list[Citation], steps: list[AgentStep]) -> list[Citation]:
    """The passages the answer cites as [n]; when it cites none but used search, the passages
    of the search steps (the evidence it read), most relevant first."""
    by_n = {c.n: c for c in citations}
    marked = [by_n[int(n)] for n in dict.fromkeys(_MARKER.findall(answer)) if int(n) in by_n]
    if marked:
        return marked[:MAX_CITATIONS]
    seen = [int(n) for s in steps if s.tool == "search" and s.ok
            for n in _MARKER.findall(s.output)]  # fmt: skip
    return [by_n[n] for n in dict.fromkeys(seen) if n in by_n][:MAX_CITATIONS]


def _real(path: str) -> str:
    return os.path.realpath(path)
