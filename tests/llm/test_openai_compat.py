"""The OpenAI-compatible backend against a real OpenAI-format HTTP server on 127.0.0.1 that
answers with the real local GGUF and fails on demand: chat, streams, usage, retries, timeouts,
clear errors, closing a stream early, tools (calls back in chat and streams, results sent in
OpenAI's shape) and vLLM's guided decoding for regexes, choices and grammars."""

from __future__ import annotations

import socket

import pytest

from hearth import llm
from hearth.errors import BackendError, ModelNotFoundError, RemoteModelNotFoundError
from hearth.llm.openai_compat import OpenAICompatModel
from hearth.llm.remote import estimate_prompt_tokens, estimate_text_tokens
from hearth.llm.retry import RetryPolicy
from hearth.types import ChatModel, Message, StreamEnd
from tests.llm.openai_wire import OpenAIWireServer, rate_limited, server_error
from tests.llm.wire_support import CLOCK, NAMED, TOOLS, WEATHER, Fault, valid_call

QUESTION = [
    Message("system", "You are a concise assistant."),
    Message("user", "Name three colours of the rainbow."),
]
FAST = RetryPolicy(max_retries=2, initial_delay=0.01, max_delay=0.05)
KEY_VARS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "VLLM_API_KEY", "VLLM_BASE_URL")


@pytest.fixture(scope="module")
def server(chat_model):
    with OpenAIWireServer(chat_model) as wire:
        yield wire


@pytest.fixture(autouse=True)
def clean(server, monkeypatch):
    server.reset()
    for var in KEY_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", server.api_key)


def remote(server, retry=FAST, **kw) -> OpenAICompatModel:
    return llm.load(f"openai:smollm2-test@{server.url}/v1", retry=retry, **kw)


def test_building_is_cheap_and_sends_nothing(server):
    model = remote(server)
    assert isinstance(model, ChatModel)
    assert model.name == f"openai:smollm2-test@{server.url}/v1"
    assert model.base_url == f"{server.url}/v1"
    assert model._client is None
    assert server.seen == []


def test_chat_returns_the_servers_generation_and_usage(server, chat_model):
    local = chat_model.chat(QUESTION, max_tokens=12, temperature=0)
    result = remote(server).chat(QUESTION, max_tokens=12, temperature=0)
    assert result.text == local.text and result.text.strip()
    assert result.finish_reason == "length"
    assert result.usage == local.usage
    sent = server.posts()[0]
    assert sent.headers["authorization"] == "Bearer test-key"
    # A custom URL is an OpenAI-compatible server: max_tokens, not max_completion_tokens.
    assert sent.body["max_tokens"] == 12 and "max_completion_tokens" not in sent.body
    assert sent.body["messages"] == [m.as_dict() for m in QUESTION]


def test_parameters_travel_and_unset_ones_stay_unsent(server):
    model = remote(server)
    model.chat(QUESTION, max_tokens=3)
    model.chat(QUESTION, max_tokens=3, temperature=0.5, top_p=0.9, stop="Red", seed=7)
    bare, full = (s.body for s in server.posts())
    assert not {"temperature", "top_p", "stop", "seed"} & set(bare)
    assert (full["temperature"], full["top_p"], full["stop"], full["seed"]) == (
        0.5,
        0.9,
        ["Red"],
        7,
    )


def test_stream_events_deltas_then_one_end_with_the_servers_usage(server, chat_model):
    local = chat_model.chat(QUESTION, max_tokens=16, temperature=0)
    model = remote(server)
    events = list(model.stream_events(QUESTION, max_tokens=16, temperature=0))
    *deltas, end = events
    assert len(deltas) > 3 and all(isinstance(d, str) for d in deltas)
    assert "".join(deltas) == local.text
    assert isinstance(end, StreamEnd)
    assert end.finish_reason == "length"
    assert end.usage == local.usage
    assert not model.last_usage_estimated
    assert server.posts()[0].body["stream_options"] == {"include_usage": True}
    assert "".join(model.stream(QUESTION, max_tokens=16, temperature=0)) == local.text
    assert model.last_finish_reason == "length"


def test_stop_string_ends_the_answer_before_it(server, chat_model):
    free = chat_model.chat(QUESTION, max_tokens=24, temperature=0).text
    stop = free.split()[2]
    model = remote(server)
    stopped = model.chat(QUESTION, max_tokens=24, temperature=0, stop=[stop])
    assert stopped.finish_reason == "stop"
    assert stop not in stopped.text and free.startswith(stopped.text)
    *deltas, end = model.stream_events(QUESTION, max_tokens=24, temperature=0, stop=stop)
    assert "".join(deltas) == stopped.text and end.finish_reason == "stop"


