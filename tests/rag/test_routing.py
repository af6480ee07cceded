"""Query routing: the fast (embedding prototypes + features) router on clear cases, index choice
by description, and the model router on the real SmolLM2 with its fallback."""

from __future__ import annotations

import json

import pytest

from hearth.errors import BackendError
from hearth.rag.routing import LABELS, NO_RETRIEVAL, PROTOTYPES, Route, Router

INDEXES = {
    "guide": "Hearth software manual: installation, storage, chat models, configuration",
    "travel": "Travel notes: night trains, cities, monuments and sights",
}


@pytest.fixture(scope="module")
def router(embedder):
    r = Router(embedder, indexes=INDEXES)
    r.warm_up()
    return r


@pytest.mark.parametrize(
    "message",
    [
        "hi",
        "Hello! How are you today?",
        "thanks a lot",
        "what is 12 * 7?",
        "write a poem about autumn",
    ],
)
def test_small_talk_needs_no_retrieval(router, message):
    route = router.route(message)
    assert route.retrieve is False
    assert route.strategy == NO_RETRIEVAL
    assert route.index is None
    assert route.scores["strategy"][NO_RETRIEVAL] == max(route.scores["strategy"].values())


@pytest.mark.parametrize(
    "question",
    [
        "Compare the night train and the Eiffel Tower",
        "What is the difference between BM25 and dense retrieval?",
        "How do I install Hearth and which Python version does it need?",
    ],
)
def test_multi_part_questions_are_decomposed(router, question):
    route = router.route(question)
    assert (route.retrieve, route.strategy) == (True, "decompose")


@pytest.mark.parametrize(
    ("question", "index"),
    [
        ("Where does Hearth keep its index?", "guide"),
        ("What is the default chat model?", "guide"),
        ("sqlite WAL mode", "guide"),
        ("How tall is the Eiffel Tower?", "travel"),
        ("good morning, when does the night train to Rome leave?", "travel"),
    ],
)
def test_document_questions_are_searched_in_their_index(router, question, index):
    route = router.route(question)
    assert (route.retrieve, route.strategy) == (True, "standard")
    assert route.index == index
    assert route.scores["index"][index] == max(route.scores["index"].values())
    assert isinstance(route, Route)
    json.dumps(route.as_dict())  # --json prints it


def test_vague_questions_get_a_model_strategy(router):
    assert router.route("Why is my search so slow?").strategy == "step-back"
    assert router.route("What is the idea behind local-first software?").strategy == "hyde"


def test_routes_are_limited_to_the_strategies_given(embedder):
    router = Router(embedder, strategies=["standard"])
    assert router.labels == [NO_RETRIEVAL, "standard"]
    route = router.route("Compare the night train and the Eiffel Tower")
    assert (route.retrieve, route.strategy, route.index) == (True, "standard", None)
    assert router.route("thanks!").retrieve is False
    assert router.route("   ").retrieve is False


def test_prototypes_cover_every_label():
    assert set(PROTOTYPES) == set(LABELS)
    assert all(len(examples) >= 5 for examples in PROTOTYPES.values())
    with pytest.raises(ValueError, match="unknown route labels"):
        Router(None, prototypes={"teleport": ("beam me up",)})


class FailingModel:
    name, context_size = "failing", 2048
    can_stream = supports_tools = supports_json_schema = False

    def chat(self, messages, **params):
        raise BackendError("the server is down", status=503)


def test_model_router_falls_back_to_the_fast_router(embedder):
    route = Router(embedder, FailingModel()).route("hello!")
    assert route.retrieve is False
    assert route.reason.startswith("model router failed (BackendError")


def test_model_router_on_the_real_model(embedder, chat_model):
    router = Router(embedder, chat_model, indexes=INDEXES)
    route = router.route("How tall is the Eiffel Tower?")
    assert route.strategy in router.labels
    assert route.reason == f"model router chose {route.strategy!r}"
    assert route.retrieve is (route.strategy != NO_RETRIEVAL)
    if route.retrieve:
        assert route.index == "travel"  # the index is chosen by embedding, whatever the model
