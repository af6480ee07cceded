"""Constrained generation on llama.cpp (SmolLM2 GGUF): one request at a time and in the batcher,
greedy and sampled, concurrent with unconstrained streams; every output is valid."""

from __future__ import annotations

import json
import threading

import pytest

from hearth.llm.llamacpp_batch import BatchConfig, BatchedLlamaCpp
from hearth.structured import compile
from hearth.types import Message

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "city": {"type": "string", "maxLength": 40},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}
TEXT = "Maria Lopez is 34 years old and lives in Valencia, where she teaches chemistry."
ASK = [Message("user", f"Extract the person as JSON with name, age and city.\n\n{TEXT}")]


@pytest.fixture
def batched(chat_model):
    model = BatchedLlamaCpp(chat_model, BatchConfig(kv_cells=4096, slots=4))
    yield model
    model.close()


def check(result, constraint=PERSON):
    value = compile(constraint).parse(result.text)
    assert result.finish_reason == "stop", result
    return value


def test_one_at_a_time_output_fits_the_schema(chat_model):
    result = chat_model.chat(ASK, max_tokens=80, temperature=0, constraint=PERSON)
    value = check(result)
    assert value["age"] == 34 and "Maria" in value["name"]
    sampled = chat_model.chat(ASK, max_tokens=80, temperature=0.9, seed=5, constraint=PERSON)
    check(sampled)
    label = chat_model.chat(ASK, max_tokens=5, temperature=0, constraint=["yes", "no"])
    assert label.text in ("yes", "no")


def test_batched_constrained_and_free_streams_side_by_side(batched):
    alone = batched.chat(ASK, max_tokens=80, temperature=0, constraint=PERSON)
    free_alone = batched.chat(ASK, max_tokens=80, temperature=0)
    results: dict[str, object] = {}

    def run(name, **params):
        results[name] = batched.chat(ASK, **{"max_tokens": 80, **params})

    threads = [
        threading.Thread(target=run, args=("greedy",), kwargs={"temperature": 0,
                                                             "constraint": PERSON}),
        threading.Thread(target=run, args=("sampled",), kwargs={"temperature": 0.9, "seed": 3,
                                                              "constraint": PERSON}),
        threading.Thread(target=run, args=("date",), kwargs={"temperature": 0,
                                                           "constraint": r"\d{4}-\d{2}-\d{2}"}),
        threading.Thread(target=run, args=("free",), kwargs={"temperature": 0}),
    ]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["greedy"].text == alone.text  # the same tokens as alone in the batch
    check(results["greedy"])
    check(results["sampled"])
    assert compile(r"\d{4}-\d{2}-\d{2}").accepts(results["date"].text)
    assert results["free"].text == free_alone.text  # the masks touch only their own rows


def test_a_cut_short_constrained_output_says_length(batched):
    result = batched.chat(ASK, max_tokens=4, temperature=0, constraint=PERSON)
    assert result.finish_reason == "length"
    with pytest.raises(json.JSONDecodeError):
        json.loads(result.text)


def test_a_model_loaded_after_another_was_freed_still_constrains():
    """The mask's tokenizer calls into its model's vocabulary, so it lives and dies with the
    model (a cache keyed by file once handed a freed vocabulary to the next model: a crash)."""
    import gc

    from hearth import llm

    first = llm.load("local:smollm2", context_size=512)
    first.chat(ASK, max_tokens=8, temperature=0, constraint=PERSON)
    del first
    gc.collect()
    second = llm.load("local:smollm2", context_size=512)
    check(second.chat(ASK, max_tokens=80, temperature=0, constraint=PERSON))
