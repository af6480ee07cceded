"""Incremental ingest: discover files, skip unchanged ones by hash, load, split, embed, store.

Streams in bounded batches (embed ~256 chunks per call, commit the documents finished by that
call in one transaction), so memory stays flat and a kill -9 leaves only whole documents behind.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hearth.errors import LoadError, UnsupportedFileError
from hearth.index.contextual import EMBED_INPUTS, EmbedInput, embedding_input
from hearth.index.store import SQLiteStore
from hearth.types import Chunk, Document, Embedder

DEFAULT_BATCH_CHUNKS = 256


@dataclass
class IngestReport:
    """What one ingest run did; `documents`/`chunks` are the index totals afterwards."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}
    documents: int = 0
    chunks: int = 0
    embedded_chunks: int = 0  # chunks embedded by this run
    missing: list[str] = field(default_factory=list)  # inputs that matched no file
    ignored: list[str] = field(default_factory=list)  # folder files of types nothing reads
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class _Pending:
    """A loaded document waiting for (the rest of) its chunk vectors."""

    doc: Document
    chunks: list[Chunk]
    is_update: bool
    vectors: list[np.ndarray] = field(default_factory=list)
    embedded: int = 0  # chunks of this document already embedded

    @property
    def done(self) -> bool:
        return self.embedded == len(self.chunks)


class Indexer:
    """Keeps a store in step with files on disk. Cheap to build; work happens in `ingest`."""

    def __init__(
        self,
        store: SQLiteStore,
        embedder: Embedder,
        splitter: Any,
        batch_chunks: int = DEFAULT_BATCH_CHUNKS,
        max_file_bytes: int = 256 * 2**20,
        embed_input: EmbedInput = "title+headings",
    ):
        if batch_chunks < 1:
            raise ValueError(f"batch_chunks must be at least 1, not {batch_chunks}")
        if embed_input not in EMBED_INPUTS:
            raise ValueError(f"embed_input must be one of {EMBED_INPUTS}, not {embed_input!r}")
        self.store = store
        self.embedder = embedder
        self.splitter = splitter
        self.batch_chunks = batch_chunks
        self.max_file_bytes = max_file_bytes
        # what new indexes embed; an existing index keeps what it was built with
        self.embed_input = embed_input

    @classmethod
    def from_settings(cls, store: SQLiteStore, embedder: Embedder, settings: Any) -> Indexer:
        """The Indexer `hearth ingest` and the server's /v1/ingest use: chunk budget, overlap,
        file size limit and embedding input from `settings` (a hearth.config.Settings)."""
        from hearth.ingest.splitter import Splitter

        splitter = Splitter(
            embedder.count_tokens,
            chunk_tokens=settings.chunk_tokens,
            overlap_tokens=settings.chunk_overlap,
        )
        return cls(
            store,
            embedder,
            splitter,
            max_file_bytes=int(settings.max_file_mb * 2**20),
            embed_input="title+headings" if settings.contextual_headers else "text",
        )

    def ingest(self, inputs: list[str], progress: bool = True) -> IngestReport:
        """Bring the index up to date with `inputs` (files, folders, globs)."""
        from hearth.ingest.discover import discover
        from hearth.ingest.loaders import hash_file, load_document

        started = time.perf_counter()
        self.store.check_embedder(self.embedder.name, self.embedder.dim)
        mode: EmbedInput = self.store.embed_input(self.embed_input)  # type: ignore[assignment]
        discovery = discover(inputs)
        report = IngestReport(
            missing=list(discovery.missing), ignored=[str(p) for p in discovery.ignored]
        )
        # Reported, never silently dropped: inputs that matched nothing and unread file types.
        report.skipped += [
            {"path": m, "reason": "no such file or folder, or the glob matched nothing"}
            for m in discovery.missing
        ]
        report.skipped += [
            {"path": str(p), "reason": f"unsupported file type '{p.suffix or '(none)'}'"}
            for p in discovery.ignored
        ]
        stored = self.store.document_hashes()
        run = _Run(self, report, mode)
        seen: set[str] = set()

        with _progress_bar(progress, len(discovery.files)) as bar:
            for path in discovery.files:
                source = str(path)
                seen.add(source)
                bar.advance_file(source)
                try:
                    content_hash = hash_file(path)
                except OSError as exc:
                    report.skipped.append({"path": source, "reason": f"cannot read: {exc}"})
                    continue
                if stored.get(source) == content_hash:
                    report.unchanged += 1
                    continue
                try:
                    doc = load_document(path, max_bytes=self.max_file_bytes)
                    # The stored key must be the path discovery gives, or the next run would
                    # not recognise the file as unchanged.
                    doc.source = source
                    chunks = self.splitter.split(doc)
                except (UnsupportedFileError, LoadError) as exc:
                    report.skipped.append({"path": source, "reason": _reason(exc, source)})
                    continue
                except Exception as exc:  # a bug on one odd file must not end the whole run
                    reason = f"could not be loaded ({type(exc).__name__}: {exc})"
                    report.skipped.append({"path": source, "reason": reason})
                    continue
                run.add(_Pending(doc, chunks, is_update=source in stored))
                bar.add_chunks(len(chunks))
                run.embed_full_batches()
            run.embed_full_batches(flush=True)

        gone = [s for s in stored if s not in seen and discovery.covers(s) and not _exists(s)]
        report.removed = self.store.delete_sources(gone)
        self.store.note_ingest()
        totals = self.store.stats()
        report.documents, report.chunks = totals["documents"], totals["chunks"]
        report.seconds = time.perf_counter() - started
        return report


