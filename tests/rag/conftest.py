"""A small real document set, cut by the real splitter, shared by the answer/citation tests.

Fixture names start with `rag_` so they cannot shadow fixtures of other rag tests.
"""

from __future__ import annotations

import pytest

from hearth.types import Document, ScoredChunk

GUIDE = """# Hearth guide

## Storage

Hearth keeps its whole index in one SQLite file named index.sqlite3 inside the .hearth folder. \
The file uses WAL mode, so readers never block the writer.

## Models

The default chat model is SmolLM2-135M-Instruct, quantized to Q4_1. It runs on llama.cpp and \
needs about 150 MB of memory. Any other GGUF file can be passed with the model option.

## Install

Install Hearth with pip install hearth. Python 3.11 is required. On Windows, run it inside WSL.
"""

TRAVEL = """# Night trains

The night train from Vienna to Rome leaves at 19:40 and arrives at 10:05 the next morning. \
Sleeping cars have two or four berths.

# Paris

The Eiffel Tower was completed in 1889 for the World's Fair. It is 330 metres tall and was the \
tallest structure in the world for 41 years.
"""


def make_document(source: str, text: str) -> Document:
    return Document(source, "text/markdown", text, f"hash-{source}", {"file_type": "md"})


@pytest.fixture(scope="session")
def rag_documents() -> dict[str, Document]:
    return {
        d.source: d
        for d in (make_document("/docs/guide.md", GUIDE), make_document("/docs/travel.md", TRAVEL))
    }


@pytest.fixture(scope="session")
def rag_chunks(rag_documents, embedder):
    """Chunks of both documents (one per section), as the splitter cuts them."""
    from hearth.ingest.splitter import Splitter

    splitter = Splitter(embedder.count_tokens, chunk_tokens=64, overlap_tokens=8)
    out = []
    for doc in rag_documents.values():
        for i, chunk in enumerate(splitter.split(doc)):
            chunk.source = doc.source
            chunk.id = len(out) + 1
            chunk.ordinal = i
            out.append(chunk)
    return out


def section(chunks, words: str):
    """The chunk whose text contains `words`."""
    (found,) = [c for c in chunks if words in c.text]
    return found


def as_hits(chunks_in_rank_order) -> list[ScoredChunk]:
    return [ScoredChunk(c, score=1.0 / (rank + 1)) for rank, c in enumerate(chunks_in_rank_order)]
