"""Markdown (.md, .markdown, .mdx): the text as written, `#` headings and all.

The splitter reads the headings itself (see hearth.ingest.structure); the loader only
decodes and records the first level-1 heading as the title and the front matter's date.
"""

from __future__ import annotations

import re
from pathlib import Path

from hearth.ingest.dates import front_matter_date
from hearth.ingest.loaders.base import Parsed
from hearth.ingest.loaders.text import parse_text

_H1 = re.compile(r"^ {0,3}# +(.+?)[ #]*$", re.MULTILINE)


def parse_markdown(path: Path, data: bytes) -> Parsed:
    parsed = parse_text(path, data)
    title = _H1.search(parsed.text)
    if title:
        parsed.metadata["title"] = title.group(1).strip()
    if day := front_matter_date(parsed.text):
        parsed.metadata["date"], parsed.metadata["date_from"] = day, "front matter"
    return parsed
