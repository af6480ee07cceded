"""The Anthropic backend against a real HTTP server on 127.0.0.1 speaking the Messages API wire
format (JSON and SSE events) and answering with the real local GGUF; faults on demand; tools
mapped to Anthropic's shapes and JSON Schema answers through its tool mode."""

from __future__ import annotations

import json
import logging

import pytest

from hearth import llm
from hearth.errors import BackendError, MissingKeyError, RemoteModelNotFoundError
from hearth.llm.anthropic_api import AnthropicModel, finish_reason
from hearth.llm.retry import RetryPolicy
from hearth.types import ChatModel, Message, StreamEnd
from tests.llm.anthropic_wire import AnthropicWireServer, api_error, overloaded, rate_limited
from tests.llm.wire_support import CLOCK, NAMED, WEATHER, Fault, valid_call
from tests.llm.wire_support import TOOLS as SHARED_TOOLS

QUESTION = [
    Message("system", "You are a concise assistant."),
    Message("user", "Name three colours of the rainbow."),
]
FAST = RetryPolicy(max_retries=2, initial_delay=0.01, max_delay=0.05)


@pytest.fixture(scope="module")
def server(chat_model):
    with AnthropicWireServer(chat_model) as wire:
        yield wire


@pytest.fixture(autouse=True)
def clean(server, monkeypatch):
    server.reset()
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", server.api_key)


def claude(server, retry=FAST, **kw) -> AnthropicModel:
    return llm.load(f"anthropic:claude-test-1@{server.url}", retry=retry, **kw)


def test_building_is_cheap_and_sends_nothing(server):
    model = claude(server)
    assert isinstance(model, ChatModel) and isinstance(model, AnthropicModel)
    assert model.url == f"{server.url}/v1/messages"
    assert model.context_size == 200_000  # the preset's window when none is given
    assert model._client is None and server.seen == []


def test_a_missing_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(MissingKeyError, match="set ANTHROPIC_API_KEY=") as err:
        llm.load("anthropic:claude-3-5-haiku-latest")
    assert err.value.env_var == "ANTHROPIC_API_KEY"


def test_chat_sends_the_system_prompt_top_level_and_returns_real_text(server, chat_model):
    local = chat_model.chat(QUESTION, max_tokens=12, temperature=0)
    result = claude(server).chat(QUESTION, max_tokens=12, temperature=0)
    assert result.text == local.text and result.text.strip()
    assert result.finish_reason == "length"  # max_tokens
    assert result.usage == local.usage
    sent = server.posts()[0]
    assert sent.body["system"] == "You are a concise assistant."
    assert sent.body["messages"] == [{"role": "user", "content": QUESTION[1].content}]
    key = sent.headers.get("x-api-key") or sent.headers["authorization"].removeprefix("Bearer ")
    assert key == "test-key" and sent.headers["anthropic-version"]


def test_the_base_url_also_comes_from_anthropic_base_url(server, monkeypatch, chat_model):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", f"{server.url}/v1")  # with /v1 works too
    model = llm.load("anthropic:claude-test-1", retry=FAST)
    assert model.url == f"{server.url}/v1/messages"
    local = chat_model.chat(QUESTION, max_tokens=4, temperature=0)
    assert model.chat(QUESTION, max_tokens=4, temperature=0).text == local.text


def test_stream_events_follow_the_sse_events_to_one_end(server, chat_model):
    local = chat_model.chat(QUESTION, max_tokens=16, temperature=0)
    model = claude(server)
    *deltas, end = model.stream_events(QUESTION, max_tokens=16, temperature=0)
    assert len(deltas) > 3 and all(isinstance(d, str) for d in deltas)
    assert "".join(deltas) == local.text
    assert isinstance(end, StreamEnd)
    assert end.finish_reason == "length"
    assert end.usage == local.usage  # input from message_start, output from message_delta
    assert not model.last_usage_estimated
    assert server.posts()[0].body["stream"] is True


def test_stop_sequences_end_with_stop(server, chat_model):
    free = chat_model.chat(QUESTION, max_tokens=24, temperature=0).text
    stop = free.split()[2]
    model = claude(server)
    result = model.chat(QUESTION, max_tokens=24, temperature=0, stop=[stop])
    assert result.finish_reason == "stop"
    assert free.startswith(result.text) and stop not in result.text
    assert server.posts()[0].body["stop_sequences"] == [stop]
    *deltas, end = model.stream_events(QUESTION, max_tokens=24, temperature=0, stop=stop)
    assert "".join(deltas) == result.text and end.finish_reason == "stop"


def test_stop_reasons_map_onto_hearths_two():
    assert finish_reason("end_turn") == "stop"
    assert finish_reason("stop_sequence") == "stop"
    assert finish_reason("max_tokens") == "length"


