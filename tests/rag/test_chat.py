"""Chat sessions stored in a real SQLite index, and follow-up condensing with the real GGUF model.

The retrieval test embeds a small two-topic corpus with the real embedder: a follow-up that
names no topic must retrieve the document about the topic of the earlier turns.
"""

from __future__ import annotations

import pytest

from hearth.index.store import SQLiteStore
from hearth.rag.chat import (
    ChatSession,
    SessionNameError,
    condense,
    condense_question,
    deterministic_rewrite,
    has_anaphora,
    is_standalone,
    topic_terms,
    validate_rewrite,
)
from hearth.types import Message

SOLAR = """# Solar panels

Rooftop solar panels turn sunlight into electricity with photovoltaic cells. An inverter
converts the direct current from the panels into alternating current for the house.

## Price

A typical 5 kW rooftop solar installation costs between 7,000 and 12,000 euros before
subsidies. Panels are usually guaranteed for 25 years and pay for themselves in 8 to 12 years.
"""

ESPRESSO = """# Espresso machines

An espresso machine forces hot water through finely ground coffee at about 9 bars of pressure.
A steam wand froths milk for cappuccinos and lattes.

## Price

A good home espresso machine costs between 400 and 1,500 euros; grinders are sold separately.
Descale the boiler every two months to keep the machine working.
"""


def history(question: str, answer: str) -> list[Message]:
    return [Message("user", question), Message("assistant", answer)]


SOLAR_HISTORY = history(
    "How do rooftop solar panels produce electricity?",
    "Photovoltaic cells turn sunlight into direct current, which an inverter converts [1].",
)
ESPRESSO_HISTORY = history(
    "How does an espresso machine make coffee?",
    "It forces hot water through finely ground coffee at about 9 bars of pressure [1].",
)


# --------------------------------------------------------------------------- sessions


def test_session_turns_survive_reopening_the_store(tmp_path):
    db = tmp_path / "index.sqlite3"
    with SQLiteStore(db) as store:
        chat = ChatSession(store, "work")
        assert not chat.resumed and chat.messages == []
        chat.add("user", "How do solar panels work?")
        chat.add("assistant", "They turn sunlight into electricity [1].")
        ChatSession(store, "home").add("user", "What is an espresso machine?")

    with SQLiteStore(db) as store:
        resumed = ChatSession(store, "work")
        assert resumed.resumed
        assert resumed.messages == [
            Message("user", "How do solar panels work?"),
            Message("assistant", "They turn sunlight into electricity [1]."),
        ]
        assert ChatSession(store, "home").messages == [
            Message("user", "What is an espresso machine?")
        ]
        assert sorted(ChatSession.names(store)) == ["home", "work"]
        assert ChatSession(store, "never-used").messages == []


def test_resumed_session_keeps_appending_in_order(tmp_path):
    db = tmp_path / "index.sqlite3"
    with SQLiteStore(db) as store:
        ChatSession(store, "s").add("user", "first")
    with SQLiteStore(db) as store:
        chat = ChatSession(store, "s")
        chat.add("assistant", "second")
        chat.add("user", "third")
    with SQLiteStore(db) as store:
        assert [m.content for m in ChatSession(store, "s").messages] == [
            "first",
            "second",
            "third",
        ]
        assert [m.content for m in ChatSession(store, "s", max_history=2).history()] == [
            "second",
            "third",
        ]


@pytest.mark.parametrize("name", ["", "   ", "bad\nname", "x" * 201])
def test_bad_session_names_are_refused_with_a_reason(tmp_path, name):
    with SQLiteStore(tmp_path / "i.sqlite3") as store, pytest.raises(SessionNameError):
        ChatSession(store, name)


def test_unknown_role_is_refused(tmp_path):
    with SQLiteStore(tmp_path / "i.sqlite3") as store:
        chat = ChatSession(store, "s")
        with pytest.raises(Exception, match="role"):
            chat.add("robot", "hello")
        assert ChatSession(store, "s").messages == []


# --------------------------------------------------------------------------- condensing rules


@pytest.mark.parametrize(
    "text",
    [
        "and how much does it cost?",
        "What about the price?",
        "Is that expensive?",
        "How long do they last?",
        "why?",
    ],
)
def test_follow_ups_that_lean_on_the_conversation_are_detected(text):
    assert not is_standalone(text)


@pytest.mark.parametrize(
    "text",
    [
        "How much does an espresso machine cost?",
        "How do I find files that match a pattern?",
        "Is it possible to descale an espresso boiler with vinegar?",
        "What subsidies exist for rooftop solar installations?",
    ],
)
def test_questions_that_name_their_topic_are_standalone(text):
    assert is_standalone(text), has_anaphora(text)


def test_topic_terms_follow_a_chain_of_follow_ups_back_to_the_topic():
    chain = SOLAR_HISTORY + history("and how much does it cost?", "7,000 to 12,000 euros [2].")
    terms = [t.lower() for t in topic_terms(chain, "is it hard to install?")]
    assert "solar" in terms and "panels" in terms
    assert "espresso" not in terms


def test_deterministic_rewrite_carries_the_earlier_topic():
    query = deterministic_rewrite(SOLAR_HISTORY, "and how much does it cost?")
    assert query.startswith("how much does it cost?")
    assert "solar" in query and "panels" in query


