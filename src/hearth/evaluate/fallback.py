"""Non-LLM scores for the four answer metrics: the embedded embedder plus content-word overlap.

Hand-written because it is what an evaluation falls back on when the judge model fails, so it must
never fail itself: sentence support is hearth.rag.support's (the arithmetic citation checking
uses), every score is clamped to [0, 1] and an empty answer or no contexts gives 0 with a reason,
never NaN. It also runs alone (`hearth eval --no-llm-judge`) in milliseconds per row.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from hearth.rag.citations import SUPPORT_THRESHOLD, strip_markers
from hearth.rag.sentences import is_heading, split_sentences
from hearth.rag.support import Evidence, combine, content_words, embed_all, lexical_coverage
from hearth.types import Chunk, Embedder, ScoredChunk

__all__ = [
    "METRICS",
    "FallbackJudge",
    "MetricScore",
    "average_precision",
    "clamp",
    "is_noncommittal",
    "sentences_of",
]

METRICS = ("faithfulness", "answer_relevancy", "context_precision", "context_recall")
MAX_CHARS = 8000  # of an answer, a context or a ground truth that is scored (the rest is cut)
# question-vs-answer cosine of all-MiniLM-L6-v2: unrelated pairs sit near 0.1, a direct answer
# near 0.7; rescaled to [0, 1] between the two
RELEVANCY_LOW, RELEVANCY_HIGH = 0.1, 0.7
# a context is relevant to the question (when there is no ground truth) at this support
QUESTION_RELEVANCE = 0.4

_NONCOMMITTAL = re.compile(
    r"\b(i (do not|don't|cannot|can't) (know|answer|tell|say|find)|not sure|no idea|"
    r"(do|does) not (seem to )?contain|(is|are) not (mentioned|stated|given|provided|specified)|"
    r"no (information|answer|mention)|cannot be (determined|answered)|unable to (answer|find))\b",
    re.I,
)


@dataclass
class MetricScore:
    """One metric of one row: a number in [0, 1], who scored it, and why when it is 0 or a
    fallback ("llm" | "fallback")."""

    value: float
    judge: str = "fallback"
    reason: str = ""
    details: dict = field(default_factory=dict)


def clamp(x: float) -> float:
    """x in [0, 1]; NaN and infinities become 0."""
    x = float(x)
    if math.isnan(x) or math.isinf(x):
        return 0.0
    return min(1.0, max(0.0, x))


def is_noncommittal(answer: str) -> bool:
    """An evasive answer: "I don't know", "the documents do not contain ...", and the like."""
    return bool(_NONCOMMITTAL.search(answer or ""))


def sentences_of(text: str) -> list[str]:
    """The sentences of `text` (citation markers and markdown headings left out)."""
    text = strip_markers((text or "")[:MAX_CHARS])
    out = []
    for span in split_sentences(text):
        if is_heading(text, span):
            continue
        piece = " ".join(text[span.start : span.end].split())
        if any(ch.isalnum() for ch in piece):
            out.append(piece)
    return out


def average_precision(relevant: list[bool]) -> float:
    """Ragas' context precision: mean of precision@i over the ranks i holding a relevant
    context; 0.0 when none is relevant."""
    hits, total = 0, 0.0
    for i, rel in enumerate(relevant, start=1):
        if rel:
            hits += 1
            total += hits / i
    return total / hits if hits else 0.0


def as_passages(contexts: list[str]) -> list[ScoredChunk]:
    out = []
    for text in contexts:
        text = (text or "")[:MAX_CHARS]
        out.append(ScoredChunk(Chunk(text, 0, len(text)), score=0.0))
    return out


class FallbackJudge:
    """Scores a row with the embedder and word overlap only (no model call)."""

    name = "fallback"

    def __init__(self, embedder: Embedder, threshold: float = SUPPORT_THRESHOLD) -> None:
        self.embedder = embedder
        self.threshold = threshold

    def score(
        self,
        question: str,
        answer: str,
        contexts: list[str],
        ground_truth: str | None = None,
    ) -> dict[str, MetricScore]:
        evidence = Evidence(as_passages(contexts), self.embedder, width=2) if contexts else None
        return {
            "faithfulness": self.faithfulness(answer, contexts, evidence),
            "answer_relevancy": self.answer_relevancy(question, answer),
            "context_precision": self.context_precision(
                question, contexts, ground_truth, evidence, answer=answer
            ),
            "context_recall": self.context_recall(answer, contexts, ground_truth, evidence),
        }

    # -- the four metrics ----------------------------------------------------------------------

    def supported_share(
        self, claims: list[str], evidence: Evidence | None
    ) -> tuple[float, list[bool]]:
        """Share of `claims` some context sentence supports (support >= threshold)."""
        if not claims or evidence is None or not evidence.units:
            return 0.0, [False] * len(claims)
        (vectors,) = embed_all(self.embedder, [claims])
        verdicts = [
            bool(len(s := evidence.unit_scores(c, v)) and float(np.max(s)) >= self.threshold)
            for c, v in zip(claims, vectors, strict=True)
        ]
        return clamp(sum(verdicts) / len(verdicts)), verdicts

    def faithfulness(
        self, answer: str, contexts: list[str], evidence: Evidence | None = None
    ) -> MetricScore:
        claims = sentences_of(answer)
        if not claims:
            return MetricScore(0.0, reason="empty answer: no claims to check")
        if not contexts:
            return MetricScore(0.0, reason="no contexts: no claim can be supported")
        if evidence is None:
            evidence = Evidence(as_passages(contexts), self.embedder, width=2)
        value, verdicts = self.supported_share(claims, evidence)
        return MetricScore(value, details={"claims": len(claims), "supported": sum(verdicts)})

    def answer_relevancy(self, question: str, answer: str) -> MetricScore:
        if not (answer or "").strip():
            return MetricScore(0.0, reason="empty answer")
        if is_noncommittal(answer):
            return MetricScore(0.0, reason="noncommittal answer")
        q, a = embed_all(self.embedder, [[question[:MAX_CHARS]], [answer[:MAX_CHARS]]])
        cos = float(q[0] @ a[0])
        value = (cos - RELEVANCY_LOW) / (RELEVANCY_HIGH - RELEVANCY_LOW)
        return MetricScore(clamp(value), details={"cosine": round(cos, 4)})

    def context_precision(
        self,
        question: str,
        contexts: list[str],
        ground_truth: str | None = None,
        evidence: Evidence | None = None,
        *,
        answer: str | None = None,
    ) -> MetricScore:
        """Average precision of the contexts, a context being relevant when it supports some
        ground-truth sentence; without a ground truth, when it is about the question or
        supports a sentence of the answer (as Ragas's precision without reference does)."""
        if not contexts:
            return MetricScore(0.0, reason="no contexts")
        if evidence is None:
            evidence = Evidence(as_passages(contexts), self.embedder, width=2)
        reference = sentences_of(ground_truth or "")
        if reference:  # relevant: supports some ground-truth sentence
            (vectors,) = embed_all(self.embedder, [reference])
            support = np.max(
                [evidence.passage_support(s, v) for s, v in zip(reference, vectors, strict=True)],
                axis=0,
            )
            relevant = [float(x) >= self.threshold for x in support]
        else:  # relevant: about the question
            (qv,) = embed_all(self.embedder, [[question[:MAX_CHARS]]])
            words = content_words(question)
            cos = evidence.unit_vectors @ qv[0] if evidence.units else np.zeros(0)
            relevant = []
            for p, words_p in enumerate(evidence.passage_words):
                mask = evidence._unit_passage == p
                best = float(cos[mask].max()) if mask.any() else 0.0
                relevant.append(
                    combine(best, lexical_coverage(words, words_p)) >= QUESTION_RELEVANCE
                )
            said = sentences_of(answer or "") if not is_noncommittal(answer or "") else []
            if said:
                (vectors,) = embed_all(self.embedder, [said])
                support = np.max(
                    [evidence.passage_support(s, v) for s, v in zip(said, vectors, strict=True)],
                    axis=0,
                )
                pairs = zip(relevant, support, strict=True)
                relevant = [r or float(x) >= self.threshold for r, x in pairs]
        reason = "" if reference else "no ground_truth: relevance to the question or answer"
        return MetricScore(
            clamp(average_precision(relevant)), reason=reason, details={"relevant": relevant}
        )

    def context_recall(
        self,
        answer: str,
        contexts: list[str],
        ground_truth: str | None = None,
        evidence: Evidence | None = None,
    ) -> MetricScore:
        reference = sentences_of(ground_truth or "")
        reason = ""
        if not reference:
            reference, reason = sentences_of(answer), "no ground_truth: the answer as reference"
        if not reference:
            return MetricScore(0.0, reason="no ground_truth and an empty answer")
        if not contexts:
            return MetricScore(0.0, reason="no contexts")
        if evidence is None:
            evidence = Evidence(as_passages(contexts), self.embedder, width=2)
        value, verdicts = self.supported_share(reference, evidence)
        return MetricScore(
            value, reason=reason, details={"sentences": len(reference), "found": sum(verdicts)}
        )