class _Run:
    """The streaming buffer of one ingest: pending documents in discovery order."""

    def __init__(self, indexer: Indexer, report: IngestReport, mode: EmbedInput):
        self.indexer = indexer
        self.report = report
        self.mode = mode  # what each chunk's vector is computed from (the index's choice)
        self.pending: list[_Pending] = []
        self.unembedded = 0  # chunks in `pending` still waiting for vectors

    def add(self, item: _Pending) -> None:
        self.pending.append(item)
        self.unembedded += len(item.chunks)

    def embed_full_batches(self, flush: bool = False) -> None:
        """Embed while a full batch is buffered (or anything is left, when flushing), and
        commit the documents each embed call finished."""
        size = self.indexer.batch_chunks
        while self.unembedded >= size or (flush and self.pending):
            self._embed_one_batch(size)
            self._commit_done()

    def _embed_one_batch(self, size: int) -> None:
        texts: list[str] = []
        owners: list[tuple[_Pending, int]] = []  # (document, how many of `texts` are its)
        for item in self.pending:
            if len(texts) == size:
                break
            take = min(size - len(texts), len(item.chunks) - item.embedded)
            if take:
                chunks = item.chunks[item.embedded : item.embedded + take]
                texts += [embedding_input(c, item.doc.source, self.mode) for c in chunks]
                owners.append((item, take))
        if not texts:
            return
        vectors = np.asarray(self.indexer.embedder.embed(texts), dtype=np.float32)
        if vectors.shape != (len(texts), self.indexer.embedder.dim):
            raise ValueError(
                f"embedder {self.indexer.embedder.name} returned shape {vectors.shape} for "
                f"{len(texts)} texts, expected ({len(texts)}, {self.indexer.embedder.dim})"
            )
        offset = 0
        for item, take in owners:
            item.vectors.append(vectors[offset : offset + take])
            item.embedded += take
            offset += take
        self.unembedded -= len(texts)
        self.report.embedded_chunks += len(texts)

    def _commit_done(self) -> None:
        """Store, in one transaction, every leading pending document whose chunks all have
        vectors (keeps discovery order; a half-embedded document waits for the next batch)."""
        ready: list[_Pending] = []
        while self.pending and self.pending[0].done:
            ready.append(self.pending.pop(0))
        if not ready:
            return
        dim = self.indexer.embedder.dim
        self.indexer.store.replace_documents(
            [
                (
                    item.doc,
                    item.chunks,
                    np.concatenate(item.vectors) if item.vectors else np.zeros((0, dim), "f4"),
                )
                for item in ready
            ]
        )
        for item in ready:
            if item.is_update:
                self.report.updated += 1
            else:
                self.report.added += 1


def _exists(source: str) -> bool:
    try:
        return Path(source).exists()
    except OSError:
        return True  # cannot tell: keep the document


class _progress_bar:
    """A rich progress bar over files with a running chunk count; silent when not a TTY."""

    def __init__(self, enabled: bool, total_files: int):
        self.enabled = enabled and sys.stderr.isatty()
        self.total_files = total_files
        self.chunks = 0
        self._progress = None
        self._task = None

    def __enter__(self) -> _progress_bar:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]ingest"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("files"),
                TextColumn("{task.fields[chunks]} chunks"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[current]}", style="dim"),
                console=Console(stderr=True),
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                "ingest", total=self.total_files, chunks=0, current=""
            )
        return self

    def advance_file(self, source: str) -> None:
        if self._progress is not None:
            name = source.rsplit("/", 1)[-1]
            self._progress.update(self._task, advance=1, current=name[:40])

    def add_chunks(self, n: int) -> None:
        self.chunks += n
        if self._progress is not None:
            self._progress.update(self._task, chunks=self.chunks)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.update(self._task, current="")
            self._progress.stop()


def _reason(exc: Exception, source: str) -> str:
    """The error's reason without the path the report already names."""
    text = str(exc)
    return text[len(source) + 2 :] if text.startswith(f"{source}: ") else text
