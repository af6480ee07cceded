"""BM25, dense and hybrid (RRF) retrievers over a small real corpus with the real embedder."""

from __future__ import annotations

import re

import pytest

from hearth.errors import ConfigError, EmbedderMismatchError
from hearth.index.store import SQLiteStore
from hearth.rag.retrievers import (
    BM25Retriever,
    DenseRetriever,
    HybridRetriever,
    make_retriever,
)
from hearth.types import Chunk, Document, Filters

CORPUS = {
    "/kb/pets/dogs.md": "Dogs are loyal pets that love long walks with their owners.\n\n"
    "Puppies need training and plenty of sleep.",
    "/kb/pets/cats.md": "Cats groom themselves and nap in the afternoon sun.\n\n"
    "A kitten plays with string for hours.",
    "/kb/errors/disk.txt": "Error ERR-4471 means the disk is full; delete old logs.\n\n"
    "Error ERR-5002 means the network cable is unplugged.",
    "/kb/errors/codes.txt": "The ERR-4471 code appears in the storage service logs.\n\n"
    "Restart the storage service after freeing space.",
    "/kb/travel/trains.md": "Night trains cross the Alps between Zurich and Milan.\n\n"
    "Book sleeper cabins weeks in advance.",
    "/kb/travel/pdfguide.pdf": "Pack a light bag and keep your passport with you.\n\n"
    "Dogs may travel on trains with a ticket.",
}
QUERY = "loyal canine companions and error 4471"


@pytest.fixture(scope="module")
def store(tmp_path_factory, embedder):
    path = tmp_path_factory.mktemp("retrievers") / "index.sqlite3"
    s = SQLiteStore(path)
    s.check_embedder(embedder.name, embedder.dim)
    batch = []
    for source, text in CORPUS.items():
        file_type = source.rsplit(".", 1)[1]
        doc = Document(source, f"text/{file_type}", text, f"h{len(text)}", {"file_type": file_type})
        chunks = [
            Chunk(text=m.group(), start=m.start(), end=m.end())
            for m in re.finditer(r"[^\n]+", text)
        ]
        batch.append((doc, chunks, embedder.embed([c.text for c in chunks])))
    s.replace_documents(batch)
    yield s
    s.close()


def test_bm25_retriever(store):
    hits = BM25Retriever(store).retrieve("ERR-4471 storage", k=3)
    assert 0 < len(hits) <= 3
    assert {h.chunk.source for h in hits} <= {"/kb/errors/disk.txt", "/kb/errors/codes.txt"}
    assert all(set(h.scores) == {"bm25"} for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert BM25Retriever(store).retrieve("the of and", k=3) == []


def test_dense_retriever(store, embedder):
    hits = DenseRetriever(store, embedder).retrieve("canine companions", k=2)
    assert len(hits) == 2
    assert hits[0].chunk.source == "/kb/pets/dogs.md"
    assert all(set(h.scores) == {"dense"} for h in hits)


def test_dense_retriever_refuses_another_embedder(store, embedder):
    class Renamed:
        name, dim = "not-the-same-model", embedder.dim

        def embed(self, texts):
            return embedder.embed(texts)

        def count_tokens(self, text):
            return embedder.count_tokens(text)

    with pytest.raises(EmbedderMismatchError):
        DenseRetriever(store, Renamed()).retrieve("dogs", k=2)


def _hand_rrf(rankings: list[list[int]], rrf_k: int) -> dict[int, float]:
    fused: dict[int, float] = {}
    for ranking in rankings:
        for position, chunk_id in enumerate(ranking):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (rrf_k + position + 1)
    return fused


@pytest.mark.parametrize("rrf_k", [60, 0, 5])
def test_hybrid_matches_a_hand_computed_rrf(store, embedder, rrf_k):
    bm25, dense = BM25Retriever(store), DenseRetriever(store, embedder)
    hybrid = HybridRetriever([bm25, dense], rrf_k=rrf_k, candidates=8)
    k = 4
    depth = hybrid.depth(k)
    bm25_hits = bm25.retrieve(QUERY, depth)
    dense_hits = dense.retrieve(QUERY, depth)
    expected = _hand_rrf([[h.chunk.id for h in bm25_hits], [h.chunk.id for h in dense_hits]], rrf_k)

    hits = hybrid.retrieve(QUERY, k)
    assert len(hits) == k
    assert [h.score for h in hits] == pytest.approx(sorted(expected.values(), reverse=True)[:k])
    for h in hits:
        assert h.score == pytest.approx(expected[h.chunk.id]) == h.scores["rrf"]
    # per-retriever evidence is kept, exactly as each component scored it
    bm25_scores = {h.chunk.id: h.score for h in bm25_hits}
    dense_scores = {h.chunk.id: h.score for h in dense_hits}
    for h in hits:
        component = {"rrf": h.score}
        if h.chunk.id in bm25_scores:
            component["bm25"] = bm25_scores[h.chunk.id]
        if h.chunk.id in dense_scores:
            component["dense"] = dense_scores[h.chunk.id]
        assert h.scores == pytest.approx(component)
    # the fusion brings up both the exact-code hit (keywords) and the meaning hit (dense)
    top_sources = {h.chunk.source for h in hits[:3]}
    assert "/kb/pets/dogs.md" in top_sources
    assert top_sources & {"/kb/errors/disk.txt", "/kb/errors/codes.txt"}


def test_hybrid_respects_k_and_filters(store, embedder):
    hybrid = make_retriever("hybrid", store, embedder)
    for k in (1, 3, 7):
        assert len(hybrid.retrieve(QUERY, k)) == k
    only_md = hybrid.retrieve(QUERY, 10, Filters(file_types=("md",)))
    assert only_md and {h.chunk.source.rsplit(".", 1)[1] for h in only_md} == {"md"}
    pets = Filters(source_glob="pets/*")
    for kind in ("bm25", "dense", "hybrid"):
        hits = make_retriever(kind, store, embedder).retrieve("dogs cats kitten puppies", 10, pets)
        assert hits and all(h.chunk.source.startswith("/kb/pets/") for h in hits)
    assert hybrid.retrieve(QUERY, 5, Filters(source_glob="*.docx")) == []
    assert hybrid.retrieve("   ", 5) == []


def test_make_retriever_registry(store, embedder):
    assert isinstance(make_retriever("bm25", store, embedder), BM25Retriever)
    assert isinstance(make_retriever("dense", store, embedder), DenseRetriever)
    hybrid = make_retriever("hybrid", store, embedder)
    assert isinstance(hybrid, HybridRetriever) and hybrid.rrf_k == 60
    with pytest.raises(ConfigError, match="bm25, dense, hybrid"):
        make_retriever("magic", store, embedder)
