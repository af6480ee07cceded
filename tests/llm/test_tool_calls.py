"""Tool calls: OpenAI definitions checked, the Hermes / bare-JSON call format parsed (also when
streamed one character at a time), the constraint that holds calls to their schemas, and the
real GGUFs calling tools on llama.cpp: Qwen2.5-Coder in its template's format, SmolLM2 (no tool
format) through a system message."""

from __future__ import annotations

import json

import pytest

from hearth import llm
from hearth.errors import CapabilityError, ConstraintError
from hearth.llm.tool_calls import (
    ToolCallSplitter,
    parse_tool_calls,
    request_for,
    template_messages,
    template_supports_tools,
    tool_messages,
    tool_request,
)
from hearth.types import Message, StreamEnd, ToolCall

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
NAMES = ["get_weather"]


def test_tagged_calls_are_parsed_and_removed_from_the_content():
    text = (
        'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n'
        '</tool_call>\n<tool_call>{"name": "get_weather", "arguments": {"city": "Rome"}}'
        "</tool_call>"
    )
    content, calls = parse_tool_calls(text, NAMES)
    assert content == "Let me check."
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_weather", {"city": "Oslo"}),
        ("get_weather", {"city": "Rome"}),
    ]
    assert all(c.id.startswith("call_") for c in calls) and calls[0].id != calls[1].id
    assert calls[0].as_openai()["function"]["name"] == "get_weather"


def test_a_block_cut_off_by_the_end_of_the_turn_still_counts():
    _, calls = parse_tool_calls('<tool_call>\n{"name": "get_weather", "arguments": {}}', NAMES)
    assert [c.name for c in calls] == ["get_weather"] and calls[0].arguments == "{}"


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "get_weather", "arguments": {"city": "Paris"}}',
        '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```',
        '[{"name": "get_weather", "arguments": {"city": "Paris"}}]',
        '{"name": "get_weather", "parameters": {"city": "Paris"}}',
    ],
)
def test_bare_json_calls_count_when_tools_were_offered(text):
    content, calls = parse_tool_calls(text, NAMES)
    assert content == "" and json.loads(calls[0].arguments) == {"city": "Paris"}


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "send_email", "arguments": {}}',  # not an offered tool
        '<tool_call>{"name": "get_weather", "arguments": </tool_call>',  # broken JSON
        '{"city": "Paris"}',  # not a call
        'Sure: {"name": "get_weather", "arguments": {}} and more',  # prose around bare JSON
        "The weather is mild.",
    ],
)
def test_anything_else_stays_content_as_written(text):
    assert parse_tool_calls(text, NAMES) == (text, [])


def test_without_offered_tools_bare_json_is_content():
    text = '{"name": "get_weather", "arguments": {}}'
    assert parse_tool_calls(text) == (text, [])


@pytest.mark.parametrize(
    "text",
    [
        "Hello <b>there</b>, no call here. <tool_ is not a tag",
        'Checking.<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>',
        '  {"name": "get_weather", "arguments": {"city": "Oslo"}}',
        "Plain answer that ends in <tool",
    ],
)
def test_streaming_split_matches_the_whole_text_parse(text):
    whole = parse_tool_calls(text, NAMES)
    splitter = ToolCallSplitter(names=NAMES)
    shown = "".join(splitter.feed(ch) for ch in text)
    rest, calls = splitter.finish()
    assert "<tool_call>" not in shown and '"arguments"' not in shown
    assert (shown + rest).strip() == whole[0].strip()
    assert [(c.name, c.arguments) for c in calls] == [(c.name, c.arguments) for c in whole[1]]


def test_forced_call_prefix_is_part_of_the_turn():
    request = tool_request([WEATHER], {"type": "function", "function": {"name": "get_weather"}})
    splitter = ToolCallSplitter(request.prefix(), request.names())
    assert splitter.feed('{"city": "Lima"}}\n</tool_call>') == ""
    _, calls = splitter.finish()
    assert calls[0].name == "get_weather" and json.loads(calls[0].arguments) == {"city": "Lima"}


@pytest.mark.parametrize(
    ("tools", "choice", "message"),
    [
        ([{"type": "function"}], None, r"tools\[0\].function.name"),
        ([{"type": "retrieval"}], None, r"tools\[0\]: expected"),
        ([WEATHER], {"type": "function", "function": {"name": "nope"}}, "names 'nope'"),
        ([WEATHER], "sometimes", "tool_choice 'sometimes'"),
        (None, "required", "needs `tools`"),
        ([{"function": {"name": "f", "parameters": "x"}}], None, "must be a JSON Schema"),
    ],
)
def test_bad_tool_definitions_name_the_field(tools, choice, message):
    with pytest.raises(ValueError, match=message):
        tool_request(tools, choice)


