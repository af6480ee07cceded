"""PostgresStore on a real PostgreSQL + pgvector (started by pgserver in a temp folder), held
against SQLiteStore on the same data: dense top-5 identical, keyword hits sensible, filters,
re-ingest, sessions, errors, Unix-socket URLs, kill -9 mid-ingest and readers during writes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from hearth.errors import ConfigError, EmbedderMismatchError, HearthError
from hearth.index.store import NotInIndexError, SQLiteStore
from hearth.types import Chunk, Document, Filters, Message

psycopg = pytest.importorskip("psycopg", reason='needs psycopg 3: pip install "psycopg[binary]"')
pytest.importorskip("pgvector", reason="needs the pgvector Python package: pip install pgvector")

from hearth.index.pg_store import PostgresStore, missing_pgvector_message  # noqa: E402
from hearth.index.stores import open_store  # noqa: E402
from tests.conftest import _with_db  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

CORPUS = {
    "/data/docs/garden.md": (
        "md",
        "Tomatoes need full sun and regular watering.\n\n"
        "Prune the basil often so it keeps growing leaves.\n\n"
        "Compost feeds the soil with slow nitrogen.",
    ),
    "/data/docs/kitchen.md": (
        "md",
        "Bake the sourdough bread at 230 degrees for forty minutes.\n\n"
        "Let the dough rest overnight in the fridge.\n\n"
        "Sharpen the kitchen knives every month.",
    ),
    "/data/reports/q3.pdf": (
        "pdf",
        "Quarterly revenue grew by twelve percent.\n\nOperating costs fell in the third quarter.",
    ),
    "/data/reports/cars.csv": (
        "csv",
        "model: roadster\nprice: 41000\n\nmodel: hatchback\nprice: 19000",
    ),
    "/data/notes/space.txt": (
        "txt",
        "The rocket reached orbit after a nine minute burn.\n\n"
        "Astronauts docked with the space station.\n\n"
        "The telescope watched a distant galaxy.",
    ),
    "/data/notes/music.txt": (
        "txt",
        "The orchestra tuned to the oboe before the concert.\n\n"
        "A violin string snapped during the second movement.",
    ),
    "/data/docs/bikes.md": (
        "md",
        "Oil the bicycle chain after riding in the rain.\n\n"
        "Check the tyre pressure before a long ride.",
    ),
}
QUERIES = [
    "how long should bread bake",
    "watering tomatoes in the sun",
    "revenue growth this quarter",
    "space station docking",
    "bicycle maintenance in rain",
    "what instrument tunes the orchestra",
    "price of the roadster",
]


# ---- the server ----------------------------------------------------------------------------


# ---- data ----------------------------------------------------------------------------------


def make_doc(source: str, file_type: str, text: str, tag: str = "") -> tuple[Document, list]:
    """A document whose chunks are its blank-line separated paragraphs (exact spans)."""
    doc = Document(
        source=source,
        media_type=f"text/{file_type}",
        text=text,
        content_hash=f"hash-{tag}-{hash(text)}",
        metadata={"file_type": file_type},
    )
    chunks = []
    for i, m in enumerate(re.finditer(r"[^\n]+(?:\n[^\n]+)*", text)):
        page = 1 + i if file_type == "pdf" else None
        chunks.append(
            Chunk(text=m.group(), start=m.start(), end=m.end(), headings=["Top", source], page=page)
        )
    return doc, chunks


def corpus_batch(embedder):
    batch = []
    for source, (file_type, text) in CORPUS.items():
        doc, chunks = make_doc(source, file_type, text)
        batch.append((doc, chunks, embedder.embed([c.text for c in chunks])))
    return batch


@pytest.fixture
def pg(pg_url, embedder):
    with PostgresStore(pg_url) as store:
        store.hnsw_min_chunks = 0  # the HNSW index from the start, even on this tiny corpus
        store.check_embedder(embedder.name, embedder.dim)
        store.replace_documents(corpus_batch(embedder))
        yield store


@pytest.fixture
def lite(tmp_path, embedder):
    with SQLiteStore(tmp_path / "idx" / "index.sqlite3") as store:
        store.check_embedder(embedder.name, embedder.dim)
        store.replace_documents(corpus_batch(embedder))
        yield store


def keys(hits) -> list[tuple[str, int]]:
    return [(h.chunk.source, h.chunk.ordinal) for h in hits]


# ---- search against SQLiteStore -------------------------------------------------------------


@pytest.mark.parametrize("hnsw", [False, True], ids=["exact", "hnsw"])
def test_dense_top5_equals_sqlite(pg, lite, embedder, hnsw):
    if hnsw:
        pg.exact_below = 0  # force the HNSW index even on this small corpus
    for query in QUERIES:
        vec = embedder.embed([query])[0]
        ours, theirs = pg.search_dense(vec, 5), lite.search_dense(vec, 5)
        assert keys(ours) == keys(theirs), query
        assert [h.scores["dense"] for h in ours] == pytest.approx(
            [h.scores["dense"] for h in theirs], abs=1e-5
        )
        assert all(h.score == h.scores["dense"] for h in ours)


def test_dense_uses_the_hnsw_index(pg, embedder):
    with pg._db.transaction():
        pg._db.execute("SET LOCAL enable_seqscan = off")
        plan = pg._db.execute(
            "EXPLAIN SELECT id FROM hearth_chunks ORDER BY embedding <=> %s LIMIT 5",
            (embedder.embed(["x"])[0],),
        ).fetchall()
    assert "hearth_chunks_hnsw" in " ".join(r[0] for r in plan)
    kind = pg._db.execute(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'hearth_chunks'::regclass AND attname = 'embedding'"
    ).fetchone()[0]
    assert kind == f"vector({embedder.dim})"


def test_hnsw_index_is_built_once_the_store_is_big_enough(pg_url, embedder):
    with PostgresStore(pg_url) as store:
        store.hnsw_min_chunks = 25
        store.check_embedder(embedder.name, embedder.dim)
        store.replace_documents(corpus_batch(embedder))  # 19 chunks: no index yet
        assert not store._hnsw_exists()
        vec = embedder.embed(["space station"])[0]
        before = keys(store.search_dense(vec, 5))
        doc, chunks = make_doc("/data/more.txt", "txt", "\n\n".join(f"line {i}" for i in range(8)))
        store.replace_documents([(doc, chunks, embedder.embed([c.text for c in chunks]))])
        assert store._hnsw_exists()
        exact = keys(store.search_dense(vec, 5))  # 27 chunks: under exact_below
        assert exact[0] == before[0] == ("/data/notes/space.txt", 1)
        store.exact_below = 0
        assert keys(store.search_dense(vec, 5)) == exact
    with PostgresStore(pg_url) as again:
        assert again._hnsw_exists()


def test_keyword_search_matches_the_same_chunks_as_sqlite(pg, lite):
    for query in QUERIES:
        ours, theirs = pg.search_bm25(query, 100), lite.search_bm25(query, 100)
        # OR semantics over the same words: the same chunks match, ranked by each engine
        assert set(keys(ours)) == set(keys(theirs)), query
        assert ours, query
        scores = [h.scores["bm25"] for h in ours]
        assert scores == sorted(scores, reverse=True) and all(s > 0 for s in scores)
    top = pg.search_bm25("sourdough bread", 1)[0]
    assert top.chunk.source == "/data/docs/kitchen.md" and top.chunk.ordinal == 0
    top5 = pg.search_bm25("tomatoes watering sun", 5)
    assert keys(top5)[0] == ("/data/docs/garden.md", 0)


def test_keyword_ranking_is_fts5_bm25(pg, lite):
    """BM25 statistics live in PostgreSQL (postings, chunk lengths): the same formula and
    constants as FTS5's bm25(), so the top 5 and the scores match SQLite's."""
    queries = [*QUERIES, "the bread dough", "quarter revenue costs", "model price", "sun"]
    for query in queries:
        ours, theirs = pg.search_bm25(query, 5), lite.search_bm25(query, 5)
        assert keys(ours) == keys(theirs), query
        for a, b in zip(ours, theirs, strict=True):
            assert a.score == pytest.approx(b.score, rel=1e-9, abs=1e-12), query
    for query in QUERIES[:3]:  # filtered: the same top 5 as well
        f = Filters(source_glob="docs/*.md")
        assert keys(pg.search_bm25(query, 5, f)) == keys(lite.search_bm25(query, 5, f))


def test_keyword_search_folds_case_and_diacritics_like_fts5(pg_url, tmp_path):
    texts = ["Un café crème à Zürich.", "CAFE au lait, naïve Zurich tourists.", "Plain tea."]
    batch = []
    for i, text in enumerate(texts):
        doc, chunks = make_doc(f"/t/{i}.txt", "txt", text)
        batch.append((doc, chunks, np.ones((1, 4), np.float32)))
    with PostgresStore(pg_url) as pg, SQLiteStore(tmp_path / "l" / "index.sqlite3") as lite:
        for store in (pg, lite):
            store.check_embedder("test", 4)
            store.replace_documents(batch)
        for query in ["cafe", "Café", "zurich", "ZÜRICH naive", "creme", "tea"]:
            ours, theirs = pg.search_bm25(query, 5), lite.search_bm25(query, 5)
            assert keys(ours) == keys(theirs) and ours, query
            for a, b in zip(ours, theirs, strict=True):
                assert a.score == pytest.approx(b.score, rel=1e-9), query


def test_keyword_search_ignores_query_syntax(pg):
    assert pg.search_bm25("the of and", 5) == []
    assert pg.search_bm25("", 5) == []
    assert pg.search_bm25("bread", 0) == []
    for nasty in ["bread & !dough | (oven:*", "'; DROP TABLE hearth_chunks; --", "a<->b \\ '"]:
        pg.search_bm25(nasty, 5)  # no syntax error, nothing injected
    assert pg.stats()["chunks"] == sum(len(make_doc(s, *v)[1]) for s, v in CORPUS.items())
    hits = pg.search_bm25("bread & !dough", 5)
    assert {"/data/docs/kitchen.md"} == {h.chunk.source for h in hits}


def test_ties_break_by_chunk_id(pg_url):
    with PostgresStore(pg_url) as store:
        store.check_embedder("test", 4)
        batch = []
        for i in range(6):
            doc, chunks = make_doc(f"/t/{i}.txt", "txt", "same words here")
            batch.append((doc, chunks, np.ones((1, 4), np.float32)))
        store.replace_documents(batch)
        for n in (2, 4):
            ids = [h.chunk.id for h in store.search_bm25("same words", n)]
            assert ids == sorted(ids) and len(ids) == n
            ids = [h.chunk.id for h in store.search_dense(np.ones(4), n)]
            assert ids == sorted(ids) and len(ids) == n
        assert [h.chunk.id for h in store.search_dense(np.ones(4), 3)] == [
            h.chunk.id for h in store.search_dense(np.ones(4), 6)[:3]
        ]


def test_hybrid_and_dense_retrievers_on_the_pg_store(pg, lite, embedder):
    from hearth.rag.retrievers import make_retriever

    for query in QUERIES:
        ours = make_retriever("dense", pg, embedder).retrieve(query, k=5)
        theirs = make_retriever("dense", lite, embedder).retrieve(query, k=5)
        assert keys(ours) == keys(theirs)
        hybrid = make_retriever("hybrid", pg, embedder).retrieve(query, k=5)
        assert len(hybrid) == 5
        assert keys(ours)[0] in keys(hybrid)  # the best dense hit survives fusion
        both = [h for h in hybrid if "bm25" in h.scores and "dense" in h.scores]
        assert both, query  # fusion saw the same chunk from both retrievers
    best = make_retriever("hybrid", pg, embedder).retrieve("sourdough bread baking", k=3)
    assert keys(best)[0] == ("/data/docs/kitchen.md", 0)


@pytest.mark.parametrize("hnsw", [False, True], ids=["exact", "hnsw"])
def test_filters_behave_as_sqlite(pg, lite, embedder, hnsw):
    if hnsw:
        pg.exact_below, pg.exact_fraction = 0, 0.0
    cases = [
        Filters(source_glob="docs/*.md"),
        Filters(file_types=("pdf", ".CSV")),
        Filters(source_glob="/data/notes"),
        Filters(source_glob="*.md", file_types=("md",)),
        Filters(source_glob="nothing/*"),
    ]
    for filters in cases:
        for query in QUERIES[:4]:
            vec = embedder.embed([query])[0]
            assert keys(pg.search_dense(vec, 4, filters)) == keys(
                lite.search_dense(vec, 4, filters)
            ), (filters, query)
            assert set(keys(pg.search_bm25(query, 50, filters))) == set(
                keys(lite.search_bm25(query, 50, filters))
            ), (filters, query)
    assert pg.search_dense(embedder.embed(["x"])[0], 5, Filters(source_glob="nothing/*")) == []


# ---- writes ----------------------------------------------------------------------------------


def test_reingest_replaces_and_delete_removes(pg, embedder):
    gen = pg.generation()
    before = pg.get_document("/data/docs/kitchen.md")
    doc, chunks = make_doc("/data/docs/kitchen.md", "md", "Croissants need cold butter.", tag="v2")
    pg.replace_documents([(doc, chunks, embedder.embed([c.text for c in chunks]))])
    assert pg.generation() == gen + 1
    assert pg.get_document("/data/docs/kitchen.md").text == "Croissants need cold butter."
    assert pg.get_document("/data/docs/kitchen.md").content_hash != before.content_hash
    assert [c.text for c in pg.document_chunks("/data/docs/kitchen.md")] == [doc.text]
    assert pg.search_bm25("sourdough", 5) == []
    assert pg.search_bm25("croissants", 5)[0].chunk.source == "/data/docs/kitchen.md"
    assert pg.document_hashes()["/data/docs/kitchen.md"] == doc.content_hash
    assert len(pg.list_documents()) == len(CORPUS)

    assert pg.delete_sources(["/data/docs/kitchen.md", "/not/there"]) == 1
    assert pg.generation() == gen + 2
    assert pg.delete_sources(["/not/there"]) == 0 and pg.generation() == gen + 2
    assert "/data/docs/kitchen.md" not in pg.document_hashes()
    assert pg.search_bm25("croissants", 5) == []
    with pytest.raises(NotInIndexError, match="no document"):
        pg.get_document("/data/docs/kitchen.md")
    n = sum(len(make_doc(s, *v)[1]) for s, v in CORPUS.items() if s != "/data/docs/kitchen.md")
    assert pg.stats()["chunks"] == n
    assert pg._db.execute("SELECT count(*) FROM hearth_chunks").fetchone()[0] == n
    # postings went with their chunks (same transaction, ON DELETE CASCADE)
    orphans = pg._db.execute(
        "SELECT count(*) FROM hearth_postings p LEFT JOIN hearth_chunks c ON c.id = p.chunk_id "
        "WHERE c.id IS NULL OR c.document_id <> p.document_id"
    ).fetchone()[0]
    assert orphans == 0
    assert (
        pg._db.execute(
            "SELECT count(*) FROM hearth_postings WHERE term IN ('sourdough', 'croissants')"
        ).fetchone()[0]
        == 0
    )
    lengths = pg._db.execute(
        "SELECT bool_and(c.n_tokens = p.dl) FROM hearth_postings p "
        "JOIN hearth_chunks c ON c.id = p.chunk_id"
    ).fetchone()[0]
    assert lengths


def test_reads_match_sqlite(pg, lite):
    ours, theirs = pg.list_documents(), lite.list_documents()
    drop = ("id", "ingested_at")
    assert [{k: v for k, v in d.items() if k not in drop} for d in ours] == [
        {k: v for k, v in d.items() if k not in drop} for d in theirs
    ]
    for source in CORPUS:
        a, b = pg.get_document(source), lite.get_document(source)
        assert (a.text, a.metadata, a.media_type, a.content_hash) == (
            b.text,
            b.metadata,
            b.media_type,
            b.content_hash,
        )
        chunks = pg.document_chunks(source)
        assert chunks == [
            Chunk(**{**c.__dict__, "id": p.id, "document_id": p.document_id})
            for c, p in zip(lite.document_chunks(source), chunks, strict=True)
        ]
        assert all(a.text[c.start : c.end] == c.text for c in chunks)
        assert pg.get_chunk(chunks[0].id) == chunks[0]
        assert pg.document_chunks(chunks[0].document_id) == chunks
    with pytest.raises(NotInIndexError, match="no chunk with id 999999"):
        pg.get_chunk(999999)
    s, t = pg.stats(), lite.stats()
    for key in ("documents", "chunks", "by_file_type", "embedder", "schema_version"):
        assert s[key] == t[key], key
    assert s["db_bytes"] > 0 and s["last_ingest_at"] is not None
    assert pg.embedder_info() == lite.embedder_info()
    assert pg.embed_input("title+headings") == "text"  # chunks exist already, as on SQLite


def test_store_with_the_old_tsvector_layout_is_refused(pg_url):
    with PostgresStore(pg_url) as store:
        store._db.execute("UPDATE hearth_meta SET value = '1' WHERE key = 'pg_layout'")
    with pytest.raises(HearthError, match="older Hearth.*new database"):
        PostgresStore(pg_url)


def test_nul_characters_are_stored(pg_url):
    with PostgresStore(pg_url) as store:
        doc, chunks = make_doc("/t/nul.txt", "txt", "a\x00b text")
        store.replace_documents([(doc, chunks, np.ones((1, 3), np.float32))])
        text = store.get_document("/t/nul.txt").text
        assert len(text) == len(doc.text) and text.endswith("b text")


def test_wrong_dimension_is_refused(pg, embedder):
    doc, chunks = make_doc("/t/x.txt", "txt", "hello")
    with pytest.raises(ValueError, match="384-dimensional"):
        pg.replace_documents([(doc, chunks, np.ones((1, 3), np.float32))])
    with pytest.raises(ValueError, match="3 dimensions"):
        pg.search_dense(np.ones(3), 5)


def test_sessions(pg_url):
    with PostgresStore(pg_url) as store:
        assert store.session_messages("nope") == []
        store.append_message("a", "user", "hi")
        store.append_message("b", "user", "other")
        store.append_message("a", "assistant", "hello!")
        assert store.session_messages("a") == [
            Message(role="user", content="hi"),
            Message(role="assistant", content="hello!"),
        ]
        assert store.list_sessions() == ["a", "b"]
        with pytest.raises(ValueError, match="role must be"):
            store.append_message("a", "robot", "x")
        with pytest.raises(ValueError, match="empty"):
            store.append_message("", "user", "x")
        assert store.delete_session("a") is True
        assert store.delete_session("a") is False
        assert store.session_messages("a") == [] and store.list_sessions() == ["b"]
        assert store._db.execute("SELECT count(*) FROM hearth_messages").fetchone()[0] == 1


def test_embedder_mismatch(pg, embedder):
    pg.check_embedder(embedder.name, embedder.dim)
    with pytest.raises(EmbedderMismatchError, match="was built with embedder"):
        pg.check_embedder("other-model", embedder.dim)
    with pytest.raises(EmbedderMismatchError, match="384 dimensions"):
        pg.check_embedder(embedder.name, 768, record=False)


def test_reopen_keeps_everything(pg_url, embedder):
    with PostgresStore(pg_url) as store:
        store.check_embedder(embedder.name, embedder.dim)
        store.replace_documents(corpus_batch(embedder))
        gen = store.generation()
    with PostgresStore(pg_url) as store:
        assert store.generation() == gen
        assert store.stats()["documents"] == len(CORPUS)
        store.check_embedder(embedder.name, embedder.dim)


# ---- URLs and errors -------------------------------------------------------------------------


def test_unix_socket_url(pg_url):
    parts = urlsplit(pg_url)
    socket_dir = dict(p.split("=", 1) for p in parts.query.split("&"))["host"]
    url = f"postgresql://postgres:@{parts.path}?host={socket_dir}"
    assert Path(socket_dir, ".s.PGSQL.5432").exists()
    with PostgresStore(url) as store:
        store.append_message("s", "user", "over the socket")
        assert store.session_messages("s")[0].content == "over the socket"
        assert store.path == url


def test_bad_urls_say_what_to_fix(tmp_path):
    with pytest.raises(HearthError, match="cannot connect to PostgreSQL"):
        PostgresStore(f"postgresql://postgres:@/nodb?host={tmp_path}", connect_timeout=2)
    with pytest.raises(HearthError, match="bad PostgreSQL URL"):
        PostgresStore("postgresql://u:secret@localhost/db?no_such_option=1")
    for url in ("postgresql://u:secret@127.0.0.1:1/db", "postgresql://u:secret@h:bad/db"):
        with pytest.raises(HearthError, match="u:\\*\\*\\*@") as err:
            PostgresStore(url, connect_timeout=2)
        assert "secret" not in str(err.value)


def test_missing_database(pg_server):
    with pytest.raises(HearthError, match="does not exist"):
        PostgresStore(_with_db(pg_server, "no_such_db"))


def test_database_without_pgvector(pg_server):
    """A role that may not CREATE EXTENSION vector (pgvector is not a trusted extension) in a
    database without it: the message says who must run what."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    role = f"r_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{role}"')
    with pytest.raises(HearthError) as err:
        PostgresStore(_with_db(pg_server, name, user=role))
    message = str(err.value)
    assert "CREATE EXTENSION vector" in message and "pgvector" in message
    assert "github.com/pgvector/pgvector" in message
    # A server without pgvector installed at all (not simulated here: pgserver ships it) gets
    # the install instructions; the message is built by this function.
    text = missing_pgvector_message(
        "postgresql://u:pw@h/db", 'extension "vector" is not available', available=False
    )
    assert "Install pgvector on the server" in text and "u:***@h" in text and "pw" not in text


