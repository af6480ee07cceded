"""Everything one server shares between requests: settings, models, the index, queue, metrics.

The serve-side twin of the CLI's AppContext: the store is opened once (SQLite WAL, so several
server processes can share one index; each notices the others' writes by the generation
counter) and ingests run one at a time per process.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hearth.config import Settings
from hearth.serve.config import ServeConfig
from hearth.serve.metrics import Metrics
from hearth.serve.models import ServedModels
from hearth.serve.scheduler import ModelSchedulers
from hearth.types import Filters


class ServedIndex:
    """The index behind hearth-rag and the /v1 document routes."""

    def __init__(
        self, settings: Settings, models: ServedModels, agent_db: str | None = None
    ) -> None:
        from hearth.index.stores import open_store

        self.settings = settings
        self.models = models
        self.agent_db = agent_db
        self._graph: Any = None
        self._graph_stamp: int | None = None
        self._facts: tuple[int, Any] | None = None  # (store generation, IndexFacts)
        self._graph_lock = threading.Lock()
        self.root = Path(settings.index)
        self.uploads = self.root / "uploads"
        self.store = open_store(settings.store, settings.db_path)
        self.store.check_embedder(models.embedder_id, models.embedder_dim)
        self.ingest_lock = threading.Lock()
        self._retrievers: dict[tuple[str, str, str], Any] = {}
        self._retrievers_lock = threading.Lock()

    def retriever(
        self, kind: str | None = None, strategy: str | None = None, rerank: str | None = None
    ) -> Any:
        """The retrieval pipeline for these names (settings fill the gaps), built once. Stages
        that call a model use the instruction model when it is served, else the default."""
        from hearth.rag.pipeline import build_pipeline

        s = self.settings
        key = (kind or s.retriever, strategy or s.strategy, rerank or s.rerank)
        with self._retrievers_lock:
            if key not in self._retrievers:
                self._retrievers[key] = build_pipeline(
                    self.store,
                    self.models.embedder(),
                    retriever=key[0],
                    strategy=key[1],
                    rerank=key[2],
                    mmr=s.mmr,
                    compress=s.compress,
                    model=self._stage_model,
                )
            return self._retrievers[key]

    def has_graph(self) -> bool:
        from hearth.graph.store import graph_path

        return graph_path(self.root).exists()

    def graph_retriever(
        self, kind: str | None, strategy: str | None, rerank: str | None, hops: int | None
    ) -> Any:
        """The retrieval pipeline with knowledge-graph neighbours added (hearth-graph). The
        graph opens read-only on first use; HearthError says to build it when there is none."""
        from hearth.graph.retrieve import DEFAULT_HOPS, GraphRetriever, open_graph
        from hearth.graph.store import graph_path

        path = graph_path(self.root)
        stamp = path.stat().st_mtime_ns if path.exists() else None
        with self._graph_lock:
            if self._graph is None or self._graph_stamp != stamp:
                # rebuilt since: open the new one; requests still on the old one keep it alive
                self._graph = open_graph(self.settings)
                self._graph_stamp = stamp
            graph = self._graph
        base = self.retriever(kind, strategy, rerank)
        return GraphRetriever(base, graph, self.store, hops=hops or DEFAULT_HOPS)

    def agent_context(self, model: Any) -> Any:
        """What hearth-agent's tools may touch: this index (search) and, when the server was
        given one, the read-only database (sql) through `model`."""
        from hearth.agents.context import AgentContext

        sql = None
        if self.agent_db is not None:
            from hearth.query.sql import text_to_sql

            db = self.agent_db

            def sql(question: str) -> Any:
                return text_to_sql(question, db, model)

        return AgentContext.from_retriever(
            self.retriever(), index_dir=self.root, sql=sql, db=self.agent_db
        )

    def self_query(self, request: str, filters: Filters | None) -> Any:
        """hearth.query.self_query on the served instruction model; given filters win. What
        the index holds is read once per index generation, not per request."""
        from hearth.query.self_query import IndexFacts, self_query

        generation = self.store.generation()
        if self._facts is None or self._facts[0] != generation:
            self._facts = (generation, IndexFacts.of(self.store.list_documents()))
        return self_query(request, self._facts[1], self._stage_model(), given=filters)

    def _stage_model(self) -> Any:
        specs = self.models.chat_specs()
        wanted = self.settings.instruct_model
        return self.models.chat(wanted if wanted in specs else specs[0])

    def indexer(self) -> Any:
        from hearth.index.indexer import Indexer

        return Indexer.from_settings(self.store, self.models.embedder(), self.settings)

    def close(self) -> None:
        if self._graph is not None:
            self._graph.close()
        self.store.close()


@dataclass
class ServerState:
    config: ServeConfig
    settings: Settings
    models: ServedModels
    index: ServedIndex
    scheduler: ModelSchedulers
    metrics: Metrics
    warm_up_thread: threading.Thread | None = field(default=None)
