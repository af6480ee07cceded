"""MMR diversity: reorder hits so each next one is relevant to the query yet unlike those chosen.

Hand-written: maximal marginal relevance is one numpy loop, not worth a dependency.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from hearth.types import Embedder, ScoredChunk


def hit_vectors(embedder: Embedder, hits: Sequence[ScoredChunk]) -> np.ndarray:
    """(len(hits), dim) L2-normalised vectors of the hits' texts, embedded anew (the store's
    vectors may embed a contextual header as well; these are of the text alone)."""
    if not hits:
        return np.zeros((0, getattr(embedder, "dim", 0)), dtype=np.float32)
    return np.asarray(embedder.embed([h.chunk.text for h in hits]), dtype=np.float32)


def mmr(
    query_vector: np.ndarray,
    hits: Sequence[ScoredChunk],
    vectors: np.ndarray,
    k: int | None = None,
    lambda_: float = 0.7,
) -> list[ScoredChunk]:
    """The hits in maximal-marginal-relevance order, cut to `k` (all when None), as new hits.

    Each step picks the hit maximising lambda_ * cos(query, hit) - (1 - lambda_) * max cos(hit,
    chosen); lambda_ = 1 is plain relevance order, 0 pure diversity. `vectors[i]` is hit i's
    L2-normalised vector. scores["mmr"] is the marginal relevance the hit was picked with (the
    first one's is its relevance times lambda_); `score` is left as it was, since MMR values
    are comparable only along one list. Ties keep the input order."""
    if not 0.0 <= lambda_ <= 1.0:
        raise ValueError(f"lambda_ must be within 0..1, got {lambda_}")
    vectors = np.asarray(vectors, dtype=np.float32)
    if len(vectors) != len(hits):
        raise ValueError(f"{len(vectors)} vectors for {len(hits)} hits")
    n = len(hits) if k is None else min(max(k, 0), len(hits))
    if n == 0:
        return []
    relevance = vectors @ np.asarray(query_vector, dtype=np.float32)
    similar = vectors @ vectors.T
    chosen: list[int] = []
    picked_with: list[float] = []
    left = list(range(len(hits)))
    redundancy = np.full(len(hits), -np.inf, dtype=np.float32)  # max cos to a chosen hit
    while len(chosen) < n:
        values = [
            lambda_ * relevance[i] - (1.0 - lambda_) * (redundancy[i] if chosen else 0.0)
            for i in left
        ]
        best = int(np.argmax(values))  # first of equal values: input order
        i = left.pop(best)
        chosen.append(i)
        picked_with.append(float(values[best]))
        redundancy = np.maximum(redundancy, similar[i])
    return [
        replace(
            hits[i],
            scores={**hits[i].scores, "mmr": value},
            duplicates=list(hits[i].duplicates),
        )
        for i, value in zip(chosen, picked_with, strict=True)
    ]


def diversify(
    query: str,
    hits: Sequence[ScoredChunk],
    embedder: Embedder,
    k: int | None = None,
    lambda_: float = 0.7,
) -> list[ScoredChunk]:
    """`mmr` with the query and the hits' texts embedded by `embedder`."""
    if not hits:
        return []
    query_vector = np.asarray(embedder.embed([query]), dtype=np.float32)[0]
    return mmr(query_vector, hits, hit_vectors(embedder, hits), k, lambda_)
