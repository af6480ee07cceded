"""MMR with the real embedder: a near-duplicate gives way to a different relevant passage."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from hearth.rag.mmr import diversify, hit_vectors, mmr
from tests.rag.conftest import as_hits, section

QUERY = "Where does Hearth store its index and what memory does the model need?"


@pytest.fixture(scope="module")
def hits(rag_chunks):
    storage = section(rag_chunks, "SQLite file")
    near_copy = replace(
        storage,
        id=99,
        text=storage.text.replace("one SQLite file", "a single SQLite file"),
    )
    models = section(rag_chunks, "SmolLM2")
    return as_hits([storage, near_copy, models])


def test_a_near_duplicate_is_pushed_below_a_different_passage(hits, embedder):
    storage = {hits[0].chunk.id, hits[1].chunk.id}
    by_relevance = diversify(QUERY, hits, embedder, k=2, lambda_=1.0)
    assert {h.chunk.id for h in by_relevance} == storage  # both copies win on relevance alone
    out = diversify(QUERY, hits, embedder, k=2, lambda_=0.5)
    assert out[0].chunk.id in storage and out[1].chunk.id == hits[2].chunk.id
    assert all("mmr" in h.scores for h in out)
    first = next(h for h in hits if h.chunk.id == out[0].chunk.id)
    assert out[0].score == first.score  # the first-stage score is kept
    assert "mmr" not in hits[0].scores  # inputs untouched


def test_lambda_one_is_relevance_order(hits, embedder):
    query_vector = embedder.embed([QUERY])[0]
    vectors = hit_vectors(embedder, hits)
    relevance = vectors @ query_vector
    out = mmr(query_vector, hits, vectors, lambda_=1.0)
    expected = [hits[i].chunk.id for i in np.argsort(-relevance, kind="stable")]
    assert [h.chunk.id for h in out] == expected
    assert [round(h.scores["mmr"], 5) for h in out] == [
        round(float(v), 5) for v in sorted(relevance, reverse=True)
    ]


def test_checks_and_edges(hits, embedder):
    vectors = hit_vectors(embedder, hits)
    q = embedder.embed([QUERY])[0]
    with pytest.raises(ValueError):
        mmr(q, hits, vectors[:2])
    with pytest.raises(ValueError):
        mmr(q, hits, vectors, lambda_=1.5)
    assert mmr(q, hits, vectors, k=0) == []
    assert len(mmr(q, hits, vectors, k=10)) == len(hits)
    assert diversify(QUERY, [], embedder) == []
