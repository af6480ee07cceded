"""Query strategies: retriever stages that rewrite the question with the chat model before searching
(multi-query, HyDE, RAG-fusion, step-back, decomposition) and fuse what each rewrite finds.

Hand-written: no library runs these stages offline on Hearth's ChatModel / Store interfaces, and
each is a prompt, a small JSON schema (through hearth.generate, so parsing never fails) and a
fusion rule. Every stage is a Retriever (`retrieve`) and says what it generated (`run`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from hearth import generate  # the facade: hearth.llm loads on the first call
from hearth.errors import ConfigError
from hearth.rag.retrieval import Retrieval
from hearth.rag.retrievers import (  # rrf_fuse: re-exported, strategies fuse with it
    Retriever,
    _add_copies,
    passage_key,
    rrf_fuse,
    unique_top,
)
from hearth.rag.routing import Route, Router
from hearth.types import ChatModel, Embedder, Filters, ScoredChunk

log = logging.getLogger(__name__)

RRF_K = 60
CANDIDATES = 10  # hits each searched query contributes to the fusion (as HybridRetriever)
MAX_TOKENS = 128
RETRIES = 1  # one corrected try: a search should not wait on a model that keeps failing
MAX_QUESTION_CHARS = 2000  # the question as shown to the model (a pasted page is cut)
COMMON_KNOBS = {"candidates", "rrf_k", "max_tokens", "retries"}  # every model strategy takes


class Strategy(Protocol):
    """A retriever stage that may call the model: `run` says what it generated."""

    name: str

    def run(self, query: str, k: int = 5, filters: Filters | None = None) -> Retrieval: ...

    def retrieve(
        self, query: str, k: int = 5, filters: Filters | None = None
    ) -> list[ScoredChunk]: ...


# ---- fusion --------------------------------------------------------------------------------


def interleave(lists: Sequence[Sequence[ScoredChunk]], rrf_k: int = RRF_K) -> list[ScoredChunk]:
    """Round-robin over ranked hit lists: every list's first passage, then every list's second,
    ... skipping passages already taken (their chunks join the taken hit's `duplicates`).
    `score` is 1 / (rrf_k + rank in the list that placed it), so it never rises down the list."""
    return [hit for _, hit in _interleave(lists, rrf_k)]


def _interleave(
    lists: Sequence[Sequence[ScoredChunk]], rrf_k: int
) -> list[tuple[int, ScoredChunk]]:
    """`interleave`, each hit with the index of the list that placed it."""
    taken: dict[str, tuple[int, ScoredChunk]] = {}
    for rank in range(max((len(h) for h in lists), default=0)):
        for origin, hits in enumerate(lists):
            if rank >= len(hits):
                continue
            hit = hits[rank]
            key = passage_key(hit.chunk.text)
            if key in taken:
                _add_copies(taken[key][1], [hit.chunk, *hit.duplicates])
                continue
            score = 1.0 / (rrf_k + rank + 1)
            taken[key] = (
                origin,
                replace(
                    hit,
                    score=score,
                    scores={**{n: s for n, s in hit.scores.items() if n != "rrf"}, "rrf": score},
                    duplicates=list(hit.duplicates),
                ),
            )
    return list(taken.values())


# ---- the stages ----------------------------------------------------------------------------


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.lower().split()).rstrip("?.! ") == " ".join(b.lower().split()).rstrip("?.! ")


def _clean(texts: Any, limit: int) -> list[str]:
    """Distinct, stripped, non-empty strings, at most `limit`."""
    out: list[str] = []
    for text in texts if isinstance(texts, list) else []:
        text = " ".join(str(text).split())
        if text and not any(_same_text(text, seen) for seen in out):
            out.append(text)
    return out[:limit]


def _queries_schema(key: str, n: int, max_chars: int = 160) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            key: {
                "type": "array",
                "items": {"type": "string", "minLength": 3, "maxLength": max_chars},
                "minItems": 1,
                "maxItems": n,
            }
        },
        "required": [key],
        "additionalProperties": False,
    }


class StandardStrategy:
    """The base retriever as it is: no model call, nothing generated."""

    name = "standard"

    def __init__(
        self,
        base: Retriever,
        model: ChatModel | str | None = None,
        *,
        store: Any = None,
        embedder: Embedder | None = None,
    ):
        self.base = base

    def run(self, query: str, k: int = 5, filters: Filters | None = None) -> Retrieval:
        start = time.perf_counter()
        hits = self.base.retrieve(query, k, filters)
        return Retrieval(hits, generated={}, timings={self.name: time.perf_counter() - start})

    def retrieve(self, query: str, k: int = 5, filters: Filters | None = None) -> list[ScoredChunk]:
        return self.run(query, k, filters).hits


class _ModelStrategy:
    """What the model-calling stages share: one structured model call, searches, a fusion."""

    name = ""

    def __init__(
        self,
        base: Retriever,
        model: ChatModel | str,
        *,
        store: Any = None,
        embedder: Embedder | None = None,
        candidates: int = CANDIDATES,
        rrf_k: int = RRF_K,
        max_tokens: int = MAX_TOKENS,
        retries: int = RETRIES,
    ):
        if model is None:
            raise ConfigError(
                f"the {self.name!r} strategy needs a chat model (--model or HEARTH_MODEL); "
                "--strategy standard needs none"
            )
        if candidates < 1:
            raise ValueError(f"candidates must be >= 1, not {candidates}")
        self.base = base
        self.model = model
        self.store = store
        self.embedder = embedder
        self.candidates = candidates
        self.rrf_k = rrf_k
        self.max_tokens = max_tokens
        self.retries = retries

    def depth(self, k: int) -> int:
        """How many hits each searched query contributes."""
        return max(k, self.candidates)

    def _ask(self, prompt: str, schema: dict[str, Any]) -> tuple[Any, str | None]:
        """(the parsed answer, None), or (None, what went wrong): a model that fails or keeps
        breaking the schema never fails the search."""
        try:
            value = generate(
                self.model,
                prompt,
                schema,
                retries=self.retries,
                max_tokens=self.max_tokens,
                temperature=0.0,
            )
        except Exception as exc:  # noqa: BLE001 - any model failure means "search the question"
            log.warning("%s: no usable model output (%s); searching the question", self.name, exc)
            return None, f"{type(exc).__name__}: {exc}"
        return value, None

    def run(self, query: str, k: int = 5, filters: Filters | None = None) -> Retrieval:
        if not query.strip() or k <= 0:
            return Retrieval([], generated={self.name: {}}, timings={self.name: 0.0})
        start = time.perf_counter()
        generated: dict[str, Any] = {}
        hits = self._run(query, k, filters, generated)
        total = time.perf_counter() - start
        timings = {self.name: total}
        if "model_seconds" in generated:
            timings[f"{self.name}.model"] = generated.pop("model_seconds")
        return Retrieval(hits[:k], generated={self.name: generated}, timings=timings)

    def retrieve(self, query: str, k: int = 5, filters: Filters | None = None) -> list[ScoredChunk]:
        return self.run(query, k, filters).hits

    def _generate(self, question: str, generated: dict[str, Any]) -> Any:
        """The model's answer to this stage's prompt about `question`; records time and errors."""
        start = time.perf_counter()
        prompt = self.prompt.format(question=question[:MAX_QUESTION_CHARS], n=getattr(self, "n", 1))
        value, error = self._ask(prompt, self.schema())
        generated["model_seconds"] = time.perf_counter() - start
        if error is not None:
            generated["error"] = error
        return value

    # subclasses set these
    prompt = ""

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def _run(
        self, query: str, k: int, filters: Filters | None, generated: dict[str, Any]
    ) -> list[ScoredChunk]:
        raise NotImplementedError

    def _search_all(
        self, queries: list[str], k: int, filters: Filters | None
    ) -> list[list[ScoredChunk]]:
        depth = self.depth(k)
        return [self.base.retrieve(q, depth, filters) for q in queries]


class _QueriesStrategy(_ModelStrategy):
    """The model writes up to `n` search queries; the question and each query are searched with
    the base retriever and fused by RRF, the question's list weighted `original_weight`."""

    key = "queries"
    default_n = 3
    original_weight = 1.0

    def __init__(
        self,
        base: Retriever,
        model: ChatModel | str,
        *,
        n: int | None = None,
        original_weight: float | None = None,
        **knobs: Any,
    ):
        super().__init__(base, model, **knobs)
        self.n = self.default_n if n is None else n
        if not 1 <= self.n <= 8:
            raise ValueError(f"n must be between 1 and 8, not {self.n}")
        if original_weight is not None:
            self.original_weight = original_weight

    def schema(self) -> dict[str, Any]:
        return _queries_schema(self.key, self.n)

    def _run(
        self, query: str, k: int, filters: Filters | None, generated: dict[str, Any]
    ) -> list[ScoredChunk]:
        value = self._generate(query, generated)
        written = _clean(value.get(self.key) if isinstance(value, dict) else None, self.n)
        generated[self.key] = written
        extra = [q for q in written if not _same_text(q, query)]  # the question is searched anyway
        lists = self._search_all([query, *extra], k, filters)
        weights = [self.original_weight] + [1.0] * len(extra)
        return rrf_fuse(lists, self.rrf_k, weights)


class MultiQueryStrategy(_QueriesStrategy):
    """Multi-query: the model writes `n` paraphrases (default 3); the question and each
    paraphrase are searched and fused by RRF with equal weights. Wording the documents use but
    the asker did not gets a chance to match. generated: {"queries": [...]}"""

    name = "multi-query"
    default_n = 3
    prompt = (
        "Rewrite this search question in {n} different ways, with other words and synonyms, "
        "keeping its meaning. Each rewrite must be a complete question.\n\nQuestion: {question}"
    )


class RagFusionStrategy(_QueriesStrategy):
    """RAG-fusion: the model writes `n` related search queries (default 4) that cover different
    aspects of the question; all are searched and fused by RRF, the question's own list weighted
    `original_weight` (default 2) so the aspects widen the results without outvoting it.
    generated: {"queries": [...]}"""

    name = "rag-fusion"
    default_n = 4
    original_weight = 2.0
    prompt = (
        "Write {n} short search-engine queries that together cover the different aspects of "
        "this question: each query looks for one piece of information the answer needs.\n\n"
        "Question: {question}"
    )


class StepBackStrategy(_ModelStrategy):
    """Step-back: the model writes a more general question behind the asked one (the principle,
    the concept, the component involved); both are searched and fused by RRF, the question's own
    list weighted `original_weight` (default 1). generated: {"question": "..."}"""

    name = "step-back"
    original_weight = 1.0
    prompt = (
        "Write a step-back question for this question: a more general question about the "
        "concept, topic or component behind it, whose answer gives useful background.\n\n"
        "Question: {question}"
    )

    def __init__(
        self,
        base: Retriever,
        model: ChatModel | str,
        *,
        original_weight: float | None = None,
        **knobs: Any,
    ):
        super().__init__(base, model, **knobs)
        if original_weight is not None:
            self.original_weight = original_weight

    def schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {"question": {"type": "string", "minLength": 3, "maxLength": 200}},
            "required": ["question"],
            "additionalProperties": False,
        }

    def _run(
        self, query: str, k: int, filters: Filters | None, generated: dict[str, Any]
    ) -> list[ScoredChunk]:
        value = self._generate(query, generated)
        written = _clean([value.get("question")] if isinstance(value, dict) else None, 1)
        generated["question"] = written[0] if written else None
        queries = [query] + [q for q in written if not _same_text(q, query)]
        weights = [self.original_weight] + [1.0] * (len(queries) - 1)
        return rrf_fuse(self._search_all(queries, k, filters), self.rrf_k, weights)


