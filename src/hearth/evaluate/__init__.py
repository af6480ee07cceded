"""Evaluation: retrieval metrics over gold ids, answer metrics from an LLM judge with a non-LLM
fallback, a runner over datasets and an HTML report comparing strategies.

Hand-written rather than Ragas (which wants a paid API by default and returns NaN on judge
failures): every metric is a number in [0, 1] for every row; see runner.py for the output shape.
"""

from __future__ import annotations

from hearth.evaluate.fallback import METRICS, FallbackJudge, MetricScore
from hearth.evaluate.judge import LLMJudge
from hearth.evaluate.report import render_report, write_report
from hearth.evaluate.retrieval_metrics import gold_matches, retrieval_metrics
from hearth.evaluate.runner import HearthPipeline, PipelineResult, evaluate_rows, summarize

__all__ = [
    "METRICS",
    "FallbackJudge",
    "HearthPipeline",
    "LLMJudge",
    "MetricScore",
    "PipelineResult",
    "evaluate_rows",
    "gold_matches",
    "render_report",
    "retrieval_metrics",
    "summarize",
    "write_report",
]
