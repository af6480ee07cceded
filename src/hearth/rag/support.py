"""How well one piece of text supports another: embedding cosine plus content-word overlap.

Shared by citation attribution and extractive answers. Hand-written because it is a few lines of
arithmetic over the real embedder; the lexical half catches exact names and numbers that small
embedders blur, the dense half catches paraphrases.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from hearth.index.store import STOPWORDS
from hearth.rag.sentences import Span, is_heading, split_sentences
from hearth.types import Embedder, ScoredChunk

DENSE_WEIGHT = 0.5
LEXICAL_WEIGHT = 0.5
NUMBER_PENALTY = 0.5  # taken off when a claim's numbers are absent from the evidence
WINDOW_COST = 0.03  # per extra sentence in a unit, so a single sentence wins a tie

_WORD = re.compile(r"[a-z0-9]+(?:[.,][0-9]+)*")
# English function words (shared with BM25) plus words that say nothing about whether a
# passage supports a claim. "now" stays a content word: "now costs 20 euros" is a claim.
_STOPWORDS = (STOPWORDS - {"now"}) | frozenset(
    """
    according also answer cannot document documents let may might must one passage
    passages question shall text two us use used using yes
    """.split()
)


def content_words(text: str) -> set[str]:
    """Lower-cased, lightly stemmed words that carry meaning (no stopwords, no 1-2 letter words
    except numbers)."""
    words = set()
    for word in _WORD.findall(text.lower()):
        if word in _STOPWORDS or (len(word) < 3 and not word[0].isdigit()):
            continue
        words.add(_stem(word))
    return words


def numbers(text: str) -> set[str]:
    return {w.replace(",", "") for w in _WORD.findall(text.lower()) if w[0].isdigit()}


def lexical_coverage(claim: set[str], evidence: set[str]) -> float:
    """Share of the claim's content words that the evidence contains."""
    if not claim:
        return 0.0
    return len(claim & evidence) / len(claim)


def number_penalty(claim_text: str, evidence_text: str) -> float:
    """NUMBER_PENALTY scaled by the share of the claim's numbers missing from the evidence."""
    claimed = numbers(claim_text)
    if not claimed:
        return 0.0
    missing = claimed - numbers(evidence_text)
    return NUMBER_PENALTY * len(missing) / len(claimed)


def combine(dense: float, lexical: float, penalty: float = 0.0) -> float:
    return DENSE_WEIGHT * dense + LEXICAL_WEIGHT * lexical - penalty


def embed_all(embedder: Embedder, groups: Iterable[list[str]]) -> list[np.ndarray]:
    """Embed several lists of texts in one embedder call; returns one matrix per list."""
    groups = list(groups)
    flat = [t for g in groups for t in g]
    if not flat:
        return [np.zeros((0, embedder.dim), dtype=np.float32) for _ in groups]
    vectors = np.asarray(embedder.embed(flat), dtype=np.float32)
    out, at = [], 0
    for g in groups:
        out.append(vectors[at : at + len(g)])
        at += len(g)
    return out


def _stem(word: str) -> str:
    if word[0].isdigit():
        return word.replace(",", "")
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


@dataclass
class Unit:
    """A sentence (or a run of adjacent sentences) of one passage, ready to be scored."""

    passage: int  # 0-based index into the passages
    span: Span  # offsets into the passage's chunk text
    text: str
    words: set[str]
    size: int  # sentences in the run


class Evidence:
    """The passages cut into scoreable units, embedded once and reused for every claim."""

    def __init__(self, passages: list[ScoredChunk], embedder: Embedder, width: int = 2) -> None:
        self.passages = passages
        self.embedder = embedder
        self.units: list[Unit] = []
        for p, hit in enumerate(passages):
            text = hit.chunk.text
            sentences = [s for s in split_sentences(text) if not is_heading(text, s)]
            for size in range(1, width + 1):
                for i in range(len(sentences) - size + 1):
                    span = Span(sentences[i].start, sentences[i + size - 1].end)
                    piece = text[span.start : span.end]
                    self.units.append(Unit(p, span, piece, content_words(piece), size))
        self.passage_words = [content_words(h.chunk.text) for h in passages]
        self._unit_passage = np.array([u.passage for u in self.units], dtype=np.int64)
        (self.unit_vectors,) = embed_all(embedder, [[u.text for u in self.units]])

    def unit_scores(self, claim: str, claim_vector: np.ndarray) -> np.ndarray:
        """Support of `claim` by every unit: combine(cosine, coverage, number penalty), with a
        small cost per extra sentence so a single sentence wins a tie against a window."""
        words = content_words(claim)
        cos = self.unit_vectors @ claim_vector if len(self.units) else np.zeros(0)
        return np.array(
            [
                combine(float(c), lexical_coverage(words, u.words), number_penalty(claim, u.text))
                - WINDOW_COST * (u.size - 1)
                for c, u in zip(cos, self.units, strict=True)
            ],
            dtype=np.float32,
        )

    def passage_support(self, claim: str, claim_vector: np.ndarray) -> np.ndarray:
        """Support of `claim` by each whole passage: the best unit cosine, coverage of the
        claim's words by the whole passage, minus the number penalty."""
        words = content_words(claim)
        cos = self.unit_vectors @ claim_vector if len(self.units) else np.zeros(0)
        out = np.full(len(self.passages), -1.0, dtype=np.float32)
        for p, hit in enumerate(self.passages):
            mask = self._unit_passage == p
            best_cos = float(cos[mask].max()) if mask.any() else 0.0
            lexical = lexical_coverage(words, self.passage_words[p])
            out[p] = combine(best_cos, lexical, number_penalty(claim, hit.chunk.text))
        return out

    def best_unit(self, scores: np.ndarray, passage: int | None = None) -> int | None:
        """Index of the best-scoring unit, optionally within one passage."""
        if not len(self.units):
            return None
        masked = (
            scores if passage is None else np.where(self._unit_passage == passage, scores, -np.inf)
        )
        i = int(np.argmax(masked))
        return i if np.isfinite(masked[i]) else None
