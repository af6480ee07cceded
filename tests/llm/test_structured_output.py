"""hearth.generate(model, prompt, schema=...): a validated pydantic instance from a model that
masks tokens; validate-and-retry, with the error fed back, for a model that cannot."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

import hearth
from hearth.errors import StructuredOutputError
from hearth.structured import compile

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