def test_without_usage_from_the_server_the_estimate_is_used_and_flagged(server):
    server.omit_usage = True
    model = remote(server)
    result = model.chat(QUESTION, max_tokens=8, temperature=0)
    assert model.last_usage_estimated
    assert result.usage.prompt_tokens == estimate_prompt_tokens(QUESTION)
    assert result.usage.completion_tokens == estimate_text_tokens(result.text) > 0
    *deltas, end = model.stream_events(QUESTION, max_tokens=8, temperature=0)
    assert end.usage.completion_tokens == estimate_text_tokens("".join(deltas))
    assert model.last_usage_estimated


def test_a_server_refusing_stream_options_still_streams(server, chat_model):
    server.refuse_stream_options = True
    local = chat_model.chat(QUESTION, max_tokens=8, temperature=0)
    model = remote(server)
    *deltas, end = model.stream_events(QUESTION, max_tokens=8, temperature=0)
    assert "".join(deltas) == local.text
    first, second = server.posts()
    assert "stream_options" in first.body and "stream_options" not in second.body
    assert model.last_usage_estimated and not model.stream_usage
    assert end.usage.prompt_tokens == estimate_prompt_tokens(QUESTION)


def test_429_and_5xx_are_retried_honouring_retry_after(server, chat_model):
    server.fail(rate_limited(retry_after=0.3), server_error(503))
    model = remote(server)
    result = model.chat(QUESTION, max_tokens=4, temperature=0)
    assert result.text == chat_model.chat(QUESTION, max_tokens=4, temperature=0).text
    posts = server.posts()
    assert len(posts) == 3 and model.last_retries == 2
    assert posts[1].at - posts[0].at >= 0.3  # waited as the server asked


def test_opening_a_stream_is_retried_too(server):
    server.fail(server_error(502))
    events = list(remote(server).stream_events(QUESTION, max_tokens=4, temperature=0))
    assert isinstance(events[-1], StreamEnd) and len(events) > 1
    assert len(server.posts()) == 2


def test_after_the_last_retry_the_error_names_status_and_url(server):
    server.fail(*[server_error(500)] * 3)
    with pytest.raises(BackendError) as err:
        remote(server).chat(QUESTION, max_tokens=4)
    assert err.value.status == 500
    assert err.value.url == f"{server.url}/v1/chat/completions"
    assert f"{server.url}/v1/chat/completions answered 500" in str(err.value)
    assert "after 2 retries" in str(err.value)
    assert len(server.posts()) == 3


def test_retries_are_configurable(server):
    server.fail(rate_limited(), rate_limited())
    with pytest.raises(BackendError, match="rate limited") as err:
        remote(server, max_retries=0).chat(QUESTION, max_tokens=4)
    assert err.value.status == 429
    assert len(server.posts()) == 1
    server.reset()
    server.fail(rate_limited(retry_after=3600))  # longer than max_retry_after: give up now
    with pytest.raises(BackendError, match="rate limited"):
        remote(server).chat(QUESTION, max_tokens=4)
    assert len(server.posts()) == 1


def test_client_errors_are_not_retried(server):
    server.fail(Fault(400, {"error": {"message": "messages: bad", "type": "invalid_request"}}))
    with pytest.raises(BackendError, match="answered 400: messages: bad") as err:
        remote(server).chat(QUESTION, max_tokens=4)
    assert err.value.status == 400
    assert len(server.posts()) == 1


def test_a_slow_server_times_out_after_the_retries(server):
    server.fail(Fault(200, {}, delay=2.0), Fault(200, {}, delay=2.0))
    model = remote(server, timeout=0.4, max_retries=1)
    with pytest.raises(BackendError, match=r"no answer from .* within 0.4s after 1 retry"):
        model.chat(QUESTION, max_tokens=4)
    assert len(server.posts()) == 2


def test_a_server_that_is_not_there_is_a_clear_error():
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    model = llm.load(f"vllm:some-model@http://127.0.0.1:{port}/v1", retry=FAST, max_retries=1)
    with pytest.raises(BackendError, match="cannot reach .* after 1 retry.* Is the server running"):
        model.chat(QUESTION, max_tokens=4)


def test_a_bad_key_names_the_variable_to_set_and_is_not_retried(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "wrong-key")
    with pytest.raises(BackendError, match="was refused: set OPENAI_API_KEY=") as err:
        remote(server).chat(QUESTION, max_tokens=4)
    assert err.value.status == 401
    assert len(server.posts()) == 1
    monkeypatch.delenv("OPENAI_API_KEY")  # a custom URL may need no key; this one does
    with pytest.raises(BackendError, match="was not set: set OPENAI_API_KEY="):
        remote(server).chat(QUESTION, max_tokens=4)


