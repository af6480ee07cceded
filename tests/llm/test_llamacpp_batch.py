"""Continuous batching on llama.cpp, on the real SmolLM2 GGUF: concurrent streams sharing steps,
prompt lookup that leaves greedy output unchanged, the prefix cache, cancellation, a full KV
pool, stop strings and bad requests."""

from __future__ import annotations

import threading

import pytest

from hearth.errors import ContextWindowError
from hearth.llm.llamacpp_batch import (
    BatchConfig,
    BatchedLlamaCpp,
    StepCost,
    default_kv_cells,
    kv_bytes_per_token,
)
from hearth.types import Message, StreamEnd

PASSAGE = (
    "The Hearth engine stores its vectors in a SQLite file named index.sqlite3 inside the "
    ".hearth folder. Each chunk keeps its source path, its heading and its character span."
)
COPY_TASK = [
    Message("system", "Answer by quoting the passage word for word."),
    Message("user", f"Passage: {PASSAGE}\nQuote the passage exactly."),
]
STORIES = [
    "Write a long story about a dragon who learns to bake bread.",
    "Explain step by step how to cook a pot of rice.",
    "Write a long poem about the sea.",
    "What is 2+2?",
    "Describe how to build a small wooden birdhouse.",
    "Write a long letter to a friend about your summer holidays.",
]


def ask(model, text: str | list[Message], **params):
    messages = [Message("user", text)] if isinstance(text, str) else text
    return model.chat(messages, **{"max_tokens": 40, "temperature": 0, **params})


@pytest.fixture
def batched(chat_model):
    models: list[BatchedLlamaCpp] = []

    def make(**config) -> BatchedLlamaCpp:
        model = BatchedLlamaCpp(chat_model, BatchConfig(**{"kv_cells": 4096, **config}))
        models.append(model)
        return model

    yield make
    for model in models:
        model.close()


def test_concurrent_streams_share_decode_steps(batched):
    """Six requests at once share steps, and each gets the very tokens it gets alone: every
    slot has its own KV stream, flash attention reads each row on its own, and steps stay on
    ggml's row-by-row kernels."""
    alone = batched(slots=1, prefix_cache=False)
    expected = {i: ask(alone, s, max_tokens=24 + 4 * i).text for i, s in enumerate(STORIES)}
    model = batched(slots=6)
    results: dict[int, object] = {}

    def run(i: int) -> None:
        results[i] = ask(model, STORIES[i], max_tokens=24 + 4 * i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(STORIES))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = model.batch_stats()
    assert stats["steps"] < stats["sequences_in_steps"]  # steps carried several sequences
    for i, result in results.items():
        assert result.text.strip()
        assert result.usage.completion_tokens <= 24 + 4 * i
        assert result.usage.prompt_tokens == model.count_tokens([Message("user", STORIES[i])])
        if result.finish_reason == "length":
            assert result.usage.completion_tokens == 24 + 4 * i
    assert stats["running"] == 0 and stats["waiting"] == 0
    assert {i: r.text for i, r in results.items()} == expected


def test_one_request_at_a_time_equals_one_slot(batched):
    """Slots that sit idle change nothing: the same request, the same tokens."""
    single = [ask(batched(slots=1, prefix_cache=False), s).text for s in STORIES[:3]]
    wide = batched(slots=8, prefix_cache=False)
    assert [ask(wide, s).text for s in STORIES[:3]] == single


def test_prompt_lookup_leaves_greedy_output_unchanged(batched):
    plain = batched(slots=2, speculative=False, prefix_cache=False)
    drafted = batched(slots=2, speculative=True, prefix_cache=False)
    for messages in (COPY_TASK, [Message("user", STORIES[0])]):
        expected = ask(plain, messages, max_tokens=48).text
        assert ask(drafted, messages, max_tokens=48).text == expected
    stats = drafted.batch_stats()
    assert stats["drafts_accepted"] > 0  # the copy task copies: drafts were right
    assert stats["steps"] < plain.batch_stats()["steps"]  # so it took fewer steps
    assert plain.batch_stats()["drafts_proposed"] == 0
    # sampling (temperature > 0) never drafts
    before = drafted.batch_stats()["drafts_proposed"]
    ask(drafted, STORIES[1], temperature=0.8, seed=3)
    assert drafted.batch_stats()["drafts_proposed"] == before


