"""Zero-shot, few-shot and chain-of-thought prompting over any ChatModel, with the prompts as
Jinja templates (hearth.llm.techniques.prompt) and answers optionally held to a schema.

Hand-written: example selection is a cosine top-k in numpy (a dozen lines; a vector store
would be a floor above this one) and the two-turn chain of thought; embeddings come from the
caller's Embedder, constrained answers from hearth.generate.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hearth.llm.structured_output import generate
from hearth.llm.techniques.prompt import PromptTemplate
from hearth.types import ChatModel, Embedder, Message

TemplateLike = str | Path | PromptTemplate
ANSWER_TOKENS = 128  # the final answer of a chain of thought, after the reasoning
TIE_DECIMALS = 6  # similarities equal to this many decimals are a tie: the earlier example wins


@dataclass(frozen=True)
class Example:
    """One worked example: what the user asked and what the assistant answered."""

    input: str
    output: str

    @classmethod
    def of(cls, value: Example | tuple[str, str] | dict[str, str]) -> Example:
        """An Example from an Example, an (input, output) pair or {"input", "output"}."""
        if isinstance(value, Example):
            return value
        if isinstance(value, dict) and {"input", "output"} <= set(value):
            return cls(str(value["input"]), str(value["output"]))
        if isinstance(value, tuple | list) and len(value) == 2:
            return cls(str(value[0]), str(value[1]))
        raise ValueError(
            f"an example must be Example(input, output), an (input, output) pair or a dict "
            f"with 'input' and 'output', not {value!r}"
        )


@dataclass(frozen=True)
class Chosen:
    """An example picked for a question: its cosine similarity and its index in the bank."""

    example: Example
    score: float
    index: int


@dataclass
class Answer:
    """What a technique produced. `value` is the validated answer (a pydantic instance, a JSON
    value, a choice) when a schema was given, else the reply text; `text` is the reply as text.
    `messages` are the turns the model was given, before its chat template."""

    value: Any
    text: str
    messages: list[Message]
    reasoning: str = ""  # chain of thought: the model's free-text reasoning
    examples: list[Chosen] = field(default_factory=list)  # few-shot: the examples used


class ExampleBank:
    """Examples with their embeddings, computed once (on the first `select`), so many questions
    can draw on one bank. Any object with `embed(texts) -> (n, dim) array` will do as the
    embedder (hearth.index.embedder.load_embedder() gives the default one)."""

    def __init__(self, examples: Iterable[Any], embedder: Embedder) -> None:
        self.examples = [Example.of(e) for e in examples]
        if not self.examples:
            raise ValueError("an ExampleBank needs at least one example")
        self.embedder = embedder
        self._vectors: np.ndarray | None = None

    def vectors(self) -> np.ndarray:
        """The examples' inputs embedded and L2-normalised, one row each."""
        if self._vectors is None:
            self._vectors = _unit(self.embedder.embed([e.input for e in self.examples]))
        return self._vectors

    def select(self, question: str, k: int) -> list[Chosen]:
        """The `k` examples whose inputs are most similar to `question` (cosine similarity of
        their embeddings), least similar first and most similar last, next to the question.
        Ties go to the example given earlier."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        query = _unit(self.embedder.embed([question]))[0]
        scores = self.vectors() @ query
        rank = sorted(range(len(scores)), key=lambda i: (-round(float(scores[i]), TIE_DECIMALS), i))
        top = rank[:k]
        return [Chosen(self.examples[i], float(scores[i]), i) for i in reversed(top)]


def select_examples(
    question: str, examples: Iterable[Any], embedder: Embedder, k: int = 3
) -> list[Chosen]:
    """`ExampleBank(examples, embedder).select(question, k)`: for one question."""
    return ExampleBank(examples, embedder).select(question, k)


def zero_shot(
    model: ChatModel,
    question: str,
    *,
    schema: Any = None,
    system: str | None = None,
    template: TemplateLike = "zero_shot",
    **params: Any,
) -> Answer:
    """The model's answer to `question` with no examples. With `schema` (anything
    hearth.structured.compile takes) the answer is generated under it and validated."""
    messages = PromptTemplate.load(template).render(question=question, system=system)
    return _answer(model, messages, schema, params)


def few_shot(
    model: ChatModel,
    question: str,
    examples: ExampleBank | Iterable[Any],
    embedder: Embedder | None = None,
    k: int = 3,
    *,
    schema: Any = None,
    system: str | None = None,
    template: TemplateLike = "few_shot",
    **params: Any,
) -> Answer:
    """The model's answer to `question` after `k` worked examples, shown as earlier user and
    assistant turns. With an `embedder` (or an ExampleBank) the k examples most similar to
    the question are chosen, the most similar last; without one, the first k as given."""
    if isinstance(examples, ExampleBank):
        chosen = examples.select(question, k)
    elif embedder is not None:
        chosen = select_examples(question, examples, embedder, k)
    else:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        given = [Example.of(e) for e in examples][:k]
        chosen = [Chosen(e, float("nan"), i) for i, e in enumerate(given)]
    messages = PromptTemplate.load(template).render(
        question=question, examples=[c.example for c in chosen], system=system
    )
    answer = _answer(model, messages, schema, params)
    answer.examples = chosen
    return answer


def chain_of_thought(
    model: ChatModel,
    question: str,
    schema: Any,
    *,
    system: str | None = None,
    template: TemplateLike = "chain_of_thought",
    answer_template: TemplateLike = "final_answer",
    answer_tokens: int = ANSWER_TOKENS,
    **params: Any,
) -> Answer:
    """Reason, then answer: the model first thinks aloud in free text (`params` such as
    max_tokens, temperature and seed apply to this turn), then, with its reasoning in the
    conversation, gives the final answer under `schema` (greedy, at most `answer_tokens`).
    Returns the reasoning and the validated answer."""
    messages = PromptTemplate.load(template).render(question=question, system=system)
    reasoning = model.chat(messages, **params).text.strip()
    follow = [
        *messages,
        Message("assistant", reasoning),
        *PromptTemplate.load(answer_template).render(question=question),
    ]
    answer = _answer(model, follow, schema, {"max_tokens": answer_tokens, "temperature": 0.0})
    answer.reasoning = reasoning
    return answer


def _answer(model: ChatModel, messages: list[Message], schema: Any, params: dict) -> Answer:
    if schema is None:
        text = model.chat(messages, **params).text.strip()
        return Answer(text, text, messages)
    value = generate(model, messages, schema, **params)
    return Answer(value, as_text(value), messages)


def as_text(value: Any) -> str:
    """A validated answer as text: a string as it is, a pydantic instance or JSON value as
    JSON."""
    if isinstance(value, str):
        return value
    if hasattr(value, "model_dump_json"):
        return value.model_dump_json()
    return json.dumps(value, ensure_ascii=False)


def _unit(vectors: Any) -> np.ndarray:
    """Rows scaled to length 1 (embedders should already give these; cosine needs them)."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"an embedder must return an (n, dim) array, got shape {array.shape}")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return array / np.where(norms == 0, 1.0, norms)


__all__: Sequence[str] = [
    "Answer",
    "Chosen",
    "Example",
    "ExampleBank",
    "as_text",
    "chain_of_thought",
    "few_shot",
    "select_examples",
    "zero_shot",
]
