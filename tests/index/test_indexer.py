"""Indexer on real files, the real loaders/splitter/embedder and a real SQLite store."""

from __future__ import annotations

import io
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from hearth.errors import EmbedderMismatchError
from hearth.index.indexer import Indexer
from hearth.index.store import SQLiteStore

TOPICS = [
    "lighthouse keepers trimmed the lamp wicks every evening",
    "beekeepers harvest honey from the hives in late summer",
    "glaciers carve deep valleys over thousands of years",
    "violinists tune their strings before every concert",
    "cartographers drew coastlines from ship captains' logs",
    "blacksmiths hammer glowing iron on the anvil",
]


class CountingEmbedder:
    """Wraps the real embedder and records every embed call (texts per call, and what was
    already committed to the database at that moment)."""

    def __init__(self, inner, db_path: Path | None = None, name: str | None = None):
        self.inner = inner
        self.name = name or inner.name
        self.dim = inner.dim
        self.db_path = db_path
        self.calls: list[int] = []
        self.committed_at_call: list[tuple[int, int]] = []  # (documents, chunks)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def embed(self, texts):
        self.calls.append(len(texts))
        if self.db_path is not None and self.db_path.exists():
            db = sqlite3.connect(self.db_path)
            self.committed_at_call.append(
                (
                    db.execute("SELECT count(*) FROM documents").fetchone()[0],
                    db.execute("SELECT count(*) FROM chunks").fetchone()[0],
                )
            )
            db.close()
        return self.inner.embed(texts)


def make_splitter(embedder):
    from hearth.ingest.splitter import Splitter

    return Splitter(embedder.count_tokens, chunk_tokens=64, overlap_tokens=8)


def write_corpus(folder: Path, n: int = 6) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        path = folder / f"note{i:03d}.md"
        path.write_text(
            f"# Note {i}\n\n{topic.capitalize()}. Item number {i} in the collection.\n\n"
            f"## Details\n\nMore about how {topic}, written down as record {i}.\n",
            encoding="utf-8",
        )
        paths.append(path)
    return paths


def make_pdf(path: Path, text: str) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 8, text)
    pdf.output(str(path))


@pytest.fixture
def store(tmp_path):
    with SQLiteStore(tmp_path / "index" / "index.sqlite3") as s:
        yield s


def sources(store) -> set[str]:
    return set(store.document_hashes())


def test_ingest_then_reingest_is_idempotent(tmp_path, store, embedder):
    files = write_corpus(tmp_path / "docs")
    counting = CountingEmbedder(embedder)
    indexer = Indexer(store, counting, make_splitter(embedder))

    first = indexer.ingest([str(tmp_path / "docs")], progress=False)
    assert (first.added, first.updated, first.unchanged, first.removed) == (6, 0, 0, 0)
    assert first.skipped == [] and first.documents == 6
    assert first.chunks == store.stats()["chunks"] == first.embedded_chunks == sum(counting.calls)
    assert sources(store) == {str(p) for p in files}

    calls_before = len(counting.calls)
    second = indexer.ingest([str(tmp_path / "docs")], progress=False)
    assert (second.added, second.updated, second.unchanged, second.removed) == (0, 0, 6, 0)
    assert len(counting.calls) == calls_before  # nothing re-embedded
    assert second.embedded_chunks == 0
    assert (second.documents, second.chunks) == (first.documents, first.chunks)


def test_changed_file_chunks_are_replaced(tmp_path, store, embedder):
    files = write_corpus(tmp_path / "docs")
    indexer = Indexer(store, embedder, make_splitter(embedder))
    indexer.ingest([str(tmp_path / "docs")], progress=False)
    assert store.search_bm25("beekeepers", 5)

    files[1].write_text("# Changed\n\nSubmarines dive beneath the polar ice cap.\n")
    report = indexer.ingest([str(tmp_path / "docs")], progress=False)
    assert (report.added, report.updated, report.unchanged) == (0, 1, 5)
    assert store.search_bm25("beekeepers honey hives", 5) == []
    hits = store.search_bm25("submarines", 5)
    assert [h.chunk.source for h in hits] == [str(files[1])]
    dense = store.search_dense(embedder.embed(["submarine under polar ice"])[0], 1)
    assert dense[0].chunk.source == str(files[1])
    chunks = store.document_chunks(str(files[1]))
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    assert all("Submarines" in c.text or "Changed" in c.text for c in chunks)


