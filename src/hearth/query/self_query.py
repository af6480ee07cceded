"""Self-query: a request such as "PDFs about pumps from 2024" split into metadata filters (file
types, a date range, a folder) and the search query that remains ("pumps").

Two readers that check each other: patterns for the common phrasings (file-type words, "from /
since / before / between" years, months, "last year", "in the X folder"), and the instruction
model under a JSON schema that only names what the index holds (its file types and folders).
A filter the model gives is kept only when the request mentions it (a type word, a year, a
month, a relative date, the folder's name), so a small model cannot narrow a search on its
own. Hand-written: the patterns and the grounding checks; the constrained call is
hearth.generate's.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import date
from typing import Any, Literal

from hearth.errors import HearthError
from hearth.types import ChatModel, Filters, Message

log = logging.getLogger("hearth.query")

# words that name a file type -> the index's short type name
TYPE_WORDS: dict[str, str] = {
    "pdf": "pdf", "pdfs": "pdf", "markdown": "md", "md": "md", "html": "html", "htm": "html",
    "web page": "html", "web pages": "html", "webpage": "html", "webpages": "html",
    "csv": "csv", "csvs": "csv", "spreadsheet": "csv", "spreadsheets": "csv", "json": "json",
    "jsonl": "jsonl", "text file": "txt", "text files": "txt", "txt": "txt",
    "plain text": "txt",
}  # fmt: skip
_MONTHS = {
    name: n
    for n, names in enumerate(
        [("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"),
         ("may",), ("june", "jun"), ("july", "jul"), ("august", "aug"),
         ("september", "sep", "sept"), ("october", "oct"), ("november", "nov"),
         ("december", "dec")],
        start=1,
    )
    for name in names
}  # fmt: skip
_MONTH = "|".join(sorted(_MONTHS, key=len, reverse=True))
_YEAR = r"(?:19|20)\d{2}"
_DAY = rf"{_YEAR}-\d{{2}}-\d{{2}}"
_WHEN = rf"(?:(?:{_MONTH})\.?\s+{_YEAR}|{_DAY}|{_YEAR}-\d{{2}}|{_YEAR})"
_DOC = r"(?:documents?|docs?|files?|papers?|pages?|reports?|notes?)"
_TYPE = "|".join(re.escape(w) for w in sorted(TYPE_WORDS, key=len, reverse=True))

# (pattern, what it means); tried in order, each match removed from the query
_DATE_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(rf"\b(?:between|from)\s+({_WHEN})\s+(?:and|to|until|through)\s+({_WHEN})\b",
                re.I), "between"),
    (re.compile(rf"\b(?:(?:from|in|during|between)\s+)?({_YEAR})\s*[-\u2013]\s*({_YEAR})\b",
                re.I), "between"),
    (re.compile(rf"\b(?:since|from|after|starting)\s+({_WHEN})\s+on(?:wards?)?\b", re.I), "since"),
    (re.compile(rf"\b(?:since|on or after)\s+({_WHEN})\b", re.I), "since"),
    (re.compile(rf"\bafter\s+({_WHEN})\b", re.I), "after"),
    (re.compile(rf"\b(?:before|prior to|earlier than|older than)\s+({_WHEN})\b", re.I), "before"),
    (re.compile(rf"\b(?:until|through|up to|no later than)\s+({_WHEN})\b", re.I), "until"),
    (re.compile(rf"\b(?:from|in|during|of|dated|written in|published in)\s+({_WHEN})\b", re.I),
     "in"),
    (re.compile(r"\b(?:from|in|during)?\s*(last|this|past)\s+year\b", re.I), "relative"),
]  # fmt: skip
_TYPE_RULE = re.compile(rf"(?<![\w.])\.?({_TYPE})(?:\s+{_DOC})?(?![\w])", re.I)
_FOLDER_RULE = re.compile(
    r"\b(?:in|under|inside|within|from)\s+(?:the\s+)?(?:folder\s+|directory\s+)?"
    r"[\"'`]?([\w.-]+)/?[\"'`]?(?:\s+(?:folder|directory|dir))?",
    re.I,
)
_FILLER = re.compile(
    rf"^(?:(?:please\s+)?(?:find|show|search|list|get|give me|look for)\b\s*(?:me\b\s*)?)?"
    rf"(?:(?:all|any|the|some)\b\s*)?(?:{_DOC}\b\s*)?(?:(?:about|on|regarding|concerning|"
    rf"mentioning|that mention|related to|for)\b\s*)?",
    re.I,
)
_LEADING = re.compile(r"^(?:of|about|on|from|in|with|for|and|regarding)\b\s*", re.I)
_DANGLING = re.compile(rf"\b(?:{_DOC}|about|on|from|in|the|of|for|and|with)\s*$", re.I)

PROMPT = """You turn a search request into a search query plus filters on document metadata.
Today is {today}. The index holds file types: {types}; document dates from {oldest} to {newest};
folders: {folders}.
Put in "query" only the topic words to search for. Set a filter only when the request asks for
it: "file_types" for a named kind of file (PDFs, markdown, spreadsheets...), "date_from" and
"date_to" (YYYY-MM-DD, inclusive) for a time, "folder" for a named folder; else leave it empty
or null.
Example: "PDFs about pumps from 2024" -> {{"query": "pumps", "file_types": ["pdf"],
"date_from": "2024-01-01", "date_to": "2024-12-31", "folder": null}}
Example: "how do I reset the router" -> {{"query": "how do I reset the router",
"file_types": [], "date_from": null, "date_to": null, "folder": null}}"""


@dataclass(frozen=True)
class IndexFacts:
    """What the index holds that a filter can name: file types, folders, the date range."""

    file_types: tuple[str, ...]
    folders: tuple[str, ...]
    oldest: str | None = None
    newest: str | None = None
    undated: int = 0  # documents without a date: a date filter leaves them out

    @classmethod
    def of(cls, documents: Iterable[dict[str, Any]]) -> IndexFacts:
        """From a store's list_documents()."""
        docs = list(documents)
        dates = sorted(d["date"] for d in docs if d.get("date"))
        return cls(
            file_types=tuple(sorted({d["file_type"] for d in docs if d.get("file_type")})),
            folders=_folders([d["source"] for d in docs]),
            oldest=dates[0] if dates else None,
            newest=dates[-1] if dates else None,
            undated=sum(1 for d in docs if not d.get("date")),
        )


