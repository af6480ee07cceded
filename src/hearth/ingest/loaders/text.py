"""Plain text (.txt, .text, .rst, .log): decoded in whatever encoding it was saved in.

The text is kept as written apart from newline normalisation, so spans point at real lines.
"""

from __future__ import annotations

from pathlib import Path

from hearth.ingest.encoding import decode_with_encoding
from hearth.ingest.loaders.base import Parsed, normalize_newlines


def parse_text(path: Path, data: bytes) -> Parsed:
    text, encoding = decode_with_encoding(data, path)
    return Parsed(normalize_newlines(text), {"encoding": encoding})
