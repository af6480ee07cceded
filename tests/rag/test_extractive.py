"""Extractive answers: the best sentence span for the question, quoted exactly, cited [1]."""

from __future__ import annotations

import pytest

from hearth.rag.extractive import best_span
from tests.rag.conftest import as_hits


@pytest.fixture(scope="module")
def passages(rag_chunks):
    return as_hits(rag_chunks)  # every section, in document order


@pytest.mark.parametrize(
    ("question", "quote"),
    [
        ("Which Python version is required?", "Python 3.11 is required."),
        (
            "When does the night train arrive in Rome?",
            "The night train from Vienna to Rome leaves at 19:40 and arrives at 10:05 the next "
            "morning.",
        ),
        (
            "Do readers block the writer?",
            "The file uses WAL mode, so readers never block the writer.",
        ),
    ],
)
def test_the_answer_is_the_best_span_quoted_exactly(
    question, quote, passages, embedder, rag_documents
):
    extract = best_span(question, passages, embedder)
    citation = extract.citation
    assert citation.text == quote
    assert rag_documents[citation.source].text[citation.start : citation.end] == quote
    assert citation.n == 1
    assert extract.text == quote + " [1]"
    chunk = passages[citation.passage - 1].chunk
    assert chunk.start <= citation.start < citation.end <= chunk.end


def test_an_answer_spread_over_two_sentences_quotes_both(passages, embedder, rag_documents):
    extract = best_span(
        "How tall is the Eiffel Tower and when was it completed?", passages, embedder
    )
    quote = extract.citation.text
    assert "1889" in quote and "330 metres" in quote
    assert (
        rag_documents["/docs/travel.md"].text[extract.citation.start : extract.citation.end]
        == quote
    )


def test_headings_are_never_the_answer(passages, embedder):
    extract = best_span("Night trains", passages, embedder)
    assert not extract.citation.text.startswith("#")


def test_no_passages_no_extract(embedder):
    assert best_span("anything?", [], embedder) is None
