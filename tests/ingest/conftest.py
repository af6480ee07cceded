"""Shared checks for the ingest tests: the splitter invariants every chunk list must meet."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hearth.types import Chunk, Document


def assert_chunk_invariants(
    doc: Document, chunks: list[Chunk], count: Callable[[str], int], budget: int
) -> None:
    """Exact spans, budget, no edge whitespace, ordinals, order, and full coverage."""
    text = doc.text
    for ordinal, chunk in enumerate(chunks):
        assert chunk.text == text[chunk.start : chunk.end]
        assert chunk.text, "empty chunk"
        assert chunk.text == chunk.text.strip(), f"chunk {ordinal} starts/ends in whitespace"
        assert chunk.ordinal == ordinal
        assert count(chunk.text) <= budget, f"chunk {ordinal} is over the budget"
    starts = [c.start for c in chunks]
    assert starts == sorted(starts)
    covered = bytearray(len(text))
    for chunk in chunks:
        covered[chunk.start : chunk.end] = b"\x01" * (chunk.end - chunk.start)
    lost = [i for i, ch in enumerate(text) if not covered[i] and not ch.isspace()]
    assert not lost, f"text not in any chunk: {text[lost[0] : lost[0] + 40]!r}"


@pytest.fixture(scope="session")
def count(embedder) -> Callable[[str], int]:
    return embedder.count_tokens