COST = "and how much does it cost?"


@pytest.mark.parametrize(
    ("followup", "rewrite", "reason"),
    [
        (COST, "", "empty"),
        (COST, "I'm sorry, I cannot help with that.", "refusal"),
        (COST, "solar " * 80 + "?", "too long"),
        (COST, "Rooftop solar panels cost 7,000 euros.", "not a question"),
        (COST, "How do rooftop solar panels produce electricity?", "repeats an earlier question"),
        (COST, "What is the capital of France?", "lost the follow-up's own words"),
        ("why?", "Why is the sky blue?", "shares no content words"),
        (COST, "How much do solar panels cost in Paris, Berlin, Rome and Madrid?", "mostly words"),
    ],
)
def test_bad_model_rewrites_are_rejected(followup, rewrite, reason):
    problem = validate_rewrite(rewrite, SOLAR_HISTORY, followup)
    assert problem is not None and reason in problem, problem


def test_a_sensible_rewrite_is_accepted():
    assert (
        validate_rewrite(
            "How much do rooftop solar panels cost?", SOLAR_HISTORY, "and how much does it cost?"
        )
        is None
    )


def test_without_a_model_the_deterministic_rewrite_is_used():
    result = condense(SOLAR_HISTORY, "and how much does it cost?", None)
    assert result.method == "fallback"
    assert "solar" in result.query


# --------------------------------------------------------------------------- with the real model


@pytest.mark.slow
def test_first_and_standalone_questions_are_left_alone(chat_model):
    assert condense([], "and how much does it cost?", chat_model).method == "first"
    for question in (
        "How much does a home espresso machine cost?",
        "How do I find files that match a pattern?",
    ):
        assert condense_question(SOLAR_HISTORY, question, chat_model) == question


@pytest.mark.slow
@pytest.mark.parametrize(
    ("past", "topic"), [(SOLAR_HISTORY, "solar"), (ESPRESSO_HISTORY, "espresso")]
)
def test_model_condensed_follow_up_names_the_topic(chat_model, past, topic):
    result = condense(past, "and how much does it cost?", chat_model)
    assert result.method in {"llm", "llm+terms", "fallback"}
    assert topic in result.query.lower(), result
    other = "espresso" if topic == "solar" else "solar"
    assert other not in result.query.lower(), result


@pytest.fixture(scope="module")
def two_topic_index(tmp_path_factory, embedder):
    from hearth.index.indexer import Indexer
    from hearth.ingest.splitter import Splitter

    root = tmp_path_factory.mktemp("two_topics")
    docs = root / "docs"
    docs.mkdir()
    (docs / "solar.md").write_text(SOLAR)
    (docs / "espresso.md").write_text(ESPRESSO)
    store = SQLiteStore(root / "index.sqlite3")
    splitter = Splitter(embedder.count_tokens, chunk_tokens=64, overlap_tokens=8)
    report = Indexer(store, embedder, splitter).ingest([str(docs)], progress=False)
    assert report.documents == 2
    yield store
    store.close()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["hybrid", "dense", "bm25"])
def test_condensed_follow_up_retrieves_the_earlier_topic(
    two_topic_index, embedder, chat_model, kind
):
    from hearth.rag.retrievers import make_retriever

    retriever = make_retriever(kind, two_topic_index, embedder)
    followup = "and how much does it cost?"

    def top_source(query: str) -> str:
        hits = retriever.retrieve(query, k=1)
        return hits[0].chunk.source.rsplit("/", 1)[-1] if hits else ""

    # The bare follow-up is one query, so it can be right for at most one of the two topics.
    raw = top_source(followup)
    condensed = {
        name: condense_question(past, followup, chat_model)
        for name, past in (("solar.md", SOLAR_HISTORY), ("espresso.md", ESPRESSO_HISTORY))
    }
    got = {expected: top_source(query) for expected, query in condensed.items()}
    assert got == {"solar.md": "solar.md", "espresso.md": "espresso.md"}, (condensed, raw)


@pytest.mark.slow
@pytest.mark.parametrize("streaming", [False, True])
def test_session_ask_answers_a_follow_up_from_the_earlier_topic(
    two_topic_index, embedder, chat_model, streaming
):
    from hearth.rag.answer import Answerer
    from hearth.rag.retrievers import make_retriever

    answerer = Answerer(make_retriever("hybrid", two_topic_index, embedder), chat_model, embedder)
    chat = ChatSession(two_topic_index, f"coffee-{streaming}")

    def ask(question):
        if not streaming:
            return chat.ask(question, answerer, chat_model, k=1, extractive=True)
        events = list(chat.stream(question, answerer, chat_model, k=1, extractive=True))
        assert all(isinstance(e, str) for e in events[:-1])
        return events[-1]

    first = ask("How does an espresso machine make coffee?")
    assert first.condensed.method == "first"
    turn = ask("and how much does it cost?")
    assert "espresso" in turn.condensed.query.lower()
    assert turn.answer.passages[0].chunk.source.endswith("espresso.md")
    stored = ChatSession(two_topic_index, f"coffee-{streaming}").messages
    assert [m.role for m in stored] == ["user", "assistant", "user", "assistant"]
    assert stored[2].content == "and how much does it cost?"
    assert stored[3].content == turn.answer.text
