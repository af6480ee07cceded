"""Extractive answers: quote the sentence (or two) of the retrieved passages that best answers.

No generation at all: each sentence and adjacent pair is scored against the question with the
same support measure citations use (embedding cosine + content-word coverage).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hearth.rag.citations import Citation, citation_for
from hearth.rag.support import Evidence, embed_all
from hearth.types import Embedder, ScoredChunk

RANK_COST = 0.01  # per rank below the first: retrieval order breaks near-ties


@dataclass
class Extract:
    text: str  # the answer to show: the quoted span, whitespace collapsed, then " [1]"
    citation: Citation
    score: float


def best_span(
    question: str,
    passages: list[ScoredChunk],
    embedder: Embedder,
    *,
    evidence: Evidence | None = None,
) -> Extract | None:
    """The span among `passages` that best answers `question`, cited as [1]; None when the
    passages hold no sentence at all."""
    evidence = evidence or Evidence(passages, embedder)
    if not evidence.units:
        return None
    (vector,) = embed_all(embedder, [[question]])
    scores = evidence.unit_scores(question, vector[0])
    scores = scores - RANK_COST * np.array([u.passage for u in evidence.units], dtype=np.float32)
    best = int(np.argmax(scores))
    unit = evidence.units[best]
    citation = citation_for(1, unit.passage + 1, passages[unit.passage], unit.span)
    return Extract(
        text=" ".join(unit.text.split()) + " [1]", citation=citation, score=float(scores[best])
    )