def test_consecutive_turns_of_one_role_are_merged(server):
    convo = [
        Message("user", "Hello."),
        Message("user", "Name a colour."),
        Message("system", "Be brief."),
    ]
    claude(server).chat(convo, max_tokens=2, temperature=0)
    sent = server.posts()[0].body
    assert sent["messages"] == [{"role": "user", "content": "Hello.\n\nName a colour."}]
    assert sent["system"] == "Be brief."


def test_sampling_is_sent_only_when_given_and_seed_is_ignored_with_a_warning(server, caplog):
    model = claude(server)
    model.chat(QUESTION, max_tokens=2)
    with caplog.at_level(logging.WARNING, logger="hearth.llm.anthropic_api"):
        model.chat(QUESTION, max_tokens=2, temperature=0.2, top_p=0.9, seed=3)
    bare, full = (s.body for s in server.posts())
    assert not {"temperature", "top_p", "seed"} & set(bare)
    assert (full["temperature"], full["top_p"]) == (0.2, 0.9) and "seed" not in full
    assert "has no seed" in caplog.text


def test_429_and_529_are_retried_honouring_retry_after(server, chat_model):
    server.fail(rate_limited(retry_after=0.3), overloaded())
    model = claude(server)
    result = model.chat(QUESTION, max_tokens=4, temperature=0)
    assert result.text == chat_model.chat(QUESTION, max_tokens=4, temperature=0).text
    posts = server.posts()
    assert len(posts) == 3 and model.last_retries == 2
    assert posts[1].at - posts[0].at >= 0.3


def test_opening_a_stream_is_retried(server):
    server.fail(overloaded(), api_error())
    events = list(claude(server).stream_events(QUESTION, max_tokens=4, temperature=0))
    assert isinstance(events[-1], StreamEnd) and len(events) > 1
    assert len(server.posts()) == 3


def test_errors_after_the_retries_name_status_and_url(server):
    server.fail(*[overloaded()] * 2)
    with pytest.raises(BackendError, match="overloaded_error: Overloaded after 1 retry") as err:
        claude(server, max_retries=1).chat(QUESTION, max_tokens=4)
    assert err.value.status == 529 and err.value.url == f"{server.url}/v1/messages"
    assert len(server.posts()) == 2
    server.reset()
    server.fail(*[rate_limited()] * 3)
    with pytest.raises(BackendError, match="rate limited after 2 retries") as err:
        claude(server).chat(QUESTION, max_tokens=4)
    assert err.value.status == 429 and len(server.posts()) == 3


