"""Retrieval metrics over gold ids: hit@k, MRR@k, nDCG@k, precision@k and recall@k.

Hand-written: each is a line of arithmetic, and the gold matching (chunk ids or source paths) is
Hearth's own. A row's "gold" is a list of strings/ints: an int (or all-digit string) is a chunk
id; anything else is a source path or glob matched against the hit's source with
hearth.index.store.source_matches (absolute path, or any path suffix: "fares.md", "docs/*.md").
A hit is relevant when it matches any gold item; each gold item counts once for recall (the
first hit that matches it), so two chunks of one gold file are not two found golds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from hearth.index.store import source_matches

__all__ = ["RetrievedItem", "gold_matches", "retrieval_metrics"]

# (chunk id, source) of one retrieved passage, best first
RetrievedItem = tuple[int | None, str]


def _as_chunk_id(gold: Any) -> int | None:
    if isinstance(gold, bool):
        return None
    if isinstance(gold, int):
        return gold
    if isinstance(gold, str) and gold.strip().isdigit():
        return int(gold.strip())
    return None


def gold_matches(gold: Any, item: RetrievedItem) -> bool:
    """Whether one retrieved (chunk id, source) is the gold item `gold`."""
    chunk_id, source = item
    wanted = _as_chunk_id(gold)
    if wanted is not None:
        return chunk_id == wanted
    return bool(source) and source_matches(str(gold), source)


def retrieval_metrics(
    retrieved: Sequence[RetrievedItem], gold: Sequence[Any], k: int
) -> dict[str, float]:
    """hit@k, mrr@k, ndcg@k, precision@k and recall@k of the first k `retrieved` items.

    Binary relevance: a retrieved item is relevant when it matches a gold item not already
    matched higher up (so recall and nDCG count every gold item once). nDCG's ideal ranking puts
    min(k, len(gold)) relevant items first. No gold: every metric is 0.0 (never NaN).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, not {k}")
    gold = [g for g in gold if g is not None and str(g).strip()]
    top = list(retrieved)[:k]
    found: set[int] = set()  # indexes into gold already matched
    gains: list[int] = []  # 1: a new gold item found here
    relevant: list[bool] = []  # matches some gold item (a second chunk of a gold file too)
    for item in top:
        matching = [i for i, g in enumerate(gold) if gold_matches(g, item)]
        new = next((i for i in matching if i not in found), None)
        if new is not None:
            found.add(new)
        gains.append(int(new is not None))
        relevant.append(bool(matching))
    first = next((i for i, r in enumerate(relevant) if r), None)
    dcg = sum(1.0 / math.log2(i + 2) for i, g in enumerate(gains) if g == 1)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(gold))))
    return {
        f"hit@{k}": 1.0 if first is not None else 0.0,
        f"mrr@{k}": 1.0 / (first + 1) if first is not None else 0.0,
        f"ndcg@{k}": dcg / ideal if ideal else 0.0,
        f"precision@{k}": sum(relevant) / k,
        f"recall@{k}": len(found) / len(gold) if gold else 0.0,
    }