class DecomposeStrategy(_ModelStrategy):
    """Decomposition: the model splits a multi-part question into 1 to `n` sub-questions (default
    4); each is searched and the lists are interleaved round-robin, so every part of the question
    gets passages in the top k (RRF would let the best-covered part take every slot). A question
    the model does not split (one sub-question or none) is searched as asked.

    generated: {"sub_questions": [{"question": "...", "chunk_ids": [ids of the returned hits this
    sub-question placed], "found": [ids of the returned hits its search found, in its rank
    order]}, ...]}; "written": the model's list when it did not split the question."""

    name = "decompose"
    prompt = (
        "Split this question into the separate sub-questions it asks, at most {n}. Each "
        "sub-question must make sense on its own (repeat the subject instead of 'it'). A "
        "question that asks one thing is one sub-question.\n\nQuestion: {question}"
    )

    def __init__(self, base: Retriever, model: ChatModel | str, *, n: int = 4, **knobs: Any):
        super().__init__(base, model, **knobs)
        if not 1 <= n <= 8:
            raise ValueError(f"n must be between 1 and 8, not {n}")
        self.n = n

    def schema(self) -> dict[str, Any]:
        return _queries_schema("sub_questions", self.n, max_chars=200)

    def _run(
        self, query: str, k: int, filters: Filters | None, generated: dict[str, Any]
    ) -> list[ScoredChunk]:
        value = self._generate(query, generated)
        subs = _clean(value.get("sub_questions") if isinstance(value, dict) else None, self.n)
        searched = subs if len(subs) >= 2 else [query]
        lists = self._search_all(searched, k, filters)
        placed = _interleave(lists, self.rrf_k)[:k]
        kept = {passage_key(h.chunk.text): h.chunk.id for _, h in placed}
        generated["sub_questions"] = [
            {
                "question": q,
                "chunk_ids": [h.chunk.id for origin, h in placed if origin == i],
                "found": _dedup(
                    kept[passage_key(h.chunk.text)]
                    for h in found
                    if passage_key(h.chunk.text) in kept
                ),
            }
            for i, (q, found) in enumerate(zip(searched, lists, strict=True))
        ]
        if searched == [query]:
            generated["written"] = subs  # what the model wrote, when it did not split
        return [h for _, h in placed]


