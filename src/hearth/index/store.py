"""The embedded index: one SQLite file (WAL) holding documents, chunks, vectors, FTS5 and chats.

Hand-written on the stdlib `sqlite3` because it cannot load extensions here (no sqlite-vec):
vectors are float32 blobs searched with numpy over a matrix cached in memory per generation.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hearth.errors import EmbedderMismatchError, HearthError
from hearth.ingest.globs import glob_regex
from hearth.types import Chunk, Document, Filters, Message, ScoredChunk

SCHEMA_VERSION = 1
ROLES = ("system", "user", "assistant")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL UNIQUE,
    media_type TEXT NOT NULL,
    file_type TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    size INTEGER NOT NULL,
    ingested_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    text TEXT NOT NULL,
    char_start INTEGER NOT NULL,
    char_end INTEGER NOT NULL,
    headings TEXT NOT NULL,
    page INTEGER,
    metadata TEXT NOT NULL,
    vector BLOB NOT NULL,
    UNIQUE (document_id, ordinal)
);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    text, content='chunks', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_vocab USING fts5vocab(chunks_fts, 'row');
CREATE TRIGGER IF NOT EXISTS chunks_fts_insert AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS chunks_fts_delete AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_session ON messages(session_id, id);
"""

# Words too common to help BM25; a query made only of these returns nothing.
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself
    yourselves""".split()
)
_WORD = re.compile(r"[^\W_]+")
_MAX_QUERY_TERMS = 32


class NotInIndexError(HearthError, KeyError):
    """A document or chunk asked for by id or source is not in the index."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


def query_terms(text: str) -> list[str]:
    """The searchable words of free user text: runs of letters/digits, lowercased, stopwords
    and repeats dropped, at most 32."""
    terms: list[str] = []
    for word in _WORD.findall(text.lower()):
        if word in STOPWORDS or word in terms:
            continue
        terms.append(word)
        if len(terms) == _MAX_QUERY_TERMS:
            break
    return terms


def fts_query(text: str | list[str]) -> str:
    """Turn free user text (or its `query_terms`) into a safe FTS5 query: an OR of quoted words.

    Only runs of letters/digits survive and each is wrapped in double quotes, so FTS5 syntax
    in the input (NEAR, *, ^, parentheses, column filters, quotes) is never interpreted.
    Returns "" when nothing searchable is left.
    """
    terms = query_terms(text) if isinstance(text, str) else text
    return " OR ".join(f'"{t}"' for t in terms)


def source_matches(pattern: str, source: str, cwd: str | None = None) -> bool:
    """True when `pattern` matches the absolute source path, its path relative to `cwd`, or any
    suffix of its path parts ("docs/*.md", "*.pdf"). A pattern without wildcards also matches
    everything under a folder of that name ("docs" or "docs/")."""
    pattern = os.path.expanduser(pattern.strip())
    if not pattern:
        return True
    plain = not any(ch in pattern for ch in "*?[")
    pattern = pattern.rstrip("/") or "/"
    candidates = [source]
    if pattern.startswith(("./", "../")) or pattern in (".", ".."):
        # explicitly relative to the current directory: no suffix matching
        pattern = os.path.normpath(pattern)
        candidates = [os.path.relpath(source, cwd or os.getcwd())]
        if pattern == ".":
            return not candidates[0].startswith("..")
    elif not os.path.isabs(pattern):
        parts = source.strip("/").split("/")
        candidates += ["/".join(parts[i:]) for i in range(len(parts))]
        if cwd:
            try:
                candidates.append(os.path.relpath(source, cwd))
            except ValueError:
                pass
    regex = glob_regex(pattern)
    for cand in candidates:
        if regex.fullmatch(cand):
            return True
        if plain and cand.startswith(pattern + "/"):
            return True
    return False


def _normalise_types(types: Sequence[str] | None) -> frozenset[str]:
    return frozenset(t.strip().lower().lstrip(".") for t in (types or ()) if t.strip())


