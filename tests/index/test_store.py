"""SQLiteStore on real SQLite files with the real embedder: writes, searches, filters, sessions."""

from __future__ import annotations

import math
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from hearth.errors import EmbedderMismatchError, HearthError
from hearth.index.store import SQLiteStore, fts_query, source_matches
from hearth.types import Chunk, Document, Filters, Message

CORPUS = {
    "/data/docs/garden.md": (
        "md",
        "Tomatoes need full sun and regular watering.\n\n"
        "Prune the basil often so it keeps growing leaves.",
    ),
    "/data/docs/kitchen.md": (
        "md",
        "Bake the sourdough bread at 230 degrees for forty minutes.\n\n"
        "Let the dough rest overnight in the fridge.",
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
        "Astronauts docked with the space station.",
    ),
}


def make_doc(source: str, file_type: str, text: str) -> tuple[Document, list[Chunk]]:
    """A document whose chunks are its blank-line separated paragraphs (exact spans)."""
    doc = Document(
        source=source,
        media_type=f"text/{file_type}",
        text=text,
        content_hash=f"hash-{hash(text)}",
        metadata={"file_type": file_type},
    )
    chunks = []
    for i, m in enumerate(re.finditer(r"[^\n]+(?:\n[^\n]+)*", text)):
        page = 1 + i if file_type == "pdf" else None
        chunks.append(
            Chunk(text=m.group(), start=m.start(), end=m.end(), headings=["Top", source], page=page)
        )
    return doc, chunks


def add(store: SQLiteStore, embedder, source: str, file_type: str, text: str):
    doc, chunks = make_doc(source, file_type, text)
    store.replace_documents([(doc, chunks, embedder.embed([c.text for c in chunks]))])
    return doc, chunks


@pytest.fixture
def store(tmp_path, embedder):
    with SQLiteStore(tmp_path / "idx" / "index.sqlite3") as s:
        s.check_embedder(embedder.name, embedder.dim)
        yield s


@pytest.fixture
def corpus_store(store, embedder):
    batch = []
    for source, (file_type, text) in CORPUS.items():
        doc, chunks = make_doc(source, file_type, text)
        batch.append((doc, chunks, embedder.embed([c.text for c in chunks])))
    store.replace_documents(batch)
    return store


def raw(store: SQLiteStore) -> sqlite3.Connection:
    return sqlite3.connect(store.path)


def test_file_settings_and_schema_version(store):
    db = store._db
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    meta = dict(raw(store).execute("SELECT key, value FROM meta"))
    assert meta["schema_version"] == "1"
    assert meta["embedder_dim"] == "384"


def test_roundtrip_document_and_chunks(corpus_store):
    doc = corpus_store.get_document("/data/reports/q3.pdf")
    assert doc.file_type == "pdf" and doc.text == CORPUS["/data/reports/q3.pdf"][1]
    chunks = corpus_store.document_chunks("/data/reports/q3.pdf")
    assert [c.ordinal for c in chunks] == [0, 1]
    for c in chunks:
        assert doc.text[c.start : c.end] == c.text
        assert c.source == "/data/reports/q3.pdf" and c.headings == ["Top", c.source]
        assert corpus_store.get_chunk(c.id) == c
    assert [c.page for c in chunks] == [1, 2]
    by_id = corpus_store.get_document(chunks[0].document_id)
    assert by_id == doc


def test_missing_document_and_chunk_are_clear_errors(corpus_store):
    with pytest.raises(HearthError, match="nowhere.md"):
        corpus_store.get_document("/nowhere.md")
    with pytest.raises(KeyError):
        corpus_store.get_chunk(10**9)


def test_replace_swaps_chunks_atomically_and_bumps_generation(store, embedder):
    add(store, embedder, "/a.md", "md", "Zebras graze on the savanna.")
    before = store.generation()
    assert store.search_bm25("zebras", 5)
    add(store, embedder, "/a.md", "md", "Penguins slide across the ice.")
    assert store.generation() > before
    assert store.search_bm25("zebras", 5) == []
    hits = store.search_bm25("penguins", 5)
    assert [h.chunk.text for h in hits] == ["Penguins slide across the ice."]
    db = raw(store)
    assert db.execute("SELECT count(*) FROM documents").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM chunks").fetchone()[0] == 1