def test_presets_take_url_and_key_from_their_variables(server, monkeypatch, chat_model):
    monkeypatch.setenv("VLLM_BASE_URL", server.url)  # no /v1: the preset adds its path
    monkeypatch.setenv("VLLM_API_KEY", server.api_key)
    model = llm.load("vllm:smollm2-test", retry=FAST)
    assert model.base_url == f"{server.url}/v1"
    result = model.chat(QUESTION, max_tokens=4, temperature=0)
    assert result.text == chat_model.chat(QUESTION, max_tokens=4, temperature=0).text
    monkeypatch.delenv("VLLM_API_KEY")
    with pytest.raises(BackendError, match="set VLLM_API_KEY="):
        llm.load("vllm:smollm2-test", retry=FAST).chat(QUESTION, max_tokens=4)


def test_an_unknown_model_is_a_model_not_found_error(server):
    model = llm.load(f"openai:no-such-model@{server.url}/v1", retry=FAST)
    with pytest.raises(RemoteModelNotFoundError, match="no model 'no-such-model'") as err:
        model.chat(QUESTION, max_tokens=4)
    assert isinstance(err.value, ModelNotFoundError) and isinstance(err.value, BackendError)
    assert len(server.posts()) == 1


def test_a_wrong_base_path_says_to_check_the_url(server):
    model = llm.load(f"openai:smollm2-test@{server.url}/api", retry=FAST)
    with pytest.raises(BackendError, match="Is the base URL right") as err:
        model.chat(QUESTION, max_tokens=4)
    assert err.value.status == 404 and not isinstance(err.value, ModelNotFoundError)


def test_closing_stream_events_early_closes_the_http_stream(server, chat_model):
    server.delta_delay = 0.02
    events = remote(server).stream_events(QUESTION, max_tokens=200, temperature=0)
    assert isinstance(next(events), str)
    events.close()
    assert server.client_gone.wait(timeout=20), "the server kept streaming to nobody"
    assert server.streams_closed == 1
    assert chat_model.chat(QUESTION, max_tokens=3).usage.completion_tokens == 3


def test_bad_parameters_fail_before_any_request(server):
    model = remote(server)
    with pytest.raises(TypeError, match="top_k"):
        model.chat(QUESTION, top_k=3)
    with pytest.raises(TypeError, match="top_k"):
        model.stream_events(QUESTION, top_k=3)
    with pytest.raises(ValueError, match="temperature"):
        model.chat(QUESTION, temperature=5)
    assert server.seen == []


def test_count_tokens_is_an_estimate_close_to_a_real_tokenizer(server, chat_model):
    prose = [Message("user", open("docs/index.md", encoding="utf-8").read()[:3000])]
    estimate = remote(server).count_tokens(prose)
    real = chat_model.count_tokens(prose)
    assert 0.85 * real <= estimate <= 1.25 * real
    assert server.seen == []  # no request made


def test_json_schemas_are_forwarded_as_response_format(server):
    """hearth.generate on an OpenAI-compatible server sends the schema as the server's own
    structured-output request (the test server constrains its real model with it, as vLLM
    does) and validates what comes back; a regex is not sent as a schema."""
    from pydantic import BaseModel

    import hearth
    from hearth.errors import CapabilityError

    class Person(BaseModel):
        name: str
        age: int

    model = remote(server)
    prompt = "Maria Lopez is 34 years old. Give her name and age as JSON."
    person = hearth.generate(model, prompt, schema=Person, max_tokens=60)
    assert isinstance(person, Person) and person.age == 34
    sent = server.seen[-1].body["response_format"]
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["schema"] == Person.model_json_schema()
    assert server.seen[-1].body["messages"][0]["role"] == "system"  # the schema is shown too
    with pytest.raises(CapabilityError, match="regex"):
        model.chat([Message("user", "a date?")], constraint=r"\d{4}")


# -- tools and vLLM's guided decoding -------------------------------------------------------

ASK = [Message("user", "What is the weather in Paris?")]


def test_tools_travel_natively_and_the_servers_calls_come_back(server):
    model = remote(server)
    assert model.supports_tools
    result = model.chat(ASK, tools=TOOLS, tool_choice=NAMED, max_tokens=40, temperature=0)
    (call,) = result.tool_calls
    assert call.name == "get_weather" and valid_call(call, WEATHER)["city"]
    # the server ended a named call with "stop", as OpenAI and vLLM do: the calls decide
    assert result.finish_reason == "tool_calls" and result.text == ""
    sent = server.posts()[0].body
    assert [t["function"]["name"] for t in sent["tools"]] == ["get_weather", "get_time"]
    assert sent["tools"][0]["function"]["parameters"] == WEATHER
    assert sent["tool_choice"] == NAMED