def document_mask(docs: Any, filters: Filters, cache: dict[tuple, np.ndarray]) -> np.ndarray:
    """Boolean per document of `docs` (a per-generation table with ids, sources and
    file_types): does it pass `filters`? Cached in `cache` per generation and cwd; shared by
    the SQLite and PostgreSQL stores."""
    cwd = os.getcwd()
    types = _normalise_types(filters.file_types)
    key = (docs.generation, filters.source_glob, types, filters.date_from, filters.date_to, cwd)
    mask = cache.get(key)
    if mask is None:
        mask = np.ones(len(docs.ids), dtype=bool)
        if types:
            mask &= np.array([ft in types for ft in docs.file_types], dtype=bool)
        if filters.source_glob:
            glob = filters.source_glob
            mask &= np.array([source_matches(glob, s, cwd) for s in docs.sources], dtype=bool)
        if filters.date_from or filters.date_to:
            low, high = filters.date_from or "0000-00-00", filters.date_to or "9999-99-99"
            mask &= np.array([bool(d) and low <= d <= high for d in docs.dates], dtype=bool)
        if len(cache) > 64:
            cache.clear()
        cache[key] = mask
    return mask


# what chunk_from_row reads, in order (the chunk table as c, its document as d)
CHUNK_COLUMNS = (
    "c.id, c.document_id, c.ordinal, c.text, c.char_start, c.char_end, c.headings, c.page, "
    "c.metadata, d.source"
)


def chunk_from_row(row: tuple) -> Chunk:
    """A Chunk from a row of CHUNK_COLUMNS (headings and metadata as JSON text)."""
    cid, doc_id, ordinal, text, start, end, headings, page, metadata, source = row
    return Chunk(
        text=text,
        start=start,
        end=end,
        headings=json.loads(headings),
        page=page,
        metadata=json.loads(metadata),
        id=cid,
        document_id=doc_id,
        source=source,
        ordinal=ordinal,
    )


@dataclass
class _DocTable:
    """Per-generation copy of (id, source, file_type, date) used to evaluate filters in Python."""

    generation: int
    ids: np.ndarray  # int64, sorted
    sources: list[str]
    file_types: list[str]
    dates: list[str | None]  # "YYYY-MM-DD" from the document's metadata
    n_chunks: int


@dataclass
class _Matrix:
    """Per-generation dense index: one normalised float32 row per chunk."""

    generation: int
    chunk_ids: np.ndarray  # int64 (n,)
    doc_rows: np.ndarray  # int64 (n,), index into the _DocTable arrays
    vectors: np.ndarray  # float32 (n, dim)


