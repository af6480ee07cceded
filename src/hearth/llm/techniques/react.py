"""ReAct: a loop of Thought -> Action (a tool call) -> Observation until the model gives a final
answer or the step budget runs out; every step is recorded, for agents to build on.

Models with native tool calls (their chat template has a tool-call format) call tools that way
(hearth.llm.tool_calls); others answer each turn with a JSON action held to a schema by
hearth.generate, which names only the given tools with their own input schemas. Unknown tools,
inputs that fail a tool's schema and tools that raise become observations the model reads,
never exceptions. Hand-written: the loop is the product; tools are typed by JSON Schema and
checked by hearth.structured. Nothing is ever eval'd: the sample `calculator` walks an AST.
"""

from __future__ import annotations

import ast
import json
import operator
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from hearth.llm.structured_output import generate
from hearth.llm.techniques.basic import TemplateLike
from hearth.llm.techniques.prompt import PromptTemplate
from hearth.llm.tool_calls import new_call_id
from hearth.structured import validation_error
from hearth.types import ChatModel, Message, ToolCall

MAX_STEPS = 5
MAX_OBSERVATION = 2000  # characters of a tool's output the model is shown
THOUGHT_CHARS = 200  # JSON actions: the schema holds a thought to this many characters
STEP_TOKENS = 256  # default max_tokens of one turn
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # OpenAI's rule for function names
EMPTY_OBJECT = {"type": "object", "properties": {}}


@dataclass(frozen=True)
class Tool:
    """A function the model may call: `parameters` is the JSON Schema of its input (an
    object), which the input is checked against before `fn(**input)` runs."""

    name: str
    fn: Callable[..., Any]
    parameters: Mapping[str, Any]
    description: str = ""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(
                f"tool name {self.name!r}: use 1-64 letters, digits, '_' or '-' (OpenAI's rule)"
            )
        if not callable(self.fn):
            raise ValueError(f"tool {self.name!r}: fn must be callable, not {self.fn!r}")
        if not isinstance(self.parameters, Mapping) or self.parameters.get("type") != "object":
            raise ValueError(
                f'tool {self.name!r}: parameters must be a JSON Schema with "type": "object"'
            )

    def definition(self) -> dict[str, Any]:
        """The OpenAI function definition (what native tool calls are offered)."""
        parameters = dict(self.parameters)
        fn = {"name": self.name, "description": self.description, "parameters": parameters}
        return {"type": "function", "function": fn}

    def run(self, arguments: Any) -> tuple[str, bool]:
        """(observation, ok): the tool's output as text, or an error saying what went wrong."""
        if not isinstance(arguments, dict):
            return f"error: {self.name} takes a JSON object as input, not {arguments!r}", False
        problem = validation_error(dict(self.parameters), arguments)
        if problem:
            return f"error: the input does not fit {self.name}'s schema: {problem}", False
        try:
            output = self.fn(**arguments)
        except Exception as exc:  # a tool's failure is an observation the model can act on
            return f"error: {self.name} failed: {type(exc).__name__}: {exc}", False
        return _clipped(output if isinstance(output, str) else _json(output)), True


def as_tools(tools: Mapping[str, Any] | Iterable[Tool]) -> dict[str, Tool]:
    """Tools by name from {name: (callable, parameters schema)} or {name: Tool} or a list of
    Tools. A description comes from the schema's "description" or the function's docstring."""
    if isinstance(tools, Mapping):
        out = {}
        for name, spec in tools.items():
            if isinstance(spec, Tool):
                if spec.name != name:
                    raise ValueError(f"tool {name!r} is given a Tool named {spec.name!r}")
                out[name] = spec
                continue
            if not (isinstance(spec, tuple | list) and len(spec) == 2):
                raise ValueError(f"tool {name!r}: give (callable, JSON Schema) or a Tool")
            fn, schema = spec
            schema = EMPTY_OBJECT if schema is None else schema
            doc = (getattr(fn, "__doc__", None) or "").strip().split("\n")[0]
            described = isinstance(schema, Mapping) and "description" in schema
            out[name] = Tool(name, fn, schema, schema["description"] if described else doc)
        return out
    return {t.name: t for t in tools}


@dataclass(frozen=True)
class Step:
    """One step: the model's thought and the tool it called with its input, and what came back.
    The last step of a run that finished has `tool` None and the final answer as `output`.
    `ok` is False when the output is an error (unknown tool, bad input, the tool raised)."""

    thought: str
    tool: str | None
    input: dict[str, Any] | None
    output: str
    ok: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {"thought": self.thought, "tool": self.tool, "input": self.input,
                "output": self.output, "ok": self.ok}  # fmt: skip

    @property
    def action(self) -> dict[str, Any]:
        """The step as the model's JSON action (how JSON-mode prompts show it)."""
        if self.tool is None:
            return {"thought": self.thought, "final_answer": self.output}
        return {"thought": self.thought, "tool": self.tool, "input": self.input}


