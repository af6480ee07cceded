"""The retrieval pipeline: query strategy -> first-stage retriever -> rerank -> MMR -> compress.

`build_pipeline` assembles it from names (the --strategy / --rerank / --mmr / --compress flags
and their hearth.toml keys); `run()` returns a Retrieval whose `generated` says, per stage, what
it generated or decided, so `--json` can show it. Hand-written: it is Hearth's own composition.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from hearth.errors import ConfigError
from hearth.rag.retrieval import Retrieval
from hearth.rag.retrievers import RETRIEVERS, Retriever, make_retriever
from hearth.types import ChatModel, Embedder, Filters, ScoredChunk

# How many first-stage passages a reranker or MMR looks at when k is smaller: enough for a
# relevant passage the first stage put 6th..20th to come up, few enough to stay fast.
RERANK_DEPTH = 20

STRATEGY_NAMES = ("standard", "multi-query", "hyde", "rag-fusion", "step-back", "decompose", "auto")
RERANK_NAMES = ("none", "late-interaction", "llm-pointwise", "llm-listwise")


class RetrievalPipeline:
    """A Retriever made of stages; `run` also reports what each stage generated."""

    def __init__(
        self,
        first: Any,
        *,
        name: str,
        reranker: Any = None,
        mmr_lambda: float | None = None,
        compress: bool = False,
        embedder: Embedder | None = None,
        depth: int = RERANK_DEPTH,
    ) -> None:
        if (mmr_lambda is not None or compress) and embedder is None:
            raise ValueError("MMR and compression need the index's embedder")
        self.first = first
        self.name = name
        self.reranker = reranker
        self.mmr_lambda = mmr_lambda
        self.compress = compress
        self.embedder = embedder
        self.depth = depth

    def retrieve(self, query: str, k: int = 5, filters: Filters | None = None) -> list[ScoredChunk]:
        return self.run(query, k, filters).hits

    def run(self, query: str, k: int = 5, filters: Filters | None = None) -> Retrieval:
        if not query.strip() or k <= 0:
            return Retrieval([])
        post = self.reranker is not None or self.mmr_lambda is not None
        depth = max(k, self.depth) if post else k
        started = time.perf_counter()
        if hasattr(self.first, "run"):
            result = self.first.run(query, depth, filters)
        else:
            result = Retrieval(self.first.retrieve(query, depth, filters))
        result.timings.setdefault("retrieve", time.perf_counter() - started)
        hits = result.hits
        if self.reranker is not None and hits:
            from hearth.rag.rerank import rerank_stage

            stage = rerank_stage(self.reranker, query, hits, depth)
            hits = stage.hits
            result.timings.update(stage.timings)
            if self.reranker.name != "late-interaction" or "error" in stage.generated["rerank"]:
                result.generated.update(stage.generated)  # what a model decided, or an error
        if self.mmr_lambda is not None and len(hits) > 1:
            from hearth.rag.mmr import diversify

            hits = _timed(
                result,
                "mmr",
                lambda: diversify(query, hits, self.embedder, k=k, lambda_=self.mmr_lambda),
            )
        hits = hits[:k]
        if self.compress and hits:
            from hearth.rag.compress import compress

            hits = _timed(result, "compress", lambda: compress(query, hits, self.embedder))
        result.hits = hits
        return result


def _timed(result: Retrieval, stage: str, work: Callable[[], list[ScoredChunk]]):
    started = time.perf_counter()
    out = work()
    result.timings[stage] = time.perf_counter() - started
    return out


def build_pipeline(
    store: Any,
    embedder: Embedder,
    *,
    retriever: str = "hybrid",
    strategy: str = "standard",
    rerank: str = "none",
    mmr: float | None = None,
    compress: bool = False,
    model: ChatModel | Callable[[], ChatModel] | None = None,
) -> RetrievalPipeline:
    """The pipeline named by the flags. `model` (or a function that loads it, called only when
    a stage needs one) serves the stages that call a model."""
    if retriever not in RETRIEVERS:
        raise ConfigError(
            f"unknown retriever {retriever!r}: choose one of {', '.join(sorted(RETRIEVERS))}"
        )
    if strategy not in STRATEGY_NAMES:
        raise ConfigError(
            f"unknown strategy {strategy!r}: choose one of {', '.join(STRATEGY_NAMES)} "
            "(--strategy or strategy in hearth.toml)"
        )
    if rerank not in RERANK_NAMES:
        raise ConfigError(
            f"unknown reranker {rerank!r}: choose one of {', '.join(RERANK_NAMES)} "
            "(--rerank or rerank in hearth.toml)"
        )
    loaded: list[ChatModel] = []

    def chat_model() -> ChatModel:
        if not loaded:
            if model is None:
                raise ConfigError(f"the {strategy!r} strategy needs a chat model")
            loaded.append(model() if callable(model) and not hasattr(model, "chat") else model)
        return loaded[0]

    base: Retriever = make_retriever(retriever, store, embedder)
    first: Any = base
    if strategy != "standard":
        from hearth.rag.strategies import make_strategy

        first = make_strategy(strategy, base, chat_model(), store=store, embedder=embedder)
    reranker = None
    if rerank != "none":
        from hearth.rag.rerank import make_reranker

        needs_model = rerank.startswith("llm-")
        reranker = make_reranker(
            rerank, embedder=embedder, model=chat_model() if needs_model else None
        )
    name = "+".join(
        [retriever if strategy == "standard" else strategy]
        + ([rerank] if rerank != "none" else [])
        + ([f"mmr{mmr:g}"] if mmr is not None else [])
        + (["compress"] if compress else [])
    )
    return RetrievalPipeline(
        first,
        name=name,
        reranker=reranker,
        mmr_lambda=mmr,
        compress=compress,
        embedder=embedder,
    )