def test_failed_batch_writes_nothing(store, embedder):
    add(store, embedder, "/keep.md", "md", "Original text about lighthouses.")
    good, good_chunks = make_doc("/new.md", "md", "Brand new text about volcanoes.")
    bad, bad_chunks = make_doc("/keep.md", "md", "Replacement about glaciers.")
    bad_chunks[0].metadata = {"unserialisable": object()}
    batch = [
        (good, good_chunks, embedder.embed([c.text for c in good_chunks])),
        (bad, bad_chunks, embedder.embed([c.text for c in bad_chunks])),
    ]
    with pytest.raises(TypeError):
        store.replace_documents(batch)
    assert set(store.document_hashes()) == {"/keep.md"}
    assert store.search_bm25("lighthouses", 5) and not store.search_bm25("volcanoes glaciers", 5)


def test_wrong_vector_dimension_is_rejected(store):
    doc, chunks = make_doc("/a.md", "md", "Some text.")
    with pytest.raises(ValueError, match="384"):
        store.replace_documents([(doc, chunks, np.ones((1, 10), dtype=np.float32))])
    assert store.document_hashes() == {}


def test_delete_sources(corpus_store):
    assert corpus_store.delete_sources(["/data/docs/garden.md", "/not/stored.md"]) == 1
    assert "/data/docs/garden.md" not in corpus_store.document_hashes()
    assert corpus_store.search_bm25("tomatoes basil", 5) == []
    db = raw(corpus_store)
    orphans = db.execute(
        "SELECT count(*) FROM chunks WHERE document_id NOT IN (SELECT id FROM documents)"
    ).fetchone()[0]
    assert orphans == 0
    db.execute("INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)")


def test_embedder_mismatch_names_both_and_the_fix(tmp_path, embedder):
    path = tmp_path / "index.sqlite3"
    with SQLiteStore(path) as s:
        s.check_embedder(embedder.name, embedder.dim)
        s.check_embedder(embedder.name, embedder.dim)  # same one again is fine
    with SQLiteStore(path) as s:
        with pytest.raises(EmbedderMismatchError) as info:
            s.check_embedder("other-embedder", 768)
        message = str(info.value)
        assert embedder.name in message and "other-embedder" in message
        assert "--index" in message and "768" in message
        assert s.embedder_info() == (embedder.name, embedder.dim)


def test_not_a_database_is_a_clear_error(tmp_path):
    bad = tmp_path / "index.sqlite3"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(HearthError, match="index.sqlite3"):
        SQLiteStore(bad)


def _fts5_bm25_reference(texts: list[str], query_terms: list[str]) -> list[float]:
    """FTS5's documented bm25 (k1=1.2, b=0.75), computed by hand; higher is better."""
    docs = [re.findall(r"\w+", t.lower()) for t in texts]
    n = len(docs)
    avgdl = sum(len(d) for d in docs) / n
    scores = []
    for d in docs:
        total = 0.0
        for term in query_terms:
            nq = sum(term in other for other in docs)
            idf = max(math.log((n - nq + 0.5) / (nq + 0.5)), 1e-6)
            f = d.count(term)
            total += idf * f * 2.2 / (f + 1.2 * (1 - 0.75 + 0.75 * len(d) / avgdl))
        scores.append(total)
    return scores


def test_bm25_scores_match_the_formula(corpus_store):
    db = raw(corpus_store)
    ids, texts = zip(*db.execute("SELECT id, text FROM chunks ORDER BY id"), strict=True)
    query = "the quarter revenue and bread"
    reference = dict(
        zip(ids, _fts5_bm25_reference(list(texts), ["quarter", "revenue", "bread"]), strict=True)
    )
    hits = corpus_store.search_bm25(query, 20)
    expected = sorted((i for i in ids if reference[i] > 0), key=lambda i: -reference[i])
    assert [h.chunk.id for h in hits] == expected
    for h in hits:
        assert h.score == pytest.approx(reference[h.chunk.id], rel=1e-6)
        assert h.scores == {"bm25": h.score}
    assert hits[0].chunk.source == "/data/reports/q3.pdf"
    assert len(corpus_store.search_bm25(query, 2)) == 2


@pytest.mark.parametrize("query", ["", "   ", "the and of", "what is it?", "!!! ???"])
def test_bm25_empty_or_stopword_queries_return_nothing(corpus_store, query):
    assert corpus_store.search_bm25(query, 5) == []


