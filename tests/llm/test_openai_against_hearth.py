"""The OpenAI-compatible backend against Hearth's own `hearth serve` (a real subprocess on
127.0.0.1): chat, streamed usage, stop strings, unknown models and bad keys."""

from __future__ import annotations

import pytest

from hearth import llm
from hearth.errors import BackendError, RemoteModelNotFoundError
from hearth.llm.retry import RetryPolicy
from hearth.types import Message, StreamEnd
from tests.serve_support import start_hearth_server

QUESTION = [
    Message("system", "You are a concise assistant."),
    Message("user", "Name three colours of the rainbow."),
]
NO_RETRY = RetryPolicy(max_retries=0)


@pytest.fixture(scope="module")
def hearth_server(tmp_path_factory):
    with start_hearth_server(tmp_path_factory.mktemp("served") / "index") as server:
        server.wait_ready()
        yield server


@pytest.fixture(autouse=True)
def point_at_it(hearth_server, monkeypatch):
    monkeypatch.setenv("HEARTH_BASE_URL", hearth_server.base_url)
    monkeypatch.setenv("HEARTH_API_KEY", hearth_server.api_key)


def test_chat_matches_the_same_model_run_in_process(chat_model):
    served = llm.load("hearth:local:smollm2", retry=NO_RETRY)
    assert served.base_url.endswith("/v1") and served.model == "local:smollm2"
    result = served.chat(QUESTION, max_tokens=12, temperature=0)
    local = chat_model.chat(QUESTION, max_tokens=12, temperature=0)
    assert result.text == local.text
    assert result.finish_reason == "length"
    assert result.usage == local.usage


def test_stream_events_carry_the_servers_usage(chat_model):
    served = llm.load("hearth:local:smollm2", retry=NO_RETRY)
    *deltas, end = served.stream_events(QUESTION, max_tokens=16, temperature=0)
    assert len(deltas) > 3
    assert isinstance(end, StreamEnd) and end.finish_reason == "length"
    assert "".join(deltas) == chat_model.chat(QUESTION, max_tokens=16, temperature=0).text
    assert end.usage.completion_tokens == 16 and end.usage.prompt_tokens > 0
    assert not served.last_usage_estimated  # stream_options.include_usage was honoured


def test_stop_strings_end_the_answer_before_them():
    served = llm.load("hearth:local:smollm2", retry=NO_RETRY)
    free = served.chat(QUESTION, max_tokens=24, temperature=0).text
    stop = free.split()[2]
    stopped = served.chat(QUESTION, max_tokens=24, temperature=0, stop=[stop])
    assert stopped.finish_reason == "stop"
    assert free.startswith(stopped.text) and stop not in stopped.text


def test_the_generic_openai_spec_reaches_it_too(hearth_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", hearth_server.api_key)
    served = llm.load(f"openai:local:smollm2@{hearth_server.base_url}/v1", retry=NO_RETRY)
    assert served.chat(QUESTION, max_tokens=3, temperature=0).usage.completion_tokens == 3


def test_an_unknown_model_is_a_clear_error():
    with pytest.raises(RemoteModelNotFoundError, match="no model 'gpt-nope'") as err:
        llm.load("hearth:gpt-nope", retry=NO_RETRY).chat(QUESTION, max_tokens=2)
    assert err.value.status == 404


def test_a_bad_key_names_the_variable_to_set(hearth_server, monkeypatch):
    monkeypatch.setenv("HEARTH_API_KEY", "wrong-key")
    with pytest.raises(BackendError, match="set HEARTH_API_KEY=") as err:
        llm.load("hearth:local:smollm2", retry=NO_RETRY).chat(QUESTION, max_tokens=2)
    assert err.value.status == 401
    monkeypatch.setenv("OPENAI_API_KEY", "wrong-key")
    spec = f"openai:local:smollm2@{hearth_server.base_url}/v1"
    with pytest.raises(BackendError, match="set OPENAI_API_KEY="):
        llm.load(spec, retry=NO_RETRY).stream_events(QUESTION, max_tokens=2).__next__()


def test_agent_calls_tools_natively_through_a_remote_backend():
    """hearth.agents on an OpenAI-compatible backend: OpenAI `tools` on the wire, the server's
    model (Qwen2.5-Coder, whose template has tool calls) answering with `tool_calls`."""
    from hearth.agents import run_agent

    served = llm.load("hearth:local:qwen2.5-coder-0.5b", retry=NO_RETRY)
    assert served.supports_tools
    result = run_agent(
        "Use the calculator to compute 1234 * 5678, then tell me the result.",
        model=served,
        tools=["calculator"],
        max_steps=3,
        max_tokens=128,
    )
    assert result.mode == "native"
    assert result.steps and result.steps[0].tool == "calculator"
    assert "7006652" in result.steps[0].output
