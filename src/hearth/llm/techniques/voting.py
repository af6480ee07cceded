"""Self-consistency: sample several answers to one question (distinct seeds, a temperature
above zero), normalise them, and let the majority decide; the agreement says how sure it is.

Hand-written: the vote is the product here (a Counter with a deterministic tie rule) and no
library offers it over Hearth's models; sampling and constrained answers are the model's and
hearth.generate's.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hearth.errors import StructuredOutputError
from hearth.llm.techniques.basic import TemplateLike, as_text, chain_of_thought, zero_shot
from hearth.types import ChatModel

STRIP = " \t\n.,;:!?\"'`"


def normalise(value: Any) -> str:
    """The key answers are counted by: text case-folded, whitespace collapsed, surrounding
    punctuation and quotes dropped; 4.0 and 4 alike; JSON with sorted keys; a pydantic
    instance as its fields."""
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    if isinstance(value, str):
        text = unicodedata.normalize("NFKC", value).casefold()
        return " ".join(text.split()).strip(STRIP)
    return json.dumps(_plain(value), sort_keys=True, ensure_ascii=False)


def _plain(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return int(value) if float(value).is_integer() else value
    if isinstance(value, str):
        return normalise(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


@dataclass(frozen=True)
class Sample:
    """One sampled answer: None (and `error` set) when no answer could be extracted."""

    seed: int | None
    value: Any
    key: str | None  # normalise(value): what was counted
    text: str = ""
    reasoning: str = ""
    error: str | None = None


@dataclass
class Vote:
    """The majority answer (the first sample that gave it, as that sample gave it), the count
    of each normalised answer (most votes first), the failed samples, and `agreement`: the
    winner's share of all samples. Votes and failures sum to the number of samples."""

    answer: Any
    votes: dict[str, int]
    agreement: float
    samples: list[Sample] = field(default_factory=list)
    failed: int = 0

    @property
    def n(self) -> int:
        return len(self.samples)


def majority_vote(samples: Sequence[Sample]) -> Vote:
    """Count the samples' keys; the most frequent wins, a tie goes to the answer that came
    first."""
    counts: dict[str, int] = {}
    first: dict[str, Sample] = {}
    for s in samples:
        if s.key is None:
            continue
        counts[s.key] = counts.get(s.key, 0) + 1
        first.setdefault(s.key, s)
    order = list(first)  # first appearance
    ranked = sorted(counts, key=lambda key: (-counts[key], order.index(key)))
    failed = sum(1 for s in samples if s.key is None)
    if not ranked:
        return Vote(None, {}, 0.0, list(samples), failed)
    winner = ranked[0]
    return Vote(
        first[winner].value,
        {key: counts[key] for key in ranked},
        counts[winner] / len(samples),
        list(samples),
        failed,
    )


def self_consistency(
    model: ChatModel,
    question: str,
    n: int = 5,
    schema: Any = None,
    *,
    extractor: Callable[[str], Any] | None = None,
    temperature: float = 0.7,
    seed: int = 0,
    reason: bool = False,
    key: Callable[[Any], str] = normalise,
    system: str | None = None,
    template: TemplateLike | None = None,
    **params: Any,
) -> Vote:
    """Ask `question` `n` times at `temperature` with seeds seed, seed+1, ... and vote.

    Each sample's answer is generated under `schema` (constrained on models that mask tokens,
    validated always), or read from the reply by `extractor` (text -> answer, None when
    there is none), or is the reply itself. With `reason=True` each sample is a chain of
    thought: the reasoning is sampled, the answer then extracted from it. Answers are
    counted by `key` (default `normalise`). A sample whose answer fails counts as failed,
    not as a vote."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if temperature <= 0:
        raise ValueError(
            "self-consistency needs temperature > 0: at 0 every sample is the same answer"
        )
    if reason and schema is None and extractor is None:
        raise ValueError("reason=True needs a schema or an extractor to read the final answer")
    samples = []
    for i in range(n):
        s = seed + i
        try:
            samples.append(
                _sample(model, question, s, schema, extractor, reason, key, system, template,
                        {**params, "temperature": temperature, "seed": s})
            )  # fmt: skip
        except StructuredOutputError as exc:
            samples.append(Sample(s, None, None, exc.output, error=str(exc)))
    return majority_vote(samples)


def _sample(model, question, seed, schema, extractor, reason, key, system, template, params):
    if reason:
        kw = {"template": template} if template is not None else {}
        if schema is not None:
            answer = chain_of_thought(model, question, schema, system=system, **kw, **params)
            return Sample(seed, answer.value, key(answer.value), answer.text, answer.reasoning)
        answer = zero_shot(model, question, system=system, template=template or
                           "chain_of_thought", **params)  # fmt: skip
        value = extractor(answer.text)
        return _checked(seed, value, key, answer.text, answer.text)
    kw = {"template": template} if template is not None else {}
    answer = zero_shot(model, question, schema=schema, system=system, **kw, **params)
    value = answer.value if schema is not None or extractor is None else extractor(answer.text)
    return _checked(seed, value, key, answer.text, "")


def _checked(seed, value, key, text, reasoning) -> Sample:
    if value is None:
        return Sample(seed, None, None, text, reasoning, "no answer found in the reply")
    return Sample(seed, value, key(value), text if text else as_text(value), reasoning)
