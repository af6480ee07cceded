"""Retrieval metrics against values computed by hand."""

from __future__ import annotations

import math

import pytest

from hearth.evaluate.retrieval_metrics import gold_matches, retrieval_metrics

RANKED = [(11, "/data/a.md"), (12, "/data/b.md"), (13, "/data/docs/c.md"), (14, "/data/a.md")]


def test_chunk_id_gold_by_hand():
    m = retrieval_metrics(RANKED, [12, 14], k=3)
    # relevant at rank 2 only (14 is at rank 4, outside k=3)
    assert m["hit@3"] == 1.0
    assert m["mrr@3"] == pytest.approx(0.5)
    ideal = 1 + 1 / math.log2(3)
    assert m["ndcg@3"] == pytest.approx((1 / math.log2(3)) / ideal)
    assert m["precision@3"] == pytest.approx(1 / 3)
    assert m["recall@3"] == pytest.approx(0.5)


def test_source_suffix_and_glob_gold():
    m = retrieval_metrics(RANKED, ["docs/c.md"], k=4)
    assert m["hit@4"] == 1.0 and m["mrr@4"] == pytest.approx(1 / 3)
    assert m["ndcg@4"] == pytest.approx(1 / math.log2(4))
    m = retrieval_metrics(RANKED, ["*.md"], k=2)
    assert m["mrr@2"] == 1.0 and m["precision@2"] == 1.0 and m["recall@2"] == 1.0


def test_a_gold_file_counts_once_for_recall_and_ndcg():
    m = retrieval_metrics(RANKED, ["a.md"], k=4)
    # a.md at ranks 1 and 4: precision counts both, recall and nDCG the first only
    assert m["precision@4"] == pytest.approx(0.5)
    assert m["recall@4"] == 1.0
    assert m["ndcg@4"] == pytest.approx(1.0)


def test_miss_and_no_gold_are_zero_not_nan():
    m = retrieval_metrics(RANKED, ["z.md", 99], k=5)
    assert all(v == 0.0 for v in m.values())
    m = retrieval_metrics([], [], k=5)
    assert all(v == 0.0 for v in m.values())


def test_string_digits_are_chunk_ids_and_k_must_be_positive():
    assert gold_matches("12", (12, "/x.md"))
    assert not gold_matches("12", (13, "/12"))
    with pytest.raises(ValueError):
        retrieval_metrics(RANKED, [11], k=0)
