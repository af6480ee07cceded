"""What a format loader is: a parse function from raw bytes to text plus span metadata.

The registry in `loaders/__init__.py` maps file extensions to these; nothing here parses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Parsed:
    """A loader's result: the document text and format-specific metadata (span tables...)."""

    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Loader:
    """One file format. `binary` formats skip the NUL-byte check (PDF is binary by nature)."""

    file_type: str  # short name used by filters: md, txt, html, pdf, json, jsonl, csv
    media_type: str
    parse: Callable[[Path, bytes], Parsed]
    binary: bool = False


def normalize_newlines(text: str) -> str:
    """One newline convention for every loader: CRLF and lone CR become LF; NULs go."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in text:
        text = text.replace("\x00", "")
    return text