def test_deleted_file_is_removed_but_uncovered_documents_stay(tmp_path, store, embedder):
    docs = write_corpus(tmp_path / "docs")
    other = tmp_path / "other.md"
    other.write_text("# Other\n\nA note about lanterns.\n")
    indexer = Indexer(store, embedder, make_splitter(embedder))
    indexer.ingest([str(tmp_path / "docs"), str(other)], progress=False)

    docs[0].unlink()
    report = indexer.ingest([str(tmp_path / "docs")], progress=False)
    assert report.removed == 1 and report.unchanged == 5
    assert str(docs[0]) not in sources(store)
    assert str(other) in sources(store)  # not covered by this run's inputs: kept
    assert store.search_bm25("lighthouse keepers", 5) == []
    assert report.documents == 6


def test_corrupt_pdf_in_a_batch_is_reported_and_the_rest_ingested(tmp_path, store, embedder):
    folder = tmp_path / "mixed"
    write_corpus(folder, n=4)
    make_pdf(folder / "good.pdf", "The observatory telescope tracks distant comets at night.")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7\n" + os.urandom(3000))
    report = Indexer(store, embedder, make_splitter(embedder), batch_chunks=4).ingest(
        [str(folder)], progress=False
    )
    assert [s["path"] for s in report.skipped] == [str(folder / "broken.pdf")]
    assert report.skipped[0]["reason"]
    assert report.added == 5 and report.documents == 5
    hits = store.search_bm25("telescope comets", 3)
    assert hits[0].chunk.source == str(folder / "good.pdf") and hits[0].chunk.page == 1
    assert str(folder / "broken.pdf") not in sources(store)


def test_changed_file_that_is_now_corrupt_keeps_its_old_version(tmp_path, store, embedder):
    pdf = tmp_path / "report.pdf"
    make_pdf(pdf, "Annual rainfall in the valley doubled this year.")
    indexer = Indexer(store, embedder, make_splitter(embedder))
    indexer.ingest([str(pdf)], progress=False)
    old_hash = store.document_hashes()[str(pdf)]

    pdf.write_bytes(b"%PDF-1.4 this is not really a pdf " + os.urandom(500))
    report = indexer.ingest([str(pdf)], progress=False)
    assert [s["path"] for s in report.skipped] == [str(pdf)]
    assert (report.updated, report.removed, report.documents) == (0, 0, 1)
    assert store.document_hashes()[str(pdf)] == old_hash
    assert store.search_bm25("rainfall valley", 3)[0].chunk.source == str(pdf)


def test_embedder_mismatch_stops_ingest(tmp_path, store, embedder):
    write_corpus(tmp_path / "docs", n=2)
    Indexer(store, embedder, make_splitter(embedder)).ingest([str(tmp_path / "docs")], False)
    other = CountingEmbedder(embedder, name="some-other-model")
    with pytest.raises(EmbedderMismatchError, match="some-other-model"):
        Indexer(store, other, make_splitter(embedder)).ingest([str(tmp_path / "docs")], False)
    assert other.calls == []


