"""Find a document's sections: the spans between markdown headings and their heading paths.

Hand-written (not a markdown parser) because the splitter needs exact character offsets of
headings in the original text, and only three rules matter: ATX `#` headings, setext
underlines, and fenced code blocks (where `# comment` is not a heading).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Lines that may matter: ATX headings, fence markers, setext underlines.
_CANDIDATE = re.compile(r"^ {0,3}(?:#{1,6}(?:[ \t]|$)|`{3,}|~{3,}|=+[ \t]*$|-+[ \t]*$)", re.M)
_ATX = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")
_SETEXT = re.compile(r" {0,3}(=+|-+)[ \t]*")
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n.*?\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.S)


@dataclass(frozen=True)
class Heading:
    start: int  # first character of the heading line (the title line for setext)
    body: int  # first character after the heading line(s)
    level: int
    title: str


@dataclass(frozen=True)
class Section:
    start: int
    end: int
    headings: tuple[str, ...]  # heading path, outermost first


def find_headings(text: str) -> list[Heading]:
    """Markdown headings in document order, skipping fenced code and YAML front matter."""
    front = _FRONT_MATTER.match(text)
    skip_until = front.end() if front else 0
    headings: list[Heading] = []
    fence: str | None = None  # the open fence marker, while inside a code block
    for match in _CANDIDATE.finditer(text, skip_until):
        start = match.start()
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        line = text[start:end]
        fence_match = _FENCE.fullmatch(line)
        if fence is not None:
            marker = fence_match.group(1) if fence_match else ""
            closes = marker[:1] == fence[:1] and len(marker) >= len(fence)
            if closes and not fence_match.group(2).strip():
                fence = None
            continue
        if fence_match:
            if not (fence_match.group(1)[0] == "`" and "`" in fence_match.group(2)):
                fence = fence_match.group(1)
            continue
        atx = _ATX.fullmatch(line)
        if atx:
            title = (atx.group(2) or "").strip()
            headings.append(Heading(start, min(end + 1, len(text)), len(atx.group(1)), title))
            continue
        setext = _SETEXT.fullmatch(line)
        if setext and start > skip_until:
            heading = _setext_heading(text, start, end, setext.group(1), headings, skip_until)
            if heading:
                headings.append(heading)
    return headings


def _setext_heading(
    text: str, start: int, end: int, underline: str, found: list[Heading], floor: int
) -> Heading | None:
    """A `===`/`---` line underlines the paragraph line just above it, if there is one."""
    prev_end = start - 1  # the newline ending the previous line
    prev_start = text.rfind("\n", 0, prev_end) + 1
    if prev_start < floor:
        return None
    title = text[prev_start:prev_end].strip()
    if not title or (found and found[-1].body > prev_start):
        return None  # blank line above, or the line above is itself a heading
    if _FENCE.fullmatch(text[prev_start:prev_end]) or _SETEXT.fullmatch(title):
        return None
    if title.startswith(("- ", "* ", "+ ", ">", "|")):
        return None  # list items, quotes and tables are not heading text
    level = 1 if underline[0] == "=" else 2
    return Heading(prev_start, min(end + 1, len(text)), level, title)


def find_sections(text: str, markdown: bool = True) -> list[Section]:
    """Split `text` at headings. A heading with no body of its own joins the sub-section
    that follows it, so "# Guide\\n## Setup\\n..." is one section with path [Guide, Setup]."""
    headings = find_headings(text) if markdown else []
    if not headings:
        return [Section(0, len(text), ())]
    sections: list[Section] = []
    if text[: headings[0].start].strip():
        sections.append(Section(0, headings[0].start, ()))
    stack: list[tuple[int, str]] = []
    pending_start: int | None = None  # start of heading-only sections waiting for a child
    for i, heading in enumerate(headings):
        end = headings[i + 1].start if i + 1 < len(headings) else len(text)
        while stack and stack[-1][0] >= heading.level:
            stack.pop()
        stack.append((heading.level, heading.title))
        path = tuple(title for _, title in stack if title)
        start = heading.start if pending_start is None else pending_start
        nxt = headings[i + 1] if i + 1 < len(headings) else None
        if not text[heading.body : end].strip() and nxt is not None and nxt.level > heading.level:
            pending_start = start
            continue
        pending_start = None
        sections.append(Section(start, end, path))
    return sections
