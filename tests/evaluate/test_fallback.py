"""The non-LLM fallback: always numbers in [0, 1], and corrupted rows score lower."""

from __future__ import annotations

import math

import pytest

from hearth.evaluate import METRICS, FallbackJudge, evaluate_rows
from hearth.evaluate.fallback import average_precision, clamp, is_noncommittal

from .conftest import CLEAN, with_unrelated_contexts, with_wrong_answer


@pytest.fixture(scope="module")
def judge(embedder):
    return FallbackJudge(embedder)


def _ok(scores):
    for m in METRICS:
        v = scores[m].value
        assert isinstance(v, float) and not math.isnan(v) and 0.0 <= v <= 1.0, (m, v)


@pytest.mark.parametrize(
    "question,answer,contexts,truth",
    [
        ("What?", "", [], None),
        ("What?", "   ", ["some context"], ""),
        ("", "An answer.", [], "A truth."),
        (
            "Où est la tour?",
            "La tour Eiffel est à Paris. 東京タワーは東京にあります。",
            ["Paris 🗼"],
            "Paris.",
        ),
        ("Q?", "word " * 20000, ["context " * 20000, ""], "truth " * 5000),
        ("Q?", "[1] [2].", ["# Heading only"], None),
        ("Q?", "12345", ["12345"], "12345"),
    ],
)
def test_edge_cases_are_numbers_in_range(judge, question, answer, contexts, truth):
    _ok(judge.score(question, answer, contexts, truth))


def test_empty_answer_and_no_contexts_give_zero_with_reason(judge):
    scores = judge.score("Where is the index?", "", [], None)
    assert all(scores[m].value == 0.0 for m in METRICS)
    assert "empty" in scores["faithfulness"].reason
    scores = judge.score("Where is the index?", "In a SQLite file.", [], "In a SQLite file.")
    assert scores["context_precision"].reason == "no contexts"


def test_helpers():
    assert clamp(float("nan")) == 0.0 and clamp(2.0) == 1.0 and clamp(-1) == 0.0
    assert average_precision([False, True, True]) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert average_precision([]) == 0.0
    assert is_noncommittal("The indexed documents do not seem to contain an answer.")
    assert not is_noncommittal("Hearth requires Python 3.11.")


def _means(result):
    return result["mean"]


def test_corrupted_rows_score_lower(judge):
    clean = evaluate_rows(CLEAN, judge=judge)
    wrong = evaluate_rows([with_wrong_answer(r, i) for i, r in enumerate(CLEAN)], judge=judge)
    unrelated = evaluate_rows([with_unrelated_contexts(r) for r in CLEAN], judge=judge)
    c, w, u = _means(clean), _means(wrong), _means(unrelated)
    assert c["faithfulness"] >= 0.8
    assert w["faithfulness"] < c["faithfulness"] - 0.5
    assert u["context_precision"] < c["context_precision"] - 0.5
    assert u["context_recall"] < c["context_recall"] - 0.5
    # and row by row: no corrupted row beats its clean row
    for a, b in zip(clean["rows"], wrong["rows"], strict=True):
        assert b["faithfulness"] <= a["faithfulness"]
    for a, b in zip(clean["rows"], unrelated["rows"], strict=True):
        assert b["context_recall"] <= a["context_recall"]


def test_output_shape_keeps_input_order(judge):
    rows = [dict(r, id=i) for i, r in enumerate(CLEAN)]
    result = evaluate_rows(rows, judge=judge)
    assert [r["id"] for r in result["rows"]] == list(range(len(CLEAN)))
    for r in result["rows"]:
        assert r["index"] == r["id"] and r["strategy"] is None
        assert r["judge"] == {m: "fallback" for m in METRICS}
        for m in METRICS:
            assert 0.0 <= r[m] <= 1.0
    assert set(METRICS) <= set(result["mean"])
    assert result["judge"] == "fallback"


def test_rows_without_answer_need_a_pipeline(judge):
    with pytest.raises(ValueError, match="row 1 has no answer"):
        evaluate_rows([{"question": "Q?", "contexts": []}], judge=judge)
