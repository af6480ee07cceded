"""Sentence-level context compression: keep, in each passage, only the sentences about the query.

Hand-written: the pieces must stay exact spans of their sources for the citation checker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from hearth.rag.sentences import Span, is_heading, split_sentences
from hearth.types import Chunk, Embedder, ScoredChunk

# Cosine (all-MiniLM-L6-v2) a sentence needs with the query to be kept besides the best one;
# in the rag test fixtures the sentences that answer a question score 0.44-0.76 against it,
# their off-topic neighbours 0.3 at most (most below 0.2).
MIN_SIMILARITY = 0.35
KEEP = 3  # sentences kept per passage at most


def compress(
    query: str,
    hits: Sequence[ScoredChunk],
    embedder: Embedder,
    *,
    keep: int | None = KEEP,
    min_similarity: float = MIN_SIMILARITY,
) -> list[ScoredChunk]:
    """The hits cut down to their sentences relevant to `query`.

    In each passage the sentences whose cosine to the query is at least `min_similarity` are
    kept, the best `keep` of them at most (all when None), and always the best one; markdown
    heading lines are never chosen on their own (the chunk's `headings` carry them). Kept
    sentences stay in document order.

    Citations stay exact: each contiguous run of kept sentences becomes one hit of its own
    whose text is the passage's text from the run's first sentence to its last, with `start`/
    `end` moved into the source document (document.text[start:end] == text), the same chunk
    id, source and page, metadata["compressed_from"] = the original chunk id and
    scores["compress"] = the run's best cosine. The runs of one passage follow each other in
    the order of the hits. A passage whose sentences are all kept is returned whole, as it was.
    Copies in `duplicates` whose text is the passage's exactly are cut at the same offsets;
    other copies are dropped from the cut hits."""
    if keep is not None and keep < 1:
        raise ValueError(f"keep must be at least 1 (or None for no limit), got {keep}")
    if not hits:
        return []
    units: list[list[Span]] = []
    texts: list[str] = [query]
    for hit in hits:
        text = hit.chunk.text
        spans = [s for s in split_sentences(text) if not is_heading(text, s)]
        spans = spans or split_sentences(text) or [Span(0, len(text))]
        units.append(spans)
        texts.extend(text[s.start : s.end] for s in spans)
    vectors = np.asarray(embedder.embed(texts), dtype=np.float32)
    sims = vectors[1:] @ vectors[0]
    out: list[ScoredChunk] = []
    at = 0
    for hit, spans in zip(hits, units, strict=True):
        own = sims[at : at + len(spans)]
        at += len(spans)
        chosen = _choose(own, keep, min_similarity)
        if len(chosen) == len(spans):
            out.append(replace(hit, scores=dict(hit.scores), duplicates=list(hit.duplicates)))
            continue
        for run in _runs(chosen):
            span = Span(spans[run[0]].start, spans[run[-1]].end)
            best = float(max(own[i] for i in run))
            out.append(_piece(hit, span, best))
    return out


def _choose(sims: np.ndarray, keep: int | None, min_similarity: float) -> list[int]:
    """Indices of the kept sentences, in document order."""
    order = sorted(range(len(sims)), key=lambda i: (-sims[i], i))
    chosen = [order[0]] + [i for i in order[1:] if sims[i] >= min_similarity]
    if keep is not None:
        chosen = chosen[:keep]
    return sorted(chosen)


def _runs(indices: list[int]) -> list[list[int]]:
    """Consecutive indices grouped: [0, 1, 3] -> [[0, 1], [3]]."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _cut(chunk: Chunk, span: Span) -> Chunk:
    """`chunk` narrowed to chunk.text[span], offsets moved into the document."""
    return replace(
        chunk,
        text=chunk.text[span.start : span.end],
        start=chunk.start + span.start,
        end=chunk.start + span.end,
        headings=list(chunk.headings),
        metadata={**chunk.metadata, "compressed_from": chunk.id},
    )


def _piece(hit: ScoredChunk, span: Span, best: float) -> ScoredChunk:
    chunk = hit.chunk
    copies = [_cut(d, span) for d in hit.duplicates if d.text == chunk.text]
    return replace(
        hit,
        chunk=_cut(chunk, span),
        scores={**hit.scores, "compress": best},
        duplicates=copies,
    )
