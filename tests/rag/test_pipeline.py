"""The retrieval pipeline: strategy -> retriever -> rerank -> MMR -> compress, over a real index."""

from __future__ import annotations

import pytest

from hearth.errors import ConfigError
from hearth.index.indexer import Indexer
from hearth.index.store import SQLiteStore
from hearth.rag.answer import Answerer
from hearth.rag.pipeline import build_pipeline
from hearth.rag.retrievers import make_retriever
from tests.rag.conftest import GUIDE, TRAVEL


@pytest.fixture(scope="module")
def store(tmp_path_factory, embedder):
    from hearth.ingest.splitter import Splitter

    folder = tmp_path_factory.mktemp("docs")
    (folder / "guide.md").write_text(GUIDE, encoding="utf-8")
    (folder / "travel.md").write_text(TRAVEL, encoding="utf-8")
    store = SQLiteStore(tmp_path_factory.mktemp("index") / "index.sqlite3")
    splitter = Splitter(embedder.count_tokens, chunk_tokens=64, overlap_tokens=8)
    Indexer(store, embedder, splitter).ingest([str(folder)], progress=False)
    yield store
    store.close()


def ids(hits):
    return [h.chunk.id for h in hits]


def test_standard_pipeline_is_the_plain_retriever(store, embedder):
    pipeline = build_pipeline(store, embedder)
    plain = make_retriever("hybrid", store, embedder)
    for query in ("where is the index kept", "night train to Rome", "Eiffel Tower height"):
        found = pipeline.run(query, k=3)
        assert ids(found.hits) == ids(plain.retrieve(query, k=3))
        assert found.generated == {}  # no model stage ran, nothing generated
        assert "retrieve" in found.timings
    assert pipeline.name == "hybrid"


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [("strategy", "telepathy", "unknown strategy"), ("rerank", "magic", "unknown reranker")],
)
def test_unknown_stage_names_say_what_is_accepted(store, embedder, field, value, named):
    with pytest.raises(ConfigError, match=named) as caught:
        build_pipeline(store, embedder, **{field: value})
    assert "hyde" in str(caught.value) or "late-interaction" in str(caught.value)


def test_model_is_loaded_only_when_a_stage_needs_it(store, embedder):
    def no_model():
        raise AssertionError("the standard pipeline must not load a model")

    pipeline = build_pipeline(store, embedder, rerank="late-interaction", model=no_model)
    assert pipeline.run("when does the night train arrive", k=2).hits


def test_multi_query_reports_what_it_generated(store, embedder, chat_model):
    pipeline = build_pipeline(store, embedder, strategy="multi-query", model=chat_model)
    found = pipeline.run("When does the night train from Vienna arrive in Rome?", k=3)
    stage = found.generated["multi-query"]
    assert "queries" in stage or "error" in stage
    assert all(isinstance(q, str) and q.strip() for q in stage.get("queries", []))
    assert 0 < len(found.hits) <= 3
    assert {h.chunk.id for h in found.hits} <= {
        c.id for d in ("guide", "travel") for c in store.document_chunks(_source(store, d))
    }


def _source(store, stem: str) -> str:
    (source,) = [d["source"] for d in store.list_documents() if stem in d["source"]]
    return source


def test_rerank_mmr_and_compress_keep_exact_spans(store, embedder):
    pipeline = build_pipeline(store, embedder, rerank="late-interaction", mmr=0.7, compress=True)
    found = pipeline.run("How tall is the Eiffel Tower?", k=3)
    assert found.hits and {"rerank", "mmr", "compress"} <= set(found.timings)
    for hit in found.hits:
        text = store.get_document(hit.chunk.source).text
        assert text[hit.chunk.start : hit.chunk.end] == hit.chunk.text
    assert "330 metres" in " ".join(h.chunk.text for h in found.hits)
    assert pipeline.name == "hybrid+late-interaction+mmr0.7+compress"


def test_answer_carries_the_stages(store, embedder, chat_model):
    pipeline = build_pipeline(store, embedder, strategy="step-back", model=chat_model)
    answerer = Answerer(pipeline, chat_model, embedder, max_tokens=48)
    answer = answerer.answer("When does the night train from Vienna arrive in Rome?", k=2)
    assert "step-back" in answer.stages
    assert answer.to_json()["stages"] == answer.stages
    plain = Answerer(make_retriever("hybrid", store, embedder), chat_model, embedder, max_tokens=8)
    assert "stages" not in plain.answer("Eiffel Tower height?", k=2, extractive=True).to_json()
