"""Tool calls for local models: check OpenAI tool definitions, put them in the prompt (the chat
template's own tool format, or a Hermes-style system message for templates that have none),
constrain what the model writes to valid calls, and parse the calls back into OpenAI's shape.

The format is the Hermes one that Qwen2.5 (and many fine-tunes) are trained on:
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, one block per call; small models
often write the same JSON without the tags. The constraint is one llguidance Lark grammar whose
`%json{...}` pieces are the tools' parameter schemas, so a call's arguments always validate.
Hand-written: a few lines of prompt, grammar and parsing that each backend (llama.cpp, Hearth's
engine) shares, and the streaming split must hold back a half-written tag or call that no
library exposes.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hearth.errors import CapabilityError, ConstraintError
from hearth.types import Message, ToolCall

if TYPE_CHECKING:
    from hearth.structured import Constraint

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_BLOCK = re.compile(re.escape(OPEN) + r"(.*?)(?:" + re.escape(CLOSE) + r"|\Z)", re.DOTALL)


def template_supports_tools(template: str | None) -> bool:
    """Whether a chat template renders `tools` and asks for Hermes-style <tool_call> blocks."""
    return bool(template) and "tools" in template and OPEN in template


@dataclass(frozen=True)
class ToolRequest:
    """Checked `tools` and `tool_choice` for one generation. `native`: the model's chat template
    renders the tools itself; otherwise `tool_messages` puts them in a system message."""

    tools: list[dict[str, Any]]
    choice: str = "auto"  # "auto" | "required" | "function" (one named function)
    function: str | None = None  # the forced function's name when choice == "function"
    native: bool = True

    def prefix(self) -> str:
        """Text written at the start of the assistant's turn to force a call: the template's own
        call syntax up to where the model must go on."""
        if self.choice == "required":
            return OPEN + "\n"
        if self.choice == "function":
            return OPEN + '\n{"name": ' + json.dumps(self.function) + ', "arguments": '
        return ""

    def names(self) -> list[str]:
        return [t["function"]["name"] for t in self.tools]

    def template_tools(self) -> list[dict[str, Any]] | None:
        """What the chat template's `tools` variable gets (None: the tools are in a system
        message instead)."""
        return self.tools if self.native else None

    def constraint(self) -> Constraint | None:
        """The constraint on the assistant text generated after `prefix()`, one Lark grammar:

        - "function": the named tool's arguments object, then `}` and the closing tag;
        - "required": the rest of the opened block, one call (`{"name": ..., "arguments":
          ...}`, name first) of one of the tools;
        - "auto": free text in which `<tool_call>` opens such a block (the tag is a lazy
          trigger: text before it is the model's own, and none may follow), or one call as
          bare JSON, fenced or not (Qwen2.5-Coder-0.5B drops the tags); other text may not
          open with `{`, `[` or a fence, so no call slips out unchecked.

        A model whose template has the tool format (`native`, trained on it) may go on with more
        blocks (parallel calls), and write text after them; a model that only reads the format
        in its system message gets one call per turn (SmolLM2-135M repeats calls until the token
        budget ends). Arguments follow each tool's `parameters` schema, written as json.dumps
        writes JSON, with no properties beyond the listed ones where the schema leaves that
        open (small models invent some); a schema that cannot be enforced is a ConstraintError
        naming the tool and the keyword's path, e.g.
        `tools[0].function.parameters/properties/x/uniqueItems`. Alternatives per tool in Lark
        (not one anyOf schema) keep each schema its own root, so its `$ref`s still resolve.
        """
        from hearth.structured import compile, lark

        schemas = [_parameters_grammar(i, t) for i, t in enumerate(self.tools)]
        if self.choice == "function":
            schema = schemas[self.names().index(self.function)]
            rules = ["start: " + schema + " " + _lit("}\n" + CLOSE)]
        else:
            rules = [
                "call: " + " | ".join(f"call_{i}" for i in range(len(schemas))),
                *(
                    f"call_{i}: {_lit(_call_head(name))} {schema} {_lit('}')}"
                    for i, (name, schema) in enumerate(zip(self.names(), schemas, strict=True))
                ),
            ]
            block_end = _lit("\n" + CLOSE)
            more = f"({_lit(chr(10) + OPEN + chr(10))} call {block_end})*" if self.native else ""
            if self.choice == "required":
                rules.insert(0, f"start: call {block_end} {more}")
            else:  # auto
                rules[:0] = [
                    "start: "
                    + ("tagged_call* TEXT" if self.native else "TEXT | tagged_call")
                    + f" | call | {_lit('```json' + chr(10))} call {_lit(chr(10) + '```')}",
                    f"tagged_call: call_tag {_lit(chr(10))} call {block_end}",
                    f"call_tag[lazy]: TEXT {_lit(OPEN)}",
                    r"TEXT: /\s*([^\s{\[`](.|\n)*)?/",  # prose: not a bare JSON call
                ]
        return compile(lark("%llguidance {}\n" + "\n".join(rules)))


def _lit(text: str) -> str:
    """`text` as a Lark string literal."""
    return json.dumps(text, ensure_ascii=False)


def _call_head(name: str) -> str:
    return '{"name": ' + json.dumps(name, ensure_ascii=False) + ', "arguments": '


def _parameters_grammar(index: int, tool: dict[str, Any]) -> str:
    """`%json{...}` for tool `index`'s parameters, checked as hearth.structured.compile checks a
    schema (the error then names the tool)."""
    from hearth.structured import compile
    from hearth.structured.constraint import GENERATE_JSON
    from hearth.structured.schema import IN_PLACE, prepare

    params = tool["function"]["parameters"]
    where = f"tools[{index}].function.parameters"
    try:
        compile(params)  # cached; refuses what masks cannot enforce, with the keyword's path
        ready = prepare(params)
    except ConstraintError as exc:
        path = exc.path or ""
        raise ConstraintError(
            f"{where}{path}: {exc}", keyword=exc.keyword, path=f"/tools/{index}/function/"
            f"parameters{path}",
        ) from None  # fmt: skip
    ready = {} if ready is True else dict(ready)
    # a subset of what the schema allows (small models invent arguments), where every allowed
    # name is listed at the top (not in an allOf / anyOf / $ref branch)
    open_ended = {"additionalProperties", "patternProperties", *IN_PLACE} & set(ready)
    if "properties" in ready and not open_ended:
        ready["additionalProperties"] = False
    ready["x-guidance"] = GENERATE_JSON
    return "%json" + json.dumps(ready, ensure_ascii=False)


def tool_request(tools: Any, tool_choice: Any = None, *, native: bool = True) -> ToolRequest | None:
    """Check OpenAI-shaped `tools` / `tool_choice`; None when no tool may be called. A bad
    definition is a ValueError naming its index and field."""
    if tool_choice in (None, "auto") and not tools:
        return None
    if tool_choice == "none":
        return None
    if not isinstance(tools, list | tuple) or not tools:
        raise ValueError("tool_choice needs `tools`: a non-empty list of function definitions")
    checked = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise ValueError(f"tools[{i}]: expected {{'type': 'function', 'function': {{...}}}}")
        fn = tool.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise ValueError(f"tools[{i}].function.name: a non-empty string is required")
        params = fn.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(params, dict):
            raise ValueError(f"tools[{i}].function.parameters: must be a JSON Schema object")
        checked.append({"type": "function", "function": {**fn, "parameters": params}})
    names = [t["function"]["name"] for t in checked]
    if len(set(names)) < len(names):
        raise ValueError(f"tools: function names must differ ({names})")
    if tool_choice in (None, "auto"):
        return ToolRequest(checked, native=native)
    if tool_choice == "required":
        return ToolRequest(checked, "required", native=native)
    if isinstance(tool_choice, dict):
        name = (tool_choice.get("function") or {}).get("name")
        if name not in names:
            raise ValueError(f"tool_choice names {name!r}, which is not in tools ({names})")
        return ToolRequest(checked, "function", name, native=native)
    raise ValueError(
        f"tool_choice {tool_choice!r}: use 'auto', 'none', 'required' or "
        "{'type': 'function', 'function': {'name': ...}}"
    )


def request_for(model: Any, tools: Any, tool_choice: Any) -> ToolRequest | None:
    """`tool_request` for `model`. A model whose chat template has a tool format
    (`supports_tools`) gets the tools there; one that can mask tokens (`masks_tokens`) gets them
    in a system message (see tool_messages) and is held to valid calls by `constraint()`. A
    model with neither would only be asked nicely, which small models ignore: CapabilityError."""
    native = bool(getattr(model, "supports_tools", False))
    request = tool_request(tools, tool_choice, native=native)
    if request is not None and not native and not getattr(model, "masks_tokens", False):
        raise CapabilityError(
            f"{model.name} cannot call tools: its chat template has no tool-call format and it "
            "cannot constrain its output to one. Use a model that has either, e.g. "
            "local:smollm2 or local:qwen2.5-coder-0.5b"
        )
    return request


def output_constraint(params: Any, tools: ToolRequest | None) -> Constraint | None:
    """What generation is held to: the tool request's constraint when tools may be called, else
    `params.constraint`. Both at once is a ValueError: a call's arguments already follow their
    schema, and a reply in text cannot also be a call (ask with tool_choice "none" for the
    schema-shaped reply)."""
    if tools is None:
        return params.constraint
    if params.constraint is not None:
        raise ValueError(
            "a constraint (response_format) and tools cannot be combined; the tools' "
            "parameters already constrain calls (use tool_choice 'none' for a constrained reply)"
        )
    return tools.constraint()


# Our own wording of the Hermes convention (the tags are what Qwen2.5-style models know)
SYSTEM_TOOLS = """# Tools

These functions are available to help with the request; their signatures, one JSON object per
line:
<tools>
{tools}
</tools>

To call a function, write a JSON object with its name and its arguments between <tool_call>
and </tool_call> tags, and nothing else:
<tool_call>
{{"name": "<the function's name>", "arguments": {{<the arguments, as JSON>}}}}
</tool_call>"""


def tool_messages(
    messages: list[Message], tools: ToolRequest | None, native: bool
) -> list[Message]:
    """`messages` as a chat template takes them. A template with a tool format (`native`) gets
    them unchanged (and the tools as its `tools` variable). One without gets what Qwen2.5's
    template would have written: the tools in the system message (Hermes style), each
    assistant call as a `<tool_call>` block in its content, and tool results as a user turn of
    `<tool_response>` blocks (consecutive results in one turn)."""
    if native:
        return messages
    out: list[Message] = []
    for m in messages:
        if m.role == "tool":
            block = f"<tool_response>\n{m.content}\n</tool_response>"
            if out and out[-1].role == "user" and out[-1].content.startswith("<tool_response>"):
                out[-1] = Message("user", out[-1].content + "\n" + block)
            else:
                out.append(Message("user", block))
        elif m.tool_calls:
            blocks = [
                f"{OPEN}\n"
                + json.dumps({"name": c.name, "arguments": _as_object(c.arguments)},
                             ensure_ascii=False)
                + f"\n{CLOSE}"
                for c in m.tool_calls
            ]  # fmt: skip
            content = "\n".join([m.content.strip()] * bool(m.content.strip()) + blocks)
            out.append(Message("assistant", content))
        else:
            out.append(Message(m.role, m.content))
    if tools is not None:
        listed = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools.tools)
        system = SYSTEM_TOOLS.format(tools=listed)
        if out and out[0].role == "system":
            out[0] = Message("system", out[0].content.rstrip() + "\n\n" + system)
        else:
            out.insert(0, Message("system", system))
    return out


def template_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Messages as Hugging Face chat templates read them: a call's arguments as an object (the
    templates write them with `tojson`), not OpenAI's JSON text."""
    out = []
    for m in messages:
        d = m.as_dict()
        if m.tool_calls:
            d["tool_calls"] = [
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": _as_object(c.arguments)}}
                for c in m.tool_calls
            ]  # fmt: skip
        out.append(d)
    return out


def _as_object(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def parse_tool_calls(text: str, names: list[str] | None = None) -> tuple[str, list[ToolCall]]:
    """Split generated text into the content around the calls and the calls themselves.

    Calls are `<tool_call>` blocks; a last block cut off before `</tool_call>` (the turn ended)
    still counts if it parses. Small models often drop the tags and answer with the bare JSON
    call (Qwen2.5-Coder-0.5B does): with `names` (the offered tools), a reply that is nothing
    but such JSON objects, fenced or not, is read as calls too. A block whose JSON does not
    parse, or names a function not in `names`, stays in the content as the model wrote it.
    """
    calls: list[ToolCall] = []
    kept: list[str] = []
    last = 0
    for match in _BLOCK.finditer(text):
        call = _parse_call(match.group(1), names)
        if call is None:
            continue
        kept.append(text[last : match.start()])
        last = match.end()
        calls.append(call)
    if calls:
        kept.append(text[last:])
        return "".join(kept).strip(), calls
    if names is not None:
        bare = _bare_calls(text, names)
        if bare:
            return "", bare
    return text, []


def _unfence(body: str) -> str:
    body = body.strip()
    if body.startswith("```"):  # ```json ... ```
        body = body[3:].removeprefix("json").strip()
        body = body.removesuffix("```").strip()
    return body


def _parse_call(body: str, names: list[str] | None) -> ToolCall | None:
    try:
        obj = json.loads(_unfence(body))
    except ValueError:
        return None
    return _call_from(obj, names)


def _call_from(obj: Any, names: list[str] | None) -> ToolCall | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    if names is not None and obj["name"] not in names:
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    arguments = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    return ToolCall(new_call_id(), obj["name"], arguments)


def _bare_calls(text: str, names: list[str]) -> list[ToolCall]:
    """Calls from a reply made only of JSON call objects (one, a list, or several in a row)."""
    body = _unfence(text)
    decoder = json.JSONDecoder()
    objs: list[Any] = []
    at = 0
    while at < len(body):
        try:
            obj, at = decoder.raw_decode(body, at)
        except ValueError:
            return []
        objs.extend(obj if isinstance(obj, list) else [obj])
        while at < len(body) and body[at] in " \t\r\n,":
            at += 1
    calls = [_call_from(o, names) for o in objs]
    return calls if calls and all(calls) else []  # type: ignore[return-value]


class ToolCallSplitter:
    """Streams content while a model may write tool calls. Text before `<tool_call>` passes
    through as it comes (minus a tail that could be the start of the tag); from the tag on it
    is held, and so is a reply that opens with `{` or a code fence (a bare JSON call);
    `finish()` parses what was held."""

    def __init__(self, prefix: str = "", names: list[str] | None = None) -> None:
        self._held = prefix  # a forced call's prefix: part of the turn, never shown
        self._holding = bool(prefix)
        self._started = False  # has visible text been let through yet?
        self._names = names

    def feed(self, delta: str) -> str:
        """The part of `delta` that is safe to show now."""
        if self._holding:
            self._held += delta
            return ""
        text = self._held + delta
        if not self._started:
            head = text.lstrip()
            if not head:
                self._held = text
                return ""
            if head[0] in "{`[":
                self._holding = True
                self._held = text
                return ""
            self._started = True
        at = text.find(OPEN)
        if at >= 0:
            self._holding = True
            self._held = text[at:]
            return text[:at]
        keep = _partial_tag_suffix(text)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def finish(self) -> tuple[str, list[ToolCall]]:
        """(content still to show, the calls)."""
        held, self._held = self._held, ""
        if not self._holding:
            return held, []
        return parse_tool_calls(held, self._names)


def _partial_tag_suffix(text: str) -> int:
    """Length of the longest end of `text` that is a proper start of `<tool_call>`."""
    for n in range(min(len(OPEN) - 1, len(text)), 0, -1):
        if OPEN.startswith(text[-n:]):
            return n
    return 0