@dataclass
class SelfQuery:
    """The query left to search, the filters found, who found them, and what was dropped."""

    query: str
    filters: Filters
    by: Literal["model", "rules"]
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"query": self.query, "filters": self.filters.as_dict(), "by": self.by,
                "notes": self.notes}  # fmt: skip


def self_query(
    request: str,
    facts: IndexFacts,
    model: ChatModel | None = None,
    *,
    given: Filters | None = None,
    today: date | None = None,
) -> SelfQuery:
    """Split `request` into a search query and filters over what `facts` says the index holds.
    With a `model`, it reads the request under a schema and the rules check it; without one
    (or when it fails) the rules alone decide. Filters set in `given` (a caller's options)
    win over the ones found."""
    if not request.strip():
        raise HearthError("the search request is empty")
    today = today or date.today()
    found = rules(request, facts, today=today)
    if model is not None:
        try:
            found = _by_model(request, facts, model, found, today)
        except HearthError as exc:
            log.warning("self-query model failed, using the rules: %s", exc)
            found.notes.append(f"the model failed ({exc}); the rules decided")
    if given is not None:
        found.filters = merge_filters(found.filters, given)
    return found


def merge_filters(found: Filters, given: Filters) -> Filters:
    """`found` with every filter that `given` sets put in its place (options win)."""
    chosen = {f.name: getattr(given, f.name) for f in fields(given) if getattr(given, f.name)}
    return replace(found, **chosen)


def rules(request: str, facts: IndexFacts, *, today: date | None = None) -> SelfQuery:
    """The filters the patterns find in `request`, and the query that remains."""
    today = today or date.today()
    text, notes = f" {request.strip()} ", []
    low, high, text = _dates(text, today)
    types, text = _types(text)
    folder, text = _folder(text, facts.folders)
    kept = tuple(t for t in types if t in facts.file_types)
    if dropped := [t for t in types if t not in facts.file_types]:
        notes.append(f"no {', '.join(dropped)} documents in the index: that filter is dropped")
    if (low or high) and facts.undated:
        notes.append(f"{facts.undated} documents have no date and are left out")
    query = _tidy(text) or request.strip()
    filters = Filters(source_glob=folder, file_types=kept or None, date_from=low, date_to=high)
    return SelfQuery(query, filters, "rules", notes)


def schema(facts: IndexFacts) -> dict[str, Any]:
    """What the model fills in: only the index's own file types and folders can be named."""
    day = {"anyOf": [{"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"}, {"type": "null"}]}
    types: dict[str, Any] = {"type": "array", "maxItems": 3}
    types["items"] = {"enum": list(facts.file_types)} if facts.file_types else {"type": "string"}
    folder: dict[str, Any] = (
        {"anyOf": [{"enum": list(facts.folders)}, {"type": "null"}]}
        if facts.folders
        else {"type": "null"}
    )
    return {
        "type": "object",
        "properties": {
            "query": {"type": "string", "minLength": 1, "maxLength": 200},
            "file_types": types,
            "date_from": day,
            "date_to": day,
            "folder": folder,
        },
        "required": ["query", "file_types", "date_from", "date_to", "folder"],
        "additionalProperties": False,
    }


