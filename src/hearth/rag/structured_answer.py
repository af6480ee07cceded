"""Grounded answers as a JSON object: retrieve, prompt with the passages, generate under the
schema (hearth.generate), then check every value of the object against the passages.

Each string or number in the object is a claim; it is cited only where a passage supports it
(the same support score as sentence citations), and the fields no passage supports are listed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hearth.errors import ConstraintError
from hearth.llm.structured_output import SHOW_SCHEMA
from hearth.llm.structured_output import generate as generate_structured
from hearth.rag.citations import Citation, citation_for
from hearth.rag.prompt import fit_prompt
from hearth.rag.sentences import Span
from hearth.rag.support import Evidence, content_words, embed_all
from hearth.structured import as_constraint
from hearth.types import Filters, Message, ScoredChunk

INSTRUCTION = (
    "Fill in the answer using only the numbered passages. "
    "If the passages do not say, leave that out or use null where the schema allows it."
)


@dataclass
class FieldSupport:
    """One value of the object: where it sits (a JSON pointer) and which citations back it."""

    path: str
    value: Any
    cited: list[int]  # citation numbers (Answer-style, 1..m); empty when unsupported
    score: float  # best support any passage gives it
    checked: bool = True  # False: nothing checkable in it (true/false, null, a stopword)

    @property
    def supported(self) -> bool:
        return bool(self.cited)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "value": self.value,
            "cited": self.cited,
            "supported": self.supported,
            "checked": self.checked,
            "score": round(self.score, 3),
        }


@dataclass
class StructuredAnswer:
    object: Any  # the validated value (a pydantic instance when the schema was a model)
    citations: list[Citation] = field(default_factory=list)
    fields: list[FieldSupport] = field(default_factory=list)
    passages: list[ScoredChunk] = field(default_factory=list)
    dropped_passages: int = 0
    model: str = ""
    found: bool = True  # False: nothing relevant was retrieved, the model was not called

    @property
    def unsupported(self) -> list[str]:
        return [f.path for f in self.fields if f.checked and not f.supported]

    def to_json(self) -> dict[str, Any]:
        value = self.object
        if hasattr(value, "model_dump"):
            value = value.model_dump(mode="json")
        return {
            "object": value,
            "citations": [c.to_json() for c in self.citations],
            "fields": [f.to_json() for f in self.fields],
            "unsupported": self.unsupported,
            "model": self.model,
            "dropped_passages": self.dropped_passages,
            "found": self.found,
        }


def answer_with_schema(
    answerer: Any,
    question: str,
    schema: Any,
    k: int = 5,
    filters: Filters | None = None,
) -> StructuredAnswer:
    """The object `schema` asks for, answered from the index through `answerer` (a
    hearth.rag.answer.Answerer: its retriever, model, embedder and thresholds), with checked
    citations per value. StructuredOutputError when the model gives no valid object."""
    if not question.strip():
        raise ValueError("the question is empty")
    constraint = as_constraint(schema)
    if constraint.kind != "json":
        raise ConstraintError(
            f"a structured answer takes a JSON Schema or a pydantic model, not a {constraint.kind}"
        )
    model = answerer.model
    if model is None:
        raise ValueError("a structured answer needs a chat model")
    hits = answerer.retriever.retrieve(question, k=k, filters=filters)
    relevance = answerer._relevance(question, hits)
    if not hits or relevance < answerer.min_relevance:
        return StructuredAnswer(None, model=model.name, found=False)
    shown = Message("system", SHOW_SCHEMA.format(schema=json.dumps(constraint.schema)))
    reserve = model.count_tokens([shown])  # hearth.generate adds this turn
    prompt = fit_prompt(
        question, hits, model, answerer.max_tokens + reserve, instruction=INSTRUCTION
    )
    value = generate_structured(
        model, prompt.messages, constraint, retries=1, max_tokens=answerer.max_tokens
    )
    plain = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
    citations, fields = check_values(plain, prompt.passages, answerer)
    return StructuredAnswer(
        value, citations, fields, prompt.passages, prompt.dropped_passages, model.name
    )


def leaves(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """(JSON pointer, value) for every scalar in `value`, in document order."""
    if isinstance(value, dict):
        out = []
        for key, item in value.items():
            escaped = str(key).replace("~", "~0").replace("/", "~1")
            out.extend(leaves(item, f"{path}/{escaped}"))
        return out
    if isinstance(value, list):
        return [leaf for i, item in enumerate(value) for leaf in leaves(item, f"{path}/{i}")]
    return [(path or "/", value)]


def check_values(
    value: Any, passages: list[ScoredChunk], answerer: Any
) -> tuple[list[Citation], list[FieldSupport]]:
    """Cite each checkable scalar of `value` by the passages that support it; citations are
    numbered by first use, each quoting its passage's span that best supports its values."""
    claims = [(path, item, _claim(item)) for path, item in leaves(value) if item is not None]
    checkable = [(p, v, c) for p, v, c in claims if c and content_words(c)]
    evidence = Evidence(passages, answerer.embedder)
    (vectors,) = embed_all(answerer.embedder, [[c for _, _, c in checkable]])
    numbering: dict[int, int] = {}
    joint: dict[int, np.ndarray] = {}
    fields = []
    by_path = {}
    for (path, item, claim), vector in zip(checkable, vectors, strict=True):
        support = evidence.passage_support(claim, vector)
        best = int(np.argmax(support)) if len(support) else 0
        score = float(support[best]) if len(support) else 0.0
        cited = []
        if score >= answerer.support_threshold:
            n = numbering.setdefault(best + 1, len(numbering) + 1)
            cited.append(n)
            scores = evidence.unit_scores(claim, vector) + _verbatim(claim, evidence)
            joint[best + 1] = joint.get(best + 1, 0) + scores
        by_path[path] = FieldSupport(path, item, cited, score)
    for path, item, _ in claims:
        fields.append(by_path.get(path) or FieldSupport(path, item, [], 0.0, checked=False))
    citations = []
    for passage, n in numbering.items():
        unit = evidence.best_unit(joint[passage], passage - 1)
        chunk = passages[passage - 1].chunk
        span = evidence.units[unit].span if unit is not None else Span(0, len(chunk.text))
        citations.append(citation_for(n, passage, passages[passage - 1], span))
    return citations, fields


def _verbatim(claim: str, evidence: Evidence) -> np.ndarray:
    """1 for each unit that contains the claim word for word: the quote should show the value."""
    needle = claim.lower()
    return np.array([needle in u.text.lower() for u in evidence.units], dtype=np.float32)


def _claim(item: Any) -> str:
    """The text a scalar claims: strings as they are, numbers as written; nothing for bools."""
    if isinstance(item, bool):
        return ""
    if isinstance(item, int | float):
        return json.dumps(item)
    return str(item)
