"""CSV/TSV (.csv, .tsv): each row as `column: value` lines, with a "rows" span table.

The delimiter is sniffed; the first row is the header unless it looks like data (a number
in it). Row numbers are the ones a spreadsheet shows: the header is row 1.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

from hearth.errors import LoadError
from hearth.ingest.encoding import decode_bytes
from hearth.ingest.loaders.base import Parsed, normalize_newlines

_SNIFF_CHARS = 64 * 1024
_NUMBER = re.compile(r"^[-+]?(\d[\d,_]*)?(\.\d+)?([eE][-+]?\d+)?$")


def parse_csv(path: Path, data: bytes) -> Parsed:
    text = normalize_newlines(decode_bytes(data, path))
    dialect = _sniff(text, tab=path.suffix.lower() == ".tsv")
    csv.field_size_limit(max(csv.field_size_limit(), 64 * 2**20))
    try:
        rows = list(csv.reader(io.StringIO(text), dialect))
    except csv.Error as exc:
        raise LoadError(f"{path}: malformed CSV ({exc})") from exc
    if not rows:
        return Parsed("", {"rows": []})
    header = [cell.strip() for cell in rows[0]]
    first_data = 1
    if not any(header) or any(_NUMBER.match(cell) for cell in header if cell):
        header, first_data = [], 0  # no header: columns are named col1, col2...
    parts: list[str] = []
    spans: list[list[int]] = []
    offset = 0
    for row_number, row in enumerate(rows[first_data:], start=first_data + 1):
        lines = [
            f"{_column(header, i)}: {cell.strip()}" for i, cell in enumerate(row) if cell.strip()
        ]
        if not lines:
            continue
        if parts:
            parts.append("\n\n")
            offset += 2
        block = "\n".join(lines)
        parts.append(block)
        spans.append([offset, offset + len(block), row_number])
        offset += len(block)
    metadata: dict[str, Any] = {"rows": spans, "columns": header, "delimiter": dialect.delimiter}
    return Parsed("".join(parts), metadata)


def _sniff(text: str, tab: bool) -> Any:
    if tab:
        return csv.excel_tab
    try:
        return csv.Sniffer().sniff(text[:_SNIFF_CHARS], delimiters=",;\t|")
    except csv.Error:  # one column, or too irregular to tell: plain commas
        return csv.excel


def _column(header: list[str], index: int) -> str:
    if index < len(header) and header[index]:
        return header[index]
    return f"col{index + 1}"