def test_prefix_cache_reuses_a_shared_beginning(batched):
    model = batched(slots=2)
    first = ask(model, COPY_TASK, max_tokens=8)
    again = ask(model, COPY_TASK, max_tokens=8)
    other = [COPY_TASK[0], Message("user", f"Passage: {PASSAGE}\nWhat file holds the vectors?")]
    ask(model, other, max_tokens=8)
    stats = model.batch_stats()
    prompt = model.count_tokens(COPY_TASK)
    assert stats["prefix_hits"] == 2
    # the repeat reused all but its last token; the third shares system prompt and passage
    assert stats["prefix_tokens_reused"] >= prompt - 1 + 40
    assert again.text == first.text  # short rest: same numbers as reading it whole
    assert (first.usage.cached_tokens, again.usage.cached_tokens) == (0, prompt - 1)
    off = batched(slots=2, prefix_cache=False)
    ask(off, COPY_TASK, max_tokens=8)
    ask(off, COPY_TASK, max_tokens=8)
    assert off.batch_stats()["prefix_hits"] == 0


def test_cached_passage_sets_do_not_push_each_other_out(batched):
    """RAG traffic alternates between passage sets behind one instruction: each set stays
    cached in its own slot, so every repeat reuses its whole passage set."""
    model = batched(slots=4)
    other = PASSAGE.replace("SQLite file", "DuckDB file").replace("index.sqlite3", "vectors.db")

    def rag(passage: str, question: str) -> list[Message]:
        return [
            Message("system", f"Answer from this passage only.\nPassage: {passage}"),
            Message("user", question),
        ]

    shared = model.count_tokens(
        [Message("system", f"Answer from this passage only.\nPassage: {PASSAGE}")]
    )
    for passage in (PASSAGE, other):
        ask(model, rag(passage, "Where are the vectors?"), max_tokens=4)
    for passage in (PASSAGE, other):
        reply = ask(model, rag(passage, "What does each chunk keep?"), max_tokens=4)
        assert reply.usage.cached_tokens >= shared - 8  # all but the turn's closing tokens


def test_a_prefix_pushed_out_of_every_slot_comes_back_from_host_memory(batched):
    """With more passage sets than slots, a set whose slot was given up is saved to host
    memory and restored for its next question: the same reuse and the very same tokens as when
    its slot had kept it, and nothing saved without a budget."""
    follow_up = [COPY_TASK[0], Message("user", f"Passage: {PASSAGE}\nWhat file holds it?")]
    kept = batched(slots=1, host_cache_bytes=0)
    ask(kept, COPY_TASK, max_tokens=8)
    from_slot = ask(kept, follow_up, max_tokens=24)

    restored = batched(slots=1)
    ask(restored, COPY_TASK, max_tokens=8)
    for story in STORIES[:2]:  # each takes the one slot: the passage goes to host memory
        ask(restored, story, max_tokens=4)
    from_host = ask(restored, follow_up, max_tokens=24)
    stats = restored.batch_stats()
    assert stats["host_restores"] == 1 and stats["host_saves"] >= 1
    assert stats["host_cache_bytes"] > 0
    assert from_host.usage.cached_tokens == from_slot.usage.cached_tokens > 40
    assert from_host.text == from_slot.text

    none = batched(slots=1, host_cache_bytes=0)
    ask(none, COPY_TASK, max_tokens=8)
    ask(none, STORIES[0], max_tokens=4)
    assert none.batch_stats()["host_cache_bytes"] == 0
    assert ask(none, follow_up, max_tokens=4).usage.cached_tokens < 40