def test_no_tools_or_choice_none_means_no_request():
    assert tool_request(None) is None and tool_request([WEATHER], "none") is None
    assert tool_request([WEATHER], "required").prefix() == "<tool_call>\n"


def test_templates_get_arguments_as_objects():
    msg = Message("assistant", "", tool_calls=[ToolCall("call_1", "get_weather", '{"a": 1}')])
    out = template_messages([msg, Message("tool", "sunny", tool_call_id="call_1")])
    assert out[0]["tool_calls"][0]["function"]["arguments"] == {"a": 1}
    assert out[1] == {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}
    assert msg.as_dict()["tool_calls"][0]["function"]["arguments"] == '{"a": 1}'  # wire: text


# ---- the real models on llama.cpp ----------------------------------------------------------


@pytest.fixture(scope="module")
def qwen():
    return llm.load("local:qwen2.5-coder-0.5b", context_size=2048)


def test_model_capabilities_come_from_their_templates(qwen, chat_model):
    assert qwen.supports_tools and not chat_model.supports_tools
    from hearth.llm.gguf_info import read_metadata

    assert template_supports_tools(read_metadata(qwen.path)["tokenizer.chat_template"])


def test_qwen_calls_a_tool_with_openai_shaped_arguments(qwen):
    ask = [Message("user", "What is the weather like in Paris right now?")]
    result = qwen.chat(ask, tools=[WEATHER], max_tokens=64)
    assert result.finish_reason == "tool_calls" and result.text == ""
    (call,) = result.tool_calls
    assert call.name == "get_weather" and "paris" in json.loads(call.arguments)["city"].lower()


def test_qwen_streams_a_call_without_leaking_it_as_text(qwen):
    events = list(
        qwen.stream_events(
            [Message("user", "What's the weather in Oslo?")], tools=[WEATHER], max_tokens=64
        )
    )
    text = "".join(e for e in events if isinstance(e, str))
    end = events[-1]
    assert isinstance(end, StreamEnd) and end.finish_reason == "tool_calls"
    assert '"arguments"' not in text and end.tool_calls[0].name == "get_weather"
    assert end.usage.completion_tokens > 0 and end.usage.prompt_tokens > 100


def test_qwen_answers_in_text_when_no_tool_fits(qwen):
    result = qwen.chat(
        [Message("user", "Reply with the single word: hello")], tools=[WEATHER], max_tokens=16
    )
    assert not result.tool_calls and "hello" in result.text.lower()


def test_a_named_tool_choice_forces_that_call(qwen):
    result = qwen.chat(
        [Message("user", "Tell me about Rome.")],
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=32,
    )
    assert [c.name for c in result.tool_calls] == ["get_weather"]
    assert "rome" in json.loads(result.tool_calls[0].arguments)["city"].lower()


def test_a_tool_result_goes_back_in_the_models_own_format(qwen):
    call = ToolCall("call_1", "get_weather", '{"city": "Paris"}')
    prompt = qwen.render(
        [
            Message("user", "Weather in Paris?"),
            Message("assistant", "", tool_calls=[call]),
            Message("tool", '{"sky": "light rain"}', tool_call_id="call_1", name="get_weather"),
        ],
        tools=[WEATHER],
    )
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}' in prompt
    assert '<tool_response>\n{"sky": "light rain"}\n</tool_response>' in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


def test_smollm2_reads_the_tools_from_a_system_message(chat_model):
    call = ToolCall("call_1", "get_weather", '{"city": "Paris"}')
    prompt = chat_model.render(
        [
            Message("user", "Weather in Paris?"),
            Message("assistant", "", tool_calls=[call]),
            Message("tool", '{"sky": "light rain"}', tool_call_id="call_1", name="get_weather"),
        ],
        tools=[WEATHER],
        tool_choice="required",
    )
    assert prompt.startswith("<|im_start|>system\n# Tools") and '"name": "get_weather"' in prompt
    assert '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": ' in (
        prompt
    )
    assert '<|im_start|>user\n<tool_response>\n{"sky": "light rain"}\n</tool_response>' in prompt
    assert prompt.endswith("<|im_start|>assistant\n<tool_call>\n")


@pytest.mark.parametrize(
    "choice", [None, "required", {"type": "function", "function": {"name": "get_weather"}}]
)
def test_smollm2_calls_validate_in_every_mode(chat_model, choice):
    import jsonschema

    ask = [Message("user", "What is the weather like in Oslo?")]
    result = chat_model.chat(ask, tools=[WEATHER], tool_choice=choice, max_tokens=48)
    if choice is not None:  # forced: exactly one call
        assert result.finish_reason == "tool_calls" and len(result.tool_calls) == 1
    for call in result.tool_calls:
        jsonschema.validate(json.loads(call.arguments), WEATHER["function"]["parameters"])