class SQLiteStore:
    """Documents, chunks, vectors and chat sessions in one SQLite file.

    Every write is one transaction; a meta `generation` counter is bumped on each index write so
    readers (this process or another) notice changes with one tiny query and reload the vector
    matrix only then.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            raise HearthError(
                f"cannot open the index at {self.path}: {exc}. Point --index at a Hearth index "
                "folder (or an empty one to start a new index)."
            ) from None
        self._docs: _DocTable | None = None
        self._matrix: _Matrix | None = None
        self._filter_cache: dict[tuple, np.ndarray] = {}

    # ---- lifecycle -------------------------------------------------------------------------

    def _init_schema(self) -> None:
        has_meta = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        version = self._meta_get("schema_version") if has_meta else None
        if version is not None and int(version) != SCHEMA_VERSION:
            raise HearthError(
                f"the index at {self.path} has schema version {version}, this Hearth reads "
                f"version {SCHEMA_VERSION}. Re-ingest into a new --index folder."
            )
        # executescript runs the trigger bodies (which contain ';') as written; the script is
        # its own transaction so a half-created schema never exists.
        self._db.executescript(
            "BEGIN IMMEDIATE;" + _SCHEMA + "INSERT OR IGNORE INTO meta(key, value) "
            f"VALUES ('schema_version', '{SCHEMA_VERSION}');"
            "INSERT OR IGNORE INTO meta(key, value) VALUES ('generation', '0');"
            "COMMIT;"
        )

    def close(self) -> None:
        with self._lock:
            self._matrix = None
            self._docs = None
            self._db.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE takes the write lock up front)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: several SELECTs see one consistent state of the file."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")

    def _meta_get(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _meta_set(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def _bump_generation(self) -> None:
        self._db.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'"
        )

    def generation(self) -> int:
        """Counter bumped by every write to documents/chunks (by any process)."""
        with self._lock:
            return int(self._meta_get("generation") or 0)

    # ---- embedder --------------------------------------------------------------------------

    def embedder_info(self) -> tuple[str, int] | None:
        """(name, dim) of the embedder this index was built with, or None when not yet set."""
        with self._lock:
            name, dim = self._meta_get("embedder_name"), self._meta_get("embedder_dim")
        return (name, int(dim)) if name is not None and dim is not None else None

    def embed_input(self, wanted: str) -> str:
        """What this index's vectors were computed from ("text" or "title+headings", see
        hearth.index.contextual). The first ingest into an empty index records `wanted`; an
        index that holds chunks from before this was recorded keeps "text", its vectors' kind.
        """
        with self._tx():
            recorded = self._meta_get("embed_input")
            if recorded is not None:
                return recorded
            has_chunks = self._db.execute("SELECT 1 FROM chunks LIMIT 1").fetchone()
            mode = "text" if has_chunks else wanted
            self._meta_set("embed_input", mode)
            return mode

    def check_embedder(self, name: str, dim: int, *, record: bool = True) -> None:
        """Raise EmbedderMismatchError when the index was built with another embedder; record
        (name, dim) when the index has none yet and `record` is true."""
        with self._tx():
            stored = self.embedder_info()
            if stored is None:
                if record:
                    self._meta_set("embedder_name", name)
                    self._meta_set("embedder_dim", str(int(dim)))
                return
        stored_name, stored_dim = stored
        if stored_name != name or stored_dim != int(dim):
            raise EmbedderMismatchError(
                f"the index at {self.path} was built with embedder '{stored_name}' "
                f"({stored_dim} dimensions) but embedder '{name}' ({dim} dimensions) was asked "
                f"for. Vectors from different embedders cannot be compared: re-ingest into a new "
                f"--index folder, or pick the original embedder (--embedder {stored_name})."
            )

    # ---- writes ----------------------------------------------------------------------------

    def document_hashes(self) -> dict[str, str]:
        """source -> content_hash of every stored document."""
        with self._lock:
            return dict(self._db.execute("SELECT source, content_hash FROM documents"))

    def replace_documents(self, batch: Sequence[tuple[Document, list[Chunk], np.ndarray]]) -> None:
        """Store documents with their chunks and vectors in ONE transaction, replacing whatever
        was stored for the same sources (old chunks and vectors go atomically)."""
        if not batch:
            return
        info = self.embedder_info()
        prepared = []
        for doc, chunks, vectors in batch:
            vecs = np.asarray(vectors, dtype=np.float32).reshape(len(chunks), -1)
            if len(chunks) and info is not None and vecs.shape[1] != info[1]:
                raise ValueError(
                    f"{doc.source}: vectors have {vecs.shape[1]} dimensions, the index at "
                    f"{self.path} holds {info[1]}-dimensional vectors"
                )
            prepared.append((doc, chunks, vecs))
        now = time.time()
        with self._tx() as db:
            for doc, chunks, vecs in prepared:
                old = db.execute("SELECT id FROM documents WHERE source = ?", (doc.source,))
                old_row = old.fetchone()
                if old_row:
                    db.execute("DELETE FROM chunks WHERE document_id = ?", (old_row[0],))
                doc_id = db.execute(
                    "INSERT INTO documents(source, media_type, file_type, content_hash, text, "
                    "metadata, size, ingested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT(source) DO UPDATE SET media_type = excluded.media_type, "
                    "file_type = excluded.file_type, content_hash = excluded.content_hash, "
                    "text = excluded.text, metadata = excluded.metadata, size = excluded.size, "
                    "ingested_at = excluded.ingested_at RETURNING id",
                    (
                        doc.source,
                        doc.media_type,
                        doc.file_type,
                        doc.content_hash,
                        doc.text,
                        json.dumps(doc.metadata, ensure_ascii=False),
                        _document_size(doc),
                        now,
                    ),
                ).fetchone()[0]
                db.executemany(
                    "INSERT INTO chunks(document_id, ordinal, text, char_start, char_end, "
                    "headings, page, metadata, vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        (
                            doc_id,
                            ordinal,
                            ch.text,
                            ch.start,
                            ch.end,
                            json.dumps(ch.headings, ensure_ascii=False),
                            ch.page,
                            json.dumps(ch.metadata, ensure_ascii=False),
                            vecs[ordinal].tobytes(),
                        )
                        for ordinal, ch in enumerate(chunks)
                    ),
                )
            self._bump_generation()
            self._meta_set("last_write_at", str(now))

    def delete_sources(self, sources: Sequence[str]) -> int:
        """Remove documents (and their chunks, vectors, FTS rows) by source; returns how many."""
        if not sources:
            return 0
        removed = 0
        with self._tx() as db:
            for source in sources:
                row = db.execute("SELECT id FROM documents WHERE source = ?", (source,)).fetchone()
                if row is None:
                    continue
                db.execute("DELETE FROM chunks WHERE document_id = ?", (row[0],))
                db.execute("DELETE FROM documents WHERE id = ?", (row[0],))
                removed += 1
            if removed:
                self._bump_generation()
                self._meta_set("last_write_at", str(time.time()))
        return removed

    def note_ingest(self) -> None:
        """Record that an ingest run finished now (shown by `hearth status`)."""
        with self._tx():
            self._meta_set("last_ingest_at", str(time.time()))

    # ---- search ----------------------------------------------------------------------------

    def search_bm25(
        self, query: str, k: int = 5, filters: Filters | None = None
    ) -> list[ScoredChunk]:
        """Keyword search with FTS5's bm25(); score = -bm25 so higher is better. User text is
        reduced to quoted words (see `fts_query`); stopwords-only or empty queries return []."""
        terms = query_terms(query)
        if not terms or k <= 0:
            return []
        sql = "SELECT rowid, bm25(chunks_fts) AS s FROM chunks_fts WHERE chunks_fts MATCH ?"
        params: list[Any] = []
        if filters is not None and not filters.is_empty():
            docs = self._doc_table()
            allowed = docs.ids[self._doc_mask(docs, filters)]
            if len(allowed) == 0:
                return []
            if len(allowed) < len(docs.ids):
                sql = (
                    "SELECT f.rowid, bm25(chunks_fts) AS s FROM chunks_fts f "
                    "JOIN chunks c ON c.id = f.rowid WHERE chunks_fts MATCH ? "
                    "AND c.document_id IN (SELECT value FROM json_each(?))"
                )
                params.append(json.dumps(allowed.tolist()))
        sql += " ORDER BY s, 1 LIMIT ?"  # ties by chunk id: the same top k whatever k asks
        params.append(int(k))
        with self._lock:
            informative = self._informative_terms(terms)
            rows = self._db.execute(sql, [fts_query(informative), *params]).fetchall()
            if len(rows) < k and informative != terms:
                rows = self._db.execute(sql, [fts_query(terms), *params]).fetchall()
        chunks = self._chunks_by_id([r[0] for r in rows])
        return [
            ScoredChunk(chunk=chunks[cid], score=-s, scores={"bm25": -s})
            for cid, s in rows
            if cid in chunks
        ]

    def _informative_terms(self, terms: list[str]) -> list[str]:
        """Drop terms in half or more of all chunks: FTS5 floors their idf to 1e-6, so they
        barely move a score, yet they make FTS5 score almost every row (slow at 100k chunks).
        Returns `terms` unchanged when nothing would be left."""
        total = self._doc_table().n_chunks
        kept = []
        for term in terms:
            row = self._db.execute("SELECT doc FROM chunks_vocab WHERE term = ?", (term,))
            df = (row.fetchone() or (0,))[0]
            if 0 < df and 2 * df < total:
                kept.append(term)
        return kept or terms

    def search_dense(
        self, vector: np.ndarray, k: int = 5, filters: Filters | None = None
    ) -> list[ScoredChunk]:
        """Cosine similarity of `vector` against every stored chunk vector (numpy, in memory)."""
        if k <= 0:
            return []
        matrix = self._dense_matrix()
        if len(matrix.chunk_ids) == 0:
            return []
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if query.shape[0] != matrix.vectors.shape[1]:
            raise ValueError(
                f"query vector has {query.shape[0]} dimensions, the index at {self.path} holds "
                f"{matrix.vectors.shape[1]}-dimensional vectors (was it built with another "
                "embedder?)"
            )
        norm = float(np.linalg.norm(query))
        if norm > 0:
            query = query / norm
        scores = matrix.vectors @ query
        if filters is not None and not filters.is_empty():
            row_ok = self._doc_mask(self._doc_table(), filters)[matrix.doc_rows]
            scores = np.where(row_ok, scores, -np.inf)
            k = min(k, int(row_ok.sum()))
            if k == 0:
                return []
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.lexsort((matrix.chunk_ids[top], -scores[top]))]  # ties by chunk id
        ids = [int(matrix.chunk_ids[i]) for i in top]
        chunks = self._chunks_by_id(ids)
        return [
            ScoredChunk(
                chunk=chunks[cid], score=float(scores[i]), scores={"dense": float(scores[i])}
            )
            for cid, i in zip(ids, top, strict=True)
            if cid in chunks
        ]

    def _doc_table(self) -> _DocTable:
        with self._lock:
            gen = self.generation()
            if self._docs is None or self._docs.generation != gen:
                with self._snapshot() as db:
                    gen = int(self._meta_get("generation") or 0)
                    rows = db.execute(
                        "SELECT id, source, file_type, json_extract(metadata, '$.date') "
                        "FROM documents ORDER BY id"
                    ).fetchall()
                    n_chunks = db.execute("SELECT count(*) FROM chunks").fetchone()[0]
                self._docs = _DocTable(
                    generation=gen,
                    ids=np.array([r[0] for r in rows], dtype=np.int64),
                    sources=[r[1] for r in rows],
                    file_types=[r[2] for r in rows],
                    dates=[r[3] for r in rows],
                    n_chunks=n_chunks,
                )
                self._filter_cache.clear()
            return self._docs

    def _doc_mask(self, docs: _DocTable, filters: Filters) -> np.ndarray:
        return document_mask(docs, filters, self._filter_cache)

    def filtered_document_ids(self, filters: Filters) -> set[int]:
        """The ids of the documents that pass `filters` (for passages found another way,
        such as the knowledge graph's, to be held to the same filters)."""
        docs = self._doc_table()
        return {int(i) for i in docs.ids[self._doc_mask(docs, filters)]}

    def _dense_matrix(self) -> _Matrix:
        with self._lock:
            docs = self._doc_table()
            if self._matrix is not None and self._matrix.generation == docs.generation:
                return self._matrix
            self._matrix = None  # free the old matrix before building the new one
            with self._snapshot() as db:
                gen = int(self._meta_get("generation") or 0)
                n = db.execute("SELECT count(*) FROM chunks").fetchone()[0]
                info = self.embedder_info()
                dim = info[1] if info else 0
                chunk_ids = np.empty(n, dtype=np.int64)
                doc_ids = np.empty(n, dtype=np.int64)
                vectors = np.empty((n, dim), dtype=np.float32)
                cursor = db.execute("SELECT id, document_id, vector FROM chunks ORDER BY id")
                for i, (cid, did, blob) in enumerate(cursor):
                    chunk_ids[i] = cid
                    doc_ids[i] = did
                    vectors[i] = np.frombuffer(blob, dtype=np.float32)
            if gen != docs.generation:  # a write landed between the two reads: start over
                return self._dense_matrix()
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            np.divide(vectors, norms, out=vectors, where=norms > 0)
            self._matrix = _Matrix(
                generation=gen,
                chunk_ids=chunk_ids,
                doc_rows=np.searchsorted(docs.ids, doc_ids),
                vectors=vectors,
            )
            return self._matrix

    # ---- reads -----------------------------------------------------------------------------

    _CHUNK_COLUMNS = CHUNK_COLUMNS

    _row_to_chunk = staticmethod(chunk_from_row)

    def _chunks_by_id(self, ids: list[int]) -> dict[int, Chunk]:
        if not ids:
            return {}
        with self._lock:
            rows = self._db.execute(
                f"SELECT {self._CHUNK_COLUMNS} FROM chunks c JOIN documents d "
                "ON d.id = c.document_id WHERE c.id IN (SELECT value FROM json_each(?))",
                (json.dumps(ids),),
            ).fetchall()
        return {row[0]: self._row_to_chunk(row) for row in rows}

    def get_chunk(self, chunk_id: int) -> Chunk:
        chunk = self._chunks_by_id([int(chunk_id)]).get(int(chunk_id))
        if chunk is None:
            raise NotInIndexError(f"no chunk with id {chunk_id} in the index at {self.path}")
        return chunk

    def document_chunks(self, source_or_id: str | int) -> list[Chunk]:
        """All chunks of one document, in order."""
        doc_id = self._document_id(source_or_id)
        with self._lock:
            rows = self._db.execute(
                f"SELECT {self._CHUNK_COLUMNS} FROM chunks c JOIN documents d "
                "ON d.id = c.document_id WHERE c.document_id = ? ORDER BY c.ordinal",
                (doc_id,),
            ).fetchall()
        return [self._row_to_chunk(r) for r in rows]

    def _document_id(self, source_or_id: str | int | os.PathLike) -> int:
        with self._lock:
            if isinstance(source_or_id, int):
                row = self._db.execute(
                    "SELECT id FROM documents WHERE id = ?", (source_or_id,)
                ).fetchone()
            else:
                source = os.fspath(source_or_id)
                row = self._db.execute(
                    "SELECT id FROM documents WHERE source = ?", (source,)
                ).fetchone()
                if row is None and not source.startswith("/"):
                    row = self._db.execute(
                        "SELECT id FROM documents WHERE source = ?", (os.path.abspath(source),)
                    ).fetchone()
        if row is None:
            raise NotInIndexError(
                f"no document {source_or_id!r} in the index at {self.path}; "
                "`hearth status` lists what is indexed"
            )
        return row[0]

    def get_document(self, source_or_id: str | int | os.PathLike) -> Document:
        """A stored document by source path (absolute, or relative to the cwd) or by id."""
        doc_id = self._document_id(source_or_id)
        with self._lock:
            source, media_type, text, content_hash, metadata = self._db.execute(
                "SELECT source, media_type, text, content_hash, metadata FROM documents "
                "WHERE id = ?",
                (doc_id,),
            ).fetchone()
        return Document(
            source=source,
            media_type=media_type,
            text=text,
            content_hash=content_hash,
            metadata=json.loads(metadata),
        )

    def list_documents(self) -> list[dict[str, Any]]:
        """One dict per document (id, source, file_type, media_type, size, chunks, ingested_at,
        content_hash, date), ordered by source."""
        with self._lock:
            rows = self._db.execute(
                "SELECT d.id, d.source, d.file_type, d.media_type, d.size, "
                "(SELECT count(*) FROM chunks c WHERE c.document_id = d.id), d.ingested_at, "
                "d.content_hash, json_extract(d.metadata, '$.date') "
                "FROM documents d ORDER BY d.source"
            ).fetchall()
        keys = ("id", "source", "file_type", "media_type", "size", "chunks", "ingested_at")
        return [dict(zip((*keys, "content_hash", "date"), r, strict=True)) for r in rows]

    def stats(self) -> dict[str, Any]:
        """What `hearth status` shows: counts, per-type counts, bytes on disk, embedder, times."""
        with self._snapshot() as db:
            documents = db.execute("SELECT count(*) FROM documents").fetchone()[0]
            chunks = db.execute("SELECT count(*) FROM chunks").fetchone()[0]
            by_type_rows = db.execute(
                "SELECT d.file_type, count(DISTINCT d.id), count(c.id) FROM documents d "
                "LEFT JOIN chunks c ON c.document_id = d.id GROUP BY d.file_type "
                "ORDER BY d.file_type"
            ).fetchall()
            last_ingest = self._meta_get("last_ingest_at") or self._meta_get("last_write_at")
            embed_input = self._meta_get("embed_input")
        info = self.embedder_info()
        db_bytes = sum(
            os.path.getsize(p) for p in (self.path, Path(f"{self.path}-wal")) if os.path.exists(p)
        )
        return {
            "path": str(self.path),
            "schema_version": SCHEMA_VERSION,
            "documents": documents,
            "chunks": chunks,
            "by_file_type": {ft: {"documents": d, "chunks": c} for ft, d, c in by_type_rows},
            "db_bytes": db_bytes,
            "embedder": (
                {"name": info[0], "dim": info[1], "input": embed_input or "text"} if info else None
            ),
            "last_ingest_at": float(last_ingest) if last_ingest else None,
        }

    # ---- chat sessions ---------------------------------------------------------------------

    def append_message(self, session: str, role: str, content: str) -> None:
        """Add one turn to a named chat session (created on first use)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        if not session:
            raise ValueError("session name must not be empty")
        now = time.time()
        with self._tx() as db:
            session_id = db.execute(
                "INSERT INTO sessions(name, created_at, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET updated_at = excluded.updated_at RETURNING id",
                (session, now, now),
            ).fetchone()[0]
            db.execute(
                "INSERT INTO messages(session_id, role, content, created_at) VALUES (?, ?, ?, ?)",
                (session_id, role, content, now),
            )

    def session_messages(self, session: str) -> list[Message]:
        """The turns of a session in the order they were added ([] for an unknown session)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT m.role, m.content FROM messages m JOIN sessions s ON s.id = m.session_id "
                "WHERE s.name = ? ORDER BY m.id",
                (session,),
            ).fetchall()
        return [Message(role=role, content=content) for role, content in rows]

    def list_sessions(self) -> list[str]:
        """Session names, most recently used first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT name FROM sessions ORDER BY updated_at DESC, id DESC"
            ).fetchall()
        return [r[0] for r in rows]

    def delete_session(self, session: str) -> bool:
        """Forget a session and its messages; False when there was no such session."""
        with self._tx() as db:
            row = db.execute("SELECT id FROM sessions WHERE name = ?", (session,)).fetchone()
            if row is None:
                return False
            db.execute("DELETE FROM messages WHERE session_id = ?", (row[0],))
            db.execute("DELETE FROM sessions WHERE id = ?", (row[0],))
        return True


def _document_size(doc: Document) -> int:
    """Bytes of the original file when it is on disk, else of the extracted text."""
    size = doc.metadata.get("size")
    if isinstance(size, int):
        return size
    try:
        return os.path.getsize(doc.source)
    except OSError:
        return len(doc.text.encode("utf-8"))
