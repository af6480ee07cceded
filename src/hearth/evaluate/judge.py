"""The LLM judge: Ragas-style faithfulness, answer relevancy, context precision and recall, each
from JSON-schema answers of a local model (hearth.generate) plus the embedder.

Hand-written, not Ragas: Ragas wants a paid API by default and returns NaN when the judge's output
does not parse; here every call is held to a schema (token masks on local models), retried, and a
metric whose calls still fail is scored by the non-LLM fallback and marked so, never NaN.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from hearth.evaluate.fallback import (
    METRICS,
    FallbackJudge,
    MetricScore,
    average_precision,
    clamp,
    is_noncommittal,
    sentences_of,
)
from hearth.llm.structured_output import generate
from hearth.rag.support import content_words, embed_all, lexical_coverage, number_penalty
from hearth.types import ChatModel, Embedder, Message

__all__ = ["LLMJudge", "JudgeFailure"]

RETRIES = 2  # a failed judge call is tried again this many times, then the fallback scores it
RETRY_TEMPERATURE = 0.3  # the same greedy call would fail the same way
PROMPT_CHARS = 1200  # of each context, answer or ground truth shown to the judge
MAX_CLAIMS = 6
N_QUESTIONS = 3

SYSTEM = "You are a strict, careful evaluator. Answer with JSON only."

CLAIMS = """Break the ANSWER into short, standalone factual statements (at most {n}). Copy names \
and numbers exactly; add nothing the answer does not say.

QUESTION: {question}
ANSWER: {answer}"""

VERDICTS = """CONTEXT:
{contexts}

For each numbered statement below, copy the CONTEXT sentence that states it as "quote" ("" if \
there is none), then "supported": true only if that quote says the same thing (names and numbers \
too), false if the context does not say it or says something different.

STATEMENTS:
{items}"""

QUESTIONS = """Read the ANSWER below and write {n} different questions that it answers \
(questions a user could have asked to get this answer). Then say whether the answer is \
noncommittal: evasive or vague, like "I don't know".

ANSWER: {answer}"""

PRECISION = """QUESTION: {question}
REFERENCE ANSWER: {reference}

For each numbered passage below, copy the sentence of THAT passage that helps arrive at the \
reference answer to the question as "quote" ("" if there is none), then "supported": true if \
the passage is useful for arriving at the reference answer, false if it is not.

