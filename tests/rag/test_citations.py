"""Citation verification on hand-written answers, with the real embedder and real chunks."""

from __future__ import annotations

import pytest

from hearth.rag.citations import attribute, parse_markers, strip_markers, with_markers
from tests.rag.conftest import as_hits, section


@pytest.fixture(scope="module")
def passages(rag_chunks):
    """Three passages in rank order: [1] storage, [2] models, [3] night trains."""
    return as_hits(
        [
            section(rag_chunks, "SQLite file"),
            section(rag_chunks, "SmolLM2"),
            section(rag_chunks, "night train"),
        ]
    )


def test_marker_helpers():
    assert parse_markers("a [1]. b [2, 3] c [Passage 4][5]") == [1, 2, 3, 4, 5]
    assert strip_markers("It is small [1][2].") == "It is small."
    assert with_markers("It is small.", [1, 3]) == "It is small [1][3]."
    assert with_markers("It is small", [2]) == "It is small [2]"


def test_a_correct_marker_is_kept(passages, embedder):
    result = attribute("The index lives in one SQLite file [1].", passages, embedder)
    assert result.text == "The index lives in one SQLite file [1]."
    assert [c.passage for c in result.citations] == [1]


def test_a_wrong_marker_is_replaced_by_the_supporting_passage(passages, embedder):
    # The sentence is about the model ([2]); the model wrongly cited the storage passage.
    result = attribute("The default model needs about 150 MB of memory [1].", passages, embedder)
    assert result.sentences[0].given == [1]
    assert result.sentences[0].cited == [2]
    # Renumbered: the only printed source is [1], and it is the models passage.
    assert result.text == "The default model needs about 150 MB of memory [1]."
    assert [(c.n, c.passage) for c in result.citations] == [(1, 2)]


def test_a_missing_marker_is_added_and_an_out_of_range_one_dropped(passages, embedder):
    answer = (
        "Hearth stores its index in a SQLite file called index.sqlite3. "
        "The night train to Rome arrives at 10:05 [7]."
    )
    result = attribute(answer, passages, embedder)
    assert [s.given for s in result.sentences] == [[], [7]]
    assert [s.cited for s in result.sentences] == [[1], [3]]
    assert "[7]" not in result.text
    assert result.text == (
        "Hearth stores its index in a SQLite file called index.sqlite3 [1]. "
        "The night train to Rome arrives at 10:05 [2]."
    )
    assert [(c.n, c.passage) for c in result.citations] == [(1, 1), (2, 3)]


def test_unsupported_sentences_lose_their_markers(passages, embedder):
    answer = "Bananas are an excellent source of potassium [2]. Hearth needs a GPU with 16 GB [1]."
    result = attribute(answer, passages, embedder)
    assert result.citations == []
    assert not result.supported
    assert parse_markers(result.text) == []
    assert result.text == (
        "Bananas are an excellent source of potassium. Hearth needs a GPU with 16 GB."
    )


def test_a_wrong_number_is_not_supported(passages, embedder):
    result = attribute("The night train arrives in Rome at 07:15 [3].", passages, embedder)
    assert result.sentences[0].cited == []
    right = attribute("The night train arrives in Rome at 10:05 [3].", passages, embedder)
    assert right.sentences[0].cited == [3]


def test_sources_are_exactly_the_cited_ones_renumbered_in_order(passages, embedder):
    answer = (
        "The train leaves Vienna at 19:40 [3]. The file uses WAL mode [1]. It runs on llama.cpp."
    )
    result = attribute(answer, passages, embedder)
    assert [(c.n, c.passage) for c in result.citations] == [(1, 3), (2, 1), (3, 2)]
    assert parse_markers(result.text) == [1, 2, 3]


def test_spans_are_exact_quotes_of_the_document(passages, embedder, rag_documents):
    answer = (
        "The file uses WAL mode so readers never block the writer [1]. "
        "SmolLM2 needs around 150 MB [2]. The train arrives at 10:05 [3]."
    )
    result = attribute(answer, passages, embedder)
    assert len(result.citations) == 3
    expected = {
        1: "The file uses WAL mode, so readers never block the writer.",
        # Both sentences: the model's name is in the first, its memory in the second.
        2: "The default chat model is SmolLM2-135M-Instruct, quantized to Q4_1. "
        "It runs on llama.cpp and needs about 150 MB of memory.",
        3: "The night train from Vienna to Rome leaves at 19:40 and arrives at 10:05 the next "
        "morning.",
    }
    for c in result.citations:
        document = rag_documents[c.source]
        assert document.text[c.start : c.end] == c.text
        assert c.text == expected[c.passage]
        chunk = passages[c.passage - 1].chunk
        assert chunk.start <= c.start < c.end <= chunk.end
        assert c.chunk_id == chunk.id and c.headings == chunk.headings


def test_an_empty_answer_has_no_citations(passages, embedder):
    result = attribute("", passages, embedder)
    assert result.text == "" and result.citations == [] and result.sentences == []


def test_a_single_sentence_claim_quotes_a_single_sentence(passages, embedder, rag_documents):
    result = attribute("Readers never block the writer thanks to WAL mode.", passages, embedder)
    (citation,) = result.citations
    assert citation.text == "The file uses WAL mode, so readers never block the writer."
    assert rag_documents[citation.source].text[citation.start : citation.end] == citation.text