def test_a_stream_closed_early_frees_its_slot(batched):
    model = batched(slots=1, prefix_cache=False)
    events = model.stream_events([Message("user", STORIES[0])], max_tokens=200, temperature=0)
    assert isinstance(next(events), str)
    events.close()  # the client went away
    # the only slot is free again: the next request runs to its end
    assert ask(model, STORIES[3], max_tokens=8).usage.completion_tokens >= 1
    stats = model.batch_stats()
    assert stats["running"] == 0 and stats["kv_used"] == 0


def test_each_slot_holds_one_context(batched):
    """The KV cells are split evenly between the slots: a sequence that fills its slot ends
    with "length", a prompt that does not fit is refused before it runs."""
    model = batched(slots=4, kv_cells=4 * 64)
    assert model.batcher.context_size == 64
    prompt = model.count_tokens([Message("user", STORIES[0])])
    result = ask(model, STORIES[0], max_tokens=200)
    assert result.finish_reason == "length"
    assert result.usage.completion_tokens == 64 - prompt
    with pytest.raises(ContextWindowError, match="batch slots"):
        ask(model, "word " * 100, max_tokens=4)
    assert ask(model, "What is 2+2?", max_tokens=4).text  # the batcher still serves


def test_stop_strings_end_the_text_before_them(batched):
    model = batched(slots=2)
    full = ask(model, STORIES[1], max_tokens=40).text
    stop = full.split()[4]  # a word the answer writes
    events = list(
        model.stream_events(
            [Message("user", STORIES[1])], max_tokens=40, temperature=0, stop=[stop]
        )
    )
    end = events[-1]
    assert isinstance(end, StreamEnd) and end.finish_reason == "stop"
    text = "".join(e for e in events if isinstance(e, str))
    assert stop not in text and full.startswith(text)


def test_sampling_with_a_seed_repeats(batched):
    model = batched(slots=2)
    a = ask(model, STORIES[2], temperature=0.9, seed=11).text
    b = ask(model, STORIES[2], temperature=0.9, seed=11).text
    assert a == b


def test_bad_parameters_fail_before_anything_runs(batched):
    model = batched(slots=2)
    with pytest.raises(ValueError, match="temperature"):
        model.stream_events([Message("user", "hi")], temperature=5)
    with pytest.raises(ContextWindowError):
        ask(model, "word " * 3000)


def test_the_kv_pool_is_sized_from_the_model_and_the_memory():
    smollm2 = {
        "general.architecture": "llama",
        "llama.block_count": 30,
        "llama.attention.head_count": 9,
        "llama.attention.head_count_kv": 3,
        "llama.embedding_length": 576,
    }
    per_token = kv_bytes_per_token(smollm2)
    assert per_token == 2 * 2 * 30 * 3 * 64  # K and V, f16, 3 KV heads of 64
    plenty = default_kv_cells(16, 2048, per_token, memory=64 * 2**30)
    assert plenty == 16 * 2048
    tight = default_kv_cells(16, 2048, per_token, memory=1 * 2**30)
    assert 2048 <= tight < 16 * 2048 and tight * per_token <= 2**30 // 4
    assert default_kv_cells(16, 2048, per_token, memory=10 * 2**20) == 2048  # one context
    with pytest.raises(ValueError, match="slots"):
        BatchConfig(slots=0)


def test_step_cost_learns_the_line_and_prices_draft_rows():
    """Drafts are fed only when a row's chance of winning a token beats its cost: the cost model
    recovers the step times it is shown, and one stream may draft far more than sixteen."""
    cost = StepCost()
    for _ in range(300):
        for rows in (1, 4, 16):
            cost.add(rows, 0.010 + 0.005 * rows)
    base, per_row = cost.fit()
    assert base == pytest.approx(0.010, rel=0.05)
    assert per_row == pytest.approx(0.005, rel=0.05)
    assert cost.draft_threshold(1) == pytest.approx(0.005 / 0.015, rel=0.05)
    assert cost.draft_threshold(16) == pytest.approx(0.080 / 0.090, rel=0.05)
    # steps of one size only: the prior still gives a slope, and the base follows the steps
    flat = StepCost()
    for _ in range(300):
        flat.add(1, 0.030)
    base, per_row = flat.fit()
    assert per_row > 0 and base + per_row == pytest.approx(0.030, rel=0.05)
