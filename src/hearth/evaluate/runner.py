"""Evaluate a dataset of rows: fill in missing answers and contexts from Hearth's own pipeline,
score every row with a judge, add retrieval metrics where gold ids are given, average.

Hand-written: a loop over rows that keeps input order and never drops a row; the scoring is the
judge's (judge.py / fallback.py), the pipeline is hearth.rag's Answerer.

Output shape (also what `hearth eval --json` prints):
  {"rows": [row, ...], "mean": {metric: mean}, "by_strategy": {name: {metric: mean}}, ...}
One output row per input row and strategy, in input order (for several strategies: row 0
under each strategy in the order given, then row 1, ...). Each output row is the input row plus:
  "index"     0-based position in the dataset
  "strategy"  the strategy name; None without --strategies (rows' own answers, default retriever)
  "answer", "contexts"  as given, or from the pipeline ("generated" names which)
  the four metrics      numbers in [0, 1], never NaN
  "judge"     {metric: "llm" | "fallback"}
  "fallback"  metrics the non-LLM fallback scored because the LLM judge failed
              ([] under --no-llm-judge, where the fallback is the judge)
  "reasons"   {metric: why}, where there is one (empty answer, no contexts, judge failed)
  "hit@k", "mrr@k", "ndcg@k", "precision@k", "recall@k"  when the row has "gold" and a
              pipeline ran
  "seconds"   time for the row (pipeline + judge)
"mean" averages every numeric metric over the rows that have it;
"by_strategy" does so per strategy (only when strategies were named).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hearth.evaluate.fallback import METRICS, MetricScore, clamp
from hearth.evaluate.retrieval_metrics import retrieval_metrics
from hearth.types import ScoredChunk

__all__ = ["HearthPipeline", "PipelineResult", "evaluate_rows", "summarize"]


class Judge(Protocol):
    name: str

    def score(
        self, question: str, answer: str, contexts: list[str], ground_truth: str | None = None
    ) -> dict[str, MetricScore]: ...


@dataclass
class PipelineResult:
    """What Hearth's pipeline gives for one question."""

    answer: str
    contexts: list[str]
    retrieved: list[tuple[int | None, str]] = field(default_factory=list)  # (chunk id, source)
    stages: dict[str, Any] = field(default_factory=dict)  # what the strategy's stages generated


class HearthPipeline:
    """Hearth's own RAG pipeline for one strategy: retrieve with `retriever`, answer with an
    Answerer (rag.answer). Contexts are the passages the answer was written from, or the
    retrieved passages when the Answerer found nothing relevant (so they can be scored)."""

    def __init__(self, answerer: Any, k: int = 5) -> None:
        self.answerer = answerer
        self.k = k

    def retrieve(self, question: str) -> list[ScoredChunk]:
        return self.answerer.retrieve(question, k=self.k)[0]

    def run(self, question: str, *, answer: bool = True) -> PipelineResult:
        # retrieved once: the answer is written from the very hits the retrieval metrics score
        # (a strategy that calls a model would otherwise run, and maybe differ, twice)
        hits, stages = self.answerer.retrieve(question, k=self.k)
        retrieved = [(h.chunk.id, h.chunk.source) for h in hits]
        if not answer:
            return PipelineResult("", [h.chunk.text for h in hits], retrieved, stages)
        answerer = copy.copy(self.answerer)
        answerer.retriever = _Known(hits)
        result = answerer.answer(question, k=self.k)
        passages = result.passages or hits
        return PipelineResult(result.text, [p.chunk.text for p in passages], retrieved, stages)


