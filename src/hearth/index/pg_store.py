"""The shared index: documents, chunks, vectors and chats in PostgreSQL with pgvector.

Same interface and semantics as `SQLiteStore` (hearth.index.store), so several `hearth serve`
workers or machines can share one index: vectors in a `vector(dim)` column with an HNSW index
(cosine), keywords in a BM25 postings table (term, chunk, tf) scored like SQLite's FTS5
bm25() in one SQL query, every write ONE
transaction serialised by an advisory lock, and a meta `generation` counter bumped on each write
so every process notices changes with one tiny query. Needs psycopg 3 and the pgvector package
(`pip install "psycopg[binary]" pgvector`) and the `vector` extension on the server.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from hearth.errors import EmbedderMismatchError, HearthError
from hearth.index.store import (
    _WORD,
    CHUNK_COLUMNS,
    ROLES,
    SCHEMA_VERSION,
    NotInIndexError,
    _document_size,
    chunk_from_row,
    document_mask,
    query_terms,
)
from hearth.types import Chunk, Document, Filters, Message, ScoredChunk

PGVECTOR_INSTALL = "https://github.com/pgvector/pgvector#installation"
INSTALL_CLIENT = 'pip install "psycopg[binary]" pgvector'
# pg_advisory_xact_lock key taken by every write: writers queue like SQLite's BEGIN IMMEDIATE
_WRITE_LOCK = 0x4865617274  # "Heart"
_HNSW_MAX_EF = 1000  # pgvector's upper bound for hnsw.ef_search
# Layout of the PostgreSQL tables (meta key pg_layout): 2 = BM25 postings (1 had a tsvector)
_PG_LAYOUT = 2
# FTS5's bm25() constants; idf = ln((N - df + 0.5) / (df + 0.5)), floored at 1e-6 as FTS5 does
_BM25_K1 = 1.2
_BM25_B = 0.75
_MAX_TERM_CHARS = 255  # longer words are cut (a btree entry must stay under ~2.7 kB)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hearth_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS hearth_documents (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source TEXT NOT NULL UNIQUE,
    media_type TEXT NOT NULL,
    file_type TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    size BIGINT NOT NULL,
    ingested_at DOUBLE PRECISION NOT NULL,
    n_tokens BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS hearth_chunks (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    document_id BIGINT NOT NULL REFERENCES hearth_documents(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    text TEXT NOT NULL,
    char_start INTEGER NOT NULL,
    char_end INTEGER NOT NULL,
    headings TEXT NOT NULL,
    page INTEGER,
    metadata TEXT NOT NULL,
    embedding vector NOT NULL,
    n_tokens INTEGER NOT NULL,
    UNIQUE (document_id, ordinal)
);
CREATE TABLE IF NOT EXISTS hearth_postings (
    term TEXT COLLATE "C" NOT NULL,
    chunk_id BIGINT NOT NULL REFERENCES hearth_chunks(id) ON DELETE CASCADE,
    document_id BIGINT NOT NULL,
    tf INTEGER NOT NULL,
    dl INTEGER NOT NULL,
    PRIMARY KEY (term, chunk_id) INCLUDE (tf, dl, document_id)
);
CREATE INDEX IF NOT EXISTS hearth_postings_by_chunk ON hearth_postings(chunk_id);
CREATE TABLE IF NOT EXISTS hearth_sessions (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS hearth_messages (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id BIGINT NOT NULL REFERENCES hearth_sessions(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS hearth_messages_by_session ON hearth_messages(session_id, id);
INSERT INTO hearth_meta(key, value) VALUES ('schema_version', '{version}')
    ON CONFLICT (key) DO NOTHING;
INSERT INTO hearth_meta(key, value) VALUES ('pg_layout', '{layout}') ON CONFLICT (key) DO NOTHING;
INSERT INTO hearth_meta(key, value) VALUES ('generation', '0') ON CONFLICT (key) DO NOTHING;
"""
_TABLES = (
    "hearth_meta",
    "hearth_documents",
    "hearth_chunks",
    "hearth_postings",
    "hearth_sessions",
    "hearth_messages",
)


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, fit for messages and `hearth status`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        user, _, password = userinfo.partition(":")
        if password:
            return urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))
    return url