def test_open_store(tmp_path, pg_url):
    db = tmp_path / "idx" / "index.sqlite3"
    for value in (None, "", "sqlite", " SQLite "):
        with open_store(value, db) as store:
            assert isinstance(store, SQLiteStore) and store.path == db
    with open_store(pg_url, db) as store:
        assert isinstance(store, PostgresStore)
    with open_store(pg_url.replace("postgresql://", "postgres://"), db) as store:
        assert isinstance(store, PostgresStore)
    with pytest.raises(ConfigError, match="'mysql://u:\\*\\*\\*@h/db' is not a store"):
        open_store("mysql://u:pw@h/db", db)


def test_same_public_methods_as_sqlite():
    public = {n for n in dir(SQLiteStore) if not n.startswith("_")}
    assert public <= set(dir(PostgresStore)), public - set(dir(PostgresStore))
    from hearth.index.stores import Store

    assert public <= set(dir(Store)) | {"path"}


# ---- the Indexer, unchanged ------------------------------------------------------------------


def test_indexer_ingests_real_files(pg_url, tmp_path, embedder):
    from hearth.index.indexer import Indexer
    from hearth.ingest.splitter import Splitter

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "garden.md").write_text("# Garden\n\nTomatoes need sun.\n\n## Herbs\n\nBasil.\n")
    (folder / "space.txt").write_text("The rocket reached orbit after a nine minute burn.\n")
    (folder / "data.json").write_text(json.dumps({"city": "Lyon", "river": "Rhone"}))
    (folder / "skip.xyz").write_text("unsupported")
    splitter = Splitter(embedder.count_tokens, chunk_tokens=64, overlap_tokens=8)
    with PostgresStore(pg_url) as pg, SQLiteStore(tmp_path / "i" / "index.sqlite3") as lite:
        reports = [Indexer(s, embedder, splitter).ingest([str(folder)], False) for s in (pg, lite)]
        assert reports[0].added == 3 and reports[0].documents == 3
        assert reports[0].chunks == reports[1].chunks > 0
        assert pg.embed_input("text") == lite.embed_input("text") == "title+headings"
        vec = embedder.embed(["rocket orbit"])[0]
        assert keys(pg.search_dense(vec, 5)) == keys(lite.search_dense(vec, 5))

        again = Indexer(pg, embedder, splitter).ingest([str(folder)], False)
        assert (again.added, again.updated, again.unchanged) == (0, 0, 3)
        (folder / "space.txt").write_text("Astronauts docked with the station.\n")
        (folder / "data.json").unlink()
        third = Indexer(pg, embedder, splitter).ingest([str(folder)], False)
        assert (third.updated, third.removed, third.documents) == (1, 1, 2)
        assert pg.search_bm25("astronauts", 3)[0].chunk.source == str(folder / "space.txt")
        assert pg.search_bm25("rocket", 3) == []
        assert pg.stats()["last_ingest_at"] is not None


