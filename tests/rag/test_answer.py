"""End to end: real files -> indexer -> SQLite store -> hybrid retriever -> SmolLM2 -> Answer."""

from __future__ import annotations

import json

import pytest

from hearth.index.indexer import Indexer
from hearth.index.store import SQLiteStore
from hearth.llm import smollm2_path
from hearth.llm.llamacpp import LlamaCppModel
from hearth.rag.answer import NOT_FOUND_TEXT, Answer, Answerer, repeat_start
from hearth.rag.citations import parse_markers
from hearth.rag.prompt import build_messages
from hearth.rag.retrievers import make_retriever
from tests.rag.conftest import GUIDE, TRAVEL

TRAIN_QUESTION = "When does the night train from Vienna arrive in Rome?"


@pytest.fixture(scope="module")
def store(tmp_path_factory, embedder):
    from hearth.ingest.splitter import Splitter

    folder = tmp_path_factory.mktemp("docs")
    (folder / "guide.md").write_text(GUIDE, encoding="utf-8")
    (folder / "travel.md").write_text(TRAVEL, encoding="utf-8")
    store = SQLiteStore(tmp_path_factory.mktemp("index") / "index.sqlite3")
    splitter = Splitter(embedder.count_tokens, chunk_tokens=64, overlap_tokens=8)
    report = Indexer(store, embedder, splitter).ingest([str(folder)], progress=False)
    assert report.added == 2
    yield store
    store.close()


@pytest.fixture(scope="module")
def answerer(store, embedder, chat_model):
    retriever = make_retriever("hybrid", store, embedder)
    return Answerer(retriever, chat_model, embedder, max_tokens=64, temperature=0.0)


def assert_exact_citations(answer: Answer, store: SQLiteStore) -> None:
    assert parse_markers(answer.text) and set(parse_markers(answer.text)) == {
        c.n for c in answer.citations
    }
    assert [c.n for c in answer.citations] == list(range(1, len(answer.citations) + 1))
    for c in answer.citations:
        assert store.get_document(c.source).text[c.start : c.end] == c.text


def test_generated_answer_cites_the_right_document_with_exact_spans(answerer, store):
    answer = answerer.answer(TRAIN_QUESTION, k=3)
    assert answer.found and answer.model == "local:smollm2"
    assert answer.generated
    assert 1 <= len(answer.passages) <= 3 and answer.dropped_passages == 0
    assert answer.citations, answer.generated
    assert answer.citations[0].source.endswith("travel.md")
    assert "10:05" in answer.citations[0].text
    assert_exact_citations(answer, store)
    assert answer.finish_reason in ("stop", "length")


def test_streaming_yields_deltas_then_one_answer_equal_to_the_plain_one(answerer):
    events = list(answerer.stream(TRAIN_QUESTION, k=3))
    final = events[-1]
    assert isinstance(final, Answer)
    deltas = events[:-1]
    assert len(deltas) > 1 and all(isinstance(d, str) for d in deltas)
    assert "".join(deltas).strip() == final.generated
    plain = answerer.answer(TRAIN_QUESTION, k=3)
    assert final.to_json() == plain.to_json()
    assert final.citations == plain.citations


def test_extractive_answer_needs_no_model(store, embedder):
    retriever = make_retriever("hybrid", store, embedder)
    answer = Answerer(retriever, None, embedder).answer(
        "Which Python version is required?", extractive=True
    )
    assert answer.found and answer.extractive and not answer.fallback
    assert answer.model == "extractive"
    assert answer.text == "Python 3.11 is required. [1]"
    (citation,) = answer.citations
    assert citation.source.endswith("guide.md") and citation.headings[-1] == "Install"
    assert_exact_citations(answer, store)


def test_nothing_relevant_found_skips_the_model(store, embedder):
    retriever = make_retriever("hybrid", store, embedder)
    answerer = Answerer(retriever, None, embedder, min_relevance=0.25)  # no model to call
    events = list(answerer.stream("What is a good recipe for chocolate cake?"))
    assert events[0] == NOT_FOUND_TEXT
    answer = events[-1]
    assert isinstance(answer, Answer) and len(events) == 2
    assert not answer.found and answer.citations == [] and answer.text == NOT_FOUND_TEXT
    assert answer.relevance < 0.25
    assert answer.to_json()["found"] is False


