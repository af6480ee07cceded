"""Pick the index store from the `store` setting: the SQLite file (default) or PostgreSQL.

`open_store(settings.store, settings.db_path)` is what the CLI and `hearth serve` call.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from hearth.errors import ConfigError
from hearth.types import Chunk, Document, Filters, Message, ScoredChunk

if TYPE_CHECKING:
    from collections.abc import Sequence

    from hearth.index.pg_store import PostgresStore
    from hearth.index.store import SQLiteStore

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class Store(Protocol):
    """What every index store offers (SQLiteStore, PostgresStore): one transaction per write,
    a generation counter other processes can watch, keyword and vector search, chat sessions."""

    path: Any  # where the store lives, for messages (a file path, or a redacted URL)

    def generation(self) -> int: ...
    def embedder_info(self) -> tuple[str, int] | None: ...
    def embed_input(self, wanted: str) -> str: ...
    def check_embedder(self, name: str, dim: int, *, record: bool = True) -> None: ...
    def document_hashes(self) -> dict[str, str]: ...
    def replace_documents(
        self, batch: Sequence[tuple[Document, list[Chunk], np.ndarray]]
    ) -> None: ...
    def delete_sources(self, sources: Sequence[str]) -> int: ...
    def note_ingest(self) -> None: ...
    def search_bm25(
        self, query: str, k: int = 5, filters: Filters | None = None
    ) -> list[ScoredChunk]: ...
    def search_dense(
        self, vector: np.ndarray, k: int = 5, filters: Filters | None = None
    ) -> list[ScoredChunk]: ...
    def get_chunk(self, chunk_id: int) -> Chunk: ...
    def document_chunks(self, source_or_id: str | int) -> list[Chunk]: ...
    def get_document(self, source_or_id: str | int | os.PathLike) -> Document: ...
    def list_documents(self) -> list[dict[str, Any]]: ...
    def filtered_document_ids(self, filters: Filters) -> set[int]: ...
    def stats(self) -> dict[str, Any]: ...
    def append_message(self, session: str, role: str, content: str) -> None: ...
    def session_messages(self, session: str) -> list[Message]: ...
    def list_sessions(self) -> list[str]: ...
    def delete_session(self, session: str) -> bool: ...
    def close(self) -> None: ...
    def __enter__(self) -> Store: ...
    def __exit__(self, *exc: object) -> None: ...


def is_postgres_url(store: str | None) -> bool:
    return bool(store) and store.strip().lower().startswith(POSTGRES_SCHEMES)


def open_store(store: str | None, db_path: Path | str) -> SQLiteStore | PostgresStore:
    """The store `store` names: None, "" or "sqlite" -> the SQLite file at `db_path`;
    postgresql://... or postgres://... -> PostgresStore (pgvector); anything else ConfigError."""
    value = (store or "").strip()
    if value.lower() in ("", "sqlite"):
        from hearth.index.store import SQLiteStore

        return SQLiteStore(db_path)
    if is_postgres_url(value):
        from hearth.index.pg_store import PostgresStore

        return PostgresStore(value)
    from hearth.index.pg_store import redact_url

    raise ConfigError(
        f"store = {redact_url(value)!r} is not a store Hearth knows: leave it unset (or "
        "'sqlite') for the SQLite file in the index folder, or give a PostgreSQL URL "
        "(postgresql://user:password@host:5432/db, or postgresql://user:@/db?host=/socket/dir) "
        "for pgvector (--store / HEARTH_STORE / store in hearth.toml)"
    )