def _dedup(ids: Any) -> list[Any]:
    return list(dict.fromkeys(ids))


class HydeStrategy(_ModelStrategy):
    """HyDE (hypothetical document embeddings): the model writes a short passage that answers
    the question as the documents might; its embedding searches the store densely
    (`store.search_dense`), since a made-up answer is worded like the passages that hold the
    real one, more than the question is.

    The HyDE list is fused by RRF with the base retriever's hits for the question itself
    (weights `hyde_weight`, default 1, and 1): the hypothetical passage invents specifics (names,
    numbers, error codes) and drops the asker's exact terms, so a pure HyDE search loses the
    keyword matches BM25 finds for the real question; fused, both survive. A model failure
    leaves the base hits alone. generated: {"passage": "..."}"""

    name = "hyde"
    prompt = (
        "Write a short passage, two or three sentences, that answers this question as a "
        "documentation page or reference text would. If unsure, write a plausible answer.\n\n"
        "Question: {question}"
    )

    def __init__(
        self,
        base: Retriever,
        model: ChatModel | str,
        *,
        store: Any = None,
        embedder: Embedder | None = None,
        hyde_weight: float = 1.0,
        max_tokens: int = 160,
        **knobs: Any,
    ):
        if store is None or embedder is None:
            raise ConfigError(
                "the 'hyde' strategy searches the index by vector: it needs the store and the "
                "embedder (pass store= and embedder=)"
            )
        knobs.update(store=store, embedder=embedder, max_tokens=max_tokens)
        super().__init__(base, model, **knobs)
        self.hyde_weight = hyde_weight
        self._checked = False

    def schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {"passage": {"type": "string", "minLength": 10, "maxLength": 500}},
            "required": ["passage"],
            "additionalProperties": False,
        }

    def _run(
        self, query: str, k: int, filters: Filters | None, generated: dict[str, Any]
    ) -> list[ScoredChunk]:
        value = self._generate(query, generated)
        passage = " ".join(str(value.get("passage", "")).split()) if isinstance(value, dict) else ""
        generated["passage"] = passage or None
        depth = self.depth(k)
        base_hits = self.base.retrieve(query, depth, filters)
        if not passage:
            return rrf_fuse([base_hits], self.rrf_k)
        if not self._checked:  # an index built with another embedder cannot be searched
            self.store.check_embedder(self.embedder.name, self.embedder.dim, record=False)
            self._checked = True
        vector = np.asarray(self.embedder.embed([passage]), dtype=np.float32)[0]
        hyde_hits = unique_top(lambda n: self.store.search_dense(vector, n, filters), depth)
        hyde_hits = [replace(h, scores={"hyde": h.score}) for h in hyde_hits]
        return rrf_fuse([hyde_hits, base_hits], self.rrf_k, [self.hyde_weight, 1.0])


