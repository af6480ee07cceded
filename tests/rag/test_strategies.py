"""Query strategies (multi-query, HyDE, RAG-fusion, step-back, decompose, auto) over a real SQLite
store of the rag documents, the real embedder and the real SmolLM2 / Qwen2.5-Coder models."""

from __future__ import annotations

import json

import pytest

from hearth.errors import BackendError, ConfigError
from hearth.index.store import SQLiteStore
from hearth.ingest.splitter import Splitter
from hearth.rag.retrievers import BM25Retriever, DenseRetriever, HybridRetriever, make_retriever
from hearth.rag.routing import Router
from hearth.rag.strategies import (
    STRATEGIES,
    DecomposeStrategy,
    RoutedStrategy,
    interleave,
    make_strategy,
    rrf_fuse,
)
from hearth.types import ChatResult, Chunk, ScoredChunk

MODEL_STRATEGIES = ["multi-query", "hyde", "rag-fusion", "step-back", "decompose"]
# what each strategy says it generated, and whether that is a list of strings or one string
GENERATED_KEY = {
    "multi-query": ("queries", list),
    "rag-fusion": ("queries", list),
    "hyde": ("passage", str),
    "step-back": ("question", str),
}
QUESTION = "Where does Hearth keep its index?"


def build_store(path, documents, embedder) -> SQLiteStore:
    store = SQLiteStore(path)
    store.check_embedder(embedder.name, embedder.dim)
    splitter = Splitter(embedder.count_tokens, chunk_tokens=64, overlap_tokens=8)
    batch = []
    for doc in documents:
        chunks = splitter.split(doc)
        batch.append((doc, chunks, embedder.embed([c.text for c in chunks])))
    store.replace_documents(batch)
    return store


@pytest.fixture(scope="module")
def store(tmp_path_factory, rag_documents, embedder):
    s = build_store(
        tmp_path_factory.mktemp("strategies") / "index.sqlite3", rag_documents.values(), embedder
    )
    yield s
    s.close()


@pytest.fixture(scope="module")
def chunk_ids(store, rag_documents):
    return {c.id: c for source in rag_documents for c in store.document_chunks(source)}


@pytest.fixture(scope="module")
def base(store, embedder):
    return make_retriever("hybrid", store, embedder)


@pytest.fixture(scope="session")
def qwen():
    from hearth import llm

    return llm.load("local:qwen2.5-coder-0.5b", context_size=2048)


class FailingModel:
    """A chat model whose every call fails as a remote server would (the fallback path)."""

    name, context_size = "failing", 2048
    can_stream = supports_tools = supports_json_schema = False

    def __init__(self):
        self.calls = 0

    def chat(self, messages, **params):
        self.calls += 1
        raise BackendError("the server is down", status=503, url="http://127.0.0.1:9/v1")


class ProseModel(FailingModel):
    """A chat model that answers in prose, never in JSON (the StructuredOutputError path)."""

    name = "prose"

    def chat(self, messages, **params):
        self.calls += 1
        return ChatResult("Sure! Here are some ideas about your question.", self.name)


# ---- fusion --------------------------------------------------------------------------------


def test_rrf_fuse_matches_hybrid_retriever(store, embedder):
    """rrf_fuse over the components' lists is HybridRetriever's fusion (the reference)."""
    query = "Which model does Hearth use by default and how much memory?"
    components = [BM25Retriever(store), DenseRetriever(store, embedder)]
    expected = HybridRetriever(components).retrieve(query, k=5)
    fused = rrf_fuse([r.retrieve(query, 10) for r in components])[:5]
    assert [h.chunk.id for h in fused] == [h.chunk.id for h in expected]
    assert [h.scores for h in fused] == [h.scores for h in expected]
    assert [h.score for h in fused] == pytest.approx([h.score for h in expected])


def hit(chunk_id: int, text: str, score: float = 1.0) -> ScoredChunk:
    return ScoredChunk(Chunk(text, 0, len(text), id=chunk_id), score, {"bm25": score})


