"""The LLM judge: a real Qwen2.5-Coder-0.5B on corrupted rows, and the failure path."""

from __future__ import annotations

import pytest

from hearth.evaluate import METRICS, LLMJudge, evaluate_rows
from hearth.types import ChatResult

from .conftest import CLEAN, with_unrelated_contexts, with_wrong_answer


@pytest.fixture(scope="session")
def qwen():
    from hearth import llm

    return llm.load("local:qwen2.5-coder-0.5b", context_size=4096)


class Broken:
    """A chat model whose every call fails, as a dead server would."""

    name = "broken"
    context_size = 2048
    can_stream = False
    supports_tools = False
    supports_json_schema = False

    def __init__(self):
        self.calls = 0

    def chat(self, messages, **params) -> ChatResult:
        self.calls += 1
        raise ConnectionError("judge server went away")


class Garbled(Broken):
    """Answers, but never with valid JSON."""

    def chat(self, messages, **params) -> ChatResult:
        self.calls += 1
        return ChatResult("not json at all", self.name)


@pytest.mark.parametrize("model_class", [Broken, Garbled])
def test_judge_failure_is_retried_then_scored_by_the_fallback(embedder, model_class):
    model = model_class()
    retried = []
    judge = LLMJudge(model, embedder, retries=2, on_retry=lambda what, exc: retried.append(what))
    result = evaluate_rows(CLEAN[:2], judge=judge)
    for row in result["rows"]:
        assert row["fallback"] == list(METRICS)
        assert row["judge"] == {m: "fallback" for m in METRICS}
        assert all("judge failed" in row["reasons"][m] for m in METRICS)
        assert all(0.0 <= row[m] <= 1.0 for m in METRICS)
    # four metrics, each call tried 3 times, two rows
    assert model.calls == 2 * 4 * 3 == len(retried)
    assert result["fallback_rows"] == 2
    # the fallback's numbers, not zeros: the clean rows are faithful
    assert result["mean"]["faithfulness"] >= 0.8


def test_llm_judge_scores_fall_on_corrupted_rows(qwen, embedder):
    judge = LLMJudge(qwen, embedder)
    clean = CLEAN[3]  # the night train: numbers a wrong answer cannot match
    scores = judge.score(
        clean["question"], clean["answer"], clean["contexts"], clean["ground_truth"]
    )
    assert all(s.judge == "llm" for s in scores.values()), scores
    wrong = with_wrong_answer(clean, 3)
    unrelated = with_unrelated_contexts(clean)
    faithfulness = judge.faithfulness(wrong["question"], wrong["answer"], wrong["contexts"])
    recall = judge.context_recall(
        unrelated["answer"], unrelated["contexts"], unrelated["ground_truth"]
    )
    precision = judge.context_precision(
        unrelated["question"], unrelated["contexts"], unrelated["ground_truth"]
    )
    assert scores["faithfulness"].value > faithfulness.value
    assert scores["context_recall"].value > recall.value
    assert scores["context_precision"].value > precision.value
    for s in [*scores.values(), faithfulness, recall, precision]:
        assert 0.0 <= s.value <= 1.0