def missing_pgvector_message(url: str, detail: str, *, available: bool) -> str:
    """What to do when `CREATE EXTENSION vector` fails: install pgvector on the server, or ask
    someone allowed to create the extension in this database."""
    where = redact_url(url)
    if not available:
        return (
            f"the PostgreSQL server at {where} has no pgvector extension ({detail}). "
            f"Install pgvector on the server: {PGVECTOR_INSTALL} (e.g. apt install "
            "postgresql-NN-pgvector), then run CREATE EXTENSION vector; in the database, or "
            "leave --store / HEARTH_STORE unset to use the embedded SQLite index."
        )
    return (
        f"the database at {where} does not have the pgvector extension enabled and this user "
        f"cannot enable it ({detail}). Ask a database owner or superuser to run "
        "CREATE EXTENSION vector; in that database (pgvector install guide: "
        f"{PGVECTOR_INSTALL})."
    )


def _clean(text: str) -> str:
    """PostgreSQL text cannot hold NUL; swap it for U+FFFD (same length, spans stay exact)."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _json(value: Any) -> str:
    return _clean(json.dumps(value, ensure_ascii=False))


def _fold(word: str) -> list[str]:
    """A lowercased word without diacritics (NFKD, combining marks dropped), as FTS5's
    unicode61 tokenizer with remove_diacritics 2 reads it; may split into several words."""
    folded = "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))
    return [w[:_MAX_TERM_CHARS] for w in _WORD.findall(folded.lower())]


def tokenize(text: str) -> list[str]:
    """The keyword tokens of chunk text, every one kept (FTS5 indexes stopwords too): runs of
    letters/digits (the same regex as `query_terms`), lowercased, diacritics stripped."""
    words = _WORD.findall(text.lower())
    if text.isascii():
        return [w if len(w) <= _MAX_TERM_CHARS else w[:_MAX_TERM_CHARS] for w in words]
    tokens: list[str] = []
    for w in words:
        if w.isascii() and len(w) <= _MAX_TERM_CHARS:
            tokens.append(w)
        else:
            tokens.extend(_fold(w))
    return tokens


def search_terms(query: str) -> list[str]:
    """`query_terms` folded like `tokenize` folds chunk text (repeats dropped)."""
    terms: list[str] = []
    for term in query_terms(query):
        for t in [term] if term.isascii() and len(term) <= _MAX_TERM_CHARS else _fold(term):
            if t not in terms:
                terms.append(t)
    return terms


def _idf(total: int, df: int) -> float:
    """FTS5's idf: ln((N - df + 0.5) / (df + 0.5)), floored at 1e-6."""
    idf = math.log((total - df + 0.5) / (df + 0.5)) if total > 0 else 0.0
    return idf if idf > 0 else 1e-6


@dataclass
class _DocTable:
    """Per-generation copy of (id, source, file_type, date, chunk count) to evaluate filters."""

    generation: int
    ids: np.ndarray  # int64, sorted
    sources: list[str]
    file_types: list[str]
    dates: list[str | None]  # "YYYY-MM-DD" from the document's metadata
    chunk_counts: np.ndarray  # int64, chunks per document
    n_chunks: int
    n_tokens: int  # keyword tokens in all chunks (BM25's average chunk length)