@pytest.mark.parametrize(
    "query",
    [
        '"sourdough',
        'sourdough" OR "',
        "NEAR(sourdough bread, 2)",
        "sourdough*",
        "(sourdough AND) OR NOT",
        "text:sourdough",
        "^sourdough -bread +dough",
        "sourdough'; DROP TABLE chunks; --",
        "sourdough \x00 \u200b \U0001f35e",
        "SOURDOUGH ÉTÉ 面包 ²³",
        "{sourdough} [bread] a:b:c ''",
        "_ __ sourdough_bread",
    ],
)
def test_hostile_fts_queries_do_not_raise_and_still_search(corpus_store, query):
    hits = corpus_store.search_bm25(query, 5)
    assert hits and hits[0].chunk.source == "/data/docs/kitchen.md"
    assert raw(corpus_store).execute("SELECT count(*) FROM chunks").fetchone()[0] == 10


def test_fts_query_quotes_every_word():
    assert fts_query('NEAR("a" OR b*) the Tomato') == '"near" OR "b" OR "tomato"'
    assert fts_query("the of") == ""


def test_dense_search_is_cosine_with_the_real_embedder(corpus_store, embedder):
    query = embedder.embed(["when does the spacecraft get to orbit?"])[0]
    hits = corpus_store.search_dense(query, 3)
    assert len(hits) == 3
    assert hits[0].chunk.source == "/data/notes/space.txt"
    assert "orbit" in hits[0].chunk.text
    db = raw(corpus_store)
    for h in hits:
        blob = db.execute("SELECT vector FROM chunks WHERE id = ?", (h.chunk.id,)).fetchone()[0]
        stored = np.frombuffer(blob, dtype=np.float32)
        expected = float(stored @ query / np.linalg.norm(stored) / np.linalg.norm(query))
        assert h.score == pytest.approx(expected, abs=1e-5)
        assert h.scores == {"dense": h.score}
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len(corpus_store.search_dense(query, 100)) == 10


def test_dense_matrix_is_cached_and_refreshed_on_writes(corpus_store, embedder, tmp_path):
    first = corpus_store._dense_matrix()
    assert corpus_store._dense_matrix() is first  # no reload when nothing changed
    query = embedder.embed(["a violin concert in the evening"])[0]
    assert "violin" not in corpus_store.search_dense(query, 1)[0].chunk.text
    # A write through another connection (as another process would do) is noticed too.
    with SQLiteStore(corpus_store.path) as other:
        add(other, embedder, "/music.md", "md", "The violin concert starts at eight tonight.")
    hits = corpus_store.search_dense(query, 1)
    assert hits[0].chunk.source == "/music.md"
    assert corpus_store._dense_matrix() is not first


def test_dense_search_on_empty_store(store, embedder):
    assert store.search_dense(embedder.embed(["anything"])[0], 5) == []


@pytest.mark.parametrize(
    ("glob", "types", "expected"),
    [
        ("/data/docs/*.md", None, {"/data/docs/garden.md", "/data/docs/kitchen.md"}),
        ("docs/*.md", None, {"/data/docs/garden.md", "/data/docs/kitchen.md"}),
        ("*.pdf", None, {"/data/reports/q3.pdf"}),
        ("reports", None, {"/data/reports/q3.pdf", "/data/reports/cars.csv"}),
        ("/data/**/*.csv", None, {"/data/reports/cars.csv"}),
        ("**/space.txt", None, {"/data/notes/space.txt"}),
        (
            None,
            ("md", "TXT"),
            {"/data/docs/garden.md", "/data/docs/kitchen.md", "/data/notes/space.txt"},
        ),
        ("reports/*", ("csv",), {"/data/reports/cars.csv"}),
        ("*.docx", None, set()),
    ],
)
def test_filters_apply_to_both_searches(corpus_store, embedder, glob, types, expected):
    filters = Filters(source_glob=glob, file_types=types)
    query = "tomatoes bread revenue price rocket orbit"
    bm25 = corpus_store.search_bm25(query, 10, filters)
    dense = corpus_store.search_dense(embedder.embed([query])[0], 10, filters)
    assert {h.chunk.source for h in bm25} == expected
    assert {h.chunk.source for h in dense} == expected
    # dense returns every chunk that passes the filter, ranked
    assert len(dense) == 2 * len(expected)