def test_batches_are_bounded_and_committed_as_they_go(tmp_path, store, embedder):
    folder = tmp_path / "docs"
    write_corpus(folder, n=20)
    big = folder / "big.md"
    big.write_text(
        "# Big\n\n" + "\n\n".join(f"Paragraph {i}: " + TOPICS[i % 6] * 3 for i in range(25))
    )
    batch = 8
    counting = CountingEmbedder(embedder, db_path=store.path)
    report = Indexer(store, counting, make_splitter(embedder), batch_chunks=batch).ingest(
        [str(folder)], progress=False
    )
    total = store.stats()["chunks"]
    big_chunks = len(store.document_chunks(str(big)))
    assert big_chunks > 2 * batch  # one document larger than the buffer, stored whole
    assert report.documents == 21 and report.chunks == total == sum(counting.calls)
    assert all(n == batch for n in counting.calls[:-1]) and 0 < counting.calls[-1] <= batch
    # Documents are committed while the run goes on, and what was embedded but not yet
    # committed never exceeds one buffer plus one document.
    committed_docs = [d for d, _ in counting.committed_at_call]
    assert committed_docs[len(committed_docs) // 2] > 0
    assert committed_docs == sorted(committed_docs)
    embedded_before = np.cumsum([0, *counting.calls[:-1]])
    for (_, committed_chunks), embedded in zip(
        counting.committed_at_call, embedded_before, strict=True
    ):
        assert embedded - committed_chunks <= batch + big_chunks


def test_empty_file_and_missing_input(tmp_path, store, embedder):
    (tmp_path / "docs").mkdir()
    empty = tmp_path / "docs" / "empty.txt"
    empty.write_text("")
    indexer = Indexer(store, embedder, make_splitter(embedder))
    report = indexer.ingest([str(tmp_path / "docs"), str(tmp_path / "nope")], progress=False)
    assert report.missing == [str(tmp_path / "nope")]
    skipped = {s["path"]: s["reason"] for s in report.skipped}
    assert "no such file" in skipped.pop(str(tmp_path / "nope"))
    assert report.documents + len(skipped) == 1
    again = indexer.ingest([str(tmp_path / "docs")], progress=False)
    assert again.added == again.updated == 0


def test_progress_flag_on_a_non_tty_is_quiet(tmp_path, store, embedder, capsys):
    write_corpus(tmp_path / "docs", n=2)
    Indexer(store, embedder, make_splitter(embedder)).ingest([str(tmp_path / "docs")], True)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_progress_bar_on_a_terminal_shows_files_and_chunks(tmp_path, store, embedder, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    write_corpus(tmp_path / "docs", n=3)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    report = Indexer(store, embedder, make_splitter(embedder)).ingest([str(tmp_path / "docs")])
    shown = terminal.getvalue()
    assert "3/3" in shown and "files" in shown
    assert f"{report.chunks} chunks" in shown


KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from hearth.index.embedder import load_embedder
    from hearth.index.indexer import Indexer
    from hearth.index.store import SQLiteStore
    from hearth.ingest.splitter import Splitter

    emb = load_embedder()
    store = SQLiteStore(Path(sys.argv[1]))
    splitter = Splitter(emb.count_tokens, chunk_tokens=64, overlap_tokens=8)
    Indexer(store, emb, splitter, batch_chunks=8).ingest([sys.argv[2]], progress=False)
    """
)


def _count_documents(db_path: Path) -> int:
    if not db_path.exists():
        return 0
    try:
        db = sqlite3.connect(db_path, timeout=5)
        try:
            return db.execute("SELECT count(*) FROM documents").fetchone()[0]
        finally:
            db.close()
    except sqlite3.OperationalError:  # schema not created yet
        return 0


def _assert_consistent(db_path: Path) -> None:
    db = sqlite3.connect(db_path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    db.execute("INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)")
    n_chunks = db.execute("SELECT count(*) FROM chunks").fetchone()[0]
    assert db.execute("SELECT count(*) FROM chunks_fts_docsize").fetchone()[0] == n_chunks
    rows = db.execute(
        "SELECT d.id, d.text, count(c.id), min(c.ordinal), max(c.ordinal) FROM documents d "
        "LEFT JOIN chunks c ON c.document_id = d.id GROUP BY d.id"
    ).fetchall()
    for _doc_id, text, count, lo, hi in rows:
        assert text and count > 0 and lo == 0 and hi == count - 1
    dim = int(db.execute("SELECT value FROM meta WHERE key = 'embedder_dim'").fetchone()[0])
    bad_vectors = db.execute(
        "SELECT count(*) FROM chunks WHERE vector IS NULL OR length(vector) != ?", (dim * 4,)
    ).fetchone()[0]
    assert bad_vectors == 0
    db.close()


@pytest.mark.slow
def test_kill_9_mid_ingest_leaves_a_consistent_index_that_the_next_run_completes(
    tmp_path, embedder
):
    folder = tmp_path / "many"
    files = write_corpus(folder, n=300)
    db_path = tmp_path / "index" / "index.sqlite3"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(db_path), str(folder)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 180
    try:
        while _count_documents(db_path) < 12:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "ingest subprocess made no progress"
            time.sleep(0.005)
        # then a random extra moment, so the kill may land inside a write transaction too
        time.sleep(random.uniform(0, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    _assert_consistent(db_path)
    committed = _count_documents(db_path)
    assert 12 <= committed < len(files), "the kill should land mid-ingest"

    with SQLiteStore(db_path) as store:
        splitter = make_splitter(embedder)
        report = Indexer(store, embedder, splitter).ingest([str(folder)], progress=False)
        assert report.unchanged == committed
        assert report.added == len(files) - committed
        assert report.updated == report.removed == 0 and report.skipped == []
        assert report.documents == len(files)
        assert sources(store) == {str(p) for p in files}

        from hearth.ingest.loaders import load_document

        expected_chunks = sum(len(splitter.split(load_document(p))) for p in files)
        assert report.chunks == expected_chunks
    _assert_consistent(db_path)
    db = sqlite3.connect(db_path)
    duplicates = db.execute(
        "SELECT count(*) FROM (SELECT document_id, char_start, char_end FROM chunks "
        "GROUP BY document_id, char_start, char_end HAVING count(*) > 1)"
    ).fetchone()[0]
    assert duplicates == 0
