"""Token usage of a RAG generation survives a stream the Answerer stops early."""

from __future__ import annotations

from hearth.serve.generation import UsageRecorder
from hearth.types import Message

MESSAGES = [Message("user", "Count from one to fifty in words.")]


def test_usage_comes_from_the_stream_end_when_generation_finishes(chat_model):
    recorder = UsageRecorder(chat_model)
    text = "".join(recorder.stream(MESSAGES, max_tokens=6))
    full = chat_model.chat(MESSAGES, max_tokens=6)
    assert text == full.text
    assert recorder.usage.prompt_tokens == full.usage.prompt_tokens
    assert recorder.usage.completion_tokens == full.usage.completion_tokens == 6
    assert recorder.last_finish_reason == "length"


def test_a_stream_closed_early_still_reports_prompt_and_received_tokens(chat_model):
    recorder = UsageRecorder(chat_model)
    stream = recorder.stream(MESSAGES, max_tokens=100)
    received = [next(stream) for _ in range(3)]
    stream.close()  # what the Answerer does when it cuts a looping answer
    assert all(received)
    assert recorder.usage.prompt_tokens == chat_model.count_tokens(MESSAGES)
    assert recorder.usage.completion_tokens == 3