def test_streamed_tool_call_deltas_are_gathered_into_the_end(server):
    model = remote(server)
    *deltas, end = model.stream_events(
        ASK, tools=TOOLS, tool_choice=NAMED, max_tokens=40, temperature=0
    )
    assert "".join(deltas) == "" and end.finish_reason == "tool_calls"
    (call,) = end.tool_calls
    assert call.name == "get_weather" and call.id.startswith("call_")
    valid_call(call, WEATHER)
    *_, picked = model.stream_events(
        ASK, tools=TOOLS, tool_choice="required", max_tokens=40, temperature=0
    )
    (call,) = picked.tool_calls  # "required": the server names the tool once it is written
    valid_call(call, {"get_weather": WEATHER, "get_time": CLOCK}[call.name])
    assert picked.finish_reason == "tool_calls"
    assert server.posts()[-1].body["tool_choice"] == "required"


def test_calls_and_results_go_back_in_openais_shape(server):
    model = remote(server)
    first = model.chat(ASK, tools=TOOLS, tool_choice=NAMED, max_tokens=40, temperature=0)
    (call,) = first.tool_calls
    convo = [
        *ASK,
        Message("assistant", "", tool_calls=[call]),
        Message("tool", "18 C and sunny", tool_call_id=call.id, name="get_weather"),
    ]
    answer = model.chat(convo, tools=TOOLS, tool_choice="none", max_tokens=12, temperature=0)
    assert answer.text.strip() and answer.tool_calls == []  # the server accepted the turns
    sent = server.posts()[-1].body
    assert sent["messages"][1:] == [
        {"role": "assistant", "content": None, "tool_calls": [call.as_openai()]},
        {"role": "tool", "tool_call_id": call.id, "content": "18 C and sunny"},
    ]
    assert sent["tool_choice"] == "none" and len(sent["tools"]) == 2


def test_bad_tool_requests_fail_before_any_request(server):
    model = remote(server)
    with pytest.raises(ValueError, match=r"tools\[0\].function.name"):
        model.chat(ASK, tools=[{"type": "function", "function": {}}])
    with pytest.raises(ValueError, match="not in tools"):
        model.chat(ASK, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "x"}})
    with pytest.raises(ValueError, match="needs `tools`"):
        model.chat(ASK, tool_choice="required")
    with pytest.raises(ValueError, match=r"messages\[1\]: a 'tool' message needs tool_call_id"):
        model.chat([*ASK, Message("tool", "18 C")], tools=TOOLS)
    assert server.seen == []


def test_a_vllm_server_gets_regexes_choices_and_grammars_as_guided_decoding(server, monkeypatch):
    """vllm: masks tokens server-side for every kind of constraint, so hearth.generate forwards
    them (the test server constrains its real model with them, as vLLM does) and validates."""
    import hearth
    from hearth.structured import gbnf, lark

    monkeypatch.setenv("VLLM_BASE_URL", server.url)
    monkeypatch.setenv("VLLM_API_KEY", server.api_key)
    model = llm.load("vllm:smollm2-test", retry=FAST)
    assert model.guided and model.masks_tokens
    assert hearth.generate(model, "Is water wet?", schema=["yes", "no"]) in ("yes", "no")
    sent = server.posts()[-1].body
    assert sent["structured_outputs"] == {"choice": ["yes", "no"]}
    assert sent["guided_choice"] == ["yes", "no"]  # vLLM before 0.12 reads these
    year = hearth.generate(model, "In which year did World War II end?", schema=r"\d{4}")
    assert len(year) == 4 and year.isdigit()
    assert server.posts()[-1].body["guided_regex"] == r"\d{4}"
    server.legacy_guided = True  # an older vLLM: only the guided_* fields count
    grammar = 'root ::= "yes" | "no"'
    assert hearth.generate(model, "Is water wet?", schema=gbnf(grammar)) in ("yes", "no")
    assert server.posts()[-1].body["guided_grammar"] == grammar  # sent as written
    assert hearth.generate(model, "Is fire cold?", schema=lark('start: "yes" | "no"')) in (
        "yes",
        "no",
    )
    sent = server.posts()[-1].body
    assert sent["structured_outputs"] == {"grammar": 'start: "yes" | "no"'}
    assert "response_format" not in sent


def test_guided_decoding_is_for_vllm_unless_asked_for(server):
    from hearth.errors import CapabilityError

    plain = remote(server)
    assert not plain.guided and not getattr(plain, "masks_tokens", False)
    with pytest.raises(CapabilityError, match="vLLM takes all kinds"):
        plain.chat(ASK, constraint=["yes", "no"])
    vllm_behind_openai = remote(server, guided=True)  # a vLLM reached as openai:MODEL@URL
    answer = vllm_behind_openai.chat(ASK, constraint=["sunny", "rainy"], max_tokens=4)
    assert answer.text in ("sunny", "rainy")
