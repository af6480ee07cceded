"""Model `hearth-rag` over HTTP: answers from the index with verified citations as data, in
plain and streamed responses (the final chunk carries them), via the official openai SDK."""

from __future__ import annotations

import httpx
import openai
import pytest

from hearth.rag.answer import NOT_FOUND_TEXT
from hearth.serve import schemas as s

RAG = "hearth-rag"
DOOR = [{"role": "user", "content": "What is the front door code?"}]


def check_citations_point_at_real_spans(server, citations: list[dict]) -> None:
    """Every citation quotes its document exactly: text == document.text[start:end]."""
    assert citations
    for c in citations:
        s.CitationOut.model_validate(c)
        doc = httpx.get(
            f"{server.base_url}/v1/documents/{c['document_id']}", headers=server.headers
        ).json()
        assert doc["source"] == c["source"]
        assert doc["text"][c["start"] : c["end"]] == c["text"]


def test_rag_answer_carries_citations(client, hearth_server):
    reply = client.chat.completions.create(model=RAG, messages=DOOR, max_tokens=40)
    message = reply.choices[0].message
    citations = message.model_extra["citations"]
    check_citations_point_at_real_spans(hearth_server, citations)
    assert {c["source"].rsplit("/", 1)[-1] for c in citations} == {"handbook.md"}
    assert [c["n"] for c in citations] == list(range(1, len(citations) + 1))
    assert "[1]" in message.content  # the verified text names its sources
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0


def test_streamed_rag_puts_citations_in_the_final_chunk(client):
    plain = client.chat.completions.create(model=RAG, messages=DOOR, max_tokens=40)
    chunks = list(
        client.chat.completions.create(model=RAG, messages=DOOR, max_tokens=40, stream=True)
    )
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[-1] is chunks[-1]
    delta = finals[0].choices[0].delta.model_extra
    # Same question at temperature 0: the stream carries exactly the plain answer's sources.
    assert delta["citations"] == plain.choices[0].message.model_extra["citations"]
    assert delta["answer"] == plain.choices[0].message.content
    raw = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert raw.strip()  # the model's own words streamed before the verified answer


def test_follow_up_uses_the_conversation(client, hearth_server):
    """The follow-up names no topic: only the conversation says it is about the bike shed."""
    messages = [
        {"role": "user", "content": "Where is the bike shed?"},
        {"role": "assistant", "content": "The bike shed is behind building C [1]."},
        {"role": "user", "content": "How many does it hold?"},
    ]
    reply = client.chat.completions.create(model=RAG, messages=messages, max_tokens=30)
    citations = reply.choices[0].message.model_extra["citations"]
    check_citations_point_at_real_spans(hearth_server, citations)
    assert {c["source"].rsplit("/", 1)[-1] for c in citations} == {"bikes.md"}


def test_extractive_and_filters_from_the_hearth_field(client):
    reply = client.chat.completions.create(
        model=RAG,
        messages=[{"role": "user", "content": "Where is the bike shed key kept?"}],
        extra_body={"hearth": {"extractive": True, "k": 3, "filters": {"file_types": ["md"]}}},
    )
    citations = reply.choices[0].message.model_extra["citations"]
    assert len(citations) == 1
    assert citations[0]["source"].endswith("bikes.md")
    assert "reception" in citations[0]["text"]
    filtered = client.chat.completions.create(
        model=RAG,
        messages=[{"role": "user", "content": "Where is the bike shed key kept?"}],
        extra_body={"hearth": {"extractive": True, "filters": {"source_glob": "*garden.md"}}},
    )
    sources = {c["source"] for c in filtered.choices[0].message.model_extra["citations"]}
    assert all(src.endswith("garden.md") for src in sources)


def test_nothing_relevant_says_so_without_citations(client):
    reply = client.chat.completions.create(
        model=RAG,
        messages=[{"role": "user", "content": "Which planet has the most moons?"}],
        max_tokens=20,
    )
    assert reply.choices[0].message.content == NOT_FOUND_TEXT
    assert reply.choices[0].message.model_extra["citations"] == []


def test_rag_through_completions(client):
    reply = client.completions.create(
        model=RAG, prompt="How much does the coffee machine cost?", max_tokens=30
    )
    citations = reply.choices[0].model_extra["citations"]
    assert citations and all(c["source"].endswith("handbook.md") for c in citations)


@pytest.mark.parametrize("extra", [{"stop": ["x"]}, {"seed": 3}, {"top_p": 0.5}])
def test_rag_refuses_what_it_cannot_honour(client, extra):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=RAG, messages=DOOR, max_tokens=5, **extra)
    assert err.value.body["code"] == "unsupported_parameter"
    assert err.value.body["param"] == next(iter(extra))


def test_rag_needs_a_user_question_last(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model=RAG, messages=[{"role": "assistant", "content": "hello"}], max_tokens=5
        )
    assert err.value.body["param"] == "messages"
