"""PDF (.pdf) via pypdf: the text of each page, with a "pages" span table over the text.

Corrupt, encrypted and image-only PDFs are refused with a LoadError that says which.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from typing import Any

from hearth.errors import LoadError
from hearth.ingest.dates import iso_date
from hearth.ingest.loaders.base import Parsed, normalize_newlines

PAGE_SEPARATOR = "\n\n"
_TRAILING_SPACES = re.compile(r"[ \t]+\n")
_MANY_BLANK_LINES = re.compile(r"\n{3,}")


def parse_pdf(path: Path, data: bytes) -> Parsed:
    if b"%PDF-" not in data[:1024]:
        raise LoadError(f"{path}: not a PDF file (no %PDF- header); the file is corrupt")
    reader = _open(path, data)
    parts: list[str] = []
    pages: list[list[int]] = []
    offset = 0
    for number, page in enumerate(reader.pages, start=1):
        text = _page_text(path, page, number)
        if not text:
            continue
        if parts:
            parts.append(PAGE_SEPARATOR)
            offset += len(PAGE_SEPARATOR)
        parts.append(text)
        pages.append([offset, offset + len(text), number])
        offset += len(text)
    if not pages:
        raise LoadError(
            f"{path}: the PDF has no extractable text; it may be scanned (pages are images) "
            "and needs OCR first"
        )
    metadata: dict[str, Any] = {"pages": pages, "page_count": len(reader.pages)}
    title = _title(reader)
    if title:
        metadata["title"] = title
    if day := _created(reader):
        metadata["date"], metadata["date_from"] = day, "pdf"
    return Parsed("".join(parts), metadata)


def _open(path: Path, data: bytes) -> Any:
    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # it warns loudly on odd-but-fine files
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise LoadError(f"{path}: the PDF is encrypted; save a copy without a password")
        _ = len(reader.pages)  # forces the page tree to be read: corrupt files fail here
    except LoadError:
        raise
    except Exception as exc:  # pypdf raises many kinds (PdfReadError, KeyError, ValueError...)
        reason = str(exc) or type(exc).__name__
        if any(word in reason.lower() for word in ("decrypt", "encrypt", "cryptography")):
            raise LoadError(
                f"{path}: the PDF is encrypted ({reason}); save it without a password"
            ) from exc
        raise LoadError(f"{path}: corrupt or unreadable PDF ({reason})") from exc
    return reader


def _page_text(path: Path, page: Any, number: int) -> str:
    try:
        text = page.extract_text() or ""
    except Exception as exc:
        raise LoadError(f"{path}: cannot read the text of page {number} ({exc})") from exc
    text = normalize_newlines(text)
    text = _TRAILING_SPACES.sub("\n", text)
    return _MANY_BLANK_LINES.sub("\n\n", text).strip()


def _title(reader: Any) -> str:
    try:
        info = reader.metadata
        return str(info.title).strip() if info is not None and info.title else ""
    except Exception:  # a broken info dictionary is no reason to refuse the text
        return ""


def _created(reader: Any) -> str | None:
    """The PDF's creation date from its info dictionary, or None."""
    try:
        info = reader.metadata
        if info is None:
            return None
        return iso_date(info.get("/CreationDate")) or iso_date(info.creation_date)
    except Exception:  # a malformed date is no reason to refuse the text
        return None
