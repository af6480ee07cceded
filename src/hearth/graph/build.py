"""`build_graph`: every indexed chunk -> checked triples -> resolved entities -> a new graph file.

Incremental: each chunk's extraction is cached by the hash of its source and text (in
`graph.chunks.json` beside the graph), so a rebuild asks the model only about chunks that
changed. Safe: the database is written to `graph.lbug.tmp` and moved over the old one only
when complete, so a failed build leaves the previous graph as it was. Hand-written.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hearth.graph.extract import Triple, TripleExtractor, check
from hearth.graph.resolve import EMBED_THRESHOLD, Resolution, resolve
from hearth.graph.store import GraphStore, remove_database
from hearth.types import Chunk, Embedder

CACHE_VERSION = 1


@dataclass
class BuildReport:
    chunks: int = 0  # chunks in the index
    extracted: int = 0  # chunks the model read this time (the rest came from the cache)
    triples: int = 0
    entities: int = 0
    dropped: int = 0  # triples whose evidence was not in the chunk
    failed: list[dict[str, Any]] = field(default_factory=list)  # chunks with no valid answer
    seconds: float = 0.0
    db: str = ""

    def to_json(self) -> dict[str, Any]:
        out = {
            "chunks": self.chunks,
            "extracted": self.extracted,
            "triples": self.triples,
            "entities": self.entities,
            "dropped": self.dropped,
            "seconds": round(self.seconds, 3),
            "db": self.db,
        }
        if self.failed:
            out["failed"] = self.failed
        return out


def iter_chunks(store: Any) -> Iterator[Chunk]:
    """Every chunk of every document (SQLite or PostgreSQL store), in source order."""
    for doc in store.list_documents():
        yield from store.document_chunks(doc["id"])


def chunk_key(chunk: Chunk) -> str:
    return hashlib.sha256(f"{chunk.source}\x00{chunk.text}".encode()).hexdigest()


def _cache_path(db: Path) -> Path:
    return db.with_name(db.stem + ".chunks.json")


def _load_cache(path: Path, model_name: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if data.get("version") != CACHE_VERSION or data.get("model") != model_name:
        return {}
    return data.get("chunks", {})


def _save_cache(path: Path, model_name: str, chunks: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    payload = {"version": CACHE_VERSION, "model": model_name, "chunks": chunks}
    tmp.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def build_graph(
    store: Any,
    db_path: Path,
    *,
    extractor: TripleExtractor | None = None,
    raw_triples: Callable[[Chunk], list[dict[str, str]]] | None = None,
    embedder: Embedder | None = None,
    model_name: str = "",
    threshold: float = EMBED_THRESHOLD,
    progress: Callable[[int, int], None] | None = None,
) -> BuildReport:
    """Build the graph of `store`'s chunks into `db_path`.

    Triples come from `extractor` (the instruction model) or, for tests and imports, from
    `raw_triples(chunk)` returning the model's shape ({subject, relation, object, evidence});
    either way they are checked against the chunk text. `progress(done, total)` is called
    after each chunk.
    """
    if extractor is None and raw_triples is None:
        raise ValueError("build_graph needs an extractor or a raw_triples function")
    started = time.perf_counter()
    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    cache_file = _cache_path(db_path)
    old = _load_cache(cache_file, model_name)
    new: dict[str, Any] = {}
    report = BuildReport(db=str(db_path))
    triples: list[Triple] = []
    chunks = list(iter_chunks(store))
    report.chunks = len(chunks)
    complete = False
    try:
        for n, chunk in enumerate(chunks, start=1):
            key = chunk_key(chunk)
            entry = old.get(key) or new.get(key)
            if entry is None:
                report.extracted += 1
                if raw_triples is not None:
                    found, error = raw_triples(chunk), None
                else:
                    result = extractor.extract(chunk)  # type: ignore[union-attr]
                    found, error = result.raw, result.error
                if error:
                    report.failed.append({"chunk_id": chunk.id, "source": chunk.source,
                                          "error": error})  # fmt: skip
                    entry = None  # not cached: asked again next time
                else:
                    entry = {"raw": found}
            if entry is not None:
                new[key] = entry
                checked = check(entry["raw"], chunk)
                report.dropped += checked.dropped
                triples.extend(checked.triples)
            if progress:
                progress(n, len(chunks))
        complete = True
    finally:  # what was extracted is kept even when the build fails; gone chunks are not
        _save_cache(cache_file, model_name, new if complete else {**old, **new})

    resolution = resolve(
        [(t.document_id, name) for t in triples for name in (t.subject, t.object)],
        embedder,
        threshold=threshold,
    )
    edges = edges_of(triples, resolution)
    used = {e["subject_id"] for e in edges} | {e["object_id"] for e in edges}
    entities = [e for e in resolution.entities if e.id in used]
    write_atomically(db_path, entities, edges)
    report.triples = len(edges)
    report.entities = len(entities)
    report.seconds = time.perf_counter() - started
    return report


def edges_of(triples: list[Triple], resolution: Resolution) -> list[dict[str, Any]]:
    edges, seen = [], set()
    for t in triples:
        s = resolution.mentions[(t.document_id, t.subject)]
        o = resolution.mentions[(t.document_id, t.object)]
        if s == o or (s, t.relation, o, t.chunk_id) in seen:
            continue
        seen.add((s, t.relation, o, t.chunk_id))
        edges.append({"subject_id": s, "object_id": o, "relation": t.relation,
                      "chunk_id": t.chunk_id, "source": t.source, "start": t.start,
                      "end": t.end, "evidence": t.evidence})  # fmt: skip
    return edges


def write_atomically(db_path: Path, entities: list, edges: list[dict[str, Any]]) -> None:
    """Write a complete new database beside the old one, then move it into place."""
    tmp = db_path.with_name(db_path.name + ".new")
    remove_database(tmp)
    try:
        graph = GraphStore.create(tmp)
        try:
            graph.write(entities, edges)
        finally:
            graph.close()
        for leftover in (Path(f"{db_path}.wal"), Path(f"{db_path}.shadow")):
            if leftover.exists():
                leftover.unlink()
        os.replace(tmp, db_path)
        wal = Path(f"{tmp}.wal")
        if wal.exists():
            os.replace(wal, Path(f"{db_path}.wal"))
    finally:
        remove_database(tmp)
