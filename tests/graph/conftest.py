"""A three-document corpus whose facts chain across documents, indexed once per module."""

from __future__ import annotations

from pathlib import Path

import pytest

HARBOUR = """# The Harbour Library

The Harbour Library is a public library in Oslo. The Harbour Library was designed by Ingrid Vale.
It opened in 1998 and holds two million books.
"""

VALE = """# Ingrid Vale

Ingrid Vale is a Norwegian architect. Vale was born in Bergen in 1950.
She studied at the Trondheim School of Architecture.
"""

LOVELACE = """# Ada Lovelace

Ada Lovelace was an English mathematician. Lovelace wrote notes on the Analytical Engine.
Charles Babbage designed the Analytical Engine.
"""

DOCS = {"harbour.md": HARBOUR, "vale.md": VALE, "lovelace.md": LOVELACE}

# What a good extractor says about each document (the model's shape), for the tests whose
# point is storage, resolution or retrieval rather than the model.
FED = {
    "harbour.md": [
        ("Harbour Library", "located in", "Oslo",
         "The Harbour Library is a public library in Oslo."),
        ("Harbour Library", "designed by", "Ingrid Vale",
         "The Harbour Library was designed by Ingrid Vale."),
    ],
    "vale.md": [
        ("Vale", "born in", "Bergen", "Vale was born in Bergen in 1950."),
        ("Ingrid Vale", "studied at", "Trondheim School of Architecture",
         "She studied at the Trondheim School of Architecture."),
    ],
    "lovelace.md": [
        ("Lovelace", "wrote notes on", "Analytical Engine",
         "Lovelace wrote notes on the Analytical Engine."),
        ("Charles Babbage", "designed", "Analytical Engine",
         "Charles Babbage designed the Analytical Engine."),
        ("Ada Lovelace", "was", "English mathematician",
         "Ada Lovelace was an English mathematician."),
        ("Ada Lovelace", "invented", "the telephone", "Ada Lovelace invented the telephone."),
    ],
}  # fmt: skip


def fed_triples(chunk) -> list[dict[str, str]]:
    name = Path(chunk.source).name
    return [
        {"subject": s, "relation": r, "object": o, "evidence": e}
        for s, r, o, e in FED.get(name, [])
        if e.split()[0] in chunk.text or "telephone" in e
    ]


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, embedder):
    """(docs folder, index folder, open SQLiteStore) for the corpus."""
    from hearth.index.indexer import Indexer
    from hearth.index.store import SQLiteStore
    from hearth.ingest.splitter import Splitter

    docs = tmp_path_factory.mktemp("graphdocs")
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    index = tmp_path_factory.mktemp("graphindex")
    store = SQLiteStore(index / "index.sqlite3")
    splitter = Splitter(embedder.count_tokens, chunk_tokens=200, overlap_tokens=16)
    Indexer(store, embedder, splitter).ingest([str(docs)], progress=False)
    yield docs, index, store
    store.close()
