"""Sentence-level compression with the real embedder: off-topic sentences go, spans stay exact."""

from __future__ import annotations

import pytest

from hearth.rag.citations import attribute
from hearth.rag.compress import compress
from tests.rag.conftest import as_hits, section

QUERIES = [
    "How much memory does the default chat model need?",
    "When does the night train to Rome leave?",
    "How tall is the Eiffel Tower?",
    "Which Python version does Hearth require?",
    "Where does Hearth keep its index?",
]


def assert_exact(hits, documents):
    for hit in hits:
        c = hit.chunk
        assert documents[c.source].text[c.start : c.end] == c.text


def test_an_off_topic_sentence_is_dropped(rag_chunks, rag_documents, embedder):
    models = section(rag_chunks, "SmolLM2")
    (hit,) = compress(QUERIES[0], as_hits([models]), embedder)
    assert "SmolLM2" in hit.chunk.text and "150 MB of memory" in hit.chunk.text
    assert "Any other GGUF file" not in hit.chunk.text
    assert "## Models" not in hit.chunk.text  # a heading line is never chosen
    assert len(hit.chunk.text) < len(models.text)
    assert hit.chunk.id == models.id and hit.chunk.source == models.source
    assert hit.chunk.metadata["compressed_from"] == models.id
    assert hit.scores["compress"] > 0.3 and hit.score == 1.0
    assert_exact([hit], rag_documents)


def test_the_unrelated_sentence_of_a_relevant_passage_goes(rag_chunks, rag_documents, embedder):
    trains = section(rag_chunks, "night train")
    (hit,) = compress(QUERIES[1], as_hits([trains]), embedder)
    assert "leaves at 19:40" in hit.chunk.text
    assert "berths" not in hit.chunk.text
    assert_exact([hit], rag_documents)


@pytest.mark.parametrize("query", QUERIES)
def test_every_piece_is_an_exact_span_of_its_source(query, rag_chunks, rag_documents, embedder):
    hits = as_hits(rag_chunks)
    out = compress(query, hits, embedder)
    assert out, "every passage keeps at least its best sentence"
    assert {h.chunk.metadata.get("compressed_from", h.chunk.id) for h in out} == {
        c.id for c in rag_chunks
    }
    assert_exact(out, rag_documents)
    # pieces of one passage follow each other, in document order
    for a, b in zip(out, out[1:], strict=False):
        if a.chunk.id == b.chunk.id:
            assert a.chunk.end < b.chunk.start


def test_keep_limits_sentences_and_a_fully_kept_passage_is_unchanged(rag_chunks, embedder):
    hits = as_hits(rag_chunks)
    everything = compress(QUERIES[0], hits, embedder, keep=None, min_similarity=-1.0)
    assert [h.chunk.text for h in everything] == [c.text for c in rag_chunks]
    assert all("compressed_from" not in h.chunk.metadata for h in everything)
    one = compress(QUERIES[0], hits, embedder, keep=1, min_similarity=1.0)
    assert len(one) == len(hits)  # the best sentence of each passage, one run each
    with pytest.raises(ValueError):
        compress(QUERIES[0], hits, embedder, keep=0)
    assert compress(QUERIES[0], [], embedder) == []


def test_citations_of_compressed_passages_quote_their_sources(rag_chunks, rag_documents, embedder):
    passages = compress(
        QUERIES[0],
        as_hits([section(rag_chunks, "SmolLM2"), section(rag_chunks, "night train")]),
        embedder,
    )
    result = attribute("The default model needs about 150 MB of memory [1].", passages, embedder)
    (citation,) = result.citations
    assert "150 MB" in citation.text
    assert rag_documents[citation.source].text[citation.start : citation.end] == citation.text