PASSAGES:
{items}"""
# a passage counts as useful only when the judge quotes a sentence that is in it and the passage
# holds this much of the reference's (or the question's) content words: the 0.5B judge calls
# nearly every passage useful, and off-topic passages then scored as well as the right ones
TARGET_COVERAGE = 0.5


class JudgeFailure(Exception):
    """Every try of one judge call failed."""


def _quoted_verdicts(n: int) -> dict[str, Any]:
    item = {
        "type": "object",
        "properties": {
            "quote": {"type": "string", "maxLength": 240},
            "supported": {"type": "boolean"},
        },
        "required": ["quote", "supported"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"verdicts": {"type": "array", "items": item, "minItems": n, "maxItems": n}},
        "required": ["verdicts"],
        "additionalProperties": False,
    }


def useful_quote(quote: str, context: str, target: set[str]) -> bool:
    """The judge's quote is in `context`, and `context` holds TARGET_COVERAGE of the `target`
    words (the quote a small judge picks is often the wrong sentence of the right passage)."""
    words, held = content_words(quote), content_words(context)
    if not words or lexical_coverage(words, held) < 0.8:
        return False
    return not target or lexical_coverage(target, held) >= TARGET_COVERAGE


def grounded(claim: str, quote: str, contexts: list[str]) -> bool:
    """The judge's quote is really in the contexts (most of its content words and all of its
    numbers in one of them) and carries the claim's numbers: a "supported" with a made-up
    quote (the claim copied back) does not count."""
    words = content_words(quote)
    if not words:
        return False
    inside = any(
        lexical_coverage(words, content_words(c)) >= 0.8 and number_penalty(quote, c) == 0.0
        for c in contexts
    )
    return inside and number_penalty(claim, quote) == 0.0


CLAIMS_SCHEMA = {
    "type": "object",
    "properties": {
        "statements": {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": 300},
            "maxItems": MAX_CLAIMS,
        }
    },
    "required": ["statements"],
    "additionalProperties": False,
}

QUESTIONS_SCHEMA = {
    "type": "object",
    "properties": {
        "questions": {
            "type": "array",
            "items": {"type": "string", "pattern": "^[A-Z][^?\\n]{4,160}\\?$"},
            "minItems": N_QUESTIONS,
            "maxItems": N_QUESTIONS,
        },
        "noncommittal": {"type": "boolean"},
    },
    "required": ["questions", "noncommittal"],
    "additionalProperties": False,
}


def _cut(text: str, limit: int = PROMPT_CHARS) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[:limit] + " ..."


def _numbered(items: list[str]) -> str:
    return "\n".join(f"{i}. {_cut(t)}" for i, t in enumerate(items, start=1))


class LLMJudge:
    """Scores a row with a chat model (held to JSON schemas) and the embedder.

    `model` is a ChatModel or a spec for hearth.llm.load. Each judge call is tried 1 + `retries`
    times (later tries sampled at RETRY_TEMPERATURE with a new seed); a metric whose call still
    fails is scored by `fallback` (a FallbackJudge on the same embedder) with judge="fallback"
    and the error as its reason.
    """

    def __init__(
        self,
        model: ChatModel | str,
        embedder: Embedder,
        *,
        retries: int = RETRIES,
        fallback: FallbackJudge | None = None,
        max_tokens: int = 384,
        on_retry: Callable[[str, Exception], None] | None = None,
    ) -> None:
        if isinstance(model, str):
            from hearth import llm

            model = llm.load(model, context_size=4096)
        self.model = model
        self.embedder = embedder
        self.retries = retries
        self.fallback = fallback or FallbackJudge(embedder)
        self.max_tokens = max_tokens
        self.on_retry = on_retry
        self.name = f"llm:{getattr(model, 'name', 'model')}"
        self.calls = 0
        self.failed_calls = 0

    # -- one schema-held call, retried ---------------------------------------------------------

    def ask(self, prompt: str, schema: dict[str, Any], what: str) -> dict[str, Any]:
        messages = [Message("system", SYSTEM), Message("user", prompt)]
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            params: dict[str, Any] = {"max_tokens": self.max_tokens, "temperature": 0.0}
            if attempt:
                params.update(temperature=RETRY_TEMPERATURE, seed=attempt)
            self.calls += 1
            try:
                return generate(self.model, messages, schema, retries=0, **params)
            except Exception as exc:  # noqa: BLE001 - any failure of the judge is retried
                last = exc
                self.failed_calls += 1
                if self.on_retry is not None:
                    self.on_retry(what, exc)
        raise JudgeFailure(f"{what}: {type(last).__name__}: {last}") from last

    # -- the row -------------------------------------------------------------------------------

    def score(
        self,
        question: str,
        answer: str,
        contexts: list[str],
        ground_truth: str | None = None,
    ) -> dict[str, MetricScore]:
        steps = {
            "faithfulness": lambda: self.faithfulness(question, answer, contexts),
            "answer_relevancy": lambda: self.answer_relevancy(question, answer),
            "context_precision": lambda: self.context_precision(question, contexts, ground_truth),
            "context_recall": lambda: self.context_recall(answer, contexts, ground_truth),
        }
        out: dict[str, MetricScore] = {}
        fallback_scores: dict[str, MetricScore] | None = None
        for metric in METRICS:
            started = time.perf_counter()
            try:
                result = steps[metric]()
            except JudgeFailure as exc:
                if fallback_scores is None:
                    fallback_scores = self.fallback.score(question, answer, contexts, ground_truth)
                result = fallback_scores[metric]
                result = MetricScore(
                    result.value, "fallback", f"judge failed ({exc})", result.details
                )
            result.value = clamp(result.value)
            result.details["seconds"] = round(time.perf_counter() - started, 3)
            out[metric] = result
        return out

    # -- the four metrics ----------------------------------------------------------------------

    def faithfulness(self, question: str, answer: str, contexts: list[str]) -> MetricScore:
        if not sentences_of(answer):
            return MetricScore(0.0, "llm", "empty answer: no claims to check")
        if not contexts:
            return MetricScore(0.0, "llm", "no contexts: no claim can be supported")
        got = self.ask(
            CLAIMS.format(n=MAX_CLAIMS, question=_cut(question), answer=_cut(answer)),
            CLAIMS_SCHEMA,
            "faithfulness (statements)",
        )
        claims = [" ".join(c.split()) for c in got["statements"] if c.strip()]
        if not claims:  # the model found none: the answer's own sentences are the claims
            claims = sentences_of(answer)[:MAX_CLAIMS]
        verdicts = self.verdicts(contexts, claims, VERDICTS, "faithfulness (verdicts)")
        return MetricScore(
            sum(verdicts) / len(verdicts),
            "llm",
            details={"claims": claims, "supported": verdicts},
        )

    def answer_relevancy(self, question: str, answer: str) -> MetricScore:
        if not (answer or "").strip():
            return MetricScore(0.0, "llm", "empty answer")
        got = self.ask(
            QUESTIONS.format(n=N_QUESTIONS, answer=_cut(answer)),
            QUESTIONS_SCHEMA,
            "answer_relevancy",
        )
        asked = [q for q in got["questions"] if q.strip()] or [answer]
        q, gen = embed_all(self.embedder, [[question[:PROMPT_CHARS]], asked])
        cosine = float((gen @ q[0]).clip(0.0, 1.0).mean())
        # the model's own flag is kept for the record only: a 0.5B judge sets it on plain
        # answers; the lexical check decides
        noncommittal = is_noncommittal(answer)
        details = {
            "questions": asked,
            "flagged": bool(got["noncommittal"]),
            "noncommittal": noncommittal,
            "cosine": round(cosine, 4),
        }
        if noncommittal:
            return MetricScore(0.0, "llm", "noncommittal answer", details)
        return MetricScore(cosine, "llm", details=details)

    def context_precision(
        self, question: str, contexts: list[str], ground_truth: str | None
    ) -> MetricScore:
        if not contexts:
            return MetricScore(0.0, "llm", "no contexts")
        reference = (ground_truth or "").strip()
        reason = ""
        if not reference:
            reference, reason = "(none given: judge by the question)", "no ground_truth"
        got = self.ask(
            PRECISION.format(
                question=_cut(question), reference=_cut(reference), items=_numbered(contexts)
            ),
            _quoted_verdicts(len(contexts)),
            "context_precision",
        )
        target = content_words(ground_truth or "") or content_words(question)
        relevant = [
            bool(v["supported"]) and useful_quote(v["quote"], context, target)
            for v, context in zip(got["verdicts"], contexts, strict=True)
        ]
        return MetricScore(average_precision(relevant), "llm", reason, {"relevant": relevant})

    def context_recall(
        self, answer: str, contexts: list[str], ground_truth: str | None
    ) -> MetricScore:
        reference = sentences_of(ground_truth or "")[: MAX_CLAIMS * 2]
        reason = ""
        if not reference:
            reference = sentences_of(answer)[: MAX_CLAIMS * 2]
            reason = "no ground_truth: the answer as reference"
        if not reference:
            return MetricScore(0.0, "llm", "no ground_truth and an empty answer")
        if not contexts:
            return MetricScore(0.0, "llm", "no contexts")
        verdicts = self.verdicts(contexts, reference, VERDICTS, "context_recall")
        return MetricScore(
            sum(verdicts) / len(verdicts),
            "llm",
            reason,
            {"sentences": reference, "attributed": verdicts},
        )

    def verdicts(self, contexts: list[str], items: list[str], template: str, what: str):
        """One true/false per item: the judge said supported and its quote is grounded."""
        shown = "\n\n".join(f"[{i}] {_cut(c)}" for i, c in enumerate(contexts, start=1))
        got = self.ask(
            template.format(contexts=shown, items=_numbered(items)),
            _quoted_verdicts(len(items)),
            what,
        )
        return [
            bool(v["supported"]) and grounded(item, v["quote"], contexts)
            for item, v in zip(items, got["verdicts"], strict=True)
        ]
