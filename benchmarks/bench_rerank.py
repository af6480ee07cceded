"""Post-processing after fusion: hit@5, MRR@10, nDCG@10 and latency of hybrid retrieval alone
against hybrid + each reranker (hearth.rag.rerank) and + MMR (hearth.rag.mmr).

Sets: the stdlib questions (data/retrieval_questions.jsonl, "main"), Hearth's docs dev set
(data/docs_dev_questions.jsonl) and the ferry field guide (data/fieldguide_questions.jsonl, a
passage is relevant when it comes from the expected file and holds the expected fact). Each
reranker reorders the hybrid retriever's top --candidates passages and keeps 10; the peer is
hybrid's own top 10. The LLM rerankers run on the first --llm-limit questions of each set (they
take seconds per passage on 2 cores); their rows compare with hybrid on the same questions.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench_retrieval import build_index, is_relevant, load_questions  # noqa: I001
from common import DATA_DIR, cache_dir, print_table, write_result

K = 10
BLENDS = (0.0, 0.3, 0.5, 0.7)


def fieldguide_index():
    from bench_answers import CORPORA, holds
    from bench_answers import build_index as answers_index
    from bench_answers import load_questions as answers_questions

    corpus = CORPORA["fieldguide"]
    folder = cache_dir() / "rerank_fieldguide_200_32"
    folder.mkdir(parents=True, exist_ok=True)
    store, embedder, report = answers_index(folder, 200, 32, corpus.folder)
    questions = [
        {"id": q.id, "question": q.question, "expected": q.expected, "source": q.source}
        for q in answers_questions(corpus.questions, corpus.folder)
    ]

    def relevant(q: dict, source: str, text: str) -> bool:
        return Path(source).name == q["source"] and holds(text, q["expected"])

    return store, embedder, questions, relevant


def load_sets(names: list[str]) -> dict[str, dict]:
    """name -> {store, embedder, questions, relevant(q, source, text)}."""
    sets = {}
    for name in names:
        if name == "fieldguide":
            store, embedder, questions, relevant = fieldguide_index()
        else:
            corpus_name, file = (
                ("stdlib", "retrieval_questions.jsonl")
                if name == "stdlib"
                else ("docs", "docs_dev_questions.jsonl")
            )
            corpus, embedder, store, _ = build_index("auto", 200, 32, "title+headings", corpus_name)
            questions = load_questions(DATA_DIR / file, corpus)
            relevant = is_relevant
        sets[name] = {
            "store": store,
            "embedder": embedder,
            "questions": questions,
            "relevant": relevant,
        }
    return sets


def relevant_counts(store, questions: list[dict], relevant: Callable) -> dict[str, int]:
    """Per question, how many distinct passages of the whole index are relevant (for nDCG)."""
    from hearth.rag.retrievers import passage_key

    chunks = [
        (c.source, c.text)
        for d in store.list_documents()
        for c in store.document_chunks(d["source"])
    ]
    return {
        q["id"]: len({passage_key(t) for s, t in chunks if relevant(q, s, t)}) for q in questions
    }


def scores_of(hits, q: dict, relevant: Callable, n_relevant: int) -> dict[str, float]:
    flags = [relevant(q, h.chunk.source, h.chunk.text) for h in hits[:K]]
    first = next((i + 1 for i, f in enumerate(flags) if f), None)
    dcg = sum(1.0 / math.log2(i + 2) for i, f in enumerate(flags) if f)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(max(n_relevant, 1), K)))
    return {
        "hit@1": float(first == 1),
        "hit@5": float(first is not None and first <= 5),
        "mrr@10": 1.0 / first if first else 0.0,
        "ndcg@10": dcg / ideal,
    }


def mean(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = rows[0].keys() if rows else []
    return {k: sum(r[k] for r in rows) / len(rows) for k in keys}


def run_set(name: str, s: dict, args) -> dict[str, dict]:
    """method -> {metrics, ms_per_query, questions}; per-question rows kept for subsets."""
    from hearth.rag.mmr import hit_vectors, mmr
    from hearth.rag.rerank import LateInteractionReranker, reranked
    from hearth.rag.retrievers import make_retriever

    store, embedder, questions, relevant = s["store"], s["embedder"], s["questions"], s["relevant"]
    counts = relevant_counts(store, questions, relevant)
    hybrid = make_retriever("hybrid", store, embedder)
    hybrid.retrieve(questions[0]["question"], K)  # warm caches
    per_q: dict[str, list[dict]] = {}
    ms: dict[str, float] = {}

    def record(method: str, hits, q, seconds: float) -> None:
        per_q.setdefault(method, []).append(scores_of(hits, q, relevant, counts[q["id"]]))
        ms[method] = ms.get(method, 0.0) + 1000 * seconds

    late = {
        mode: LateInteractionReranker(embedder, mode=mode, blend=0.0)
        for mode in ("tokens", "sentences")
    }
    for i, q in enumerate(questions):
        text = q["question"]
        t0 = time.perf_counter()
        base = hybrid.retrieve(text, K)
        record("hybrid", base, q, time.perf_counter() - t0)
        t0 = time.perf_counter()
        pool = hybrid.retrieve(text, args.candidates)
        pool_s = time.perf_counter() - t0
        record(f"hybrid@{args.candidates} (first {K})", pool[:K], q, pool_s)
        for mode, reranker in late.items():
            t0 = time.perf_counter()
            raw = reranker.scores(text, [h.chunk.text for h in pool])
            spent = time.perf_counter() - t0
            for blend in BLENDS:
                label = f"+ late-interaction {mode}" + (f", rrf blend {blend}" if blend else "")
                record(label, reranked(pool, raw, K, blend=blend), q, pool_s + spent)
        t0 = time.perf_counter()
        query_vector, vectors = embedder.embed([text])[0], hit_vectors(embedder, pool)
        embed_s = time.perf_counter() - t0
        for lam in (0.7, 0.9):
            t0 = time.perf_counter()
            record(f"+ mmr lambda {lam}", mmr(query_vector, pool, vectors, K, lam), q,
                   pool_s + embed_s + time.perf_counter() - t0)  # fmt: skip
        print(f"{name}: {i + 1}/{len(questions)}", end="\r", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    if args.llm_limit > 0 and args.model and name in args.llm_sets:
        run_llm(name, s, args, counts, per_q, ms)
    return {
        method: {
            **mean(rows),
            "ms_per_query": ms[method] / len(rows),
            "questions": len(rows),
        }
        for method, rows in per_q.items()
    }


def run_llm(name: str, s: dict, args, counts, per_q, ms) -> None:
    from hearth import llm
    from hearth.rag.rerank import LLMListwiseReranker, LLMPointwiseReranker
    from hearth.rag.retrievers import make_retriever

    model = args.loaded_model or llm.load(args.model, context_size=4096)
    args.loaded_model = model
    store, embedder, relevant = s["store"], s["embedder"], s["relevant"]
    hybrid = make_retriever("hybrid", store, embedder)
    subset = s["questions"][: args.llm_limit]
    tag = f" [first {len(subset)}]"
    rerankers = {
        f"+ llm-pointwise (yes logit){tag}": LLMPointwiseReranker(model),
        f"+ llm-pointwise, rrf blend 0.5{tag}": None,  # from the same scores
        f"+ llm-listwise (window 5){tag}": LLMListwiseReranker(model, window=5),
    }
    errors: dict[str, list[str]] = {}
    for i, q in enumerate(subset):
        text = q["question"]
        pool = hybrid.retrieve(text, args.llm_candidates)
        per_q.setdefault(f"hybrid{tag}", []).append(
            scores_of(pool[:K], q, relevant, counts[q["id"]])
        )
        ms[f"hybrid{tag}"] = 0.0
        for label, reranker in rerankers.items():
            if reranker is None:
                continue
            t0 = time.perf_counter()
            ranked = reranker.rerank(text, pool, None)
            spent = time.perf_counter() - t0
            out = ranked[:K]
            if reranker.last_error:
                errors.setdefault(label, []).append(reranker.last_error)
            per_q.setdefault(label, []).append(scores_of(out, q, relevant, counts[q["id"]]))
            ms[label] = ms.get(label, 0.0) + 1000 * spent
            if isinstance(reranker, LLMPointwiseReranker):
                from hearth.rag.rerank import reranked

                by_id = {h.chunk.id: h.scores.get("rerank", 0.0) for h in ranked}
                fused = reranked(pool, [by_id[h.chunk.id] for h in pool], K, blend=0.5)
                blend_label = f"+ llm-pointwise, rrf blend 0.5{tag}"
                per_q.setdefault(blend_label, []).append(
                    scores_of(fused, q, relevant, counts[q["id"]])
                )
                ms[blend_label] = ms.get(blend_label, 0.0) + 1000 * spent
        print(f"{name} llm: {i + 1}/{len(subset)}", end="\r", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    if errors:
        print(f"{name}: reranker errors: {json.dumps(errors)[:2000]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--sets", nargs="+", choices=["stdlib", "docs", "fieldguide"],
        default=["stdlib", "docs", "fieldguide"],
    )  # fmt: skip
    parser.add_argument("--candidates", type=int, default=20, help="hybrid hits reranked")
    parser.add_argument("--model", default="local:qwen2.5-coder-0.5b", help="LLM rerankers' model")
    parser.add_argument("--llm-limit", type=int, default=6, help="questions per set for LLMs")
    parser.add_argument(
        "--llm-sets", nargs="*", default=["docs", "fieldguide"], help="sets the LLMs rerank"
    )
    parser.add_argument("--llm-candidates", type=int, default=10, help="hits the LLMs rerank")
    args = parser.parse_args()
    args.loaded_model = None

    sets = load_sets(args.sets)
    results = {}
    for name, s in sets.items():
        s["embedder"].embed(["warm up"])
        results[name] = run_set(name, s, args)
    rows = []
    for name, by_method in results.items():
        for method, m in by_method.items():
            rows.append(
                [
                    f"{name} ({m['questions']})",
                    method,
                    m["hit@5"],
                    m["mrr@10"],
                    m["ndcg@10"],
                    m["ms_per_query"],
                ]  # fmt: skip
            )
    table = print_table(
        f"Reranking after hybrid fusion: {args.candidates} candidates reranked, top {K} kept "
        f"(LLM rerankers: {args.llm_candidates} candidates, {args.model})",
        ["set (questions)", "pipeline", "hit@5", "MRR@10", "nDCG@10", "ms/query"],
        rows,
    )
    path = write_result(
        "bench_rerank",
        {
            "sets": args.sets,
            "candidates": args.candidates,
            "llm_candidates": args.llm_candidates,
            "llm_limit": args.llm_limit,
            "model": args.model,
            "results": results,
            "table": table,
        },
    )
    print(f"wrote {path}")
    for s in sets.values():
        s["store"].close()


if __name__ == "__main__":
    main()
