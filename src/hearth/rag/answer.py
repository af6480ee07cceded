"""Answer a question from the index: retrieve, check relevance, prompt, generate, verify citations.

One body, `Answerer.stream`, yields text deltas then exactly one final Answer; `answer()` just
drains it, so the streamed and the plain answer can never disagree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hearth.rag.citations import SUPPORT_THRESHOLD, Citation, attribute, strip_markers
from hearth.rag.extractive import best_span
from hearth.rag.prompt import fit_prompt
from hearth.rag.sentences import split_sentences
from hearth.rag.support import Evidence, content_words, embed_all
from hearth.types import ChatModel, Embedder, Filters, Message, ScoredChunk

__all__ = ["Answer", "Answerer", "Citation", "NOT_FOUND_TEXT"]

NOT_FOUND_TEXT = "The indexed documents do not seem to contain an answer to this question."


@dataclass
class Answer:
    """The final answer. `text` carries verified, renumbered [n] markers; `citations` are
    exactly the sources those markers name."""

    text: str
    citations: list[Citation] = field(default_factory=list)
    passages: list[ScoredChunk] = field(default_factory=list)  # given to the model, [1].. order
    dropped_passages: int = 0  # retrieved but left out so the prompt fits the context window
    model: str = ""
    found: bool = True  # False: nothing relevant was retrieved, the model was not called
    extractive: bool = False  # text is a quoted span, not generated
    fallback: bool = False  # generated text had no supported sentence; text is the best span
    generated: str = ""  # the model's raw output (markers as the model wrote them)
    finish_reason: str | None = None  # "stop" | "length" from the model; None without a call
    relevance: float = 0.0  # best dense cosine between the question and the retrieved chunks
    stages: dict[str, Any] = field(default_factory=dict)  # what retrieval stages generated

    def to_json(self) -> dict[str, Any]:
        out = {
            "answer": self.text,
            "citations": [c.to_json() for c in self.citations],
            "model": self.model,
            "dropped_passages": self.dropped_passages,
            "found": self.found,
        }
        if self.stages:  # only a pipeline with model stages (--strategy, --rerank) has any
            out["stages"] = self.stages
        return out


class Answerer:
    """Grounded question answering over a retriever, a chat model and the index's embedder."""

    def __init__(
        self,
        retriever: Any,
        model: ChatModel | None,
        embedder: Embedder,
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        min_relevance: float = 0.25,
        support_threshold: float = SUPPORT_THRESHOLD,
        fallback_to_extractive: bool = True,
    ) -> None:
        self.retriever = retriever
        self.model = model  # may be None when only extractive answers are asked for
        self.embedder = embedder
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.min_relevance = min_relevance
        self.support_threshold = support_threshold
        self.fallback_to_extractive = fallback_to_extractive

    def answer(
        self,
        question: str,
        k: int = 5,
        filters: Filters | None = None,
        extractive: bool = False,
        history: list[Message] | None = None,
    ) -> Answer:
        final = None
        for event in self.stream(question, k, filters, extractive, history):
            if isinstance(event, Answer):
                final = event
        assert final is not None  # stream() always ends with an Answer
        return final

    def stream(
        self,
        question: str,
        k: int = 5,
        filters: Filters | None = None,
        extractive: bool = False,
        history: list[Message] | None = None,
    ) -> Iterator[str | Answer]:
        """Text deltas as the model writes them, then exactly one final Answer.

        The deltas are the model's raw words; the final Answer's text is the verified version
        (markers checked, added, renumbered) and carries the sources.
        """
        if not question.strip():
            raise ValueError("the question is empty")
        hits, stages = self.retrieve(question, k, filters)
        relevance = self._relevance(question, hits)
        model_name = self._model_name(extractive)
        if not hits or relevance < self.min_relevance:
            yield NOT_FOUND_TEXT
            yield Answer(
                NOT_FOUND_TEXT, model=model_name, found=False, relevance=relevance, stages=stages
            )
            return
        if extractive:
            answer = self._extractive(question, hits, model_name, relevance)
            answer.stages = stages
            yield answer.text
            yield answer
            return
        if self.model is None:
            raise ValueError("generated answers need a chat model; pass one or use extractive")

        prompt = fit_prompt(question, hits, self.model, self.max_tokens, history)
        generated, cut_loop = "", False
        deltas = self.model.stream(
            prompt.messages, max_tokens=self.max_tokens, temperature=self.temperature
        )
        try:
            for delta in deltas:
                generated += delta
                yield delta
                if (cut := repeat_start(generated)) is not None:
                    generated = generated[:cut]  # a small model looping: stop it there
                    cut_loop = True
                    break
        finally:
            if close := getattr(deltas, "close", None):
                close()  # stops generation when we leave early
        generated = generated.strip()
        answer = self.verify(
            question,
            generated,
            prompt.passages,
            prompt.dropped_passages,
            relevance,
            finish="stop" if cut_loop else None,  # we stopped it, at a sentence's end
        )
        answer.stages = stages
        yield answer

    def retrieve(
        self, question: str, k: int = 5, filters: Filters | None = None
    ) -> tuple[list[ScoredChunk], dict[str, Any]]:
        """The hits for `question` and what the retrieval stages generated (a pipeline's
        `run` reports it; a plain retriever has nothing to report)."""
        if hasattr(self.retriever, "run"):
            found = self.retriever.run(question, k=k, filters=filters)
            return found.hits, found.generated
        return self.retriever.retrieve(question, k=k, filters=filters), {}

    def verify(
        self,
        question: str,
        generated: str,
        passages: list[ScoredChunk],
        dropped: int = 0,
        relevance: float = 1.0,
        finish: str | None = None,
    ) -> Answer:
        """The Answer for text generated from `passages`: citations verified and renumbered.

        When no sentence is supported by any passage (and fallback_to_extractive is on), the
        answer becomes the best supporting span instead, with extractive=fallback=True: an
        unsupported generation is never presented as grounded. `generated` keeps the raw text.
        """
        evidence = Evidence(passages, self.embedder)
        found = attribute(
            generated, passages, self.embedder, threshold=self.support_threshold, evidence=evidence
        )
        finish = finish or getattr(self.model, "last_finish_reason", None)
        common = dict(
            passages=passages,
            dropped_passages=dropped,
            model=self._model_name(False),
            generated=generated,
            finish_reason=finish,
            relevance=relevance,
        )
        if found.supported or not self.fallback_to_extractive:
            return Answer(found.text, found.citations, **common)
        extract = best_span(question, passages, self.embedder, evidence=evidence)
        if extract is None:
            return Answer(found.text, found.citations, **common)
        return Answer(extract.text, [extract.citation], extractive=True, fallback=True, **common)

    # -- steps ---------------------------------------------------------------------------------

    def _extractive(
        self, question: str, hits: list[ScoredChunk], model_name: str, relevance: float
    ) -> Answer:
        extract = best_span(question, hits, self.embedder)
        if extract is None:
            return Answer(NOT_FOUND_TEXT, model=model_name, found=False, relevance=relevance)
        return Answer(
            extract.text,
            [extract.citation],
            passages=hits,
            model=model_name,
            extractive=True,
            relevance=relevance,
        )

    def _relevance(self, question: str, hits: list[ScoredChunk]) -> float:
        """Best dense cosine between the question and the hits: the retriever's "dense" score
        where it gave one, computed with the embedder for the hits it did not."""
        if not hits:
            return 0.0
        known = [h.scores["dense"] for h in hits if "dense" in h.scores]
        missing = [h.chunk.text for h in hits if "dense" not in h.scores]
        if missing:
            q, chunks = embed_all(self.embedder, [[question], missing])
            known.extend(float(x) for x in chunks @ q[0])
        return float(np.max(known))

    def _model_name(self, extractive: bool) -> str:
        if extractive or self.model is None:
            return "extractive"
        return self.model.name


