"""hearth.generate(model, prompt, schema=...): a validated pydantic instance from a model that
masks tokens; validate-and-retry, with the error fed back, for a model that cannot; remote
backends through their own structured modes (Anthropic's tool mode, vLLM's guided decoding),
against the wire-format test servers answering with the real GGUF."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

import hearth
from hearth import llm
from hearth.errors import StructuredOutputError
from hearth.structured import compile
from tests.llm.anthropic_wire import AnthropicWireServer
from tests.llm.openai_wire import OpenAIWireServer

PROMPT = "Maria Lopez is 34 years old. Give her name and age as JSON."


class Person(BaseModel):
    name: str = Field(max_length=40)
    age: int = Field(ge=0, le=150)


class NoMasks:
    """The real model seen as a backend without a native constrained mode. `first` replaces
    its first answer (a backend that answered badly once); later calls are constrained, so
    the retry's outcome is known."""

    supports_json_schema = False

    def __init__(self, inner, first: str | None = None) -> None:
        self.inner, self.first, self.calls = inner, first, []
        self.name = inner.name

    def chat(self, messages, **params):
        self.calls.append(list(messages))
        reply = self.inner.chat(messages, constraint=Person, **params)
        if self.first is not None and len(self.calls) == 1:
            reply.text = self.first
        return reply


def test_generate_returns_a_validated_instance(chat_model):
    person = hearth.generate(chat_model, PROMPT, schema=Person, max_tokens=60)
    assert isinstance(person, Person) and person.age == 34
    assert hearth.generate(chat_model, "Is water wet?", schema=["yes", "no"]) in ("yes", "no")


def test_an_invalid_answer_is_sent_back_with_its_error(chat_model):
    model = NoMasks(chat_model, first='```json\n{"name": "Maria", "age": -4}\n```')
    person = hearth.generate(model, PROMPT, schema=Person, max_tokens=60)
    assert isinstance(person, Person)
    assert len(model.calls) == 2
    first_try = model.calls[0]
    assert first_try[0].role == "system" and '"age"' in first_try[0].content  # schema shown
    fed_back = model.calls[1][-1]
    assert fed_back.role == "user" and "not valid" in fed_back.content
    assert "greater than or equal to 0" in fed_back.content  # the validation error itself


def test_the_retry_budget_ends_in_a_clear_error(chat_model):
    class AlwaysWrong(NoMasks):
        def chat(self, messages, **params):
            reply = super().chat(messages, **params)
            reply.text = "no JSON here"
            return reply

    model = AlwaysWrong(chat_model)
    with pytest.raises(StructuredOutputError) as caught:
        hearth.generate(model, PROMPT, schema=Person, max_tokens=30, retries=1)
    assert caught.value.attempts == 2 and len(model.calls) == 2
    assert "no valid answer in 2 tries" in str(caught.value)
    assert compile(Person).kind == "json"


def test_an_answer_cut_at_max_tokens_is_asked_afresh_sampled(chat_model):
    class Recorder:
        masks_tokens = True

        def __init__(self):
            self.name, self.calls = chat_model.name, []

        def chat(self, messages, **params):
            self.calls.append((list(messages), params))
            return chat_model.chat(messages, **params)

    model = Recorder()  # a story too long for 12 tokens: every greedy try is cut off
    long = {"type": "object", "properties": {"story": {"type": "string", "minLength": 200}},
            "required": ["story"]}  # fmt: skip
    with pytest.raises(StructuredOutputError) as caught:
        hearth.generate(model, "Tell a story.", schema=long, max_tokens=12, retries=2)
    assert "cut off at max_tokens" in str(caught.value)
    (first, p1), (second, p2), (third, p3) = model.calls
    assert p1["temperature"] == 0.0  # greedy first, then sampled with a new seed each time
    assert p2["temperature"] > 0 and p3["temperature"] > 0 and p2["seed"] != p3["seed"]
    assert first == second == third  # the loop it was cut in is not shown back to it


@pytest.fixture(scope="module")
def claude(chat_model):
    with AnthropicWireServer(chat_model) as wire:
        mp = pytest.MonkeyPatch()
        mp.setenv("ANTHROPIC_API_KEY", wire.api_key)
        yield wire, llm.load(f"anthropic:claude-test-1@{wire.url}")
        mp.undo()


@pytest.fixture(scope="module")
def openai_server(chat_model):
    with OpenAIWireServer(chat_model) as wire:
        yield wire


def test_generate_on_anthropic_answers_through_tool_mode(claude):
    wire, model = claude
    person = hearth.generate(model, PROMPT, schema=Person, max_tokens=60)
    assert isinstance(person, Person) and person.age == 34
    sent = wire.posts()[-1].body
    assert sent["tool_choice"] == {"type": "tool", "name": "answer"}
    assert sent["tools"][0]["input_schema"] == Person.model_json_schema()
    # a schema that is no object travels wrapped as {"value": ...} and comes back unwrapped
    assert hearth.generate(model, "Is water wet?", schema={"enum": ["yes", "no"]}) in ("yes", "no")


def test_generate_on_vllm_forwards_every_kind_of_constraint(openai_server, monkeypatch):
    monkeypatch.setenv("VLLM_API_KEY", openai_server.api_key)
    model = llm.load(f"vllm:smollm2-test@{openai_server.url}/v1")
    person = hearth.generate(model, PROMPT, schema=Person, max_tokens=60)
    assert isinstance(person, Person) and person.age == 34
    assert openai_server.posts()[-1].body["response_format"]["type"] == "json_schema"
    year = hearth.generate(model, "In which year did World War II end?", schema=r"19\d\d")
    assert compile(r"19\d\d").accepts(year)
    assert openai_server.posts()[-1].body["structured_outputs"] == {"regex": r"19\d\d"}


def test_generate_on_other_openai_servers_shows_the_pattern_and_validates(
    openai_server, monkeypatch
):
    """A server without guided decoding gets no regex fields: the pattern is in the prompt and
    the answer is checked (valid, or a StructuredOutputError after the retries)."""
    monkeypatch.setenv("OPENAI_API_KEY", openai_server.api_key)
    model = llm.load(f"openai:smollm2-test@{openai_server.url}/v1")
    openai_server.reset()
    try:
        answer = hearth.generate(model, "Is water wet?", schema=["yes", "no"], max_tokens=8)
        assert answer in ("yes", "no")
    except StructuredOutputError as exc:
        assert exc.attempts == 3
    for seen in openai_server.posts():
        assert not {"guided_choice", "structured_outputs", "response_format"} & set(seen.body)
        assert "matching this choice" in seen.body["messages"][0]["content"]