class _Known:
    """A retriever that returns hits already found."""

    def __init__(self, hits: list[ScoredChunk]) -> None:
        self.hits = hits

    def retrieve(self, query: str, k: int = 5, filters: Any = None) -> list[ScoredChunk]:
        return self.hits[:k]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def evaluate_rows(
    rows: Sequence[dict[str, Any]],
    *,
    judge: Judge,
    pipeline_for: Callable[[str | None], Any] | None = None,
    strategies: Sequence[str] | None = None,
    k: int = 5,
    progress: Callable[[int, int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Score `rows` (dicts with "question", optional "answer", "contexts", "ground_truth",
    "gold") with `judge`; see the module docstring for the output.

    `pipeline_for(strategy)` returns something with `run(question, answer=True) ->
    PipelineResult` (a HearthPipeline); it is called once per strategy, and only when some row
    lacks an answer or contexts, or has gold ids. `progress(done, total, row)` after each row.
    """
    names: list[str | None] = list(strategies) if strategies else [None]
    pipelines: dict[str | None, Any] = {}
    cache: dict[tuple, dict[str, MetricScore]] = {}  # the same row under several strategies

    def pipeline(name: str | None):
        if pipeline_for is None:
            return None
        if name not in pipelines:
            pipelines[name] = pipeline_for(name)
        return pipelines[name]

    judge_name = getattr(judge, "name", type(judge).__name__)
    out: list[dict[str, Any]] = []
    total = len(rows) * len(names)
    for index, row in enumerate(rows):
        question = _text(row.get("question")).strip()
        if not question:
            raise ValueError(f"row {index + 1} has no question")
        for name in names:
            started = time.perf_counter()
            result = dict(row)
            result.update(index=index, strategy=name)
            answer, contexts = row.get("answer"), row.get("contexts")
            gold = row.get("gold")
            needs_answer = answer is None
            needs_contexts = contexts is None
            generated: list[str] = []
            if needs_answer or needs_contexts or gold:
                pipe = pipeline(name)
                if pipe is None and (needs_answer or needs_contexts):
                    raise ValueError(
                        f"row {index + 1} has no {'answer' if needs_answer else 'contexts'} "
                        "and no pipeline was given to produce it"
                    )
                if pipe is not None:
                    ran = pipe.run(question, answer=needs_answer)
                    if needs_answer:
                        answer = ran.answer
                        generated.append("answer")
                    if needs_contexts:
                        contexts = ran.contexts
                        generated.append("contexts")
                    if gold:
                        result.update(retrieval_metrics(ran.retrieved, list(gold), k))
                    if ran.stages:
                        result["stages"] = ran.stages
            contexts = [_text(c) for c in (contexts or [])]
            answer = _text(answer)
            truth = row.get("ground_truth")
            truth = _text(truth) if truth is not None else None
            key = (question, answer, tuple(contexts), truth)
            if key not in cache:
                cache[key] = judge.score(question, answer, contexts, truth)
            scores = cache[key]
            result.update(answer=answer, contexts=contexts)
            if generated:
                result["generated"] = generated
            for metric in METRICS:
                result[metric] = round(clamp(scores[metric].value), 6)
            result["judge"] = {m: scores[m].judge for m in METRICS}
            # metrics the fallback scored because the LLM judge failed (a FallbackJudge chosen
            # on purpose scores every metric and lists none here)
            result["fallback"] = [
                m for m in METRICS if scores[m].judge == "fallback" and judge_name != "fallback"
            ]
            reasons = {m: scores[m].reason for m in METRICS if scores[m].reason}
            if reasons:
                result["reasons"] = reasons
            result["seconds"] = round(time.perf_counter() - started, 3)
            out.append(result)
            if progress is not None:
                progress(len(out), total, result)
    summary: dict[str, Any] = {
        "rows": out,
        "mean": summarize(out),
        "judge": judge_name,
        "k": k,
    }
    if strategies:
        summary["by_strategy"] = {
            n: summarize([r for r in out if r["strategy"] == n]) for n in names
        }
    summary["fallback_rows"] = sum(1 for r in out if r["fallback"])
    return summary


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Mean of every metric over the rows that have it (the four always, retrieval metrics
    where gold ids were given) and the mean seconds per row."""
    keys = [*METRICS]
    for row in rows:
        keys += [k for k in row if "@" in k and k not in keys]
    mean: dict[str, float] = {}
    for key in [*keys, "seconds"]:
        values = [float(r[key]) for r in rows if isinstance(r.get(key), int | float)]
        if values:
            mean[key] = round(sum(values) / len(values), 6)
        elif key in METRICS:
            mean[key] = 0.0
    return mean
