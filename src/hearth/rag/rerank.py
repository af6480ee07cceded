"""Reranking after fusion: reorder the first stage's hits with a finer, slower relevance judge.

Hand-written: no verifiable offline cross-encoder exists, so the embedded models judge instead.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from hearth.errors import ConfigError
from hearth.rag.retrieval import Retrieval
from hearth.rag.sentences import split_sentences
from hearth.types import ChatModel, Embedder, Message, ScoredChunk

# The k of reciprocal-rank fusion when a reranker's rank is fused with the first stage's.
RRF_K = 60


class Reranker(Protocol):
    """`rerank(query, hits, k)`: the best `k` of `hits` (all when k is None), best first, as new
    hits whose `scores["rerank"]` holds the reranker's score and whose `score` is it; the other
    scores are kept. A reranker never raises for a failed model call: it returns the first-stage
    order and says why in `last_error`."""

    name: str
    last_error: str | None

    def rerank(
        self, query: str, hits: list[ScoredChunk], k: int | None = None
    ) -> list[ScoredChunk]: ...


def reranked(
    hits: Sequence[ScoredChunk],
    scores: Sequence[float],
    k: int | None = None,
    *,
    blend: float = 0.0,
) -> list[ScoredChunk]:
    """`hits` sorted by `scores` (ties keep the first-stage order), cut to `k`, as new hits.

    `blend` > 0 fuses the two orders by reciprocal rank: score = (1 - blend) / (RRF_K + rerank
    rank) + blend / (RRF_K + first-stage rank); scores["rerank"] is then that fused value and
    scores["rerank_raw"] the reranker's own."""
    if len(scores) != len(hits):
        raise ValueError(f"{len(scores)} scores for {len(hits)} hits")
    order = sorted(range(len(hits)), key=lambda i: (-scores[i], i))
    final = [float(s) for s in scores]
    if blend > 0.0:
        rank_of = {i: r for r, i in enumerate(order, start=1)}
        final = [
            (1.0 - blend) / (RRF_K + rank_of[i]) + blend / (RRF_K + i + 1) for i in range(len(hits))
        ]
        order = sorted(range(len(hits)), key=lambda i: (-final[i], i))
    out = []
    for i in order[: len(hits) if k is None else max(k, 0)]:
        hit = hits[i]
        extra = {"rerank": final[i]}
        if blend > 0.0:
            extra["rerank_raw"] = float(scores[i])
        out.append(
            replace(
                hit,
                score=final[i],
                scores={**hit.scores, **extra},
                duplicates=list(hit.duplicates),
            )
        )
    return out


def first_stage(hits: Sequence[ScoredChunk], k: int | None = None) -> list[ScoredChunk]:
    """The hits in their first-stage order, cut to `k`, as new hits (what a failed reranker
    returns; scores["rerank"] is not set)."""
    chosen = hits if k is None else hits[: max(k, 0)]
    return [replace(h, scores=dict(h.scores), duplicates=list(h.duplicates)) for h in chosen]


class NoReranker:
    """The first stage's order, unchanged ("none")."""

    name = "none"
    last_error: str | None = None

    def rerank(
        self, query: str, hits: list[ScoredChunk], k: int | None = None
    ) -> list[ScoredChunk]:
        return first_stage(hits, k)


# -- late interaction over the embedder -------------------------------------------------------


def token_vectors(embedder: Embedder, texts: list[str]) -> list[np.ndarray] | None:
    """Per text, its L2-normalised token vectors (special tokens dropped), from the
    embedder's own transformer; None when the embedder does not expose its tokens.

    Reads the backends' loaded model (sentence-transformers `output_value="token_embeddings"`
    for "torch", the last hidden state of the ONNX graph for "onnx"/"onnx-int8"), which
    hearth.index keeps private: any failure there means None, never an exception."""
    if not texts:
        return []
    try:
        if hasattr(embedder, "warm_up"):
            embedder.warm_up()
        inner = getattr(embedder, "_delegate", None) or embedder
        if getattr(inner, "_st", None) is not None:
            vectors = _st_tokens(inner, texts)
        elif getattr(inner, "_session", None) is not None:
            vectors = _onnx_tokens(inner, texts)
        else:
            return None
    except Exception:  # noqa: BLE001 - a private interface changed: use sentence vectors
        return None
    return [_normalized(v) for v in vectors]