def test_a_model_that_can_neither_render_nor_mask_refuses_tools():
    class Plain:
        name = "plain"
        supports_tools = masks_tokens = False

    with pytest.raises(CapabilityError, match="plain cannot call tools"):
        request_for(Plain(), [WEATHER], None)
    assert request_for(Plain(), [WEATHER], "none") is None


# ---- the constraint ------------------------------------------------------------------------

CALL = '{"name": "get_weather", "arguments": {"city": "Oslo"}}'
BLOCK = f"<tool_call>\n{CALL}\n</tool_call>"
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}},
    },
}


@pytest.mark.parametrize("native", [True, False])
def test_the_constraint_of_each_choice(native):
    forced = tool_request(
        [WEATHER, TIME], {"type": "function", "function": {"name": "get_weather"}}, native=native
    )
    assert forced.constraint().accepts('{"city": "Oslo"}}\n</tool_call>')
    assert not forced.constraint().accepts('{"town": "Oslo"}}\n</tool_call>')
    required = tool_request([WEATHER, TIME], "required", native=native).constraint()
    assert required.accepts(BLOCK.removeprefix("<tool_call>\n"))
    assert required.accepts('{"name": "get_time", "arguments": {"tz": "UTC"}}\n</tool_call>')
    assert not required.accepts('{"name": "get_time", "arguments": {"city": "x"}}\n</tool_call>')
    assert not required.accepts('{"arguments": {}, "name": "get_time"}\n</tool_call>')  # name 1st
    # parallel calls only for a model trained on the format
    assert required.accepts(f"{CALL}\n</tool_call>\n{BLOCK}") == native
    auto = tool_request([WEATHER, TIME], native=native).constraint()
    for text in ["The weather is mild.", f"Let me check.\n{BLOCK}", CALL, f"```json\n{CALL}\n```"]:
        assert auto.accepts(text), text
    for text in ['<tool_call>\n{"name": "get_weather", "arguments": {}}\n</tool_call>', "{oops"]:
        assert not auto.accepts(text), text  # a call must fit its schema, even when bare
    assert auto.accepts(f"{BLOCK}\nDone.") == native


def test_arguments_from_composed_schemas_stay_allowed():
    """Extra arguments are closed off only where every allowed name is listed at the top: a
    name that comes in through anyOf / allOf stays writable."""
    either = {"type": "object", "properties": {"a": {"type": "string"}},
              "anyOf": [{"properties": {"b": {"type": "string"}}, "required": ["b"]},
                        {"required": ["a"]}]}  # fmt: skip
    tool = {"type": "function", "function": {"name": "f", "parameters": either}}
    forced = tool_request([tool], {"type": "function", "function": {"name": "f"}})
    assert forced.constraint().accepts('{"b": "x"}}\n</tool_call>')
    assert forced.constraint().accepts('{"a": "x"}}\n</tool_call>')


def test_an_unenforceable_parameters_schema_names_the_tool_and_keyword():
    bad = {
        "type": "function",
        "function": {
            "name": "f",
            "parameters": {"type": "object", "properties": {"x": {"uniqueItems": True}}},
        },
    }
    with pytest.raises(ConstraintError) as err:
        tool_request([WEATHER, bad], "required").constraint()
    assert "tools[1].function.parameters/properties/x/uniqueItems" in str(err.value)
    assert err.value.keyword == "uniqueItems"
    assert err.value.path == "/tools/1/function/parameters/properties/x/uniqueItems"


def test_calls_written_as_text_for_a_template_without_a_tool_format():
    call = ToolCall("call_1", "get_weather", '{"city": "Paris"}')
    history = [
        Message("system", "Be brief."),
        Message("assistant", "Checking.", tool_calls=[call]),
        Message("tool", "rain", tool_call_id="call_1"),
        Message("tool", "12 C", tool_call_id="call_1"),
    ]
    request = tool_request([WEATHER], native=False)
    out = tool_messages(history, request, native=False)
    assert out[0].role == "system" and out[0].content.startswith("Be brief.\n\n# Tools")
    assert out[1].content == (
        'Checking.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}'
        "\n</tool_call>"
    )
    assert [m.role for m in out] == ["system", "assistant", "user"]
    assert out[2].content.count("<tool_response>") == 2
    assert tool_messages(history, request, native=True) is history
