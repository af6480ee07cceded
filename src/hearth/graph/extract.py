"""Triple extraction: (subject, relation, object) facts from one chunk, each with provenance.

The instruction model answers under a JSON Schema through `hearth.generate` (hearth.structured
masks its tokens); every triple must quote its evidence from the chunk, and the quote is
located in the chunk text (exactly, then case/space-insensitively, then fuzzily with difflib)
so its character span in the source document is known. Triples whose evidence cannot be found,
or whose subject or object the chunk never mentions, are hallucinated: dropped and counted.
Hand-written: the prompt, the span locator, the checks; the constrained decoding is
hearth.structured's, the model is hearth.llm's.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from hearth.types import ChatModel, Chunk, Message

# Most triples a chunk may give; keeps a small model from looping through a long list.
MAX_TRIPLES = 8
FUZZY_MIN_RATIO = 0.92  # difflib ratio a fuzzy evidence match needs
# A paraphrased quote still counts when one sentence of the chunk holds this share of its
# words and names both the subject and the object.
SENTENCE_MIN_COVERAGE = 0.8

TRIPLE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "triples": {
            "type": "array",
            "maxItems": MAX_TRIPLES,
            "items": {
                "type": "object",
                "properties": {
                    "subject": {"type": "string", "minLength": 1, "maxLength": 80},
                    "relation": {"type": "string", "minLength": 1, "maxLength": 60},
                    "object": {"type": "string", "minLength": 1, "maxLength": 80},
                    "evidence": {"type": "string", "minLength": 1, "maxLength": 300},
                },
                "required": ["subject", "relation", "object", "evidence"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["triples"],
    "additionalProperties": False,
}

SYSTEM = (
    "You extract facts from a text as (subject, relation, object) triples for a knowledge "
    "graph. Subjects and objects are named entities (people, places, organisations, works, "
    "buildings, dates) written as in the text. The relation is a short verb phrase such as "
    '"born in", "designed", "located in", "founded". The evidence is the sentence of the text '
    "that states the fact, copied word for word. Only facts the text states; no opinions."
)

EXAMPLE_TEXT = "Marie Curie was born in Warsaw. Curie later founded the Radium Institute."
EXAMPLE_ANSWER = (
    '{"triples": [{"subject": "Marie Curie", "relation": "born in", "object": "Warsaw", '
    '"evidence": "Marie Curie was born in Warsaw."}, {"subject": "Curie", "relation": '
    '"founded", "object": "Radium Institute", "evidence": "Curie later founded the Radium '
    'Institute."}]}'
)


@dataclass
class Triple:
    """One fact with where it came from: `start`/`end` index the SOURCE document's text (the
    evidence quote), `chunk_id` the chunk it was read from."""

    subject: str
    relation: str
    object: str
    evidence: str
    chunk_id: int
    source: str
    start: int
    end: int
    document_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Extraction:
    """What one chunk gave: kept triples, and how many were dropped (evidence not found)."""

    triples: list[Triple] = field(default_factory=list)
    dropped: int = 0
    error: str | None = None
    raw: list[dict[str, str]] = field(default_factory=list)  # the model's answer, unchecked


def locate(evidence: str, text: str) -> tuple[int, int] | None:
    """The (start, end) of `evidence` in `text`: exact, then ignoring case and runs of
    whitespace, then the best fuzzy window (difflib ratio >= FUZZY_MIN_RATIO). None when the
    quote is not there (the model made it up)."""
    quote = evidence.strip().strip("\"'“”")
    if not quote:
        return None
    at = text.find(quote)
    if at >= 0:
        return at, at + len(quote)
    words = quote.split()
    pattern = r"\s+".join(re.escape(w) for w in words)
    found = re.search(pattern, text, flags=re.IGNORECASE)
    if found:
        return found.start(), found.end()
    return _fuzzy(quote, text)


def _fuzzy(quote: str, text: str) -> tuple[int, int] | None:
    """Best window of `text` at word starts with about the quote's length."""
    if len(quote) < 12:  # short quotes match by accident; only exact ones count
        return None
    lowered, q = text.lower(), " ".join(quote.lower().split())
    starts = [0] + [m.end() for m in re.finditer(r"\s+", text)]
    best, best_span = 0.0, None
    matcher = difflib.SequenceMatcher(autojunk=False)
    matcher.set_seq2(q)
    for s in starts:
        for length in (len(q), int(len(q) * 0.9), int(len(q) * 1.1)):
            window = " ".join(lowered[s : s + length].split())
            matcher.set_seq1(window)
            if matcher.real_quick_ratio() < best or matcher.quick_ratio() < best:
                continue
            ratio = matcher.ratio()
            if ratio > best:
                best, best_span = ratio, (s, min(len(text), s + length))
    if best < FUZZY_MIN_RATIO or best_span is None:
        return None
    s, e = best_span
    while e > s and text[e - 1].isspace():
        e -= 1
    return s, e


