"""Tool calls over /v1/chat/completions with the official `openai` client against a real server:
every tool_choice on SmolLM2 (whose template has no tool format), streamed call deltas, schema
errors in OpenAI's shape, a tool result sent back, and Qwen2.5-Coder's own tool format."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

CHAT_MODEL = "local:smollm2"
INSTRUCT_MODEL = "local:qwen2.5-coder-0.5b"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 40},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The current time in a time zone",
        "parameters": {
            "type": "object",
            "properties": {"timezone": {"type": "string", "maxLength": 40}},
            "required": ["timezone"],
        },
    },
}
TOOLS = [WEATHER, TIME]
PARAMETERS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
ASK = [{"role": "user", "content": "What is the weather like in Paris right now?"}]
FORCE_WEATHER = {"type": "function", "function": {"name": "get_weather"}}


def check_call(call) -> dict:
    """The call's arguments, parsed and validated against its tool's parameters."""
    assert call.type == "function" and call.id.startswith("call_")
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, PARAMETERS[call.function.name])
    return arguments


@pytest.mark.parametrize("choice", ["required", FORCE_WEATHER], ids=["required", "function"])
def test_a_forced_call_comes_back_in_openais_shape(client, choice):
    reply = client.chat.completions.create(
        model=CHAT_MODEL, messages=ASK, tools=TOOLS, tool_choice=choice, max_tokens=60
    )
    (first,) = reply.choices
    assert first.finish_reason == "tool_calls" and first.message.content is None
    (call,) = first.message.tool_calls
    arguments = check_call(call)
    if choice == FORCE_WEATHER:
        assert call.function.name == "get_weather" and "paris" in arguments["city"].lower()


def test_auto_gives_valid_calls_or_text(client):
    for messages in (ASK, [{"role": "user", "content": "Say hello to me."}]):
        reply = client.chat.completions.create(
            model=CHAT_MODEL, messages=messages, tools=TOOLS, max_tokens=60
        )
        message = reply.choices[0].message
        if message.tool_calls:
            assert reply.choices[0].finish_reason == "tool_calls"
            for call in message.tool_calls:
                check_call(call)
        else:
            assert message.content and reply.choices[0].finish_reason in ("stop", "length")


def test_tool_choice_none_is_a_plain_answer(client):
    reply = client.chat.completions.create(
        model=CHAT_MODEL, messages=ASK, tools=TOOLS, tool_choice="none", max_tokens=24
    )
    message = reply.choices[0].message
    assert message.tool_calls is None and message.content
    assert reply.choices[0].finish_reason in ("stop", "length")


@pytest.mark.parametrize("choice", ["required", FORCE_WEATHER], ids=["required", "function"])
def test_streamed_calls_are_openai_deltas(client, choice):
    stream = client.chat.completions.create(
        model=CHAT_MODEL, messages=ASK, tools=TOOLS, tool_choice=choice, max_tokens=60, stream=True
    )
    chunks = [c for c in stream if c.choices]
    pieces = [d for c in chunks for d in c.choices[0].delta.tool_calls or []]
    head = pieces[0]
    assert head.index == 0 and head.id.startswith("call_") and head.type == "function"
    assert head.function.name in PARAMETERS
    arguments = "".join(p.function.arguments or "" for p in pieces)
    jsonschema.validate(json.loads(arguments), PARAMETERS[head.function.name])
    assert len(pieces) > 2  # the arguments came in pieces after the head
    assert all(p.id is None for p in pieces[1:])
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert not "".join(c.choices[0].delta.content or "" for c in chunks)


def test_a_tool_result_goes_back_to_the_model(client):
    """The assistant's call and the tool's answer round-trip through the client's own types."""
    first = client.chat.completions.create(
        model=CHAT_MODEL, messages=ASK, tools=TOOLS, tool_choice=FORCE_WEATHER, max_tokens=60
    )
    message = first.choices[0].message
    call = message.tool_calls[0]
    history = [
        *ASK,
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "light rain", "c": 14}'},
    ]
    reply = client.chat.completions.create(
        model=CHAT_MODEL, messages=history, tools=TOOLS, tool_choice="none", max_tokens=40
    )
    assert reply.choices[0].message.content and reply.choices[0].message.tool_calls is None
    again = client.chat.completions.create(
        model=CHAT_MODEL, messages=history, tools=TOOLS, max_tokens=40
    )
    for call in again.choices[0].message.tool_calls or []:
        check_call(call)


def test_a_schema_that_cannot_be_enforced_is_a_400_naming_the_keyword(client):
    bad = {
        "type": "function",
        "function": {
            "name": "pick",
            "parameters": {
                "type": "object",
                "properties": {"tags": {"type": "array", "uniqueItems": True}},
            },
        },
    }
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model=CHAT_MODEL, messages=ASK, tools=[WEATHER, bad], max_tokens=8
        )
    body = err.value.body
    assert body["code"] == "invalid_schema" and body["type"] == "invalid_request_error"
    assert body["param"] == "tools[1].function.parameters.properties.tags.uniqueItems"
    assert "uniqueItems" in body["message"] and "tools[1].function.parameters" in body["message"]


@pytest.mark.parametrize(
    ("tools", "choice", "param"),
    [
        (TOOLS, {"type": "function", "function": {"name": "nope"}}, "tool_choice"),
        ([{"type": "function", "function": {}}], "auto", "tools"),
        (None, "required", "tool_choice"),
    ],
)
def test_bad_tool_requests_name_the_field(client, tools, choice, param):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model=CHAT_MODEL, messages=ASK, tools=tools or openai.NOT_GIVEN, tool_choice=choice
        )
    assert err.value.body["param"] == param


def test_bad_tool_messages_are_400s_naming_the_message(client):
    lost = [*ASK, {"role": "tool", "content": "14 degrees"}]  # which call does it answer?
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=CHAT_MODEL, messages=lost, max_tokens=8)
    assert err.value.body["param"] == "messages[1].tool_call_id"
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{city: Paris"}}  # fmt: skip
    broken = [*ASK, {"role": "assistant", "content": None, "tool_calls": [call]},
              {"role": "tool", "tool_call_id": "call_1", "content": "14 degrees"}]  # fmt: skip
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=CHAT_MODEL, messages=broken, max_tokens=8)
    assert err.value.body["param"] == "messages[1].tool_calls[0].function.arguments"


def test_tools_and_response_format_together_are_refused(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model=CHAT_MODEL,
            messages=ASK,
            tools=TOOLS,
            response_format={"type": "json_object"},
            max_tokens=8,
        )
    assert err.value.body["param"] == "response_format"


def test_qwen_calls_in_its_own_tool_format(client):
    from hearth import llm
    from hearth.errors import ModelNotFoundError

    try:
        llm.embedded_path("qwen2.5-coder-0.5b")
    except ModelNotFoundError as exc:
        pytest.skip(f"Qwen2.5-Coder GGUF not present: {exc}")
    reply = client.chat.completions.create(
        model=INSTRUCT_MODEL, messages=ASK, tools=TOOLS, max_tokens=60
    )
    (call,) = reply.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    assert "paris" in check_call(call)["city"].lower()
    assert reply.choices[0].finish_reason == "tool_calls"
