"""The llama.cpp backend on the real SmolLM2-135M GGUF: template, tokens, generation, errors."""

from __future__ import annotations

import os

import pytest

from hearth.errors import ContextWindowError
from hearth.llm import smollm2_path
from hearth.llm.llamacpp import LlamaCppModel
from hearth.types import ChatModel, ChatResult, Message, StreamEnd

QUESTION = [
    Message("system", "You are a concise assistant."),
    Message("user", "Name three colours of the rainbow."),
]


def test_implements_the_chat_model_protocol(chat_model):
    assert isinstance(chat_model, ChatModel)
    assert chat_model.name == "local:smollm2"
    assert chat_model.context_size == 2048
    assert chat_model.can_stream


def test_prompt_uses_the_ggufs_own_chat_template(chat_model):
    prompt = chat_model.render(QUESTION)
    assert prompt == (
        "<|im_start|>system\nYou are a concise assistant.<|im_end|>\n"
        "<|im_start|>user\nName three colours of the rainbow.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    # SmolLM2's template (unlike plain ChatML) adds its own system prompt when none is given:
    # proof the template comes from the GGUF metadata.
    bare = chat_model.render([Message("user", "hi")])
    assert bare.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")


def test_count_tokens_is_the_templated_prompt_the_model_reads(chat_model):
    result = chat_model.chat(QUESTION, max_tokens=4)
    assert chat_model.count_tokens(QUESTION) == result.usage.prompt_tokens
    longer = [*QUESTION[:1], Message("user", QUESTION[1].content + " Then name three more.")]
    assert chat_model.count_tokens(longer) > chat_model.count_tokens(QUESTION)


def test_chat_reports_usage_and_length_finish(chat_model):
    result = chat_model.chat(QUESTION, max_tokens=5, temperature=0)
    assert isinstance(result, ChatResult)
    assert result.text.strip()
    assert result.model == "local:smollm2"
    assert result.finish_reason == "length"
    assert result.usage.completion_tokens == 5
    assert result.usage.total_tokens == result.usage.prompt_tokens + 5


def test_stream_yields_the_same_text_as_chat_at_temperature_zero(chat_model):
    full = chat_model.chat(QUESTION, max_tokens=24, temperature=0, seed=1)
    deltas = list(chat_model.stream(QUESTION, max_tokens=24, temperature=0, seed=1))
    assert len(deltas) > 3
    assert all(isinstance(d, str) for d in deltas)
    assert "".join(deltas) == full.text
    assert chat_model.last_finish_reason == full.finish_reason


def test_stream_events_end_with_finish_reason_and_usage(chat_model):
    full = chat_model.chat(QUESTION, max_tokens=16, temperature=0, seed=1)
    events = list(chat_model.stream_events(QUESTION, max_tokens=16, temperature=0, seed=1))
    *deltas, end = events
    assert isinstance(end, StreamEnd)
    assert all(isinstance(d, str) for d in deltas)
    assert "".join(deltas) == full.text
    assert end.finish_reason == full.finish_reason == "length"
    assert end.usage.prompt_tokens == full.usage.prompt_tokens
    assert end.usage.completion_tokens == full.usage.completion_tokens


def test_closing_stream_events_early_frees_the_model_for_the_next_call(chat_model):
    events = chat_model.stream_events(QUESTION, max_tokens=200, temperature=0)
    assert isinstance(next(events), str)
    events.close()  # a client that went away
    assert chat_model.chat(QUESTION, max_tokens=3).usage.completion_tokens == 3


def test_stop_string_ends_generation_before_it(chat_model):
    free = chat_model.chat(QUESTION, max_tokens=24, temperature=0).text
    words = free.split()
    assert len(words) >= 3, free
    stop = words[2]
    stopped = chat_model.chat(QUESTION, max_tokens=24, temperature=0, stop=[stop])
    assert stopped.finish_reason == "stop"
    assert stop not in stopped.text
    assert free.startswith(stopped.text)
    streamed = "".join(chat_model.stream(QUESTION, max_tokens=24, temperature=0, stop=stop))
    assert streamed == stopped.text


def test_unknown_or_invalid_parameters_are_errors(chat_model):
    with pytest.raises(TypeError, match="top_k"):
        chat_model.chat(QUESTION, top_k=3)
    with pytest.raises(ValueError, match="temperature"):
        chat_model.chat(QUESTION, temperature=-1)


def test_prompt_longer_than_the_context_is_a_clear_error():
    small = LlamaCppModel(smollm2_path(), context_size=64)
    long = [Message("user", "word " * 200)]
    assert small.count_tokens(long) > 64
    with pytest.raises(ContextWindowError, match="context of 64"):
        small.chat(long, max_tokens=4)


def test_building_the_model_is_cheap_and_loads_lazily():
    model = LlamaCppModel(smollm2_path(), context_size=256)
    assert model._llama is None
    assert model.warm_up() is model
    assert model._llama is not None


def test_thread_count_small_model_one_thread_else_all_cores(tmp_path, monkeypatch):
    from hearth.llm import smollm2_path
    from hearth.llm.llamacpp import GGUF_MAGIC, LlamaCppModel, default_threads

    monkeypatch.delenv("HEARTH_LLAMA_THREADS", raising=False)
    assert default_threads(smollm2_path()) == 1  # 94 MiB: barriers cost more than a thread
    big = tmp_path / "big.gguf"
    with big.open("wb") as f:  # sparse: 400 MiB on paper, a few bytes on disk
        f.write(GGUF_MAGIC)
        f.truncate(400 * 2**20)
    assert default_threads(big) == len(os.sched_getaffinity(0))
    monkeypatch.setenv("HEARTH_LLAMA_THREADS", "3")
    assert default_threads(big) == 3
    assert LlamaCppModel(smollm2_path()).n_threads == 3
    assert LlamaCppModel(smollm2_path(), n_threads=2).n_threads == 2
    assert LlamaCppModel(smollm2_path()).n_threads_batch == max(3, len(os.sched_getaffinity(0)))
    monkeypatch.setenv("HEARTH_LLAMA_THREADS", "many")
    with pytest.raises(ValueError, match="HEARTH_LLAMA_THREADS must be a whole number"):
        default_threads(big)