# ---- routing -------------------------------------------------------------------------------


class RoutedStrategy:
    """The "auto" strategy: a Router classifies the question (no retrieval, which strategy,
    which index), then the chosen strategy runs. generated["route"] is the decision
    (Route.as_dict()); a question that needs no retrieval gets no hits, and
    generated["route"]["retrieve"] is false. A route to a strategy that cannot run here (no
    model, no store) runs "standard", said in generated["route"]["ran"].

    `index_targets` maps index names to (retriever, store) pairs: when the router picks one of
    them, its retriever (and store, for HyDE) are searched instead of `base` / `store`. Routed
    strategies are limited to those that can run here (HyDE needs a store and an embedder).
    `knobs` (candidates=, rrf_k=, max_tokens=, retries=) go to every model strategy, `options`
    maps a strategy name to its own settings (e.g. {"multi-query": {"n": 2}})."""

    name = "auto"

    def __init__(
        self,
        base: Retriever,
        model: ChatModel | str | None,
        *,
        store: Any = None,
        embedder: Embedder | None = None,
        router: Router | None = None,
        indexes: Mapping[str, str] | None = None,
        index_targets: Mapping[str, tuple[Retriever, Any]] | None = None,
        use_model_router: bool = False,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        **knobs: Any,
    ):
        unknown = set(knobs) - COMMON_KNOBS
        if unknown:
            raise TypeError(
                f"the 'auto' strategy passes only {sorted(COMMON_KNOBS)} to every strategy, not "
                f"{sorted(unknown)}: give per-strategy settings as options={{name: {{...}}}}"
            )
        allowed = ["standard"]
        if model is not None:
            allowed += ["multi-query", "rag-fusion", "step-back", "decompose"]
            if store is not None and embedder is not None:
                allowed.append("hyde")
        if router is None:
            if embedder is None:
                raise ConfigError("the 'auto' strategy routes by embedding: pass embedder=")
            chooser = model if use_model_router else None
            router = Router(embedder, chooser, indexes=indexes, strategies=allowed)
        self.router = router
        self.allowed = allowed
        self.base = base
        self.model = model
        self.store = store
        self.embedder = embedder
        self.index_targets = dict(index_targets or {})
        self.knobs = knobs
        self.options = {name: dict(opts) for name, opts in (options or {}).items()}
        self._built: dict[tuple[str, str | None], Strategy] = {}

    def strategy_for(self, route: Route) -> Strategy:
        """The strategy that runs a route (built once per strategy and index)."""
        index = route.index if route.index in self.index_targets else None
        base, store = self.index_targets[index] if index is not None else (self.base, self.store)
        name = route.strategy if route.strategy in self.allowed else "standard"
        if name == "hyde" and store is None:  # an index target given without its store
            name = "standard"
        key = (name, index)
        if key not in self._built:
            self._built[key] = make_strategy(
                name,
                base,
                self.model,
                store=store,
                embedder=self.embedder,
                **{**self.knobs, **self.options.get(name, {})},
            )
        return self._built[key]

    def run(self, query: str, k: int = 5, filters: Filters | None = None) -> Retrieval:
        start = time.perf_counter()
        route = self.router.route(query)
        routed = time.perf_counter() - start
        if not route.retrieve:
            return Retrieval([], generated={"route": route.as_dict()}, timings={"route": routed})
        strategy = self.strategy_for(route)
        result = strategy.run(query, k, filters)
        decision = route.as_dict()
        if strategy.name != route.strategy:  # the router chose one that cannot run here
            decision["ran"] = strategy.name
        return Retrieval(
            result.hits,
            generated={"route": decision, **result.generated},
            timings={"route": routed, **result.timings},
        )

    def retrieve(self, query: str, k: int = 5, filters: Filters | None = None) -> list[ScoredChunk]:
        return self.run(query, k, filters).hits