_WORD = re.compile(r"\w+")


def sentence_for(quote: str, subject: str, obj: str, text: str) -> tuple[int, int] | None:
    """The span of the one sentence of `text` that holds most of a paraphrased quote's words
    and names both the subject and the object (their last words); None otherwise."""
    words = {w.lower() for w in _WORD.findall(quote)}
    names = [_WORD.findall(n.lower()) for n in (subject, obj)]
    if not words or not all(names):
        return None
    best, best_span = 0.0, None
    for m in re.finditer(r"[^.!?\n]+[.!?]?", text):
        have = {w.lower() for w in _WORD.findall(m.group())}
        coverage = len(words & have) / len(words)
        if coverage > best and all(n[-1] in have for n in names):
            s, e = m.start(), m.end()
            while s < e and text[s].isspace():
                s += 1
            best, best_span = coverage, (s, e)
    return best_span if best >= SENTENCE_MIN_COVERAGE else None


def prompt_for(chunk: Chunk) -> list[Message]:
    return [
        Message("system", SYSTEM),
        Message("user", f"Text:\n{EXAMPLE_TEXT}"),
        Message("assistant", EXAMPLE_ANSWER),
        Message("user", f"Text:\n{chunk.text}"),
    ]


def clean_name(name: str) -> str:
    """A name as the model wrote it, without markdown marks or quotes around it."""
    return " ".join(name.split()).strip(" .,;:\"'#*_`>")


STOPWORDS = frozenset("the a an of and in on at to for by with from".split())


def grounded(name: str, words: set[str]) -> bool:
    """Whether every content word of `name` occurs in the chunk (`words`, lower case): a
    subject or object the text never mentions is the model's invention (a small model copies
    names from the prompt's example)."""
    needed = {w for w in _WORD.findall(name.lower()) if w not in STOPWORDS}
    return bool(needed) and needed <= words


class TripleExtractor:
    """Extracts triples from chunks with an instruction model under TRIPLE_SCHEMA."""

    def __init__(self, model: ChatModel, *, max_tokens: int = 384) -> None:
        self.model = model
        self.max_tokens = max_tokens

    def raw(self, chunk: Chunk) -> list[dict[str, str]]:
        """The model's triples for `chunk`, not yet checked."""
        from hearth.llm.structured_output import generate

        answer = generate(
            self.model, prompt_for(chunk), TRIPLE_SCHEMA, max_tokens=self.max_tokens, retries=1
        )
        return list(answer.get("triples", []))

    def extract(self, chunk: Chunk) -> Extraction:
        from hearth.errors import HearthError

        try:
            found = self.raw(chunk)
        except HearthError as exc:  # no valid answer for this chunk: reported, not fatal
            return Extraction(error=str(exc))
        out = check(found, chunk)
        out.raw = found
        return out


def check(found: list[dict[str, str]], chunk: Chunk) -> Extraction:
    """Keep the triples whose evidence is in the chunk (spans moved to source offsets)."""
    out = Extraction()
    seen: set[tuple[str, str, str]] = set()
    words = {w.lower() for w in _WORD.findall(chunk.text)}
    for item in found:
        subject, relation, obj = (
            clean_name(item.get(k, "")) for k in ("subject", "relation", "object")
        )
        span = locate(item.get("evidence", ""), chunk.text) or sentence_for(
            item.get("evidence", ""), subject, obj, chunk.text
        )
        if (
            not relation
            or span is None
            or subject.lower() == obj.lower()
            or not grounded(subject, words)
            or not grounded(obj, words)
        ):
            out.dropped += 1
            continue
        key = (subject.lower(), relation.lower(), obj.lower())
        if key in seen:
            continue
        seen.add(key)
        s, e = span
        out.triples.append(
            Triple(
                subject=subject,
                relation=relation.lower(),
                object=obj,
                evidence=chunk.text[s:e],
                chunk_id=int(chunk.id or 0),
                source=chunk.source,
                start=chunk.start + s,
                end=chunk.start + e,
                document_id=chunk.document_id,
            )
        )
    return out