class PostgresStore:
    """Documents, chunks, vectors and chat sessions in a PostgreSQL database (pgvector).

    `url` is a libpq URL: postgresql://user:pass@host:5432/db, or a Unix socket
    (postgresql://user:@/db?host=/run/postgresql). Dense search runs on the HNSW index when the
    corpus is large and unfiltered (ef_search raised to fit k; pgvector 0.8's iterative scan
    when filters allow most chunks) and exactly otherwise, so results match SQLiteStore. The
    HNSW index is built in bulk when the store first holds `hnsw_min_chunks` chunks.
    """

    exact_below = 20_000  # chunks: below this (or when filters keep fewer) search exactly
    hnsw_min_chunks = 20_000  # build the HNSW index when the store first holds this many
    exact_fraction = 0.2  # filters keeping less than this share of chunks: search exactly
    hnsw_ef_search = 64  # candidate list of HNSW searches (raised to 2k for large k)

    def __init__(self, url: str, *, connect_timeout: int = 10):
        self.url = url
        self.path = redact_url(url)  # what messages name, like SQLiteStore.path
        self._lock = threading.RLock()
        self._db = _connect(url, connect_timeout)
        self._has_hnsw = False
        self._df_cache: dict[str, int] = {}
        self._df_cache_gen = -1
        try:
            self._ensure_pgvector()
            self._init_schema()
        except BaseException:
            self._db.close()
            raise
        self._docs: _DocTable | None = None
        self._filter_cache: dict[tuple, np.ndarray] = {}

    # ---- lifecycle -------------------------------------------------------------------------

    def _ensure_pgvector(self) -> None:
        import psycopg

        db = self._db
        try:
            db.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.Error as exc:
            installed = db.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
            if installed.fetchone() is None:
                detail = (exc.diag.message_primary or str(exc)).strip()
                available = db.execute(
                    "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
                ).fetchone()
                raise HearthError(
                    missing_pgvector_message(self.url, detail, available=available is not None)
                ) from None
        from pgvector.psycopg import register_vector

        register_vector(db)
        version = db.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        self.pgvector_version = tuple(int(p) for p in version.fetchone()[0].split(".")[:2])

    def _init_schema(self) -> None:
        import psycopg

        try:
            with self._db.transaction():
                # Several workers may start at once: one creates the schema, the rest wait.
                self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
                exists = self._db.execute("SELECT to_regclass('hearth_meta') IS NOT NULL")
                version = self._meta_get("schema_version") if exists.fetchone()[0] else None
                if version is not None and int(version) != SCHEMA_VERSION:
                    raise HearthError(
                        f"the store at {self.path} has schema version {version}, this Hearth "
                        f"reads version {SCHEMA_VERSION}. Point --store at a new database."
                    )
                layout = self._meta_get("pg_layout") if version is not None else None
                if version is not None and int(layout or 1) != _PG_LAYOUT:
                    raise HearthError(
                        f"the store at {self.path} was built by an older Hearth (PostgreSQL "
                        f"layout {layout or 1}, this Hearth reads layout {_PG_LAYOUT}: BM25 "
                        "postings instead of a tsvector). Point --store at a new database "
                        "and re-ingest."
                    )
                schema = _SCHEMA.format(version=SCHEMA_VERSION, layout=_PG_LAYOUT)
                for statement in schema.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
        except psycopg.Error as exc:
            raise HearthError(
                f"cannot create Hearth's tables in the database at {self.path}: "
                f"{str(exc).strip()}. Use a database where this user may CREATE TABLE."
            ) from None

    def close(self) -> None:
        with self._lock:
            self._docs = None
            self._db.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        """One write transaction; the advisory lock makes writers take turns (no deadlocks)."""
        with self._lock, self._db.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
            yield self._db

    @contextmanager
    def _snapshot(self) -> Iterator[Any]:
        """A read transaction: several SELECTs see one consistent state."""
        with self._lock, self._db.transaction():
            self._db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield self._db

    def _meta_get(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM hearth_meta WHERE key = %s", (key,)).fetchone()
        return row[0] if row else None

    def _meta_set(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO hearth_meta(key, value) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def _bump_generation(self) -> None:
        self._db.execute(
            "UPDATE hearth_meta SET value = (value::bigint + 1)::text WHERE key = 'generation'"
        )

    def generation(self) -> int:
        """Counter bumped by every write to documents/chunks (by any process)."""
        with self._lock:
            return int(self._meta_get("generation") or 0)

    # ---- embedder --------------------------------------------------------------------------

    def embedder_info(self) -> tuple[str, int] | None:
        """(name, dim) of the embedder this index was built with, or None when not yet set."""
        with self._lock:
            rows = dict(
                self._db.execute(
                    "SELECT key, value FROM hearth_meta "
                    "WHERE key IN ('embedder_name', 'embedder_dim')"
                ).fetchall()
            )
        name, dim = rows.get("embedder_name"), rows.get("embedder_dim")
        return (name, int(dim)) if name is not None and dim is not None else None

    def embed_input(self, wanted: str) -> str:
        """What this index's vectors were computed from; see SQLiteStore.embed_input."""
        with self._tx() as db:
            recorded = self._meta_get("embed_input")
            if recorded is not None:
                return recorded
            has_chunks = db.execute("SELECT 1 FROM hearth_chunks LIMIT 1").fetchone()
            mode = "text" if has_chunks else wanted
            self._meta_set("embed_input", mode)
            return mode

    def check_embedder(self, name: str, dim: int, *, record: bool = True) -> None:
        """Raise EmbedderMismatchError when the index was built with another embedder; record
        (name, dim) when the index has none yet and `record` is true, which also fixes the
        vector column to vector(dim) and builds its HNSW index."""
        stored = self.embedder_info()
        if stored is None and record:
            with self._tx() as db:
                stored = self.embedder_info()
                if stored is None:
                    self._meta_set("embedder_name", name)
                    self._meta_set("embedder_dim", str(int(dim)))
                    # MAIN keeps vectors inline (the default EXTERNAL moves them to TOAST
                    # once a row passes 2 kB, and every exact-search distance pays a fetch).
                    db.execute(
                        "ALTER TABLE hearth_chunks ALTER COLUMN embedding "
                        f"TYPE vector({int(dim)}), ALTER COLUMN embedding SET STORAGE MAIN"
                    )
                    self._maybe_build_hnsw(db)
                    return
        if stored is None:
            return
        stored_name, stored_dim = stored
        if stored_name != name or stored_dim != int(dim):
            raise EmbedderMismatchError(
                f"the index at {self.path} was built with embedder '{stored_name}' "
                f"({stored_dim} dimensions) but embedder '{name}' ({dim} dimensions) was asked "
                f"for. Vectors from different embedders cannot be compared: re-ingest into a new "
                f"database (--store), or pick the original embedder (--embedder {stored_name})."
            )

    # ---- writes ----------------------------------------------------------------------------

    def document_hashes(self) -> dict[str, str]:
        """source -> content_hash of every stored document."""
        with self._lock:
            rows = self._db.execute("SELECT source, content_hash FROM hearth_documents")
            return dict(rows.fetchall())

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
            # BM25 term counts per chunk, computed before the transaction (no lock held)
            counts = [Counter(tokenize(_clean(ch.text))) for ch in chunks]
            prepared.append((doc, chunks, vecs, counts))
        now = time.time()
        with self._tx() as db:
            rows, postings = [], []  # postings: (document id, ordinal, term counts, length)
            for doc, chunks, vecs, counts in prepared:
                lengths = [sum(c.values()) for c in counts]
                db.execute("DELETE FROM hearth_documents WHERE source = %s", (doc.source,))
                doc_id = db.execute(
                    "INSERT INTO hearth_documents(source, media_type, file_type, content_hash, "
                    "text, metadata, size, ingested_at, n_tokens) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                    (
                        doc.source,
                        doc.media_type,
                        doc.file_type,
                        doc.content_hash,
                        _clean(doc.text),
                        _json(doc.metadata),
                        _document_size(doc),
                        now,
                        sum(lengths),
                    ),
                ).fetchone()[0]
                rows.extend(
                    (
                        doc_id,
                        ordinal,
                        _clean(ch.text),
                        ch.start,
                        ch.end,
                        _json(ch.headings),
                        ch.page,
                        _json(ch.metadata),
                        vecs[ordinal],
                        lengths[ordinal],
                    )
                    for ordinal, ch in enumerate(chunks)
                )
                postings.extend(
                    (doc_id, ordinal, counts[ordinal], lengths[ordinal])
                    for ordinal in range(len(chunks))
                    if lengths[ordinal]
                )
            if rows:
                with db.cursor().copy(
                    "COPY hearth_chunks(document_id, ordinal, text, char_start, char_end, "
                    "headings, page, metadata, embedding, n_tokens) FROM STDIN WITH (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(
                        [
                            "int8",
                            "int4",
                            "text",
                            "int4",
                            "int4",
                            "text",
                            "int4",
                            "text",
                            "vector",
                            "int4",
                        ]
                    )
                    for row in rows:
                        copy.write_row(row)
            if postings:
                self._write_postings(db, postings)
            self._bump_generation()
            self._meta_set("last_write_at", str(now))
            if info is not None:
                self._maybe_build_hnsw(db)

    @staticmethod
    def _write_postings(db: Any, postings: list[tuple[int, int, Counter, int]]) -> None:
        """COPY one (term, chunk, tf, chunk length) row per distinct term of each new chunk.
        Terms are letters and digits only, so COPY's text format needs no escaping."""
        doc_ids = sorted({p[0] for p in postings})
        ids = {
            (d, o): cid
            for cid, d, o in db.execute(
                "SELECT id, document_id, ordinal FROM hearth_chunks WHERE document_id = ANY(%s)",
                (doc_ids,),
            )
        }
        with db.cursor().copy(
            "COPY hearth_postings(term, chunk_id, document_id, tf, dl) FROM STDIN"
        ) as copy:
            buf: list[str] = []
            for doc_id, ordinal, counts, length in postings:
                tail = f"\t{ids[doc_id, ordinal]}\t{doc_id}\t"
                end = f"\t{length}\n"
                buf.extend(f"{term}{tail}{tf}{end}" for term, tf in counts.items())
                if len(buf) > 50_000:
                    copy.write("".join(buf))
                    buf = []
            if buf:
                copy.write("".join(buf))

    def _hnsw_exists(self) -> bool:
        if not self._has_hnsw:
            row = self._db.execute("SELECT to_regclass('hearth_chunks_hnsw') IS NOT NULL")
            self._has_hnsw = bool(row.fetchone()[0])
        return self._has_hnsw

    def _maybe_build_hnsw(self, db: Any) -> None:
        """Build the HNSW index once the store holds `hnsw_min_chunks` chunks (inside the
        write transaction that gets there). Below that, exact search is fast and inserts skip
        the index's cost (about 50x cheaper each); one bulk build beats as many inserts."""
        if self._hnsw_exists():
            return
        if self.hnsw_min_chunks > 0:
            n = db.execute("SELECT count(*) FROM hearth_chunks").fetchone()[0]
            if n < self.hnsw_min_chunks:
                return
        # room for the whole graph in memory: a build that spills is several times slower
        db.execute("SET LOCAL maintenance_work_mem = '512MB'")
        db.execute(
            "CREATE INDEX IF NOT EXISTS hearth_chunks_hnsw ON hearth_chunks "
            "USING hnsw (embedding vector_cosine_ops)"
        )
        self._has_hnsw = True

    def delete_sources(self, sources: Sequence[str]) -> int:
        """Remove documents (and their chunks, vectors, keyword rows) by source; returns how
        many."""
        if not sources:
            return 0
        with self._tx() as db:
            removed = db.execute(
                "DELETE FROM hearth_documents WHERE source = ANY(%s)", (list(sources),)
            ).rowcount
            if removed:
                self._bump_generation()
                self._meta_set("last_write_at", str(time.time()))
        return removed

    def note_ingest(self) -> None:
        """Record that an ingest run finished now (shown by `hearth status`)."""
        with self._tx():
            self._meta_set("last_ingest_at", str(time.time()))

    # ---- search ----------------------------------------------------------------------------

    def _allowed_documents(self, filters: Filters | None) -> tuple[np.ndarray | None, int]:
        """(document ids that pass `filters` or None when all do, chunks they hold)."""
        docs = self._doc_table()
        if filters is None or filters.is_empty():
            return None, docs.n_chunks
        mask = self._doc_mask(docs, filters)
        if mask.all():
            return None, docs.n_chunks
        return docs.ids[mask], int(docs.chunk_counts[mask].sum())

    def search_bm25(
        self, query: str, k: int = 5, filters: Filters | None = None
    ) -> list[ScoredChunk]:
        """Keyword search scored with FTS5's bm25() formula (k1 = 1.2, b = 0.75, FTS5's idf)
        over the postings table, in one SQL query: an OR of the query's words; words in half or
        more of all chunks are dropped as SQLiteStore does (unless too few hits are left).
        Score higher is better; ties by chunk id; stopwords-only or empty queries return []."""
        terms = search_terms(query)
        if not terms or k <= 0:
            return []
        allowed, n_allowed = self._allowed_documents(filters)
        if allowed is not None and n_allowed == 0:
            return []
        with self._lock:
            df = self._term_frequencies(terms)
            docs = self._doc_table()
            total = docs.n_chunks
            present = [t for t in terms if df[t] > 0]
            if not present:
                return []
            informative = [t for t in present if 2 * df[t] < total] or present
            avg_len = docs.n_tokens / total if total else 1.0
            rows = self._bm25_rows(informative, df, total, avg_len, k, allowed)
            if len(rows) < k and informative != present:
                rows = self._bm25_rows(present, df, total, avg_len, k, allowed)
        chunks = self._chunks_by_id([r[0] for r in rows])
        return [
            ScoredChunk(chunk=chunks[cid], score=float(s), scores={"bm25": float(s)})
            for cid, s in rows
            if cid in chunks
        ]

    def _bm25_rows(
        self,
        terms: list[str],
        df: dict[str, int],
        total: int,
        avg_len: float,
        k: int,
        allowed: Any,
    ) -> list[tuple]:
        """sum over terms of idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg_len)),
        the top k by score then chunk id."""
        params: list[Any] = [
            _BM25_K1 + 1,
            _BM25_K1,
            1 - _BM25_B,
            _BM25_B / max(avg_len, 1e-9),
            terms,
            [_idf(total, df[t]) for t in terms],
        ]
        where = ""
        if allowed is not None:
            where = " WHERE p.document_id = ANY(%s)"
            params.append(allowed.tolist())
        params.append(int(k))
        sql = (
            "SELECT p.chunk_id, sum(w.idf * p.tf * %s / (p.tf + %s * (%s + %s * p.dl))) AS s "
            "FROM unnest(%s::text[], %s::float8[]) AS w(term, idf) "
            f"JOIN hearth_postings p ON p.term = w.term{where} "
            "GROUP BY p.chunk_id ORDER BY s DESC, p.chunk_id LIMIT %s"
        )
        return self._db.execute(sql, params).fetchall()

    def _term_frequencies(self, terms: list[str]) -> dict[str, int]:
        """Chunks containing each term (counted on the postings index), cached per
        generation."""
        gen = self._doc_table().generation
        if self._df_cache_gen != gen:
            self._df_cache, self._df_cache_gen = {}, gen
        missing = [t for t in terms if t not in self._df_cache]
        if missing:
            rows = self._db.execute(
                "SELECT t, (SELECT count(*) FROM hearth_postings p WHERE p.term = t) "
                "FROM unnest(%s::text[]) t",
                (missing,),
            ).fetchall()
            if len(self._df_cache) > 100_000:
                self._df_cache.clear()
            self._df_cache.update(dict(rows))
        return {t: self._df_cache[t] for t in terms}

    def search_dense(
        self, vector: np.ndarray, k: int = 5, filters: Filters | None = None
    ) -> list[ScoredChunk]:
        """Cosine similarity of `vector` against stored chunk vectors; score = 1 - cosine
        distance. HNSW on large unfiltered (or mildly filtered) searches, exact otherwise."""
        if k <= 0:
            return []
        info = self.embedder_info()
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if info is not None and query.shape[0] != info[1]:
            raise ValueError(
                f"query vector has {query.shape[0]} dimensions, the index at {self.path} holds "
                f"{info[1]}-dimensional vectors (was it built with another embedder?)"
            )
        allowed, n_allowed = self._allowed_documents(filters)
        if n_allowed == 0:
            return []
        docs = self._doc_table()
        exact = (
            info is None
            or k > _HNSW_MAX_EF
            or not self._hnsw_exists()
            or n_allowed < self.exact_below
            or (allowed is not None and n_allowed < self.exact_fraction * docs.n_chunks)
        )
        where, params = "", [query]
        if allowed is not None:
            where = " WHERE document_id = ANY(%s)"
            params.append(allowed.tolist())
        sql = f"SELECT id, embedding <=> %s AS d FROM hearth_chunks{where} ORDER BY d"
        with self._lock:
            rows = [] if exact else self._search_hnsw(sql, params, k, allowed is not None)
            if len(rows) < min(k, n_allowed):  # exact, or HNSW came back short
                with self._db.transaction():
                    self._db.execute("SET LOCAL enable_indexscan = off")  # bitmap scans stay
                    rows = self._db.execute(f"{sql}, id LIMIT %s", [*params, int(k)]).fetchall()
        scored = []
        for cid, dist in rows:
            score = 1.0 - float(dist) if dist is not None and not math.isnan(dist) else 0.0
            scored.append((cid, score))
        scored.sort(key=lambda r: (-r[1], r[0]))  # HNSW may return near-ties out of order
        chunks = self._chunks_by_id([cid for cid, _ in scored])
        return [
            ScoredChunk(chunk=chunks[cid], score=s, scores={"dense": s})
            for cid, s in scored
            if cid in chunks
        ]

    def _search_hnsw(self, sql: str, params: list, k: int, filtered: bool) -> list[tuple]:
        """Approximate nearest neighbours on the HNSW index, ef_search raised to fit k; with
        filters, pgvector 0.8's iterative scan keeps looking until k rows pass them."""
        with self._db.transaction():
            ef = min(_HNSW_MAX_EF, max(int(self.hnsw_ef_search), 2 * k))
            self._db.execute(f"SET LOCAL hnsw.ef_search = {ef}")
            if filtered and self.pgvector_version >= (0, 8):
                self._db.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            return self._db.execute(f"{sql} LIMIT %s", [*params, int(k)]).fetchall()

    def _doc_table(self) -> _DocTable:
        with self._lock:
            gen = self.generation()
            if self._docs is None or self._docs.generation != gen:
                with self._snapshot() as db:
                    gen = int(self._meta_get("generation") or 0)
                    rows = db.execute(
                        "SELECT d.id, d.source, d.file_type, "
                        "(SELECT count(*) FROM hearth_chunks c WHERE c.document_id = d.id), "
                        "d.n_tokens, d.metadata::jsonb ->> 'date' "
                        "FROM hearth_documents d ORDER BY d.id"
                    ).fetchall()
                counts = np.array([r[3] for r in rows], dtype=np.int64)
                self._docs = _DocTable(
                    generation=gen,
                    ids=np.array([r[0] for r in rows], dtype=np.int64),
                    sources=[r[1] for r in rows],
                    file_types=[r[2] for r in rows],
                    dates=[r[5] for r in rows],
                    chunk_counts=counts,
                    n_chunks=int(counts.sum()),
                    n_tokens=int(sum(r[4] for r in rows)),
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

    # ---- reads -----------------------------------------------------------------------------

    _CHUNK_COLUMNS = CHUNK_COLUMNS
    _row_to_chunk = staticmethod(chunk_from_row)

    def _chunks_by_id(self, ids: list[int]) -> dict[int, Chunk]:
        if not ids:
            return {}
        with self._lock:
            rows = self._db.execute(
                f"SELECT {self._CHUNK_COLUMNS} FROM hearth_chunks c JOIN hearth_documents d "
                "ON d.id = c.document_id WHERE c.id = ANY(%s)",
                ([int(i) for i in ids],),
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
                f"SELECT {self._CHUNK_COLUMNS} FROM hearth_chunks c JOIN hearth_documents d "
                "ON d.id = c.document_id WHERE c.document_id = %s ORDER BY c.ordinal",
                (doc_id,),
            ).fetchall()
        return [self._row_to_chunk(r) for r in rows]

    def _document_id(self, source_or_id: str | int | os.PathLike) -> int:
        sql = "SELECT id FROM hearth_documents WHERE source = %s"
        with self._lock:
            if isinstance(source_or_id, int):
                row = self._db.execute(
                    "SELECT id FROM hearth_documents WHERE id = %s", (source_or_id,)
                ).fetchone()
            else:
                source = os.fspath(source_or_id)
                row = self._db.execute(sql, (source,)).fetchone()
                if row is None and not source.startswith("/"):
                    row = self._db.execute(sql, (os.path.abspath(source),)).fetchone()
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
                "SELECT source, media_type, text, content_hash, metadata FROM hearth_documents "
                "WHERE id = %s",
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
                "(SELECT count(*) FROM hearth_chunks c WHERE c.document_id = d.id), "
                "d.ingested_at, d.content_hash, d.metadata::jsonb ->> 'date' "
                "FROM hearth_documents d "
                'ORDER BY d.source COLLATE "C"'
            ).fetchall()
        keys = ("id", "source", "file_type", "media_type", "size", "chunks", "ingested_at")
        return [dict(zip((*keys, "content_hash", "date"), r, strict=True)) for r in rows]

    def stats(self) -> dict[str, Any]:
        """What `hearth status` shows: counts, per-type counts, bytes on disk, embedder, times."""
        with self._snapshot() as db:
            documents = db.execute("SELECT count(*) FROM hearth_documents").fetchone()[0]
            chunks = db.execute("SELECT count(*) FROM hearth_chunks").fetchone()[0]
            by_type_rows = db.execute(
                "SELECT d.file_type, count(DISTINCT d.id), count(c.id) FROM hearth_documents d "
                "LEFT JOIN hearth_chunks c ON c.document_id = d.id GROUP BY d.file_type "
                "ORDER BY d.file_type"
            ).fetchall()
            last_ingest = self._meta_get("last_ingest_at") or self._meta_get("last_write_at")
            embed_input = self._meta_get("embed_input")
            db_bytes = db.execute(
                "SELECT coalesce(sum(pg_total_relation_size(to_regclass(t))), 0) "
                "FROM unnest(%s::text[]) t",
                (list(_TABLES),),
            ).fetchone()[0]
        info = self.embedder_info()
        return {
            "path": self.path,
            "schema_version": SCHEMA_VERSION,
            "documents": documents,
            "chunks": chunks,
            "by_file_type": {ft: {"documents": d, "chunks": c} for ft, d, c in by_type_rows},
            "db_bytes": int(db_bytes),
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
                "INSERT INTO hearth_sessions(name, created_at, updated_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (name) DO UPDATE SET updated_at = excluded.updated_at RETURNING id",
                (_clean(session), now, now),
            ).fetchone()[0]
            db.execute(
                "INSERT INTO hearth_messages(session_id, role, content, created_at) "
                "VALUES (%s, %s, %s, %s)",
                (session_id, role, _clean(content), now),
            )

    def session_messages(self, session: str) -> list[Message]:
        """The turns of a session in the order they were added ([] for an unknown session)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT m.role, m.content FROM hearth_messages m JOIN hearth_sessions s "
                "ON s.id = m.session_id WHERE s.name = %s ORDER BY m.id",
                (_clean(session),),
            ).fetchall()
        return [Message(role=role, content=content) for role, content in rows]

    def list_sessions(self) -> list[str]:
        """Session names, most recently used first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT name FROM hearth_sessions ORDER BY updated_at DESC, id DESC"
            ).fetchall()
        return [r[0] for r in rows]

    def delete_session(self, session: str) -> bool:
        """Forget a session and its messages; False when there was no such session."""
        with self._tx() as db:
            deleted = db.execute(
                "DELETE FROM hearth_sessions WHERE name = %s", (_clean(session),)
            ).rowcount
        return bool(deleted)


def _connect(url: str, connect_timeout: int) -> Any:
    """An autocommit psycopg connection, or a HearthError that says what to fix."""
    try:
        import psycopg
    except ImportError:
        raise HearthError(
            f"a postgresql:// store needs psycopg 3 and pgvector: {INSTALL_CLIENT}"
        ) from None
    try:
        import pgvector.psycopg  # noqa: F401
    except ImportError:
        raise HearthError(
            f"a postgresql:// store needs the pgvector Python package: {INSTALL_CLIENT}"
        ) from None
    where = redact_url(url)
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=connect_timeout)
    except psycopg.ProgrammingError as exc:  # libpq could not parse the URL
        raise HearthError(
            f"bad PostgreSQL URL {where!r} ({str(exc).strip()}): expected "
            "postgresql://user:password@host:5432/database or, for a Unix socket, "
            "postgresql://user:@/database?host=/run/postgresql"
        ) from None
    except psycopg.Error as exc:
        detail = " ".join(str(exc).split())
        raise HearthError(
            f"cannot connect to PostgreSQL at {where}: {detail}. Check that the server runs "
            "and the URL (--store / HEARTH_STORE / store in hearth.toml) names the right host, "
            "port, database, user and password."
        ) from None