def test_rrf_fuse_weights_and_copies():
    a, b, c = hit(1, "alpha passage"), hit(2, "beta passage"), hit(3, "gamma passage")
    copy_of_b = hit(9, "beta   passage")  # the same passage, whitespace aside
    fused = rrf_fuse([[a, b], [copy_of_b, c]], rrf_k=60)
    assert [h.chunk.id for h in fused] == [2, 1, 3]  # b is in both lists
    assert [d.id for d in fused[0].duplicates] == [9]
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)
    assert fused[0].scores["rrf"] == fused[0].score and "bm25" in fused[0].scores
    # equal ranks tie (then the chunk id decides) until a list weighs more
    assert [h.chunk.id for h in rrf_fuse([[c], [a]])] == [1, 3]
    assert [h.chunk.id for h in rrf_fuse([[c], [a]], weights=[2.0, 1.0])] == [3, 1]
    assert a.scores == {"bm25": 1.0} and not b.duplicates  # the inputs are left as they were
    with pytest.raises(ValueError, match="2 lists but 1 weights"):
        rrf_fuse([[a], [b]], weights=[1.0])


def test_interleave_gives_every_list_its_turn():
    a1, a2, a3 = hit(1, "a one"), hit(2, "a two"), hit(3, "a three")
    b1, b2 = hit(4, "b one"), hit(5, "b two")
    out = interleave([[a1, a2, a3], [b1, hit(6, "a  one"), b2]])
    assert [h.chunk.id for h in out] == [1, 4, 2, 3, 5]
    assert [d.id for d in out[0].duplicates] == [6]
    assert [h.score for h in out] == sorted((h.score for h in out), reverse=True)


# ---- registry and the pass-through ---------------------------------------------------------


def test_make_strategy_names_the_choices(base):
    with pytest.raises(ConfigError) as err:
        make_strategy("telepathy", base, None)
    for name in STRATEGIES:
        assert name in str(err.value)
    with pytest.raises(ConfigError, match="needs a chat model"):
        make_strategy("multi-query", base, None)
    with pytest.raises(ConfigError, match="store and the embedder"):
        make_strategy("hyde", base, FailingModel())


def test_standard_strategy_calls_no_model(base):
    model = FailingModel()
    strategy = make_strategy("standard", base, model)
    result = strategy.run(QUESTION, k=3)
    assert [h.chunk.id for h in result.hits] == [h.chunk.id for h in base.retrieve(QUESTION, 3)]
    assert result.generated == {}
    assert strategy.retrieve(QUESTION, 3) == result.hits
    assert model.calls == 0


# ---- the model stages on the real small model ----------------------------------------------


@pytest.mark.parametrize("name", sorted(GENERATED_KEY))  # decompose: on Qwen, below
def test_strategy_on_real_model(name, base, store, embedder, chat_model, chunk_ids):
    knobs = {"n": 2} if name in ("multi-query", "rag-fusion", "decompose") else {}
    strategy = make_strategy(name, base, chat_model, store=store, embedder=embedder, **knobs)
    assert strategy.name == name
    question = "How tall is the Eiffel Tower and when was it built?"
    result = strategy.run(question, k=3)
    assert 1 <= len(result.hits) <= 3
    assert all(isinstance(h, ScoredChunk) and h.chunk.id in chunk_ids for h in result.hits)
    assert len({h.chunk.id for h in result.hits}) == len(result.hits)
    assert [h.score for h in result.hits] == sorted((h.score for h in result.hits), reverse=True)
    assert result.timings[name] > 0
    generated = result.generated[name]
    json.dumps(generated)  # --json prints it
    key, kind = GENERATED_KEY[name]
    if "error" in generated:  # the small model may break the schema twice: then a fallback
        assert generated[key] in ([], None)
        return
    value = generated[key]
    if kind is str:
        assert isinstance(value, str) and value.strip()
    else:  # the queries the model wrote: distinct non-empty strings
        assert value and all(isinstance(q, str) and q.strip() for q in value)
        assert len(set(value)) == len(value)
    if name == "hyde":  # the passage's dense hits fused with the question's own hits
        passage_hits = store.search_dense(embedder.embed([value])[0], 10)
        expected = rrf_fuse([passage_hits, base.retrieve(question, 10)])[:3]
        assert [h.chunk.id for h in result.hits] == [h.chunk.id for h in expected]
        from_passage = {p.chunk.id for p in passage_hits}
        assert all("hyde" in h.scores for h in result.hits if h.chunk.id in from_passage)