def test_a_bad_key_names_the_variable_and_is_not_retried(server, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-wrong")
    with pytest.raises(BackendError, match="authentication_error.*set ANTHROPIC_API_KEY=") as err:
        claude(server).chat(QUESTION, max_tokens=4)
    assert err.value.status == 401 and len(server.posts()) == 1


def test_an_unknown_model_is_a_clear_error(server):
    model = llm.load(f"anthropic:claude-nope@{server.url}", retry=FAST)
    with pytest.raises(RemoteModelNotFoundError, match="no model 'claude-nope'"):
        model.chat(QUESTION, max_tokens=4)
    assert len(server.posts()) == 1


def test_a_slow_server_times_out(server):
    server.fail(Fault(200, {}, delay=2.0))
    with pytest.raises(BackendError, match=r"no answer from .* within 0.4s"):
        claude(server, timeout=0.4, max_retries=0).chat(QUESTION, max_tokens=4)


def test_closing_stream_events_early_closes_the_http_stream(server, chat_model):
    server.delta_delay = 0.02
    events = claude(server).stream_events(QUESTION, max_tokens=200, temperature=0)
    assert isinstance(next(events), str)
    events.close()
    assert server.client_gone.wait(timeout=20), "the server kept streaming to nobody"
    assert server.streams_closed == 1
    assert chat_model.chat(QUESTION, max_tokens=3).usage.completion_tokens == 3


def test_bad_parameters_fail_before_any_request(server):
    model = claude(server)
    with pytest.raises(TypeError, match="top_k"):
        model.stream_events(QUESTION, top_k=3)
    with pytest.raises(ValueError, match="max_tokens"):
        model.chat(QUESTION, max_tokens=0)
    assert server.seen == []


# -- tools and JSON answers through tool mode -------------------------------------------------

TOOLS = [
    SHARED_TOOLS[0],
    {"type": "function", "function": {"name": "get_time", "parameters": CLOCK}},
]
ASK = [Message("user", "What is the weather in Paris?")]
PERSON = "Maria Lopez is 34 years old. Give her name and age as JSON."


def test_a_json_schema_is_sent_as_tool_mode_and_the_input_is_the_answer(server):
    from pydantic import BaseModel

    import hearth

    class Person(BaseModel):
        name: str
        age: int

    model = claude(server)
    assert model.supports_json_schema and model.supports_tools
    person = hearth.generate(model, PERSON, schema=Person, max_tokens=60)
    assert isinstance(person, Person) and person.age == 34
    sent = server.posts()[-1].body
    assert sent["tools"] == [
        {
            "name": "answer",
            "description": "Give your answer: call this with the answer as the input.",
            "input_schema": Person.model_json_schema(),
        }
    ]
    assert sent["tool_choice"] == {"type": "tool", "name": "answer"}
    result = model.chat([Message("user", PERSON)], constraint=Person, max_tokens=60)
    assert Person.model_validate_json(result.text) == person  # the tool input, as JSON text
    assert result.finish_reason == "stop" and result.tool_calls == []  # no call of the caller's
    *deltas, end = model.stream_events([Message("user", PERSON)], constraint=Person, max_tokens=60)
    assert len(deltas) > 3  # input_json_delta pieces stream as the answer's text
    assert Person.model_validate_json("".join(deltas)) == person
    assert end.finish_reason == "stop" and end.tool_calls == []


def test_a_schema_that_is_no_object_is_wrapped_and_unwrapped(server):
    yes_no = {"type": "string", "enum": ["yes", "no"]}
    model = claude(server)
    result = model.chat([Message("user", "Is water wet?")], constraint=yes_no, max_tokens=12)
    assert result.text in ('"yes"', '"no"')
    schema = server.posts()[-1].body["tools"][0]["input_schema"]
    assert schema == {
        "type": "object",
        "properties": {"value": yes_no},
        "required": ["value"],
        "additionalProperties": False,
    }
    *deltas, end = model.stream_events(
        [Message("user", "Is water wet?")], constraint=yes_no, max_tokens=12
    )
    assert deltas == [result.text] and end.finish_reason == "stop"  # whole, once unwrapped


def test_openai_shaped_tools_map_onto_anthropics_and_calls_come_back(server):
    model = claude(server)
    result = model.chat(ASK, tools=TOOLS, tool_choice=NAMED, max_tokens=40, temperature=0)
    (call,) = result.tool_calls
    assert call.name == "get_weather" and call.id.startswith("toolu_")
    assert valid_call(call, WEATHER)["city"]
    assert result.finish_reason == "tool_calls"
    sent = server.posts()[-1].body
    assert sent["tools"] == [
        {
            "name": "get_weather",
            "input_schema": WEATHER,
            "description": "Current weather in a city",
        },
        {"name": "get_time", "input_schema": CLOCK},
    ]
    assert sent["tool_choice"] == {"type": "tool", "name": "get_weather"}
    picked = model.chat(ASK, tools=TOOLS, tool_choice="required", max_tokens=40, temperature=0)
    (call,) = picked.tool_calls
    valid_call(call, {"get_weather": WEATHER, "get_time": CLOCK}[call.name])
    assert server.posts()[-1].body["tool_choice"] == {"type": "any"}
    model.chat(ASK, tools=TOOLS, tool_choice="auto", max_tokens=2)
    assert server.posts()[-1].body["tool_choice"] == {"type": "auto"}


def test_streamed_tool_use_blocks_gather_their_input_json_deltas(server):
    model = claude(server)
    *deltas, end = model.stream_events(
        ASK, tools=TOOLS, tool_choice=NAMED, max_tokens=40, temperature=0
    )
    assert deltas == [] and end.finish_reason == "tool_calls"
    (call,) = end.tool_calls
    assert call.name == "get_weather" and valid_call(call, WEATHER)["city"]
    *_, picked = model.stream_events(
        ASK, tools=TOOLS, tool_choice="required", max_tokens=40, temperature=0
    )
    (call,) = picked.tool_calls
    valid_call(call, {"get_weather": WEATHER, "get_time": CLOCK}[call.name])


def test_calls_and_results_go_back_as_tool_use_and_tool_result_blocks(server):
    model = claude(server)
    (call,) = model.chat(ASK, tools=TOOLS, tool_choice=NAMED, max_tokens=40).tool_calls
    convo = [
        *ASK,
        Message("assistant", "Let me check.", tool_calls=[call]),
        Message("tool", "18 C and sunny", tool_call_id=call.id),
        Message("user", "Answer in one line."),
    ]
    answer = model.chat(convo, tools=TOOLS, tool_choice="none", max_tokens=8, temperature=0)
    assert answer.text.strip() and answer.tool_calls == []  # the server accepted the pairing
    sent = server.posts()[-1].body
    assert sent["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": call.id,
                    "name": call.name,
                    "input": json.loads(call.arguments),
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": call.id, "content": "18 C and sunny"},
                {"type": "text", "text": "Answer in one line."},
            ],
        },
    ]
    assert sent["tool_choice"] == {"type": "none"}


def test_what_tool_mode_cannot_carry_is_refused_before_any_request(server):
    from hearth.errors import CapabilityError

    model = claude(server)
    with pytest.raises(CapabilityError, match="not a regex"):
        model.chat(ASK, constraint=r"\d{4}")
    with pytest.raises(CapabilityError, match="cannot be combined with other tools"):
        model.chat(ASK, constraint=WEATHER, tools=TOOLS)
    with pytest.raises(ValueError, match="needs tool_call_id"):
        model.chat([*ASK, Message("tool", "18 C")])
    assert server.seen == []