@dataclass
class ReactResult:
    """The final answer (None when the budget ran out first), every step, why the loop stopped
    ("time": the deadline passed; "halted": `on_step` returned False), and the conversation as
    the model last saw it."""

    answer: str | None
    steps: list[Step]
    stopped: Literal["answer", "max_steps", "time", "halted"]
    messages: list[Message]

    def transcript(self) -> list[dict[str, Any]]:
        return [s.as_dict() for s in self.steps]


def react(
    model: ChatModel,
    question: str,
    tools: Mapping[str, Any] | Iterable[Tool],
    max_steps: int = MAX_STEPS,
    *,
    native: bool | None = None,
    repeat_calls: bool = False,
    template: TemplateLike = "react",
    on_step: Callable[[Step], Any] | None = None,
    deadline: float | None = None,
    **params: Any,
) -> ReactResult:
    """Answer `question` by thinking and calling `tools` for at most `max_steps` model turns.

    `native` picks how actions are made: the model's own tool calls (default when it
    `supports_tools`) or schema-constrained JSON actions. `params` go to every turn
    (max_tokens defaults to 256, temperature to 0). A call repeating an earlier one (same tool,
    same input) is not run again unless `repeat_calls`: its observation says so and repeats
    the earlier output (small models otherwise call one tool over and over).

    `on_step` sees each step as it is recorded; returning False stops the loop ("halted").
    `deadline` (a time.monotonic() value) is checked before each model turn ("time")."""
    if max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}")
    table = as_tools(tools)
    if not table:
        raise ValueError("react needs at least one tool")
    if native is None:
        native = bool(getattr(model, "supports_tools", False))
    params = {"max_tokens": STEP_TOKENS, "temperature": 0.0, **params}
    prompt = PromptTemplate.load(template)
    run = _native if native else _json_actions
    caller = _Caller(table, repeat_calls, on_step, deadline)
    return run(model, question, caller, max_steps, prompt, params)


def _json_actions(model, question, caller, max_steps, prompt, params) -> ReactResult:
    table = caller.table
    schema = action_schema(table)
    steps: list[Step] = []
    messages: list[Message] = []
    for _ in range(max_steps):
        messages = _render(prompt, question, table, steps, native=False)
        if caller.late():
            return ReactResult(None, steps, "time", messages)
        action = generate(model, messages, schema, **params)
        thought = str(action.get("thought", ""))
        if "final_answer" in action:
            steps.append(Step(thought, None, None, str(action["final_answer"])))
            caller.report(steps[-1])
            return ReactResult(steps[-1].output, steps, "answer", messages)
        steps.append(caller(str(action.get("tool")), action.get("input"), thought))
        if caller.report(steps[-1]) is False:
            break
    stopped = "halted" if steps and caller.halted else "max_steps"
    return ReactResult(None, steps, stopped, _render(prompt, question, table, steps, False))


def _native(model, question, caller, max_steps, prompt, params) -> ReactResult:
    table = caller.table
    definitions = [t.definition() for t in table.values()]
    messages = _render(prompt, question, table, [], native=True)
    steps: list[Step] = []
    for _ in range(max_steps):
        if caller.late():
            return ReactResult(None, steps, "time", messages)
        result = model.chat(messages, tools=definitions, **params)
        thought = result.text.strip()
        if not result.tool_calls:
            steps.append(Step("", None, None, thought))
            caller.report(steps[-1])
            return ReactResult(thought, steps, "answer", messages)
        messages.append(Message("assistant", result.text, tool_calls=list(result.tool_calls)))
        halted = False
        for call in result.tool_calls:
            step = caller(call.name, _arguments(call), thought)
            steps.append(step)
            messages.append(
                Message("tool", step.output, tool_call_id=call.id or new_call_id(), name=call.name)
            )
            halted = caller.report(step) is False or halted
        if halted:
            return ReactResult(None, steps, "halted", messages)
    return ReactResult(None, steps, "max_steps", messages)


def action_schema(tools: Mapping[str, Tool]) -> dict[str, Any]:
    """The JSON Schema of one JSON-mode action: a call of one of `tools` with an input that
    fits that tool's schema, or a final answer; the thought comes first."""
    thought = {"type": "string", "maxLength": THOUGHT_CHARS}
    defs: dict[str, Any] = {}
    calls = [
        {
            "type": "object",
            "properties": {
                "thought": thought,
                "tool": {"const": t.name},
                "input": _hoisted(f"tool{i}", dict(t.parameters), defs),
            },
            "required": ["thought", "tool", "input"],
            "additionalProperties": False,
        }
        for i, t in enumerate(tools.values())
    ]
    final = {
        "type": "object",
        "properties": {"thought": thought, "final_answer": {"type": "string"}},
        "required": ["thought", "final_answer"],
        "additionalProperties": False,
    }
    return {"anyOf": [*calls, final], **({"$defs": defs} if defs else {})}


_MAPS = ("properties", "patternProperties", "dependentSchemas", "$defs", "definitions")


