"""Verified citations: attribute each answer sentence to the passages that really support it.

The model's own [n] markers are treated as hints, never trusted: a marker survives only when
passage n supports its sentence, supported sentences left unmarked get their best passage, and
markers are renumbered so the printed sources are exactly the cited ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from hearth.rag.sentences import Span, split_sentences
from hearth.rag.support import Evidence, content_words, embed_all
from hearth.types import Embedder, ScoredChunk

# Support (0.5 * cosine + 0.5 * content-word coverage - number penalty) a passage must give a
# sentence before it may be cited for it. Calibrated on hand-written answers with
# all-MiniLM-L6-v2: a paraphrase of a passage sentence scores 0.6-0.9, a sentence about
# something else in the same documents 0.1-0.35.
SUPPORT_THRESHOLD = 0.5

_MARKER = re.compile(r"\[\s*(?:passages?\s*)?(\d{1,3}(?:\s*(?:,|and|&)\s*\d{1,3})*)\s*\]", re.I)
_MARKER_WITH_SPACE = re.compile(r"[ \t]*" + _MARKER.pattern, re.I)
_TRAILING_PUNCT = re.compile(r"[.!?:;]+[\"'”’)]*$")


@dataclass
class Citation:
    """One printed source: n is its number in the answer, [start, end) the exact quoted span in
    the document's text (document.text[start:end] == text)."""

    n: int
    source: str
    start: int
    end: int
    text: str
    page: int | None = None
    headings: list[str] = field(default_factory=list)
    chunk_id: int | None = None
    passage: int = 0  # 1-based number of the passage in the prompt

    def to_json(self) -> dict:
        return {
            "n": self.n,
            "source": self.source,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "page": self.page,
        }


@dataclass
class SentenceSupport:
    """What attribution decided for one answer sentence (kept for tests and debugging)."""

    text: str  # the sentence without markers
    given: list[int]  # markers the model wrote (as written, 1-based)
    cited: list[int]  # passages (1-based) cited after verification
    best: int | None  # best-supporting passage (1-based), supported or not
    best_score: float


@dataclass
class Attribution:
    text: str  # the answer with verified, renumbered markers
    citations: list[Citation]
    sentences: list[SentenceSupport]

    @property
    def supported(self) -> bool:
        """At least one sentence is supported by a passage."""
        return any(s.cited for s in self.sentences)


def parse_markers(text: str) -> list[int]:
    """Passage numbers cited in `text`: "[1]", "[1, 3]", "[2][3]", "[Passage 2]"."""
    return [int(n) for m in _MARKER.finditer(text) for n in re.findall(r"\d+", m.group(1))]


def strip_markers(text: str) -> str:
    """`text` without citation markers ("ok [1]." -> "ok.")."""
    return _MARKER_WITH_SPACE.sub("", text).strip()


def with_markers(sentence: str, numbers: list[int]) -> str:
    """Put "[1][2]" at the end of the sentence, before its closing punctuation."""
    if not numbers:
        return sentence
    marks = "".join(f"[{n}]" for n in numbers)
    end = _TRAILING_PUNCT.search(sentence)
    if end:
        return f"{sentence[: end.start()]} {marks}{sentence[end.start() :]}"
    return f"{sentence} {marks}"


def attribute(
    answer: str,
    passages: list[ScoredChunk],
    embedder: Embedder,
    *,
    threshold: float = SUPPORT_THRESHOLD,
    evidence: Evidence | None = None,
) -> Attribution:
    """Verify and complete the citations of `answer` against the numbered `passages`.

    For every sentence: markers of passages not given are dropped, markers of passages that do
    not support the sentence are dropped, and a sentence left without a marker gets its best
    passage when that passage supports it. Citations are then renumbered 1..m in order of first
    use, each with the span of its passage that best supports the sentences citing it.
    """
    evidence = evidence or Evidence(passages, embedder)
    spans = split_sentences(answer)
    cleaned = [strip_markers(answer[s.start : s.end]) for s in spans]
    (vectors,) = embed_all(embedder, [cleaned])

    decisions: list[SentenceSupport] = []
    unit_scores: list[np.ndarray] = []
    for span, clean, vector in zip(spans, cleaned, vectors, strict=True):
        given = parse_markers(answer[span.start : span.end])
        if not passages or not content_words(clean):
            decisions.append(SentenceSupport(clean, given, [], None, 0.0))
            unit_scores.append(np.zeros(len(evidence.units), dtype=np.float32))
            continue
        support = evidence.passage_support(clean, vector)
        unit_scores.append(evidence.unit_scores(clean, vector))
        cited = []
        for n in dict.fromkeys(given):  # de-duplicated, in the model's order
            if 1 <= n <= len(passages) and support[n - 1] >= threshold:
                cited.append(n)
        best = int(np.argmax(support))
        if not cited and support[best] >= threshold:
            cited.append(best + 1)
        decisions.append(SentenceSupport(clean, given, cited, best + 1, float(support[best])))

    numbering = _renumber(decisions)
    text = _rebuild(answer, spans, decisions, numbering)
    citations = [
        _citation(new, old, passages, evidence, decisions, unit_scores)
        for old, new in numbering.items()
    ]
    return Attribution(text=text, citations=citations, sentences=decisions)


def _renumber(decisions: list[SentenceSupport]) -> dict[int, int]:
    """Passage number -> printed number, in order of first citation."""
    numbering: dict[int, int] = {}
    for d in decisions:
        for p in d.cited:
            numbering.setdefault(p, len(numbering) + 1)
    return numbering


def _rebuild(
    answer: str, spans: list[Span], decisions: list[SentenceSupport], numbering: dict[int, int]
) -> str:
    """The answer with each sentence's markers replaced by its verified, renumbered ones; the
    text between sentences is kept as the model wrote it."""
    out, at = [], 0
    for span, d in zip(spans, decisions, strict=True):
        out.append(answer[at : span.start])
        out.append(with_markers(d.text, sorted(numbering[p] for p in d.cited)))
        at = span.end
    out.append(answer[at:])
    return "".join(out).strip()


def _citation(
    new: int,
    passage: int,
    passages: list[ScoredChunk],
    evidence: Evidence,
    decisions: list[SentenceSupport],
    unit_scores: list[np.ndarray],
) -> Citation:
    """The citation of `passage` (1-based): its unit that best supports, jointly, every
    sentence citing it."""
    joint = sum(s for d, s in zip(decisions, unit_scores, strict=True) if passage in d.cited)
    chunk = passages[passage - 1].chunk
    best = evidence.best_unit(joint, passage - 1)
    span = evidence.units[best].span if best is not None else Span(0, len(chunk.text))
    return citation_for(new, passage, passages[passage - 1], span)


def citation_for(n: int, passage: int, hit: ScoredChunk, span: Span) -> Citation:
    """A Citation quoting chunk.text[span] with its offsets moved into the document's text."""
    chunk = hit.chunk
    return Citation(
        n=n,
        source=chunk.source,
        start=chunk.start + span.start,
        end=chunk.start + span.end,
        text=chunk.text[span.start : span.end],
        page=_page_at(chunk, span.start),
        headings=list(chunk.headings),
        chunk_id=chunk.id,
        passage=passage,
    )


def _page_at(chunk, offset: int) -> int | None:
    """The page holding `offset` when the chunk spans pages (metadata "pages" table), else the
    chunk's own page."""
    pages = chunk.metadata.get("pages") if chunk.metadata else None
    if pages:
        at = chunk.start + offset
        for start, end, number in pages:
            if start <= at < end:
                return int(number)
    return chunk.page
