"""Retrievers: keyword (BM25), dense (embedding cosine) and hybrid (reciprocal-rank fusion).

Each is a small class with `.retrieve(query, k, filters) -> list[ScoredChunk]`, so they compose;
`make_retriever(kind, store, embedder)` builds one by name from a registry dict. Every retriever
returns k distinct passages: chunks with the same text are one hit (see `collapse_duplicates`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from hearth.errors import ConfigError
from hearth.types import Chunk, Embedder, Filters, ScoredChunk


class Retriever(Protocol):
    name: str

    def retrieve(
        self, query: str, k: int = 5, filters: Filters | None = None
    ) -> list[ScoredChunk]: ...


def passage_key(text: str) -> str:
    """What makes two chunks the same passage for retrieval: their text, whitespace aside."""
    return " ".join(text.split())


def collapse_duplicates(hits: Iterable[ScoredChunk]) -> list[ScoredChunk]:
    """Keep the best-ranked hit of each passage; later hits with the same text are listed in
    its `duplicates` instead of taking a result slot (and a numbered place in a RAG prompt).
    Returns new hits: the ones passed in are left as they were."""
    kept: dict[str, ScoredChunk] = {}
    for hit in hits:
        key = passage_key(hit.chunk.text)
        if key in kept:
            _add_copies(kept[key], [hit.chunk, *hit.duplicates])
        else:
            kept[key] = replace(hit, scores=dict(hit.scores), duplicates=list(hit.duplicates))
    return list(kept.values())


_FETCH_ROUNDS = 3  # 2k, 8k, then 32k hits looked at before settling for fewer than k passages


def unique_top(search: Callable[[int], list[ScoredChunk]], k: int) -> list[ScoredChunk]:
    """The best k distinct passages of `search(n)` (which returns its best n hits, fewer when
    the index has fewer): asks for 2k, and for 4x more while copies leave fewer than k.
    `duplicates` lists the copies among the hits looked at."""
    n = 2 * k
    for _ in range(_FETCH_ROUNDS):
        hits = search(n)
        unique = collapse_duplicates(hits)
        if len(unique) >= k or len(hits) < n:
            break
        n *= 4
    return unique[:k]


class BM25Retriever:
    """Keyword search through the store's FTS5 index; scores["bm25"] is -bm25 (higher = better)."""

    name = "bm25"

    def __init__(self, store: Any):
        self.store = store

    def retrieve(self, query: str, k: int = 5, filters: Filters | None = None) -> list[ScoredChunk]:
        if not query.strip() or k <= 0:
            return []
        return unique_top(lambda n: self.store.search_bm25(query, n, filters), k)


class DenseRetriever:
    """Embeds the query and ranks chunks by cosine similarity; scores["dense"] is the cosine."""

    name = "dense"

    def __init__(self, store: Any, embedder: Embedder):
        self.store = store
        self.embedder = embedder
        self._checked = False

    def retrieve(self, query: str, k: int = 5, filters: Filters | None = None) -> list[ScoredChunk]:
        if not query.strip() or k <= 0:
            return []
        if not self._checked:  # an index built with another embedder cannot be searched
            self.store.check_embedder(self.embedder.name, self.embedder.dim, record=False)
            self._checked = True
        vector = np.asarray(self.embedder.embed([query]), dtype=np.float32)[0]
        return unique_top(lambda n: self.store.search_dense(vector, n, filters), k)


