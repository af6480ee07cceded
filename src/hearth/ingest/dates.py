"""A document's date, for filters like "from 2024": the date the document gives itself (PDF
creation date, Markdown front matter `date:`, an HTML date meta tag), else the file's mtime.

Dates are ISO calendar dates (YYYY-MM-DD) in UTC. Hand-written: a few formats, no library fits.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

_ISO = re.compile(r"^\s*(\d{4})-(\d{2})-(\d{2})")
_PDF = re.compile(r"^\s*D:(\d{4})(\d{2})?(\d{2})?")  # PDF's date string, "D:20240301120000Z"
_YEAR_MONTH = re.compile(r"^\s*(\d{4})-(\d{2})\s*$")
_YEAR = re.compile(r"^\s*(\d{4})\s*$")
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n(?:---|\.\.\.)[ \t]*\n", re.DOTALL)
_FRONT_DATE = re.compile(r"^(?:date|created|published)\s*:\s*['\"]?([^'\"\n]+)", re.MULTILINE)
HTML_DATE_META = (
    "date", "dc.date", "dcterms.date", "dcterms.created", "article:published_time",
    "citation_publication_date", "pubdate",
)  # fmt: skip


def iso_date(value: Any) -> str | None:
    """`value` (a datetime, a date, an ISO string, a PDF date string, "2024-03" or "2024") as
    "YYYY-MM-DD", or None when it is not a date."""
    if isinstance(value, datetime):
        value = value.astimezone(UTC) if value.tzinfo else value
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if not isinstance(value, str):
        return None
    for pattern in (_ISO, _PDF, _YEAR_MONTH, _YEAR):
        if m := pattern.match(value):
            y, mo, d = (int(g) if g else 1 for g in (*m.groups(), None, None)[:3])
            try:
                return date(y, mo, d).isoformat()
            except ValueError:
                return None
    return None


def front_matter_date(text: str) -> str | None:
    """The `date:` (or `created:` / `published:`) of a Markdown file's YAML front matter."""
    block = _FRONT_MATTER.match(text)
    if not block:
        return None
    found = _FRONT_DATE.search(block.group(1))
    return iso_date(found.group(1).strip()) if found else None


def file_date(path: Path) -> str:
    """The file's last-modified day (UTC)."""
    return datetime.fromtimestamp(Path(path).stat().st_mtime, UTC).date().isoformat()
