"""Cut a Document into Chunks that fit the embedder's token budget, at the best boundaries.

Hand-written because every chunk must be an exact span of the document (citations quote
it), and because tokens are counted on pieces, never on every prefix: each paragraph is
counted once, only oversized ones are split finer (lines, sentences, words, characters),
and the chunks are packed from those counted pieces.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any, NamedTuple

from hearth.ingest.structure import Section, find_sections
from hearth.types import Chunk, Document

# Boundary strengths, strongest first; a chunk prefers to end at the strongest one it can.
PARAGRAPH, LINE, SENTENCE, WORD, CHAR = range(5)
_SEPARATORS = {
    PARAGRAPH: re.compile(r"\n[ \t]*\n\s*"),
    LINE: re.compile(r"\n\s*"),
    # whitespace after . ! ? … (optionally closed by a quote or bracket); CJK stops need none
    SENTENCE: re.compile(r"(?:(?<=[.!?…])|(?<=[.!?…][\"'”’)\]]))\s+|(?<=[。！？])\s*"),
    WORD: re.compile(r"\s+"),
}
_WORD_START = re.compile(r"(?<=\s)\S")
_SENTENCE_START = re.compile(r"(?:(?<=\n)|(?<=[.!?…]\s)|(?<=[.!?…][\"'”’)\]]\s)|(?<=[。！？]))\S")
_MARKDOWN_TYPES = {"md", "html", ""}  # formats whose `#` lines are headings
SURELY_OVER_CHARS_PER_TOKEN = 6  # longer pieces are split without being counted whole
TRUST_AFTER = 16  # whitespace-joined chunks that must count exactly as estimated
MIN_FILL = 0.5  # a chunk may end early at a stronger boundary, but not below half the budget
CHARS_PER_TOKEN_CAP = 12  # chunk length cap: runs the tokenizer sees as one token (a
# 5,000-character base64 blob is one [UNK]) still get cut into readable pieces


class _Atom(NamedTuple):
    start: int
    end: int
    tokens: int
    boundary: int  # strength of the break before this atom (PARAGRAPH..CHAR)


class Splitter:
    """Structure-aware recursive splitter with a token budget and token overlap.

    `count_tokens` is the embedder's tokenizer (no special tokens). Chunks never exceed
    `chunk_tokens` by that count and never `max_chars` characters (default 12 per token).
    Consecutive chunks of one section share about `overlap_tokens` tokens.
    """

    def __init__(
        self,
        count_tokens: Callable[[str], int],
        chunk_tokens: int = 200,
        overlap_tokens: int = 32,
        *,
        max_chars: int | None = None,
    ):
        if chunk_tokens < 8:
            raise ValueError(f"chunk_tokens must be at least 8, got {chunk_tokens}")
        if not 0 <= overlap_tokens < chunk_tokens:
            raise ValueError(
                f"overlap_tokens ({overlap_tokens}) must be >= 0 and below chunk_tokens "
                f"({chunk_tokens})"
            )
        self.count_tokens = count_tokens
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens
        self.max_chars = max_chars or chunk_tokens * CHARS_PER_TOKEN_CAP
        self._base: int | None = None  # tokens of "" (0 unless the counter adds specials)
        self._additive_confirmed = 0  # see _verified; -1 once a count did not add up

    def split(self, doc: Document) -> list[Chunk]:
        text = doc.text
        chunks: list[Chunk] = []
        tables = _SpanTables(doc.metadata)
        for section in self.sections(doc):
            for start, end in self.split_span(text, section.start, section.end):
                chunk = Chunk(text=text[start:end], start=start, end=end, source=doc.source)
                chunk.headings = list(section.headings)
                chunk.ordinal = len(chunks)
                tables.annotate(chunk)
                chunks.append(chunk)
        return chunks

    def sections(self, doc: Document) -> list[Section]:
        """Heading sections (markdown-like formats), cut again at page boundaries."""
        sections = find_sections(doc.text, markdown=doc.file_type in _MARKDOWN_TYPES)
        pages = doc.metadata.get("pages")
        if not pages:
            return sections
        cuts = sorted(int(p[0]) for p in pages)
        result = []
        for section in sections:
            lo = bisect_right(cuts, section.start)
            hi = bisect_left(cuts, section.end)
            edges = [section.start, *cuts[lo:hi], section.end]
            result.extend(Section(a, b, section.headings) for a, b in pairwise(edges))
        return result

    def split_span(self, text: str, start: int, end: int) -> list[tuple[int, int]]:
        """Chunk spans covering the non-blank text of text[start:end]."""
        start, end = _strip(text, start, end)
        if start >= end:
            return []
        if not self._surely_over(end - start) and self._count(text[start:end]) <= self.chunk_tokens:
            return [(start, end)]
        atoms: list[_Atom] = []
        self._atomize(text, start, end, PARAGRAPH, PARAGRAPH, atoms)
        return self._pack(text, atoms)

    # -- counting -------------------------------------------------------------------------

    def _count(self, text: str) -> int:
        return self.count_tokens(text)

    def _surely_over(self, chars: int) -> bool:
        """Too long to be one chunk, so skip counting it whole (a miss only costs a split)."""
        return chars > min(self.max_chars, self.chunk_tokens * SURELY_OVER_CHARS_PER_TOKEN)

    @property
    def base(self) -> int:
        if self._base is None:
            self._base = self.count_tokens("")
        return self._base

    # -- pieces: split only what does not fit, one level finer at a time ---------------------

    def _atomize(
        self, text: str, start: int, end: int, level: int, boundary: int, out: list[_Atom]
    ) -> None:
        """Append atoms (counted pieces that fit) for text[start:end], known not to fit."""
        if level == CHAR:
            self._hard_cut(text, start, end, boundary, out)
            return
        pieces = _pieces(text, start, end, _SEPARATORS[level])
        if len(pieces) == 1:  # nothing to split at this level: go finer without recounting
            self._atomize(text, start, end, level + 1, boundary, out)
            return
        for index, (a, b) in enumerate(pieces):
            kind = boundary if index == 0 else level
            if not self._surely_over(b - a):
                tokens = self._count(text[a:b])
                if tokens <= self.chunk_tokens:
                    out.append(_Atom(a, b, tokens, kind))
                    continue
            self._atomize(text, a, b, level + 1, kind, out)

    def _hard_cut(self, text: str, start: int, end: int, boundary: int, out: list[_Atom]) -> None:
        """Cut an unbreakable run (no whitespace) by characters, each piece within budget."""
        budget = self.chunk_tokens
        kind = boundary
        while start < end:
            hi = min(end, start + self.max_chars)
            tokens = self._count(text[start:hi])
            if tokens > budget:  # binary search the longest prefix that fits
                lo, lo_tokens = start + 1, self._count(text[start : start + 1])
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    mid_tokens = self._count(text[start:mid])
                    if mid_tokens <= budget:
                        lo, lo_tokens = mid, mid_tokens
                    else:
                        hi = mid
                hi, tokens = lo, lo_tokens
            out.append(_Atom(start, hi, tokens, kind))
            start, kind = hi, CHAR

    # -- packing: fill each chunk from counted atoms, end at the strongest boundary ----------

    def _pack(self, text: str, atoms: list[_Atom]) -> list[tuple[int, int]]:
        budget, base = self.chunk_tokens, self.base
        spans: list[tuple[int, int]] = []
        i, n = 0, len(atoms)
        carry: tuple[int, int] | None = None  # overlap (start, tokens) from the previous chunk
        while i < n:
            start = carry[0] if carry else atoms[i].start
            estimate = carry[1] if carry else base
            fills: list[int] = []  # fills[k]: estimated tokens of the chunk ending at atom i+k
            j = i
            while j < n:
                grown = estimate + atoms[j].tokens - base
                if grown > budget or atoms[j].end - start > self.max_chars:
                    break
                estimate = grown
                fills.append(grown)
                j += 1
            if j == i:  # the overlap leaves no room for the next atom: drop it
                if carry is None:  # cannot happen (atoms fit alone); never loop forever
                    raise AssertionError("splitter atom larger than the budget")
                carry = None
                continue
            stop = j if j == n else self._best_stop(atoms, i, j, fills)
            stop, start, tokens = self._verified(text, atoms, i, stop, start, fills)
            end = atoms[stop - 1].end
            spans.append((start, end))
            i = stop
            carry = None
            if i < n and self.overlap_tokens:
                room = budget - atoms[i].tokens + base
                if room < self.overlap_tokens:  # the next piece leaves no room to overlap:
                    finer = self._split_atom(text, atoms[i])  # take it in smaller pieces
                    if len(finer) > 1:
                        atoms[i : i + 1] = finer
                        n = len(atoms)
                        room = budget - atoms[i].tokens + base
                limit = min(self.overlap_tokens, room)
                carry = self._overlap(text, start, end, limit, (end - start) / max(tokens, 1))
        return spans

    def _verified(
        self, text: str, atoms: Sequence[_Atom], i: int, stop: int, start: int, fills: list[int]
    ) -> tuple[int, int, int]:
        """Check the chunk's estimated count, shrinking it until it really fits.

        Pieces joined by whitespace add up exactly for word-level tokenizers (BERT's
        WordPiece, SentencePiece); once enough chunks have confirmed that for this counter,
        such chunks are no longer recounted. Other joints (characters cut apart, CJK
        sentences) are always recounted.
        """
        budget = self.chunk_tokens
        while True:
            estimate = fills[stop - 1 - i]
            single = stop == i + 1 and start == atoms[i].start
            first = i if start != atoms[i].start else i + 1  # the overlap joins atom i too
            joined_by_space = all(
                _plain_gap(text, atoms[k - 1].end, atoms[k].start) for k in range(first, stop)
            )
            if single or (joined_by_space and self._additive_confirmed >= TRUST_AFTER):
                return stop, start, estimate
            real = self._count(text[start : atoms[stop - 1].end])
            if joined_by_space and self._additive_confirmed >= 0:
                self._additive_confirmed = self._additive_confirmed + 1 if real == estimate else -1
            if real <= budget:
                return stop, start, real
            if stop - 1 > i:
                stop -= 1
            elif start != atoms[i].start:
                start = atoms[i].start
                fills = [atoms[i].tokens] * (stop - i)
            else:  # a single atom was counted alone and fits: cannot be reached
                return stop, start, real

    def _split_atom(self, text: str, atom: _Atom) -> list[_Atom]:
        """The atom's own pieces one level finer (itself alone if it cannot be split)."""
        finer: list[_Atom] = []
        self._atomize(text, atom.start, atom.end, PARAGRAPH, atom.boundary, finer)
        return finer

    def _best_stop(self, atoms: Sequence[_Atom], i: int, j: int, fills: list[int]) -> int:
        """Index after the chunk's last atom: the strongest boundary with enough fill."""
        floor = MIN_FILL * self.chunk_tokens
        best, best_kind = j, atoms[j].boundary
        for stop in range(j - 1, i, -1):
            kind = atoms[stop].boundary
            if fills[stop - 1 - i] < floor:
                break
            if kind < best_kind:
                best, best_kind = stop, kind
        return best

    def _overlap(
        self, text: str, start: int, end: int, limit: int, chars_per_token: float
    ) -> tuple[int, int] | None:
        """A tail of text[start:end] of at most `limit` tokens for the next chunk to repeat,
        starting at a word (at a sentence or line start when one is near). Positioned by the
        chunk's own characters-per-token, so it costs one or two counts, not a search."""
        if limit <= 0:
            return None
        want = max(1, int(limit * chars_per_token * 0.9))
        first = _WORD_START.search(text, max(start + 1, end - want), end)
        if first is None:
            return None
        pos = first.start()
        sentence = _SENTENCE_START.search(text, pos, end - (end - pos) // 2)
        if sentence:
            pos = sentence.start()
        tokens = self._count(text[pos:end])
        while tokens > limit:  # move right past about the excess, at least one word
            skip = max(1, int((tokens - limit) * chars_per_token))
            nxt = _WORD_START.search(text, pos + skip, end)
            if nxt is None:
                return None
            pos = nxt.start()
            tokens = self._count(text[pos:end])
        return pos, tokens


def _plain_gap(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] holds a space that separates words for any tokenizer: not
    only control characters, which Python calls whitespace but BERT deletes ("a\x1cb")."""
    gap = text[start:end]
    if " " in gap or "\n" in gap:
        return True
    return any(c == "\t" or (c.isspace() and unicodedata.category(c) != "Cc") for c in gap)


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    piece = text[start:end]
    left = len(piece) - len(piece.lstrip())
    return start + left, start + len(piece.rstrip())


def _pieces(text: str, start: int, end: int, separator: re.Pattern[str]) -> list[tuple[int, int]]:
    """The non-blank, stripped pieces of text[start:end] between separator matches."""
    pieces = []
    pos = start
    for match in separator.finditer(text, start, end):
        if match.start() > pos:
            a, b = _strip(text, pos, match.start())
            if a < b:
                pieces.append((a, b))
        pos = max(pos, match.end())
    a, b = _strip(text, pos, end)
    if a < b:
        pieces.append((a, b))
    return pieces


class _SpanTables:
    """Looks up pages, JSON paths and CSV rows for a chunk from the document's span tables."""

    def __init__(self, metadata: dict[str, Any]):
        self.pages = _SpanTable(metadata.get("pages"))
        self.json_paths = _SpanTable(metadata.get("json_paths"))
        self.rows = _SpanTable(metadata.get("rows"))

    def annotate(self, chunk: Chunk) -> None:
        pages = self.pages.labels(chunk.start, chunk.end)
        if pages:
            chunk.page = int(pages[0])
        paths = self.json_paths.labels(chunk.start, chunk.end)
        if paths:
            chunk.metadata["json_path"] = paths[0]
            if len(paths) > 1:
                chunk.metadata["json_paths"] = paths
        rows = self.rows.labels(chunk.start, chunk.end)
        if rows:
            chunk.metadata["row"] = rows[0]
            chunk.metadata["rows"] = rows


class _SpanTable:
    """[[start, end, label], ...] sorted and non-overlapping, as the loaders write them."""

    def __init__(self, spans: list[list[Any]] | None):
        spans = sorted(spans or [], key=lambda s: (s[0], s[1]))
        self.starts = [int(s[0]) for s in spans]
        self.ends = [int(s[1]) for s in spans]
        self.labels_ = [s[2] for s in spans]

    def labels(self, start: int, end: int) -> list[Any]:
        """Labels of the spans overlapping [start, end)."""
        first = bisect_right(self.ends, start)
        last = bisect_left(self.starts, end)
        return self.labels_[first:last]