class HybridRetriever:
    """Fuses the ranked lists of several retrievers, each asked for its best max(k, candidates)
    distinct passages, by passage (two copies of a text found by different retrievers are one
    passage and get both shares).

    fusion="rrf" (reciprocal-rank fusion): score = sum over lists of w / (rrf_k + rank), rank
    starting at 1; a passage missing from a list gets nothing from it. fusion="zscore": each
    list's scores are z-scored over that list (a passage missing from it gets the list's lowest
    z-score) and summed with the weights: score = sum of w_i * z_i. Weights default to 1 each.

    The default hybrid (RETRIEVERS["hybrid"]) is z-score fusion of bm25 (0.4) and dense (0.6)
    over 30 candidates each: tuned on the tune sets of benchmarks/bench_strategies.py (stdlib
    main 66, docs-dev 34, handbook 54 questions), it scored nDCG@10 0.886 there against RRF
    k=60 depth 10's 0.879, and 0.874 against 0.865 on the check sets (stdlib held-out 82,
    fieldguide 57) it was not tuned on; bm25s 0.790, MiniLM dense 0.814 and RRF of the two
    0.833 on those. Score values beat rank values because how far a passage stands above the
    rest of its list says more than its place in it; the weights favour dense because MiniLM
    alone beats BM25 alone on every set. Earlier RRF measurements: depth 10 gave hit@5 0.894 /
    MRR@10 0.764 on the stdlib set, depth 50 0.864 / 0.760 (deep RRF lists let passages that
    both rank mediocrely outvote the one the better retriever put first; z-scores do not).

    Each fused hit keeps every component's own score (e.g. "bm25", "dense") plus "rrf" or
    "hybrid", which is also `score`. Ties keep the order of the best component rank, then
    chunk id.
    """

    name = "hybrid"

    def __init__(
        self,
        retrievers: Sequence[Retriever],
        rrf_k: int = 60,
        candidates: int = 10,
        *,
        fusion: str = "rrf",
        weights: Sequence[float] | None = None,
    ):
        if not retrievers:
            raise ValueError("HybridRetriever needs at least one retriever to fuse")
        if rrf_k < 0:
            raise ValueError(f"rrf_k must be >= 0, not {rrf_k}")
        if fusion not in ("rrf", "zscore"):
            raise ValueError(f"fusion must be 'rrf' or 'zscore', not {fusion!r}")
        if weights is not None and len(weights) != len(retrievers):
            raise ValueError(f"{len(weights)} weights for {len(retrievers)} retrievers")
        self.retrievers = list(retrievers)
        self.rrf_k = rrf_k
        self.candidates = candidates
        self.fusion = fusion
        self.weights = [1.0] * len(self.retrievers) if weights is None else list(weights)

    def depth(self, k: int) -> int:
        """How many hits each component retriever is asked for."""
        return max(k, self.candidates)

    def retrieve(self, query: str, k: int = 5, filters: Filters | None = None) -> list[ScoredChunk]:
        if not query.strip() or k <= 0:
            return []
        depth = self.depth(k)
        lists = _retrieve_all(self.retrievers, query, depth, filters)
        if self.fusion == "rrf":
            return rrf_fuse(lists, self.rrf_k, self.weights)[:k]
        label = "hybrid"
        fused: dict[str, ScoredChunk] = {}
        best_rank: dict[str, int] = {}
        for hits in lists:
            for rank, hit in enumerate(hits, start=1):
                key = passage_key(hit.chunk.text)
                entry = fused.get(key)
                if entry is None:
                    entry = fused[key] = ScoredChunk(chunk=hit.chunk, score=0.0, scores={})
                    best_rank[key] = rank
                _add_copies(entry, [hit.chunk, *hit.duplicates])
                entry.scores.update({n: s for n, s in hit.scores.items() if n != label})
                best_rank[key] = min(best_rank[key], rank)
        totals = dict.fromkeys(fused, 0.0)
        for weight, hits in zip(self.weights, lists, strict=True):
            z = zscores([h.score for h in hits])
            mine = {passage_key(h.chunk.text): float(v) for h, v in zip(hits, z, strict=True)}
            floor = min(mine.values(), default=0.0)
            for key in totals:
                totals[key] += weight * mine.get(key, floor)
        for key, entry in fused.items():
            entry.score = entry.scores[label] = totals[key]
        ranked = sorted(
            fused.items(), key=lambda kv: (-kv[1].score, best_rank[kv[0]], kv[1].chunk.id)
        )
        return [hit for _, hit in ranked[:k]]


