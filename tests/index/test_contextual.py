"""Contextual chunk headers: the embedder reads "title > headings: text", the store keeps the
exact text, an index keeps the mode it was built with, and the header really reaches the
vectors (the real embedder tells apart two files whose text is identical)."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from hearth.index.contextual import MAX_HEADER_CHARS, document_title, embedding_input
from hearth.index.indexer import Indexer
from hearth.index.store import SQLiteStore
from hearth.ingest.splitter import Splitter
from hearth.types import Chunk

BODY = "Keep the lid closed and check it every morning before you leave."


class RecordingEmbedder:
    """The real embedder, remembering every text it was asked to embed."""

    def __init__(self, inner):
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.texts: list[str] = []

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def embed(self, texts):
        self.texts += list(texts)
        return self.inner.embed(texts)


def _indexer(store, embedder, **kw):
    splitter = Splitter(embedder.count_tokens, chunk_tokens=120, overlap_tokens=16)
    return Indexer(store, embedder, splitter, **kw)


def test_header_is_title_then_heading_path():
    chunk = Chunk(text="Run make install.", start=0, end=17, headings=["Setup", "Linux"])
    assert embedding_input(chunk, "/docs/getting-started.md", "text") == "Run make install."
    assert (
        embedding_input(chunk, "/docs/getting-started.md", "title+headings")
        == "getting-started > Setup > Linux: Run make install."
    )
    # a heading equal to the title is not repeated; URIs lose their query string
    same = Chunk(text="x", start=0, end=1, headings=["json", "Encoders"])
    assert embedding_input(same, "/lib/json.txt", "title+headings") == "json > Encoders: x"
    assert document_title("https://example.org/guide/intro.html?page=2") == "intro"
    long = Chunk(text="body", start=0, end=4, headings=["h" * 500])
    header = embedding_input(long, "/a/b.md", "title+headings").rsplit(": body", 1)[0]
    assert len(header) == MAX_HEADER_CHARS and header.endswith("…")


def test_ingest_embeds_headers_but_stores_exact_text(tmp_path, embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "beehive.md").write_text(f"# Hive care\n\n## Daily checks\n\n{BODY}\n")
    recording = RecordingEmbedder(embedder)
    with SQLiteStore(tmp_path / "index.sqlite3") as store:
        _indexer(store, recording).ingest([str(docs)], progress=False)
        assert store.embed_input("text") == "title+headings"  # recorded at the first ingest
        assert store.stats()["embedder"]["input"] == "title+headings"
        chunks = store.document_chunks(str(docs / "beehive.md"))
        text = (docs / "beehive.md").read_text()
        assert all(c.text == text[c.start : c.end] for c in chunks)
        assert not any("beehive >" in c.text for c in chunks)
    assert recording.texts and all(t.startswith("beehive > ") for t in recording.texts)
    assert any(t.startswith("beehive > Hive care > Daily checks: ") for t in recording.texts)


def test_the_header_reaches_the_vector(tmp_path, embedder):
    """Two files with the same sentence: only the header tells them apart. With headers the
    query about beehives finds the beehive file first; without, the two vectors are equal."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("beehive-inspection.txt", "freezer-maintenance.txt"):
        (docs / name).write_text(BODY + "\n")
    vectors = {}
    for mode in ("title+headings", "text"):
        with SQLiteStore(tmp_path / f"{mode}.sqlite3") as store:
            _indexer(store, embedder, embed_input=mode).ingest([str(docs)], progress=False)
            query = np.asarray(embedder.embed(["inspecting a beehive"]), dtype=np.float32)[0]
            hits = store.search_dense(query, 2)
            vectors[mode] = [h.score for h in hits], hits[0].chunk.source
            # keyword search only ever sees the document's own text
            assert store.search_bm25("beehive", 5) == []
    scores, top = vectors["title+headings"]
    assert top.endswith("beehive-inspection.txt") and scores[0] > scores[1] + 0.05
    plain_scores, _ = vectors["text"]
    assert plain_scores[0] == pytest.approx(plain_scores[1], abs=1e-6)


def test_an_index_keeps_the_mode_it_was_built_with(tmp_path, embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(BODY + "\n")
    db = tmp_path / "index.sqlite3"
    with SQLiteStore(db) as store:
        _indexer(store, embedder, embed_input="text").ingest([str(docs)], progress=False)
    (docs / "b.txt").write_text("Water the tomatoes twice a week in summer.\n")
    recording = RecordingEmbedder(embedder)
    with SQLiteStore(db) as store:  # the default wants headers; the index says "text"
        _indexer(store, recording).ingest([str(docs)], progress=False)
    assert recording.texts == ["Water the tomatoes twice a week in summer."]

    # an index from before the mode was recorded holds plain-text vectors: it stays "text"
    sqlite3.connect(db).execute("DELETE FROM meta WHERE key = 'embed_input'").connection.commit()
    (docs / "c.txt").write_text("Oil the hinges once a month.\n")
    recording = RecordingEmbedder(embedder)
    with SQLiteStore(db) as store:
        _indexer(store, recording).ingest([str(docs)], progress=False)
        assert store.embed_input("title+headings") == "text"
    assert recording.texts == ["Oil the hinges once a month."]


def test_unknown_mode_is_refused(tmp_path, embedder):
    with (
        SQLiteStore(tmp_path / "index.sqlite3") as store,
        pytest.raises(ValueError, match="embed_input"),
    ):
        _indexer(store, embedder, embed_input="title")
