"""Rerankers with real parts: the embedded MiniLM's token vectors and the embedded Qwen model."""

from __future__ import annotations

import pytest

from hearth.errors import ConfigError
from hearth.rag.rerank import (
    RERANKERS,
    LateInteractionReranker,
    LLMListwiseReranker,
    LLMPointwiseReranker,
    as_permutation,
    make_reranker,
    rerank_stage,
    reranked,
    token_vectors,
)
from tests.rag.conftest import as_hits, section

QUERY = "How tall is the Eiffel Tower?"


@pytest.fixture(scope="module")
def relevant_last(rag_chunks):
    """Every chunk, the one about the Eiffel Tower ranked last by the "first stage"."""
    eiffel = section(rag_chunks, "Eiffel")
    return as_hits([c for c in rag_chunks if c is not eiffel] + [eiffel])


@pytest.fixture(scope="module")
def qwen():
    from hearth import llm

    return llm.load("local:qwen2.5-coder-0.5b", context_size=2048)


@pytest.mark.parametrize("mode", ["tokens", "sentences"])
def test_late_interaction_brings_the_relevant_passage_first(mode, relevant_last, embedder):
    reranker = LateInteractionReranker(embedder, mode=mode, blend=0.0)
    out = reranker.rerank(QUERY, relevant_last, k=3)
    assert reranker.last_mode == mode and reranker.last_error is None
    assert len(out) == 3
    assert "Eiffel" in out[0].chunk.text
    assert [h.score for h in out] == sorted((h.score for h in out), reverse=True)
    assert all(h.score == h.scores["rerank"] for h in out)
    assert "rerank" not in relevant_last[-1].scores  # new hit objects; inputs untouched


def test_token_vectors_come_from_the_embedders_own_model(embedder):
    (vectors,) = token_vectors(embedder, ["Hearth keeps one SQLite file."])
    assert vectors.shape == (embedder.count_tokens("Hearth keeps one SQLite file."), embedder.dim)
    assert abs(float((vectors**2).sum(axis=1).mean()) - 1.0) < 1e-4


def test_blending_keeps_the_other_scores_and_first_stage_evidence(relevant_last, embedder):
    hits = as_hits([h.chunk for h in relevant_last])
    hits[0].scores["bm25"] = 3.0
    out = LateInteractionReranker(embedder, mode="tokens", blend=0.5).rerank(QUERY, hits)
    assert len(out) == len(hits)
    by_id = {h.chunk.id: h for h in out}
    assert by_id[hits[0].chunk.id].scores["bm25"] == 3.0
    assert all({"rerank", "rerank_raw"} <= set(h.scores) for h in out)
    # fused: the first-stage top is not left last however the reranker ranks it
    assert out[-1].chunk.id != hits[0].chunk.id


def test_reranked_orders_ties_by_first_stage_and_cuts_k(rag_chunks):
    hits = as_hits(rag_chunks[:4])
    out = reranked(hits, [0.1, 0.5, 0.5, 0.2], k=3)
    assert [h.chunk.id for h in out] == [hits[1].chunk.id, hits[2].chunk.id, hits[3].chunk.id]
    with pytest.raises(ValueError):
        reranked(hits, [0.1])


class BrokenEmbedder:
    """An embedder whose model fails (what a corrupt ONNX export would do)."""

    name, dim = "broken", 384

    def embed(self, texts):
        raise RuntimeError("model file is corrupt")

    def count_tokens(self, text):
        return 0


def test_a_failing_reranker_returns_the_first_stage_order(relevant_last):
    reranker = LateInteractionReranker(BrokenEmbedder())
    stage = rerank_stage(reranker, QUERY, relevant_last, k=2)
    assert [h.chunk.id for h in stage.hits] == [h.chunk.id for h in relevant_last[:2]]
    assert "corrupt" in stage.generated["rerank"]["error"]
    assert stage.generated["rerank"]["fallback"] is True
    assert "rerank" in stage.timings


def test_registry_and_errors(embedder):
    assert set(RERANKERS) == {"none", "late-interaction", "llm-pointwise", "llm-listwise"}
    assert isinstance(make_reranker("late-interaction", embedder=embedder), LateInteractionReranker)
    hits = as_hits([])
    assert make_reranker("none").rerank("q", hits) == []
    with pytest.raises(ConfigError, match="late-interaction, llm-listwise, llm-pointwise, none"):
        make_reranker("cross-encoder")
    with pytest.raises(ConfigError, match="needs a chat model"):
        make_reranker("llm-listwise", embedder=embedder)
    with pytest.raises(ConfigError, match="needs an embedder"):
        make_reranker("late-interaction")


def test_as_permutation_repairs_a_model_answer():
    assert as_permutation([3, 1, 3, 9, "x"], 4) == [2, 0, 1, 3]
    assert as_permutation("[2, 1]", 3) == [1, 0, 2]
    assert as_permutation(None, 2) == [0, 1]


class FailingModel:
    """A chat model whose server is down."""

    name = "down"
    context_size = 2048

    def chat(self, messages, **params):
        raise ConnectionError("server unreachable")


@pytest.mark.parametrize("cls", [LLMPointwiseReranker, LLMListwiseReranker])
def test_llm_rerankers_fall_back_when_the_model_fails(cls, relevant_last):
    reranker = cls(FailingModel())
    out = reranker.rerank(QUERY, relevant_last, k=3)
    assert [h.chunk.id for h in out] == [h.chunk.id for h in relevant_last[:3]]
    assert "server unreachable" in reranker.last_error


def test_llm_pointwise_puts_the_answering_passage_first(qwen, rag_chunks):
    hits = as_hits([section(rag_chunks, "SQLite file"), section(rag_chunks, "Eiffel")])
    reranker = LLMPointwiseReranker(qwen)
    out = reranker.rerank(QUERY, hits)
    assert reranker.last_method == "logits" and reranker.last_error is None
    assert "Eiffel" in out[0].chunk.text
    assert 0.0 <= out[1].scores["rerank"] < out[0].scores["rerank"] <= 1.0


def test_llm_listwise_returns_a_ranking_of_every_passage(qwen, rag_chunks):
    hits = as_hits([section(rag_chunks, "SQLite file"), section(rag_chunks, "Eiffel")])
    reranker = LLMListwiseReranker(qwen, window=2)
    out = reranker.rerank(QUERY, hits)
    assert reranker.last_error is None and len(reranker.last_orders) == 1
    assert sorted(h.chunk.id for h in out) == sorted(h.chunk.id for h in hits)
    assert [h.scores["rerank"] for h in out] == [1.0, 0.5]


def test_listwise_windows_slide_from_the_bottom_up():
    from hearth.rag.rerank import _window_starts

    assert _window_starts(10, 5, 2) == [5, 3, 1, 0]
    assert _window_starts(4, 5, 2) == [0]
    assert _window_starts(1, 5, 2) == []