def repeat_start(text: str, min_chars: int = 20, overlap: float = 0.8) -> int | None:
    """Where a finished sentence that repeats an earlier one starts, or None.

    Small models at temperature 0 loop: the same sentence again, or the same sentence with a
    few words tacked on. A sentence counts as a repeat when at least `overlap` of its content
    words already stood together in one earlier sentence. Loops inside a sentence (the same
    few tokens over and over) are caught by `periodic_tail_start`. Generation stops there and
    the repeat is left out of the answer.
    """
    if (cut := periodic_tail_start(text)) is not None:
        return cut
    if not text or text[-1] not in ".!?\n":
        return None  # only check when a sentence may just have ended
    earlier: list[set[str]] = []
    for span in split_sentences(text):
        sentence = strip_markers(text[span.start : span.end])
        words = content_words(sentence)
        long_enough = len(" ".join(sentence.split())) >= min_chars and len(words) >= 3
        if long_enough and any(len(words & seen) >= overlap * len(words) for seen in earlier):
            return span.start
        earlier.append(words)
    return None


def periodic_tail_start(
    text: str, min_repeats: int = 4, max_period: int = 60, min_chars: int = 24
) -> int | None:
    """Where the repeats begin when `text` ends in one unit written `min_repeats`+ times in a
    row (", `.json.ts`, `.json.ts`, ..."), keeping the first copy; else None."""
    n = len(text)
    for period in range(1, max_period + 1):
        if period * min_repeats > n:
            break
        unit = text[n - period :]
        reps = 1
        while reps * period < n and text[n - (reps + 1) * period : n - reps * period] == unit:
            reps += 1
        if reps >= min_repeats and reps * period >= min_chars:
            return n - (reps - 1) * period
    return None