def _st_tokens(inner: Any, texts: list[str]) -> list[np.ndarray]:
    rows = inner._st.encode(
        texts,
        output_value="token_embeddings",
        batch_size=getattr(inner, "batch_size", 32),
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return [np.asarray(r, dtype=np.float32)[1:-1] for r in rows]  # [CLS] ... [SEP]


def _onnx_tokens(inner: Any, texts: list[str]) -> list[np.ndarray]:
    out = []
    for enc in inner.tokenizer.encode_for_model(texts):  # one text per run: no padding
        ids = np.asarray([enc.ids], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        if "token_type_ids" in inner._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = inner._session.run(None, feeds)[0][0]
        out.append(np.asarray(hidden, dtype=np.float32)[1:-1])
    return out


def _normalized(vectors: np.ndarray) -> np.ndarray:
    if vectors.size == 0:
        return vectors.reshape(0, -1)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def maxsim(query_tokens: np.ndarray, passage_tokens: np.ndarray) -> float:
    """ColBERT's late-interaction score: the mean over query tokens of their best cosine with
    any passage token."""
    if len(query_tokens) == 0 or len(passage_tokens) == 0:
        return 0.0
    return float((query_tokens @ passage_tokens.T).max(axis=1).mean())


def sentence_maxsim(embedder: Embedder, query_vector: np.ndarray, texts: list[str]) -> list[float]:
    """Per text, the best cosine between the query vector and one of its sentences (or the
    whole text when it has a single sentence)."""
    pieces: list[str] = []
    owner: list[int] = []
    for i, text in enumerate(texts):
        spans = split_sentences(text) or []
        sentences = [text[s.start : s.end] for s in spans] or [text]
        pieces.extend(sentences)
        owner.extend([i] * len(sentences))
    if not pieces:
        return [0.0] * len(texts)
    sims = np.asarray(embedder.embed(pieces), dtype=np.float32) @ query_vector
    best = [-1.0] * len(texts)
    for i, s in zip(owner, sims, strict=True):
        best[i] = max(best[i], float(s))
    return best


class LateInteractionReranker:
    """Reranks by late interaction over the embedder's own model.

    mode "tokens": MaxSim between query and passage token vectors (all-MiniLM-L6-v2 was not
    trained for it, but its token vectors still match words in context); mode "sentences": the
    best cosine between the query and one sentence of the passage; mode "auto": tokens when the
    embedder exposes them, else sentences. `blend` fuses the reranker's rank with the first
    stage's (see `reranked`): 0.5, plain RRF of the two ranks, was the one setting that beat
    hybrid on all three dev sets (benchmarks/bench_rerank.py; MRR@10 stdlib 0.782 -> 0.828,
    docs 0.796 -> 0.826, fieldguide 0.956 -> 0.965, tokens mode)."""

    name = "late-interaction"

    def __init__(self, embedder: Embedder, *, mode: str = "auto", blend: float = 0.5):
        if mode not in ("auto", "tokens", "sentences"):
            raise ConfigError(f"late-interaction mode must be auto, tokens or sentences: {mode!r}")
        if not 0.0 <= blend <= 1.0:
            raise ConfigError(f"late-interaction blend must be within 0..1, got {blend}")
        self.embedder = embedder
        self.mode = mode
        self.blend = blend
        self.last_error: str | None = None
        self.last_mode: str | None = None  # the mode the last call used

    def scores(self, query: str, texts: list[str]) -> list[float]:
        """The reranker's raw score of each text for `query`."""
        if self.mode in ("auto", "tokens"):
            vectors = token_vectors(self.embedder, [query, *texts])
            if vectors is not None:
                self.last_mode = "tokens"
                q, passages = vectors[0], vectors[1:]
                return [maxsim(q, p) for p in passages]
            if self.mode == "tokens":
                self.last_error = f"{self.embedder!r} exposes no token vectors: used sentences"
        self.last_mode = "sentences"
        query_vector = np.asarray(self.embedder.embed([query]), dtype=np.float32)[0]
        return sentence_maxsim(self.embedder, query_vector, texts)

    def rerank(
        self, query: str, hits: list[ScoredChunk], k: int | None = None
    ) -> list[ScoredChunk]:
        self.last_error = None
        if not hits:
            return []
        try:
            scores = self.scores(query, [h.chunk.text for h in hits])
        except Exception as exc:  # noqa: BLE001 - a reranker never breaks the search
            self.last_error = f"{type(exc).__name__}: {exc}"
            return first_stage(hits, k)
        return reranked(hits, scores, k, blend=self.blend)


# -- the instruction model --------------------------------------------------------------------

POINTWISE_SYSTEM = (
    "You judge search results. Given a question and a passage, say whether the passage "
    "contains information that answers the question."
)
POINTWISE_USER = (
    "Question: {query}\n\nPassage:\n{passage}\n\n"
    "Does the passage answer the question? Answer yes or no."
)
GRADE_USER = (
    "Question: {query}\n\nPassage:\n{passage}\n\n"
    "How well does the passage answer the question? 0 = not at all, 1 = related, "
    "2 = partly answers it, 3 = answers it. Answer with the number only."
)
LISTWISE_SYSTEM = (
    "You rank search results. Given a question and numbered passages, list the passage "
    "numbers from the most useful for answering the question to the least useful."
)
LISTWISE_USER = (
    "Question: {query}\n\n{passages}\n\n"
    "Answer with a JSON list of all {n} passage numbers, most useful first."
)
PASSAGE_CHARS = 900  # each passage is cut to this many characters in a prompt


def _clip(text: str, limit: int = PASSAGE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."


def yes_probability(model: Any, messages: list[Message]) -> float | None:
    """P(yes) / (P(yes) + P(no)) for the model's first answer token, read from its logits;
    None when the model does not expose them (only local llama.cpp models do, through their
    loaded llama_cpp.Llama, which hearth.llm keeps private: any failure there means None).

    The rendered prompt's shared prefix with the previous call stays in the KV cache, as in
    llama-cpp-python's own completion."""
    if not (hasattr(model, "render") and hasattr(model, "_load") and hasattr(model, "_lock")):
        return None
    try:
        llama = model._load()
        prompt = model.render(messages)
        with model._lock:
            tokens = llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
            if len(tokens) >= llama.n_ctx():
                return None
            cached = llama.input_ids[: llama.n_tokens].tolist()
            same = 0
            for a, b in zip(cached, tokens[:-1], strict=False):
                if a != b:
                    break
                same += 1
            llama.n_tokens = same
            llama.eval(tokens[same:])
            logits = np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(llama.n_vocab(),))
            logits = np.array(logits, dtype=np.float64)
            yes = _first_tokens(llama, ("yes", "Yes", "YES"))
            no = _first_tokens(llama, ("no", "No", "NO"))
    except Exception:  # noqa: BLE001 - a private interface changed: ask for a grade instead
        return None
    if not yes or not no:
        return None
    top = logits.max()
    p_yes = float(np.exp(logits[yes] - top).sum())
    p_no = float(np.exp(logits[no] - top).sum())
    return p_yes / (p_yes + p_no) if p_yes + p_no > 0 else 0.5


def _first_tokens(llama: Any, words: Sequence[str]) -> list[int]:
    """The distinct first token of each word."""
    out = []
    for word in words:
        ids = llama.tokenize(word.encode("utf-8"), add_bos=False, special=False)
        if ids and ids[0] not in out:
            out.append(ids[0])
    return out


class LLMPointwiseReranker:
    """The instruction model judges each passage on its own: the probability of "yes" to
    "does the passage answer the question?" when the model exposes its logits (local GGUF
    models), else a 0-3 grade generated under a choice constraint (hearth.generate).

    A failed call leaves that passage at its first-stage place and is recorded in
    `last_error`; `blend` fuses the model's rank with the first stage's (see `reranked`)."""

    name = "llm-pointwise"

    def __init__(
        self,
        model: ChatModel,
        *,
        use_logits: bool = True,
        blend: float = 0.0,
        passage_chars: int = PASSAGE_CHARS,
    ):
        self.model = model
        self.use_logits = use_logits
        self.blend = blend
        self.passage_chars = passage_chars
        self.last_error: str | None = None
        self.last_method: str | None = None  # "logits" or "grade"

    def score(self, query: str, text: str) -> float:
        """The model's relevance of `text` to `query`, within 0..1."""
        passage = _clip(text, self.passage_chars)
        if self.use_logits:
            messages = [
                Message("system", POINTWISE_SYSTEM),
                Message("user", POINTWISE_USER.format(query=query, passage=passage)),
            ]
            p = yes_probability(self.model, messages)
            if p is not None:
                self.last_method = "logits"
                return p
        from hearth import generate

        self.last_method = "grade"
        prompt = [
            Message("system", POINTWISE_SYSTEM),
            Message("user", GRADE_USER.format(query=query, passage=passage)),
        ]
        grade = generate(self.model, prompt, ["0", "1", "2", "3"], max_tokens=4)
        return int(str(grade).strip()) / 3.0

    def rerank(
        self, query: str, hits: list[ScoredChunk], k: int | None = None
    ) -> list[ScoredChunk]:
        self.last_error = None
        if not hits:
            return []
        scores: list[float] = []
        errors: list[str] = []
        for hit in hits:
            try:
                scores.append(self.score(query, hit.chunk.text))
            except Exception as exc:  # noqa: BLE001 - a reranker never breaks the search
                errors.append(f"{type(exc).__name__}: {exc}")
                scores.append(math.nan)
        if errors:
            self.last_error = f"{len(errors)} of {len(hits)} judgements failed: {errors[0]}"
        if all(math.isnan(s) for s in scores):
            return first_stage(hits, k)
        return reranked(hits, _fill_failed(scores), k, blend=self.blend)


def _fill_failed(scores: list[float]) -> list[float]:
    """A failed judgement (nan) takes the score of the passage ranked above it, so it keeps
    its first-stage place among the others (the top one, failing, gets the best score)."""
    out: list[float] = []
    best = max(s for s in scores if not math.isnan(s))
    for s in scores:
        out.append((out[-1] if out else best) if math.isnan(s) else s)
    return out


class LLMListwiseReranker:
    """The instruction model sees `window` numbered passages at once and answers with their
    numbers as a JSON list, most useful first (schema-constrained: integers among the shown
    numbers; repeats are dropped and numbers left out follow in first-stage order).

    More hits than `window` are ranked by a window sliding from the bottom of the list to the
    top, `step` at a time (RankGPT's scheme), so good passages bubble up. A failed call keeps
    its window in first-stage order and is recorded in `last_error`. scores["rerank"] is
    1 / final rank."""

    name = "llm-listwise"

    def __init__(
        self,
        model: ChatModel,
        *,
        window: int = 5,
        step: int | None = None,
        passage_chars: int = 600,
    ):
        if window < 2:
            raise ConfigError(f"llm-listwise window must be at least 2, got {window}")
        self.model = model
        self.window = window
        self.step = step or max(1, window // 2)
        self.passage_chars = passage_chars
        self.last_error: str | None = None
        self.last_orders: list[list[int]] = []  # what the model answered, per window

    def order(self, query: str, texts: list[str]) -> list[int]:
        """Indices of `texts`, most useful first, as the model ranks them (one call)."""
        from hearth import generate

        n = len(texts)
        shown = "\n\n".join(
            f"[{i}] {_clip(t, self.passage_chars)}" for i, t in enumerate(texts, start=1)
        )
        schema = {
            "type": "array",
            "items": {"type": "integer", "enum": list(range(1, n + 1))},
            "minItems": n,
            "maxItems": n,
        }
        prompt = [
            Message("system", LISTWISE_SYSTEM),
            Message("user", LISTWISE_USER.format(query=query, passages=shown, n=n)),
        ]
        answer = generate(self.model, prompt, schema, max_tokens=8 * n + 8)
        self.last_orders.append(list(answer))
        return as_permutation(answer, n)

    def rerank(
        self, query: str, hits: list[ScoredChunk], k: int | None = None
    ) -> list[ScoredChunk]:
        self.last_error = None
        self.last_orders = []
        if not hits:
            return []
        current = list(range(len(hits)))
        errors: list[str] = []
        starts = _window_starts(len(hits), self.window, self.step)
        for start in starts:
            chosen = current[start : start + self.window]
            try:
                local = self.order(query, [hits[i].chunk.text for i in chosen])
            except Exception as exc:  # noqa: BLE001 - a reranker never breaks the search
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            current[start : start + len(chosen)] = [chosen[j] for j in local]
        if errors:
            self.last_error = f"{len(errors)} of {len(starts)} window calls failed: {errors[0]}"
            if len(errors) == len(starts):
                return first_stage(hits, k)
        rank = {i: r for r, i in enumerate(current, start=1)}
        return reranked(hits, [1.0 / rank[i] for i in range(len(hits))], k)


def _window_starts(n: int, window: int, step: int) -> list[int]:
    """Window starts from the bottom of an n-long list to the top (the last one is 0)."""
    if n <= window:
        return [0] if n >= 2 else []
    starts = list(range(n - window, 0, -step))
    return [*starts, 0]


def as_permutation(answer: Any, n: int) -> list[int]:
    """0-based indices from the model's 1-based list: out-of-range numbers and repeats dropped,
    the numbers it left out appended in their first-stage order."""
    if isinstance(answer, str):
        answer = [int(x) for x in re.findall(r"\d+", answer)]
    seen: list[int] = []
    for item in answer if isinstance(answer, list) else []:
        try:
            i = int(item) - 1
        except (TypeError, ValueError):
            continue
        if 0 <= i < n and i not in seen:
            seen.append(i)
    return seen + [i for i in range(n) if i not in seen]


# -- the registry -----------------------------------------------------------------------------


def _need(what: str, value: Any, name: str) -> Any:
    if value is None:
        raise ConfigError(f"reranker {name!r} needs {what}")
    return value


RERANKERS: dict[str, Callable[[Embedder | None, ChatModel | None], Reranker]] = {
    "none": lambda embedder, model: NoReranker(),
    "late-interaction": lambda embedder, model: LateInteractionReranker(
        _need("an embedder", embedder, "late-interaction")
    ),
    "llm-pointwise": lambda embedder, model: LLMPointwiseReranker(
        _need("a chat model", model, "llm-pointwise")
    ),
    "llm-listwise": lambda embedder, model: LLMListwiseReranker(
        _need("a chat model", model, "llm-listwise")
    ),
}


def make_reranker(
    name: str, *, embedder: Embedder | None = None, model: ChatModel | None = None
) -> Reranker:
    """A reranker by name: one of RERANKERS ("none", "late-interaction", "llm-pointwise",
    "llm-listwise"); the late-interaction one needs `embedder`, the LLM ones `model`."""
    factory = RERANKERS.get(name)
    if factory is None:
        raise ConfigError(
            f"unknown reranker {name!r}: choose one of {', '.join(sorted(RERANKERS))}"
        )
    return factory(embedder, model)


def rerank_stage(
    reranker: Reranker, query: str, hits: list[ScoredChunk], k: int | None = None
) -> Retrieval:
    """Run `reranker` as a pipeline stage: the reranked hits, its time under timings["rerank"]
    and, under generated["rerank"], its name and the error it recovered from (if any)."""
    t0 = time.perf_counter()
    out = reranker.rerank(query, hits, k)
    info: dict[str, Any] = {"reranker": reranker.name}
    error = getattr(reranker, "last_error", None)
    if error:
        info["error"] = error
        info["fallback"] = "rerank" not in (out[0].scores if out else {})
    orders = getattr(reranker, "last_orders", None)
    if orders:
        info["orders"] = json.loads(json.dumps(orders))
    return Retrieval(out, {"rerank": info}, {"rerank": time.perf_counter() - t0})
