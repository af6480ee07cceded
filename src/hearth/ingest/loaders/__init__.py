"""Format loaders and the one entry point that picks them: `load_document(path)`.

`LOADERS` maps a file extension to its Loader; a new format is one module plus one entry.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from hearth.errors import LoadError, UnsupportedFileError
from hearth.ingest.dates import file_date
from hearth.ingest.encoding import bom_encoding, bomless_utf16
from hearth.ingest.loaders.base import Loader, Parsed
from hearth.ingest.loaders.csvfile import parse_csv
from hearth.ingest.loaders.html import parse_html
from hearth.ingest.loaders.jsonfile import parse_json, parse_jsonl
from hearth.ingest.loaders.markdown import parse_markdown
from hearth.ingest.loaders.pdf import parse_pdf
from hearth.ingest.loaders.text import parse_text
from hearth.types import Document

DEFAULT_MAX_BYTES = 256 * 2**20
BINARY_SNIFF_BYTES = 8192

_MARKDOWN = Loader("md", "text/markdown", parse_markdown)
_TEXT = Loader("txt", "text/plain", parse_text)
_HTML = Loader("html", "text/html", parse_html)
_PDF = Loader("pdf", "application/pdf", parse_pdf, binary=True)
_JSON = Loader("json", "application/json", parse_json)
_JSONL = Loader("jsonl", "application/jsonl", parse_jsonl)
_CSV = Loader("csv", "text/csv", parse_csv)

LOADERS: dict[str, Loader] = {
    ".md": _MARKDOWN,
    ".markdown": _MARKDOWN,
    ".mdx": _MARKDOWN,
    ".txt": _TEXT,
    ".text": _TEXT,
    ".rst": _TEXT,
    ".log": _TEXT,
    ".html": _HTML,
    ".htm": _HTML,
    ".xhtml": _HTML,
    ".pdf": _PDF,
    ".json": _JSON,
    ".jsonl": _JSONL,
    ".ndjson": _JSONL,
    ".csv": _CSV,
    ".tsv": _CSV,
}


def loader_for(path: Path) -> Loader | None:
    return LOADERS.get(path.suffix.lower())


def is_supported(path: Path) -> bool:
    return loader_for(path) is not None


def load_document(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> Document:
    """Read one file into a Document.

    Raises UnsupportedFileError for types Hearth does not read (unknown extension, binary
    content) and LoadError for files it should read but cannot (missing, too large, empty,
    corrupt, undecodable, no text).
    """
    path = Path(path)
    loader = loader_for(path)
    if loader is None:
        known = ", ".join(sorted(LOADERS))
        kind = f"'{path.suffix}'" if path.suffix else "with no extension"
        raise UnsupportedFileError(f"{path}: unsupported file type {kind} (Hearth reads {known})")
    data = _read_bounded(path, max_bytes)
    if not loader.binary and _looks_binary(data):
        raise UnsupportedFileError(
            f"{path}: binary content (NUL bytes in the first {BINARY_SNIFF_BYTES} bytes) "
            f"in a {path.suffix} file; Hearth reads text"
        )
    parsed: Parsed = loader.parse(path, data)
    if not parsed.text.strip():
        raise LoadError(f"{path}: no text content (the file holds only whitespace or markup)")
    metadata = {"file_type": loader.file_type, **parsed.metadata}
    if "date" not in metadata:
        metadata["date"], metadata["date_from"] = file_date(path), "modified"
    return Document(
        source=str(path.resolve()),
        media_type=loader.media_type,
        text=parsed.text,
        content_hash=hashlib.sha256(data).hexdigest(),
        metadata=metadata,
    )


def hash_file(path: Path, block_size: int = 2**20) -> str:
    """sha256 hex of a file's bytes, streamed: equals Document.content_hash of its load."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(block_size):
            digest.update(block)
    return digest.hexdigest()


def _read_bounded(path: Path, max_bytes: int) -> bytes:
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise LoadError(f"{path}: is a folder, not a file")
        if size > max_bytes:
            raise LoadError(
                f"{path}: file is {size} bytes, over the limit of {max_bytes} bytes; split it, "
                "or raise the limit with HEARTH_MAX_FILE_MB (or max_file_mb in hearth.toml)"
            )
        if size == 0:
            raise LoadError(f"{path}: empty file")
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)  # the file may have grown since stat()
    except FileNotFoundError as exc:
        raise LoadError(f"{path}: file not found") from exc
    except PermissionError as exc:
        raise LoadError(f"{path}: permission denied; check the file's read permission") from exc
    except IsADirectoryError as exc:
        raise LoadError(f"{path}: is a folder, not a file") from exc
    except OSError as exc:
        raise LoadError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    if len(data) > max_bytes:
        raise LoadError(f"{path}: file grew past the limit of {max_bytes} bytes while reading")
    if not data:
        raise LoadError(f"{path}: empty file")
    return data


def _looks_binary(data: bytes) -> bool:
    sample = data[:BINARY_SNIFF_BYTES]
    if b"\x00" not in sample:
        return False
    # UTF-16/32 text is full of NULs; a BOM or the every-other-byte pattern says it is text.
    return bom_encoding(sample) is None and bomless_utf16(sample) is None


__all__ = [
    "DEFAULT_MAX_BYTES",
    "LOADERS",
    "Loader",
    "Parsed",
    "hash_file",
    "is_supported",
    "load_document",
    "loader_for",
]