# ---- crash safety and several processes ------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from hearth.index.pg_store import PostgresStore
    from hearth.types import Chunk, Document
    url, tag, n_docs, per_doc, rounds = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
    store = PostgresStore(url)
    store.check_embedder("test", 16)
    rng = np.random.default_rng(0)
    for r in range(rounds):
        batch = []
        for d in range(n_docs):
            texts = [f"{tag} round {r} doc {d} chunk {i}" for i in range(per_doc)]
            text = "\\n\\n".join(texts)
            chunks, start = [], 0
            for t in texts:
                chunks.append(Chunk(t, start, start + len(t)))
                start += len(t) + 2
            doc = Document(f"/kill/doc{d:04d}.txt", "text/plain", text, f"{tag}-{r}",
                           {"file_type": "txt"})
            batch.append((doc, chunks, rng.standard_normal((per_doc, 16)).astype("f4")))
        print("writing", r, flush=True)
        store.replace_documents(batch)
        print("committed", r, flush=True)
    """
)


def _run_writer(url: str, tag: str, n_docs: int, per_doc: int, rounds: int = 1):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    args = [sys.executable, "-c", _WRITER, url, tag, str(n_docs), str(per_doc), str(rounds)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)


def _check_whole(store: PostgresStore, n_docs: int, per_doc: int) -> set[str]:
    """Every document complete (no duplicates, no strays) and of one version; returns versions."""
    rows = store._db.execute(
        "SELECT d.source, d.content_hash, count(c.id), count(DISTINCT c.ordinal), "
        "bool_and(c.text LIKE split_part(d.content_hash, '-', 1) || ' round ' || "
        "split_part(d.content_hash, '-', 2) || ' %%') "
        "FROM hearth_documents d LEFT JOIN hearth_chunks c ON c.document_id = d.id "
        "GROUP BY d.id"
    ).fetchall()
    assert len(rows) == n_docs
    assert all(n == per_doc and distinct == per_doc and ok for _, _, n, distinct, ok in rows)
    assert store._db.execute("SELECT count(*) FROM hearth_chunks").fetchone()[0] == (
        n_docs * per_doc
    )
    return {h for _, h, *_ in rows}


def test_kill_9_mid_ingest_loses_and_duplicates_nothing(pg_url):
    n_docs, per_doc = 300, 40
    first = _run_writer(pg_url, "old", n_docs, per_doc)
    assert first.wait(timeout=300) == 0
    with PostgresStore(pg_url) as store:
        assert _check_whole(store, n_docs, per_doc) == {"old-0"}
        gen = store.generation()

        writer = _run_writer(pg_url, "new", n_docs, per_doc)
        assert writer.stdout.readline().strip() == "writing 0"
        # wait until its transaction has written rows, then kill it in the middle
        deadline = time.time() + 60
        while time.time() < deadline:
            busy = store._db.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                "AND datname = current_database() AND xact_start IS NOT NULL "
                "AND query LIKE 'COPY hearth_chunks%%'"
            ).fetchone()[0]
            if busy:
                break
            time.sleep(0.01)
        time.sleep(0.3)
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
        assert writer.returncode == -signal.SIGKILL
        assert writer.stdout.read().strip() == ""  # it never committed

        assert _check_whole(store, n_docs, per_doc) == {"old-0"}
        assert store.generation() == gen
        # the killed writer's lock went with its connection: the next ingest goes through
        retry = _run_writer(pg_url, "new", n_docs, per_doc)
        assert retry.wait(timeout=300) == 0
        assert _check_whole(store, n_docs, per_doc) == {"new-0"}
        assert store.generation() == gen + 1


_READER = textwrap.dedent(
    """
    import json, sys, time
    from hearth.index.pg_store import PostgresStore
    store = PostgresStore(sys.argv[1])
    target, seen, bad, last = int(sys.argv[2]), [], 0, -1
    print("ready", flush=True)
    end = time.time() + 180
    while time.time() < end and last < target:
        gen = store.generation()
        hashes = set(store.document_hashes().values())
        stats = store.stats()
        if gen < last or len(hashes) > 1 or stats["chunks"] != stats["documents"] * 5:
            bad += 1
        last = gen
        seen.append(gen)
    print(json.dumps({"bad": bad, "generations": sorted(set(seen))}))
    """
)


def test_readers_see_whole_generations_while_one_writes(pg_url):
    n_docs, rounds = 50, 12
    first = _run_writer(pg_url, "w", n_docs, 5)
    assert first.wait(timeout=120) == 0
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    readers = [
        subprocess.Popen(
            [sys.executable, "-c", _READER, pg_url, str(1 + rounds)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    assert all(r.stdout.readline().strip() == "ready" for r in readers)
    writer = _run_writer(pg_url, "w", n_docs, 5, rounds)
    assert writer.wait(timeout=120) == 0
    results = [json.loads(r.communicate(timeout=60)[0]) for r in readers]
    with PostgresStore(pg_url) as store:
        final = store.generation()
        _check_whole(store, n_docs, 5)
    assert final == 1 + rounds
    for result in results:
        assert result["bad"] == 0
        assert len(result["generations"]) > 1  # each reader saw the writer's progress
        assert max(result["generations"]) == final
