"""The grounded prompt: numbering, labels, and trimming to the real model's context window."""

from __future__ import annotations

import re

import pytest

from hearth.errors import ContextWindowError
from hearth.rag.prompt import INSTRUCTION, build_messages, fit_prompt, passage_label
from hearth.types import Chunk, Message, ScoredChunk

FACTS = [
    "Lighthouse keepers trimmed the lamp wicks every evening so the light burned clean all night.",
    "Beekeepers harvest honey from the hives in late summer, leaving enough for the winter.",
    "Glaciers carve deep valleys over thousands of years as the ice grinds the rock below.",
    "Violinists tune their strings before every concert because the wood reacts to humidity.",
    "Cartographers drew coastlines from the logs of ship captains and from their own surveys.",
]


def hit(i: int, text: str, *, page: int | None = None, headings=("Notes",)) -> ScoredChunk:
    chunk = Chunk(
        text=text,
        start=10 * i,
        end=10 * i + len(text),
        headings=list(headings),
        page=page,
        id=i + 1,
        source=f"/corpus/doc{i}.md",
    )
    return ScoredChunk(chunk, score=1.0 / (i + 1))


def long_hits(repeat: int = 4) -> list[ScoredChunk]:
    return [hit(i, " ".join([fact] * repeat)) for i, fact in enumerate(FACTS)]


def test_passages_are_numbered_in_rank_order_with_source_heading_and_page():
    hits = [hit(0, FACTS[0], page=3, headings=("Coast", "Lights")), hit(1, FACTS[1])]
    messages = build_messages("Who trims lamp wicks?", hits)
    assert [m.role for m in messages] == ["system", "user"]
    system = messages[0].content
    assert system.startswith(INSTRUCTION)
    assert "[1] (doc0.md > Coast > Lights, page 3)\n" + FACTS[0] in system
    assert "[2] (doc1.md > Notes)\n" + FACTS[1] in system
    assert system.index(INSTRUCTION) < system.index("[1]") < system.index("[2]")
    assert messages[1].content == "Who trims lamp wicks?"
    assert passage_label(hits[1]) == "doc1.md > Notes"


def test_history_goes_between_system_and_question():
    history = [Message("user", "What about bees?"), Message("assistant", "They make honey [2].")]
    messages = build_messages("And in winter?", [hit(0, FACTS[1])], history)
    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]
    # Old markers numbered other passages: they are left out.
    assert messages[1:3] == [history[0], Message("assistant", "They make honey.")]
    assert messages[-1].content == "And in winter?"


def test_everything_fits_in_a_large_context(chat_model):
    hits = long_hits(1)
    prompt = fit_prompt("Who harvests honey?", hits, chat_model, max_tokens=256)
    assert prompt.passages == hits
    assert prompt.dropped_passages == 0
    assert prompt.prompt_tokens == chat_model.count_tokens(prompt.messages)


def test_a_tight_context_drops_the_lowest_ranked_passages_first(chat_model):
    hits = long_hits()
    question = "Who harvests honey?"
    full = chat_model.count_tokens(build_messages(question, hits))
    two = chat_model.count_tokens(build_messages(question, hits[:2]))
    three = chat_model.count_tokens(build_messages(question, hits[:3]))
    assert two < three < full
    # Leave room for exactly the top three passages (a budget between their sizes).
    max_tokens = chat_model.context_size - (three + 1)
    prompt = fit_prompt(question, hits, chat_model, max_tokens=max_tokens)
    assert prompt.passages == hits[:3]  # the top-ranked ones, in order
    assert prompt.dropped_passages == 2
    assert prompt.prompt_tokens <= chat_model.context_size - max_tokens
    numbers = re.findall(r"^\[(\d+)\]", prompt.messages[0].content, re.M)
    assert numbers == ["1", "2", "3"]


def test_history_is_dropped_before_passages(chat_model):
    hits = long_hits(1)
    history = [Message("user", "Tell me about the sea. " * 20), Message("assistant", "Sure. " * 20)]
    question = "Who drew coastlines?"
    without = chat_model.count_tokens(build_messages(question, hits))
    prompt = fit_prompt(
        question, hits, chat_model, max_tokens=chat_model.context_size - without, history=history
    )
    assert prompt.dropped_history == 2
    assert prompt.dropped_passages == 0


def test_a_question_that_cannot_fit_is_a_clear_error(chat_model):
    question = "Why? " * 400
    with pytest.raises(ContextWindowError, match="question alone takes"):
        fit_prompt(question, long_hits(), chat_model, max_tokens=chat_model.context_size - 300)


def test_a_top_passage_that_cannot_fit_is_a_clear_error(chat_model):
    huge = [hit(0, FACTS[0] * 40), *long_hits(1)[1:]]
    alone = chat_model.count_tokens(build_messages("Who?", []))
    with pytest.raises(ContextWindowError, match="best passage does not fit"):
        fit_prompt("Who?", huge, chat_model, max_tokens=chat_model.context_size - alone - 20)


def test_max_tokens_filling_the_context_is_an_error(chat_model):
    with pytest.raises(ContextWindowError, match="max_tokens"):
        fit_prompt("Who?", long_hits(1), chat_model, max_tokens=chat_model.context_size)
