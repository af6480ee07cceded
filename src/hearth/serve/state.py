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


class ServedIndex:
    """The index behind hearth-rag and the /v1 document routes."""

    def __init__(self, settings: Settings, models: ServedModels) -> None:
        from hearth.index.store import SQLiteStore

        self.settings = settings
        self.models = models
        self.root = Path(settings.index)
        self.uploads = self.root / "uploads"
        self.store = SQLiteStore(settings.db_path)
        self.store.check_embedder(models.embedder_id, models.embedder_dim)
        self.ingest_lock = threading.Lock()
        self._retrievers: dict[str, Any] = {}
        self._retrievers_lock = threading.Lock()

    def retriever(self, kind: str | None = None) -> Any:
        from hearth.rag.retrievers import make_retriever

        kind = kind or self.settings.retriever
        with self._retrievers_lock:
            if kind not in self._retrievers:
                self._retrievers[kind] = make_retriever(kind, self.store, self.models.embedder())
            return self._retrievers[kind]

    def indexer(self) -> Any:
        from hearth.index.indexer import Indexer

        return Indexer.from_settings(self.store, self.models.embedder(), self.settings)

    def close(self) -> None:
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