def _by_model(
    request: str, facts: IndexFacts, model: ChatModel, ruled: SelfQuery, today: date
) -> SelfQuery:
    from hearth.llm.structured_output import generate

    system = PROMPT.format(
        today=today.isoformat(),
        types=", ".join(facts.file_types) or "none",
        oldest=facts.oldest or "unknown",
        newest=facts.newest or "unknown",
        folders=", ".join(facts.folders[:40]) or "none",
    )
    messages = [Message("system", system), Message("user", request)]
    got = generate(model, messages, schema(facts), max_tokens=160)
    notes = list(ruled.notes)
    mentioned = request.lower()
    types = tuple(dict.fromkeys(t for t in got["file_types"] if _names_type(mentioned, t)))
    if len(types) < len(got["file_types"]):
        notes.append("the model named a file type the request does not mention: dropped")
    low, high = _day(got["date_from"]), _day(got["date_to"])
    if (low or high) and not _names_time(mentioned):
        notes.append("the model set dates the request does not mention: dropped")
        low = high = None
    if low and high and low > high:
        notes.append(f"the model's dates are backwards ({low} > {high}): the rules' are used")
        low, high = ruled.filters.date_from, ruled.filters.date_to
    folder = got["folder"]
    if folder and not re.search(rf"\b{re.escape(folder.lower())}\b", mentioned):
        notes.append(f"the model named folder {folder!r}, which the request does not: dropped")
        folder = None
    query = got["query"].strip() or ruled.query
    filters = Filters(source_glob=folder, file_types=types or None, date_from=low, date_to=high)
    return SelfQuery(query, filters, "model", notes)


def _dates(text: str, today: date) -> tuple[str | None, str | None, str]:
    for pattern, kind in _DATE_RULES:
        m = pattern.search(text)
        if not m:
            continue
        text = text[: m.start()] + " " + text[m.end() :]
        if kind == "relative":
            year = today.year - (m.group(1).lower() in ("last", "past"))
            return f"{year}-01-01", f"{year}-12-31", text
        first, last = _span(m.group(1))
        if kind == "between":
            return first, _span(m.group(2))[1], text
        if kind == "in":
            return first, last, text
        if kind == "since":
            return first, None, text
        if kind == "after":
            return _next_day(last), None, text
        if kind == "before":
            return None, _previous_day(first), text
        return None, last, text  # until
    return None, None, text


def _span(when: str) -> tuple[str, str]:
    """The first and last day a date expression covers: a year, a month or a day."""
    when = when.strip().lower().replace(".", "")
    if m := re.fullmatch(rf"({_MONTH})\s+(\d{{4}})", when):
        year, month = int(m.group(2)), _MONTHS[m.group(1)]
        return _month(year, month)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", when):
        return when, when
    if m := re.fullmatch(r"(\d{4})-(\d{2})", when):
        return _month(int(m.group(1)), int(m.group(2)))
    return f"{when}-01-01", f"{when}-12-31"


def _month(year: int, month: int) -> tuple[str, str]:
    start = date(year, month, 1)
    end = date(year + (month == 12), month % 12 + 1, 1)
    return start.isoformat(), date.fromordinal(end.toordinal() - 1).isoformat()


def _next_day(day: str) -> str:
    return date.fromordinal(date.fromisoformat(day).toordinal() + 1).isoformat()


def _previous_day(day: str) -> str:
    return date.fromordinal(date.fromisoformat(day).toordinal() - 1).isoformat()


def _types(text: str) -> tuple[tuple[str, ...], str]:
    found = []
    for m in list(_TYPE_RULE.finditer(text)):
        found.append(TYPE_WORDS[m.group(1).lower()])
    return tuple(dict.fromkeys(found)), _TYPE_RULE.sub(" ", text)


def _folder(text: str, folders: Sequence[str]) -> tuple[str | None, str]:
    known = {f.lower(): f for f in folders}
    for m in _FOLDER_RULE.finditer(text):
        name = m.group(1).lower().rstrip("/")
        if name in known:
            return known[name], text[: m.start()] + " " + text[m.end() :]
    return None, text


def _tidy(text: str) -> str:
    """The topic words left once the filters are cut out: request verbs, a leading "documents
    about" and dangling prepositions go, unless nothing else would be left."""
    text = re.sub(r"\s+", " ", text).strip(" ,;:-?")
    for pattern in (_FILLER, _LEADING, _DANGLING):
        while (cut := pattern.sub("", text).strip(" ,;:-?")) != text and cut:
            text = cut
    return text


def _names_type(request: str, file_type: str) -> bool:
    words = [w for w, t in TYPE_WORDS.items() if t == file_type] + [file_type]
    return any(re.search(rf"(?<![\w]){re.escape(w)}(?![\w])", request) for w in words)


def _names_time(request: str) -> bool:
    return bool(re.search(rf"\b{_YEAR}\b|\b(?:last|this|past)\s+(?:year|month)", request))


def _day(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        return None


def _folders(sources: Sequence[str]) -> tuple[str, ...]:
    """Folder names under the sources' common root (what "in the manuals folder" can name)."""
    paths = [s for s in sources if s.startswith("/")]
    if not paths:
        return ()
    root = os.path.dirname(os.path.commonpath(paths)) if len(paths) == 1 else None
    root = root or os.path.commonpath(paths)
    names: set[str] = set()
    for p in paths:
        names.update(os.path.relpath(os.path.dirname(p), root).split(os.sep))
    names.discard(".")
    return tuple(sorted(names))