# ---- registry ------------------------------------------------------------------------------

StrategyFactory = Callable[..., Strategy]

STRATEGIES: dict[str, StrategyFactory] = {
    "standard": StandardStrategy,
    "multi-query": MultiQueryStrategy,
    "hyde": HydeStrategy,
    "rag-fusion": RagFusionStrategy,
    "step-back": StepBackStrategy,
    "decompose": DecomposeStrategy,
    "auto": RoutedStrategy,
}


def make_strategy(
    name: str,
    base: Retriever,
    model: ChatModel | str | None,
    *,
    store: Any = None,
    embedder: Embedder | None = None,
    **knobs: Any,
) -> Strategy:
    """A strategy by name, one of STRATEGIES, wrapping the retriever `base`. "standard" calls no
    model; the others call `model` (HyDE also needs `store` and `embedder`, "auto" `embedder`).
    `knobs` go to the strategy's constructor (n=, candidates=, max_tokens=, ...)."""
    factory = STRATEGIES.get(name)
    if factory is None:
        raise ConfigError(
            f"unknown strategy {name!r}: choose one of {', '.join(sorted(STRATEGIES))} "
            "(--strategy or HEARTH_STRATEGY)"
        )
    if name == "standard":
        return factory(base, model, store=store, embedder=embedder)
    return factory(base, model, store=store, embedder=embedder, **knobs)