def rrf_fuse(
    lists: Sequence[Sequence[ScoredChunk]],
    rrf_k: int = 60,
    weights: Sequence[float] | None = None,
) -> list[ScoredChunk]:
    """Reciprocal-rank fusion of ranked hit lists, by passage (as HybridRetriever fuses):
    score(passage) = sum over lists of weight / (rrf_k + rank), rank from 1 in each list.

    Copies of a passage (same text, whitespace aside) are one hit whose `duplicates` list the
    other chunks. Each fused hit keeps the component scores ("bm25", "dense", ...) and "rrf";
    `score` is the rrf value. Ties keep the order of the best rank, then chunk id. Returns every
    fused passage in rank order (take [:k]); the hits passed in are left as they were."""
    if weights is None:
        weights = [1.0] * len(lists)
    if len(weights) != len(lists):
        raise ValueError(f"rrf_fuse got {len(lists)} lists but {len(weights)} weights")
    if rrf_k < 0:
        raise ValueError(f"rrf_k must be >= 0, not {rrf_k}")
    fused: dict[str, ScoredChunk] = {}
    best_rank: dict[str, int] = {}
    for hits, weight in zip(lists, weights, strict=True):
        for rank, hit in enumerate(hits, start=1):
            key = passage_key(hit.chunk.text)
            entry = fused.get(key)
            if entry is None:
                entry = fused[key] = ScoredChunk(chunk=hit.chunk, score=0.0, scores={"rrf": 0.0})
                best_rank[key] = rank
            _add_copies(entry, [hit.chunk, *hit.duplicates])
            entry.scores.update({n: s for n, s in hit.scores.items() if n != "rrf"})
            entry.scores["rrf"] += weight / (rrf_k + rank)
            entry.score = entry.scores["rrf"]
            best_rank[key] = min(best_rank[key], rank)
    ranked = sorted(
        fused.items(), key=lambda kv: (-kv[1].score, best_rank[kv[0]], kv[1].chunk.id or 0)
    )
    return [hit for _, hit in ranked]


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _retrieve_all(
    retrievers: Sequence[Retriever], query: str, depth: int, filters: Filters | None
) -> list[list[ScoredChunk]]:
    """Each retriever's list, the retrievers run side by side: SQLite's FTS5 query and
    numpy's matrix product both release the GIL, so on 2 cores the hybrid search costs about
    the slower of its two searches instead of their sum."""
    global _POOL
    if len(retrievers) == 1:
        return [retrievers[0].retrieve(query, depth, filters)]
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="hearth-retrieve")
    # the last one (dense, in the default hybrid) runs here: it takes the store's lock only
    # briefly before its matrix product, so the keyword search gets the lock meanwhile
    others = [_POOL.submit(r.retrieve, query, depth, filters) for r in retrievers[:-1]]
    last = retrievers[-1].retrieve(query, depth, filters)
    return [*(f.result() for f in others), last]


def zscores(values: Sequence[float]) -> np.ndarray:
    """(v - mean) / standard deviation (population); all zeros when the values do not vary."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return v
    sd = float(v.std())
    return (v - v.mean()) / sd if sd > 0 else np.zeros_like(v)


def _add_copies(entry: ScoredChunk, chunks: list[Chunk]) -> None:
    """Record `chunks` as copies of `entry`'s passage, each chunk once, never the entry itself."""
    known = {entry.chunk.id, *(c.id for c in entry.duplicates)}
    for chunk in chunks:
        if chunk.id not in known:
            entry.duplicates.append(chunk)
            known.add(chunk.id)


def hit_to_json(hit: ScoredChunk, *, document_ids: bool = False) -> dict[str, Any]:
    """A search hit as `hearth search --json` prints it; `document_ids` adds the store's
    document ids (as /v1/search returns them)."""
    c = hit.chunk
    ids = (lambda chunk: {"document_id": chunk.document_id}) if document_ids else (lambda _: {})
    return {
        "source": c.source,
        **ids(c),
        "chunk_id": c.id,
        "score": round(float(hit.score), 6),
        "start": c.start,
        "end": c.end,
        "text": c.text,
        "page": c.page,
        "headings": list(c.headings),
        "duplicates": [{"source": d.source, **ids(d), "chunk_id": d.id} for d in hit.duplicates],
    }


RETRIEVERS: dict[str, Callable[[Any, Embedder], Retriever]] = {
    "bm25": lambda store, embedder: BM25Retriever(store),
    "dense": lambda store, embedder: DenseRetriever(store, embedder),
    "hybrid": lambda store, embedder: HybridRetriever(
        [BM25Retriever(store), DenseRetriever(store, embedder)],
        candidates=30,
        fusion="zscore",
        weights=(0.4, 0.6),
    ),
}


def make_retriever(kind: str, store: Any, embedder: Embedder) -> Retriever:
    """A retriever by name: one of RETRIEVERS ("bm25", "dense", "hybrid")."""
    factory = RETRIEVERS.get(kind)
    if factory is None:
        raise ConfigError(
            f"unknown retriever {kind!r}: choose one of {', '.join(sorted(RETRIEVERS))} "
            "(--retriever or HEARTH_RETRIEVER)"
        )
    return factory(store, embedder)