def test_relevance_is_computed_when_the_retriever_gives_no_dense_score(store, embedder):
    question = "How tall is the Eiffel Tower?"
    dense_top = make_retriever("dense", store, embedder).retrieve(question, k=1)[0]
    bm25 = make_retriever("bm25", store, embedder)
    assert "dense" not in bm25.retrieve(question, k=1)[0].scores
    answer = Answerer(bm25, None, embedder).answer(question, extractive=True)
    assert answer.found
    # Same cosine as the stored vector's, up to the int8 embedder's batch-dependent rounding.
    assert answer.relevance == pytest.approx(dense_top.scores["dense"], abs=0.03)


def test_a_small_context_drops_passages_and_says_so(store, embedder, chat_model):
    retriever = make_retriever("hybrid", store, embedder)
    hits = retriever.retrieve(TRAIN_QUESTION, k=5)
    assert len(hits) >= 3
    two = chat_model.count_tokens(build_messages(TRAIN_QUESTION, hits[:2]))
    # A context with room for exactly the top two passages and a 32-token answer.
    small = LlamaCppModel(smollm2_path(), context_size=two + 32)
    answerer = Answerer(retriever, small, embedder, max_tokens=32)
    answer = answerer.answer(TRAIN_QUESTION, k=5)
    assert answer.dropped_passages == len(hits) - 2
    assert [p.chunk.id for p in answer.passages] == [h.chunk.id for h in hits[:2]]
    assert answer.to_json()["dropped_passages"] == len(hits) - 2


def test_an_unsupported_generation_falls_back_to_the_best_span(answerer, store):
    hits = answerer.retriever.retrieve(TRAIN_QUESTION, k=3)
    answer = answerer.verify(TRAIN_QUESTION, "Trains are powered by hamsters [1].", hits)
    assert answer.fallback and answer.extractive
    assert answer.generated == "Trains are powered by hamsters [1]."
    assert "10:05" in answer.citations[0].text
    assert_exact_citations(answer, store)


def test_to_json_shape(answerer):
    hits = answerer.retriever.retrieve(TRAIN_QUESTION, k=3)
    answer = answerer.verify(TRAIN_QUESTION, "The train arrives in Rome at 10:05 [1].", hits)
    data = answer.to_json()
    assert set(data) == {"answer", "citations", "model", "dropped_passages", "found"}
    assert data["answer"] == answer.text
    assert set(data["citations"][0]) == {"n", "source", "start", "end", "text", "page"}
    assert json.loads(json.dumps(data)) == data


def test_an_empty_question_is_an_error(answerer):
    with pytest.raises(ValueError, match="empty"):
        answerer.answer("   ")


def test_a_looping_generation_is_cut_at_the_first_repeated_sentence():
    once = "Customers can return any product within 30 days. Shipping is not refunded."
    looped = f"{once}\n\n{once}"
    assert repeat_start(looped) == len(once) + 2
    assert repeat_start(once) is None
    assert repeat_start("Yes. Yes.") is None  # too short to call a loop
    assert repeat_start(f"{once} Customers can return any") is None  # sentence not finished


def test_repeat_start_catches_a_loop_that_grows():
    first = "You can use the --index DIR option to create a new index."
    grown = "You can also use the --index DIR option to create a new index elsewhere."
    text = f"{first} {grown}"
    assert repeat_start(text) == len(first) + 1
    different = f"{first} The HEARTH_INDEX variable sets the folder for every command."
    assert repeat_start(different) is None


def test_a_loop_inside_one_sentence_is_cut_after_its_first_copy():
    head = "Hearth reads `.md`, `.txt`"
    looped = head + ", `.json.ts`" * 6
    assert repeat_start(looped) == len(head) + len(", `.json.ts`")
    assert repeat_start("The code is 4711 and the room is 101.") is None
    assert repeat_start("Wait... " + "ha" * 3) is None  # short repeats are words, not loops
