"""Graph-augmented retrieval: the base pipeline's hits plus the source passages of the graph
neighbours (k hops) of the question's entities, so a two-hop question whose facts sit in two
documents gets both passages.

`GraphRetriever(base, graph, store, hops=2)` wraps any retriever (a RetrievalPipeline's `run`
or a plain `retrieve`) and reports {"graph": {"entities", "triples"}} in `generated`, which
`ask --json` shows under "stages"; `open_graph(settings)` opens the index's graph read-only
(for the CLI and the HTTP layer's `hearth-graph` model). Hand-written.
"""

from __future__ import annotations

import time
from typing import Any

from hearth.graph.store import GraphStore, graph_path
from hearth.rag.retrieval import Retrieval
from hearth.types import Filters, ScoredChunk

DEFAULT_HOPS = 2
SEED_HITS = 2  # the entities of this many top hits' chunks seed the walk too
MAX_TRIPLES = 40  # reported in `generated`


def open_graph(settings: Any) -> GraphStore:
    """The index's knowledge graph, read-only; HearthError saying to build it when absent."""
    return GraphStore(graph_path(settings.index), read_only=True)


class GraphRetriever:
    """A retriever that adds graph-neighbour passages after the base retriever's hits."""

    name = "graph"

    def __init__(
        self,
        base: Any,
        graph: GraphStore,
        store: Any,
        *,
        hops: int = DEFAULT_HOPS,
        budget: int = 3,
        seed_hits: int = SEED_HITS,
    ) -> None:
        if hops < 1:
            raise ValueError(f"hops must be at least 1, got {hops}")
        self.base = base
        self.graph = graph
        self.store = store
        self.hops = hops
        self.budget = budget
        self.seed_hits = seed_hits

    def retrieve(self, query: str, k: int = 5, filters: Filters | None = None) -> list[ScoredChunk]:
        return self.run(query, k, filters).hits

    def run(self, query: str, k: int = 5, filters: Filters | None = None) -> Retrieval:
        if hasattr(self.base, "run"):
            found = self.base.run(query, k=k, filters=filters)
        else:
            found = Retrieval(self.base.retrieve(query, k=k, filters=filters))
        started = time.perf_counter()
        named = self.graph.entities_in_text(query)
        seeds = [e["id"] for e in named]
        top_chunks = [h.chunk.id for h in found.hits[: self.seed_hits] if h.chunk.id is not None]
        seeds += [i for i in self.graph.entities_of_chunks(top_chunks) if i not in seeds]
        triples = self.graph.neighbourhood(seeds, self.hops) if seeds else []
        named_ids = {e["id"] for e in named}
        # passages of triples touching a named entity first, then by hop, then in source order
        triples.sort(
            key=lambda t: (
                t["hop"],
                not ({t["subject_id"], t["object_id"]} & named_ids),
            )
        )
        have = {h.chunk.id for h in found.hits}
        extra_ids: list[int] = []
        for t in triples:
            cid = t["chunk_id"]
            if cid not in have and cid not in extra_ids:
                extra_ids.append(cid)
        hits = list(found.hits)
        floor = min((h.score for h in hits), default=1.0)
        allowed = None
        if filters is not None and not filters.is_empty():
            allowed = self.store.filtered_document_ids(filters)
        added = 0
        for cid in extra_ids:
            if added >= self.budget:
                break
            chunk = self._chunk(cid)
            if chunk is None or (allowed is not None and chunk.document_id not in allowed):
                continue
            hop = min(t["hop"] for t in triples if t["chunk_id"] == cid)
            hits.append(ScoredChunk(chunk, floor * 0.99 ** (added + 1), {"graph_hop": hop}))
            added += 1
        report = {
            "entities": [e["name"] for e in named]
            + [n for n in self._names(seeds) if n not in {e["name"] for e in named}],
            "hops": self.hops,
            "added": [
                {"chunk_id": h.chunk.id, "source": h.chunk.source, "hop": h.scores["graph_hop"]}
                for h in hits[len(found.hits) :]
            ],
            "triples": [
                {
                    k: t[k]
                    for k in (
                        "subject",
                        "relation",
                        "object",
                        "source",
                        "start",
                        "end",
                        "chunk_id",
                        "hop",
                    )
                }  # fmt: skip
                for t in triples[:MAX_TRIPLES]
            ],
        }
        timings = dict(found.timings)
        timings["graph"] = time.perf_counter() - started
        return Retrieval(hits, {**found.generated, "graph": report}, timings)

    def _chunk(self, chunk_id: int):
        try:
            return self.store.get_chunk(chunk_id)
        except KeyError:  # the index changed since the graph was built
            return None

    def _names(self, ids: list[int]) -> list[str]:
        if not ids:
            return []
        rows = self.graph.query(
            "MATCH (e:Entity) WHERE e.id IN $ids RETURN e.id, e.name", {"ids": ids}
        )[1]
        by_id = dict(rows)
        return [by_id[i] for i in ids if i in by_id]