@pytest.mark.parametrize("model_kind", [FailingModel, ProseModel])
@pytest.mark.parametrize("name", MODEL_STRATEGIES)
def test_model_failure_falls_back_to_the_question(name, model_kind, base, store, embedder):
    model = model_kind()
    strategy = make_strategy(name, base, model, store=store, embedder=embedder)
    result = strategy.run(QUESTION, k=3)
    assert model.calls >= 1
    assert [h.chunk.id for h in result.hits] == [h.chunk.id for h in base.retrieve(QUESTION, 3)]
    error = result.generated[name]["error"]
    expected = "BackendError" if model_kind is FailingModel else "StructuredOutputError"
    assert error.startswith(expected)


def test_decompose_gives_every_part_passages(base, qwen, rag_chunks, store):
    """The instruction model splits a two-part question; both parts get their passage in k=2.
    (SmolLM2 rarely splits one: the fallback paths are tested with failing models below.)"""
    question = "Which Python version does Hearth need, and how tall is the Eiffel Tower?"
    result = DecomposeStrategy(base, qwen).run(question, k=2)
    generated = result.generated["decompose"]
    assert "error" not in generated
    subs = generated["sub_questions"]
    assert len(subs) >= 2
    texts = [h.chunk.text for h in result.hits]
    assert any("Python 3.11" in t for t in texts)
    assert any("330 metres" in t for t in texts)
    placed = [i for s in subs for i in s["chunk_ids"]]
    assert sorted(placed) == sorted(h.chunk.id for h in result.hits)  # each hit placed once


# ---- auto: routed ----------------------------------------------------------------------------


def test_auto_skips_retrieval_for_a_greeting(base, store, embedder):
    model = FailingModel()
    strategy = make_strategy("auto", base, model, store=store, embedder=embedder)
    result = strategy.run("hello there!", k=3)
    assert result.hits == []
    assert result.generated["route"]["retrieve"] is False
    assert model.calls == 0
    json.dumps(result.generated)


def test_auto_routes_and_records_the_route(base, store, embedder):
    model = FailingModel()
    strategy = RoutedStrategy(base, model, store=store, embedder=embedder)
    plain = strategy.run(QUESTION, k=3)
    assert plain.generated["route"]["strategy"] == "standard"
    assert [h.chunk.id for h in plain.hits] == [h.chunk.id for h in base.retrieve(QUESTION, 3)]
    assert model.calls == 0  # standard calls no model
    both = strategy.run("Compare the night train and the Eiffel Tower", k=3)
    assert both.generated["route"]["strategy"] == "decompose"
    assert "error" in both.generated["decompose"]  # the model failed: the question was searched
    assert both.hits and model.calls >= 1
    # without a model only the standard strategy can run
    no_model = RoutedStrategy(base, None, embedder=embedder)
    assert (
        no_model.run("Compare the night train and the Eiffel Tower", k=3).generated["route"][
            "strategy"
        ]
        == "standard"
    )
    # a router that picks a strategy which cannot run here: the standard one runs, and says so
    forced = RoutedStrategy(base, None, embedder=embedder, router=Router(embedder))
    compared = forced.run("Compare the night train and the Eiffel Tower", k=3)
    assert compared.generated["route"]["strategy"] == "decompose"
    assert compared.generated["route"]["ran"] == "standard" and compared.hits
    with pytest.raises(TypeError, match="options"):
        RoutedStrategy(base, model, embedder=embedder, n=2)


def test_auto_routes_to_the_index_the_question_is_about(
    tmp_path, base, store, embedder, rag_documents
):
    travel = build_store(tmp_path / "travel.sqlite3", [rag_documents["/docs/travel.md"]], embedder)
    try:
        strategy = RoutedStrategy(
            base,
            None,
            store=store,
            embedder=embedder,
            indexes={
                "guide": "Hearth software manual: installation, storage, chat models",
                "travel": "Travel notes: night trains, cities and monuments",
            },
            index_targets={"travel": (make_retriever("bm25", travel, embedder), travel)},
        )
        result = strategy.run("How tall is the Eiffel Tower?", k=3)
        assert result.generated["route"]["index"] == "travel"
        assert result.hits and {h.chunk.source for h in result.hits} == {"/docs/travel.md"}
        guide = strategy.run("Which Python version does Hearth require?", k=3)
        assert guide.generated["route"]["index"] == "guide"  # no target: the default index
        assert any("Python 3.11" in h.chunk.text for h in guide.hits)
    finally:
        travel.close()
