"""What the embedder reads for a chunk: its text alone, or a contextual header (the document's
title and the chunk's heading path) followed by its text.

A passage like "An indent level of 0 only inserts newlines" does not say it is about JSON; its
file name does. Embedding "json > Encoders: An indent level..." puts that context in the
vector (contextual chunk headers): on the stdlib retrieval benchmark dense hit@5 went from
0.894 to 0.939. Only the vector sees the header; the stored chunk text, its span and the FTS
index stay exactly the document's text. An index keeps the mode it was built with (recorded
in its meta table), so vectors of both kinds never mix.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Literal

from hearth.types import Chunk

EmbedInput = Literal["text", "title+headings"]
EMBED_INPUTS: tuple[str, ...] = ("text", "title+headings")
MAX_HEADER_CHARS = 160  # a header must not crowd the chunk out of the embedder's window


def document_title(source: str) -> str:
    """A document's short name: its file name without the extension ('json' for json.txt);
    for a URI, its last path part."""
    name = PurePosixPath(source.split("?", 1)[0].rstrip("/")).name or source
    return Path(name).stem or name


def embedding_input(chunk: Chunk, source: str, mode: EmbedInput) -> str:
    """The string embedded for `chunk` of the document at `source` under `mode`."""
    if mode == "text":
        return chunk.text
    parts = [document_title(source)]
    parts += [h.strip() for h in chunk.headings if h.strip() and h.strip() != parts[-1]]
    header = " > ".join(p for p in parts if p)
    if len(header) > MAX_HEADER_CHARS:
        header = header[: MAX_HEADER_CHARS - 1].rstrip() + "…"
    return f"{header}: {chunk.text}" if header else chunk.text