def _hoisted(prefix: str, schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """A tool's input schema as it can sit inside the action schema. One that refers into
    itself ($ref to "#", its $defs or definitions: pydantic's nested models) would point at the
    action schema's root there; it moves into the root's $defs as `prefix` (its definitions as
    `prefix.NAME`), its references renamed, and is referred to."""
    if "$ref" not in json.dumps(schema):
        return schema
    renamed = {"#": f"#/$defs/{prefix}"}
    for key in ("$defs", "definitions"):
        for name in schema.get(key) or {}:
            renamed[f"#/{key}/{name}"] = f"#/$defs/{prefix}.{name}"

    def ref(target: str) -> str:
        for old in sorted(renamed, key=len, reverse=True):
            if target == old or target.startswith(old + "/"):
                return renamed[old] + target[len(old) :]
        return target

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        out = {}
        for key, value in node.items():
            if key in ("$defs", "definitions") and node is schema:
                continue  # hoisted below
            if key == "$ref" and isinstance(value, str):
                out[key] = ref(value)
            elif key in _MAPS and isinstance(value, dict):
                out[key] = {name: walk(sub) for name, sub in value.items()}
            else:
                out[key] = walk(value)
        return out

    for key in ("$defs", "definitions"):
        for name, sub in (schema.get(key) or {}).items():
            defs[f"{prefix}.{name}"] = walk(sub)
    defs[prefix] = walk(schema)
    return {"$ref": f"#/$defs/{prefix}"}


def _render(prompt, question, table, steps, native) -> list[Message]:
    return prompt.render(question=question, tools=list(table.values()), steps=steps,
                         native=native)  # fmt: skip


class _Caller:
    """Runs the model's tool calls, each into a Step; remembers what each call returned."""

    def __init__(
        self,
        table: dict[str, Tool],
        repeat_calls: bool,
        on_step: Callable[[Step], Any] | None = None,
        deadline: float | None = None,
    ) -> None:
        self.table = table
        self.repeat_calls = repeat_calls
        self.on_step = on_step
        self.deadline = deadline
        self.done: dict[str, str] = {}  # tool and input as JSON -> the output it gave
        self.halted = False

    def late(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def report(self, step: Step) -> Any:
        verdict = None if self.on_step is None else self.on_step(step)
        self.halted = self.halted or verdict is False
        return verdict

    def __call__(self, name: str, arguments: Any, thought: str) -> Step:
        shown = arguments if isinstance(arguments, dict) else None
        tool = self.table.get(name)
        if tool is None:
            known = ", ".join(self.table)
            return Step(thought, name, shown,
                        f"error: unknown tool {name!r}; use one of: {known}", ok=False)  # fmt: skip
        key = _json([name, arguments])
        if key in self.done and not self.repeat_calls:
            output = (
                f"error: {name} was already called with this input and returned: "
                f"{self.done[key]}\nUse that result, or give the final answer."
            )
            return Step(thought, name, shown, output, ok=False)
        output, ok = tool.run(arguments)
        if ok:
            self.done[key] = output
        return Step(thought, name, shown, output, ok)


def _arguments(call: ToolCall) -> Any:
    try:
        return json.loads(call.arguments or "{}")
    except ValueError:
        return call.arguments  # not JSON: Tool.run reports it


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _clipped(text: str) -> str:
    if len(text) <= MAX_OBSERVATION:
        return text
    return text[:MAX_OBSERVATION] + f"... [{len(text) - MAX_OBSERVATION} more characters cut]"


# -- a sample tool ---------------------------------------------------------------------------

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}  # fmt: skip
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
MAX_EXPRESSION = 200
MAX_EXPONENT = 64


def calculator(expression: str) -> int | float:
    """Evaluate an arithmetic expression: numbers, + - * / // % ** and parentheses."""
    if len(expression) > MAX_EXPRESSION:
        raise ValueError(f"the expression is longer than {MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not an arithmetic expression: {exc.msg}") from None
    value = _evaluate(tree.body)
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _evaluate(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ValueError(f"exponents above {MAX_EXPONENT} are not allowed")
        if isinstance(node.op, ast.Pow | ast.Mult) and _bits(left, right, node.op) > MAX_BITS:
            raise ValueError(f"the result would exceed {MAX_BITS} bits")
        return _BINARY[type(node.op)](left, right)
    raise ValueError(f"not allowed in an arithmetic expression: {ast.unparse(node)!r}")


MAX_BITS = 4096  # no intermediate integer beyond this: a model must not build huge numbers


def _bits(left: int | float, right: int | float, op: ast.operator) -> float:
    """About how many bits an integer result of `left op right` needs (floats overflow on
    their own)."""
    if not (isinstance(left, int) and isinstance(right, int)):
        return 0
    if isinstance(op, ast.Pow):
        return abs(left).bit_length() * max(right, 0)
    return abs(left).bit_length() + abs(right).bit_length()


CALCULATOR = Tool(
    "calculator",
    calculator,
    {
        "type": "object",
        "properties": {"expression": {"type": "string", "description": "e.g. (2 + 3) * 4"}},
        "required": ["expression"],
        "additionalProperties": False,
    },
    "Evaluates an arithmetic expression (numbers, + - * / // % ** and parentheses).",
)
