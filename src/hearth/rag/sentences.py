"""Split text into sentence spans (character offsets), for citation attribution and extraction.

Hand-written rather than nltk/spaCy: we need exact offsets, markdown/CSV/JSON line awareness and
`[n]` citation markers kept with their sentence, and no model downloads.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class Span(NamedTuple):
    """Half-open character span [start, end) into the text it was cut from."""

    start: int
    end: int


# A block ends at a blank line, or before a line that starts a markdown block
# (heading, list item, quote, table row), or after a heading line.
_BLOCK_BREAK = re.compile(r"\n[ \t]*\n\s*|\n(?=[ \t]*(?:#{1,6}\s|[-*+•]\s|\d{1,3}[.)]\s|>|\|))")
_HEADING_LINE = re.compile(r"^[ \t]*#{1,6}\s[^\n]*$", re.MULTILINE)

# Sentence end: terminal punctuation (optionally closing quotes/brackets and citation
# markers) followed by whitespace and something that can start a sentence.
_SENTENCE_END = re.compile(
    r"(?<=[.!?])[\"'”’)\]]*(?:\s*\[[^\]\n]{1,20}\])*\s+(?=[\"'“‘(\[]?[A-Z0-9À-Ý])"
)
_ABBREVIATIONS = {
    "e.g",
    "i.e",
    "etc",
    "vs",
    "mr",
    "mrs",
    "ms",
    "dr",
    "prof",
    "fig",
    "no",
    "vol",
    "approx",
    "cf",
    "st",
    "jr",
    "sr",
    "inc",
    "ltd",
}
_LONG_UNIT = 400  # characters; longer pieces are cut again at single newlines
_MARKERS_AT_START = re.compile(r"(?:\s*\[[^\]\n]{1,20}\])+")


def split_sentences(text: str) -> list[Span]:
    """Sentence spans of `text`, in order, trimmed of surrounding whitespace.

    Boundaries: blank lines, markdown block starts, heading lines, sentence punctuation
    followed by a capital or digit (not after common abbreviations), and single newlines
    inside pieces longer than 400 characters (CSV rows, JSON lines, wrapped PDF text).
    Citation markers written after the full stop ("... text. [2] Next") stay with the
    sentence they follow.
    """
    spans: list[Span] = []
    for block in _blocks(text):
        for piece in _sentences_in(text, block):
            spans.extend(_cut_long(text, piece))
    return _attach_leading_markers(text, spans)


def is_heading(text: str, span: Span) -> bool:
    """True when the span is a markdown heading line (a poor answer on its own)."""
    return bool(_HEADING_LINE.fullmatch(text[span.start : span.end]))


def _blocks(text: str) -> list[Span]:
    cuts = [0]
    for m in _BLOCK_BREAK.finditer(text):
        cuts.extend((m.start(), m.end()))
    for m in _HEADING_LINE.finditer(text):  # a heading line is a block of its own
        cuts.extend((m.start(), m.end()))
    cuts.append(len(text))
    cuts = sorted(set(cuts))
    return [s for a, b in zip(cuts, cuts[1:], strict=False) if (s := _trim(text, a, b))]


def _sentences_in(text: str, block: Span) -> list[Span]:
    pieces: list[Span] = []
    start = block.start
    chunk = text[block.start : block.end]
    for m in _SENTENCE_END.finditer(chunk):
        end = block.start + m.start()
        if _ends_with_abbreviation(text, start, end):
            continue
        end = block.start + m.end()
        if piece := _trim(text, start, end):
            pieces.append(piece)
        start = end
    if piece := _trim(text, start, block.end):
        pieces.append(piece)
    return pieces


def _ends_with_abbreviation(text: str, start: int, end: int) -> bool:
    """The punctuation before `end` closes an abbreviation ("e.g.") or an initial ("J.")."""
    head = text[start:end].rstrip("\"'”’)]")
    if not head.endswith("."):
        return False
    word = re.search(r"([A-Za-z.]+)\.$", head)
    if not word:
        return False
    token = word.group(1).lower()
    return token in _ABBREVIATIONS or (len(token) == 1 and token.isalpha())


def _cut_long(text: str, piece: Span) -> list[Span]:
    if piece.end - piece.start <= _LONG_UNIT or "\n" not in text[piece.start : piece.end]:
        return [piece]
    out: list[Span] = []
    start = piece.start
    for m in re.finditer(r"\n", text[piece.start : piece.end]):
        end = piece.start + m.start()
        if s := _trim(text, start, end):
            out.append(s)
        start = piece.start + m.end()
    if s := _trim(text, start, piece.end):
        out.append(s)
    return out


def _attach_leading_markers(text: str, spans: list[Span]) -> list[Span]:
    """Move "[2]" that opens a sentence back onto the sentence before it."""
    out: list[Span] = []
    for span in spans:
        m = _MARKERS_AT_START.match(text, span.start, span.end)
        if out and m and m.end() > span.start:
            prev = out.pop()
            out.append(Span(prev.start, m.end()))
            rest = _trim(text, m.end(), span.end)
            if rest:
                out.append(rest)
        else:
            out.append(span)
    return out


def _trim(text: str, start: int, end: int) -> Span | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return Span(start, end) if end > start else None