def test_glob_relative_to_cwd(tmp_path, monkeypatch, embedder):
    (tmp_path / "proj" / "docs").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "proj")
    with SQLiteStore(tmp_path / "index.sqlite3") as s:
        s.check_embedder(embedder.name, embedder.dim)
        add(s, embedder, str(tmp_path / "proj/docs/a.md"), "md", "alpha words here")
        add(s, embedder, str(tmp_path / "other/docs/b.md"), "md", "alpha words there")
        hits = s.search_bm25("alpha", 5, Filters(source_glob="./docs/*.md"))
        assert [h.chunk.source for h in hits] == [str(tmp_path / "proj/docs/a.md")]


def test_source_matches():
    src = "/home/ann/work/docs/guide/intro.md"
    assert source_matches("*.md", src)
    assert source_matches("guide/*.md", src)
    assert source_matches("docs/**/*.md", src)
    assert source_matches("docs/**", src)
    assert source_matches("/home/ann/**/intro.md", src)
    assert source_matches("work/docs", src)
    assert source_matches("docs/guide/intro.md", src, cwd="/home/ann/work")
    assert source_matches("intro.m?", src) and source_matches("intro.[mt]d", src)
    assert not source_matches("docs/*.md", src)  # * stays inside one folder
    assert not source_matches("/docs/**", src)  # absolute patterns match the whole path
    assert not source_matches("ocs/guide/intro.md", src)  # suffixes are whole path parts
    assert not source_matches("*.pdf", src)


def test_stats(corpus_store, embedder):
    corpus_store.note_ingest()
    stats = corpus_store.stats()
    assert stats["documents"] == 5 and stats["chunks"] == 10
    assert stats["by_file_type"] == {
        "csv": {"documents": 1, "chunks": 2},
        "md": {"documents": 2, "chunks": 4},
        "pdf": {"documents": 1, "chunks": 2},
        "txt": {"documents": 1, "chunks": 2},
    }
    assert stats["embedder"] == {"name": embedder.name, "dim": embedder.dim, "input": "text"}
    db_file = Path(corpus_store.path)
    wal = Path(f"{db_file}-wal")
    on_disk = db_file.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    assert stats["db_bytes"] == on_disk > 10 * 384 * 4
    assert stats["last_ingest_at"] is not None
    listed = corpus_store.list_documents()
    assert [d["source"] for d in listed] == sorted(CORPUS)
    assert all(d["chunks"] == 2 for d in listed)


def test_sessions(store):
    store.append_message("s1", "user", "hello")
    store.append_message("s1", "assistant", "hi there")
    store.append_message("s2", "user", "another")
    store.append_message("s1", "user", "and more ✓")
    assert store.session_messages("s1") == [
        Message("user", "hello"),
        Message("assistant", "hi there"),
        Message("user", "and more ✓"),
    ]
    assert store.list_sessions() == ["s1", "s2"]
    assert store.session_messages("nope") == []
    with pytest.raises(ValueError, match="role"):
        store.append_message("s1", "robot", "x")
    assert store.delete_session("s2") and not store.delete_session("s2")
    assert store.list_sessions() == ["s1"]


def test_bm25_skips_terms_in_most_chunks_without_changing_the_ranking(store, embedder):
    """Terms in half the chunks or more have a floored idf; dropping them must not change
    which chunks come first, and a short result falls back to the full query."""
    for i in range(12):
        extra = " An erupting volcano glows." if i % 4 == 0 else ""
        add(store, embedder, f"/n{i}.md", "md", f"Hearth note {i} about the hearth.{extra}")
    db = raw(store)

    def reference(k):
        rows = db.execute(
            'SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH \'"hearth" OR "volcano"\' '
            "ORDER BY bm25(chunks_fts) LIMIT ?",
            (k,),
        )
        return [r[0] for r in rows]

    top3 = store.search_bm25("hearth volcano", 3)
    assert [h.chunk.id for h in top3] == reference(3)
    assert all("volcano" in h.chunk.text for h in top3)
    top10 = store.search_bm25("hearth volcano", 10)
    assert len(top10) == 10 and [h.chunk.id for h in top10][:3] == reference(3)
    assert len(store.search_bm25("hearth", 20)) == 12  # only common words: still answered


def test_an_unreadable_glob_is_a_clear_error_not_a_traceback():
    from hearth.index.store import source_matches
    from hearth.ingest.globs import GlobError

    with pytest.raises(GlobError, match=r"invalid glob pattern 'a\[b-a\]c'"):
        source_matches("a[b-a]c", "/docs/abc.md")
