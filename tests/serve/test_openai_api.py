"""The OpenAI-compatible routes, driven by the official `openai` SDK against a real server."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hearth.serve import schemas as s
from tests.schemas import PERSON

CHAT_MODEL = "local:smollm2"
INSTRUCT_MODEL = "local:qwen2.5-coder-0.5b"  # the instruct_model setting's default
EMBED_MODEL = "all-MiniLM-L6-v2"
HELLO = [{"role": "user", "content": "Name three colors."}]


def sse_events(response) -> list[dict | str]:
    """The `data:` payloads of an SSE response: parsed JSON, or the string "[DONE]"."""
    events: list[dict | str] = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def test_models_lists_chat_rag_and_embedder(client):
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert ids == [CHAT_MODEL, INSTRUCT_MODEL, "hearth-rag", "hearth-graph", "hearth-agent",
                   EMBED_MODEL]  # fmt: skip
    kinds = {m.id: m.model_extra["kind"] for m in models.data}
    assert kinds == {
        CHAT_MODEL: "chat",
        INSTRUCT_MODEL: "chat",
        "hearth-rag": "rag",
        "hearth-graph": "rag",
        "hearth-agent": "agent",
        EMBED_MODEL: "embedding",
    }
    assert client.models.retrieve("hearth-rag").owned_by == "hearth"


def test_chat_plain_matches_the_model_in_process(client, chat_model):
    from hearth.types import Message

    reply = client.chat.completions.create(model=CHAT_MODEL, messages=HELLO, max_tokens=5)
    choice = reply.choices[0]
    expected = chat_model.chat([Message("user", "Name three colors.")], max_tokens=5)
    assert choice.message.role == "assistant"
    assert choice.message.content == expected.text  # temperature 0 by default: same words
    assert choice.finish_reason == expected.finish_reason
    assert reply.usage.prompt_tokens == expected.usage.prompt_tokens
    assert reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert reply.model == CHAT_MODEL


def test_chat_stream_with_usage(client):
    plain = client.chat.completions.create(model=CHAT_MODEL, messages=HELLO, max_tokens=5)
    chunks = list(
        client.chat.completions.create(
            model=CHAT_MODEL,
            messages=HELLO,
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1
    assert finals[0].choices[0].finish_reason == plain.choices[0].finish_reason
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage.completion_tokens == plain.usage.completion_tokens
    assert usage_chunk.usage.prompt_tokens == plain.usage.prompt_tokens
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


def test_stream_without_usage_has_no_usage_chunk(hearth_server):
    body = {"model": CHAT_MODEL, "messages": HELLO, "max_tokens": 3, "stream": True}
    with hearth_server.http() as http:
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all("usage" not in c for c in chunks)
    for chunk in chunks:
        s.ChatCompletionChunk.model_validate(chunk)  # the documented schema
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_seed_reproduces_sampling_and_choice_i_uses_seed_plus_i(client):
    params = dict(model=CHAT_MODEL, messages=HELLO, max_tokens=8, temperature=1.0)
    both = client.chat.completions.create(n=2, seed=42, **params)
    first = client.chat.completions.create(seed=42, **params)
    second = client.chat.completions.create(seed=43, **params)
    assert [c.index for c in both.choices] == [0, 1]
    assert both.choices[0].message.content == first.choices[0].message.content
    assert both.choices[1].message.content == second.choices[0].message.content
    completion_sum = first.usage.completion_tokens + second.usage.completion_tokens
    assert both.usage.completion_tokens == completion_sum
    assert both.usage.prompt_tokens == first.usage.prompt_tokens  # one prompt, counted once


def test_stop_sequence_cuts_the_text(client):
    long = client.chat.completions.create(model=CHAT_MODEL, messages=HELLO, max_tokens=12)
    text = long.choices[0].message.content
    words = text.split()
    assert len(words) >= 3, text
    stop = words[2]
    cut = client.chat.completions.create(
        model=CHAT_MODEL, messages=HELLO, max_tokens=12, stop=[stop]
    )
    assert cut.choices[0].message.content == text[: text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_streamed_stop_and_n(client):
    chunks = list(
        client.chat.completions.create(
            model=CHAT_MODEL, messages=HELLO, max_tokens=4, n=2, stream=True
        )
    )
    texts = {0: "", 1: ""}
    finished = set()
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finished.add(choice.index)
    assert finished == {0, 1}
    assert texts[0] and texts[0] == texts[1]  # temperature 0: both choices are the same


def test_completions_one_choice_per_prompt_and_n(client, chat_model):
    from hearth.types import Message

    reply = client.completions.create(
        model=CHAT_MODEL, prompt=["Say yes.", "Say no."], max_tokens=3, n=2
    )
    assert [c.index for c in reply.choices] == [0, 1, 2, 3]
    expected = chat_model.chat([Message("user", "Say no.")], max_tokens=3).text
    assert reply.choices[2].text == expected
    assert reply.choices[0].text == reply.choices[1].text
    assert reply.usage.completion_tokens >= 4  # at least one token per choice
    streamed = list(
        client.completions.create(
            model=CHAT_MODEL,
            prompt="Say no.",
            max_tokens=3,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == expected
    assert streamed[-1].usage.completion_tokens > 0


def test_embeddings_equal_the_in_process_embedder(client, embedder):
    texts = ["hello world", "How do I reset the door code?"]
    expected = embedder.embed(texts)
    as_base64 = client.embeddings.create(model=EMBED_MODEL, input=texts)  # the SDK's default
    as_floats = client.embeddings.create(model=EMBED_MODEL, input=texts, encoding_format="float")
    for reply in (as_base64, as_floats):
        got = np.array([d.embedding for d in reply.data], dtype=np.float32)
        assert got.shape == (2, embedder.dim)
        np.testing.assert_allclose(got, expected, atol=1e-6)
        assert [d.index for d in reply.data] == [0, 1]
        tokens = sum(embedder.count_tokens(t) for t in texts)
        assert reply.usage.prompt_tokens == reply.usage.total_tokens == tokens
        assert reply.model == EMBED_MODEL
    single = client.embeddings.create(model=EMBED_MODEL, input="hello world")
    np.testing.assert_allclose(single.data[0].embedding, expected[0], atol=1e-6)


def test_responses_match_the_documented_schemas(hearth_server):
    with hearth_server.http() as http:
        chat = http.post(
            "/v1/chat/completions", json={"model": CHAT_MODEL, "messages": HELLO, "max_tokens": 2}
        )
        completion = http.post(
            "/v1/completions", json={"model": CHAT_MODEL, "prompt": "Hi", "max_tokens": 2}
        )
        vectors = http.post("/v1/embeddings", json={"model": EMBED_MODEL, "input": ["a", "b"]})
        models = http.get("/v1/models")
    s.ChatCompletion.model_validate(chat.json())
    s.Completion.model_validate(completion.json())
    s.EmbeddingList.model_validate(vectors.json())
    s.ModelList.model_validate(models.json())


def test_unsupported_parameters_are_refused_not_ignored(client):
    import openai

    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=CHAT_MODEL, messages=HELLO, logprobs=True)
    assert err.value.body["code"] == "unsupported_parameter"
    assert err.value.body["param"] == "logprobs"
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=EMBED_MODEL, input="x", dimensions=12)
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model=CHAT_MODEL, input="x")
    assert err.value.body["code"] == "model_not_supported"


def test_the_instruction_model_answers_over_the_api(client):
    """Served by default beside the chat model (loaded on its first request)."""
    reply = client.chat.completions.create(
        model=INSTRUCT_MODEL,
        messages=[{"role": "user", "content": "What is 2 + 3? Answer with the number only."}],
        max_tokens=8,
    )
    assert reply.model == INSTRUCT_MODEL and "5" in reply.choices[0].message.content


EXTRACT = [
    {"role": "user", "content": "Extract name and age as JSON: Maria Lopez is 34 years old."}
]


def test_response_format_json_schema_and_json_object(client):
    """Structured outputs through the official client: the content validates against the
    schema, streamed or not; json_object gives an object."""
    from hearth.structured import compile

    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
    reply = client.chat.completions.create(
        model=CHAT_MODEL, messages=EXTRACT, max_tokens=60, response_format=fmt
    )
    person = compile(PERSON).parse(reply.choices[0].message.content)
    assert person["age"] == 34 and reply.choices[0].finish_reason == "stop"
    streamed = client.chat.completions.create(
        model=CHAT_MODEL, messages=EXTRACT, max_tokens=60, response_format=fmt, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == reply.choices[0].message.content
    anything = client.chat.completions.create(
        model=CHAT_MODEL,
        messages=EXTRACT,
        max_tokens=60,
        temperature=0.8,
        seed=2,
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(anything.choices[0].message.content), dict)


def test_a_schema_that_cannot_be_enforced_is_a_400_naming_the_keyword(client):
    import openai

    schema = {"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True}}}
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model=CHAT_MODEL,
            messages=EXTRACT,
            response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": schema}},
        )
    assert "uniqueItems" in err.value.body["message"]
    assert (
        err.value.body["param"] == "response_format.json_schema.schema.properties.tags.uniqueItems"
    )
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model=CHAT_MODEL, messages=EXTRACT, response_format={"type": "yaml"}
        )
    assert err.value.body["param"] == "response_format"
