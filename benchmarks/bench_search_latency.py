"""Search latency (p50/p95) at 100k chunks for bm25, dense and hybrid, model load excluded.

Synthetic corpus: Zipf-distributed real words (from the stdlib docs) with per-topic vocabulary,
and clustered unit vectors inserted straight through the store API (embedding 100k chunks would
dominate the run). Queries are embedded for real. Peer: rank_bm25's BM25Okapi on the same texts.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from common import Timer, percentile, print_table, verdict, vocabulary, write_result

DIM = 384


def synthetic_corpus(n_chunks: int, per_doc: int, seed: int, n_topics: int = 256):
    """Yield (doc_index, [chunk texts], topic) with Zipf words plus each topic's own words."""
    rng = np.random.default_rng(seed)
    vocab = vocabulary()
    ranks = np.arange(1, len(vocab) + 1, dtype=float)
    p = 1.0 / ranks**1.05
    p /= p.sum()
    topic_words = rng.choice(len(vocab) - 200, size=(n_topics, 40), replace=True) + 200
    n_docs = (n_chunks + per_doc - 1) // per_doc
    made = 0
    for d in range(n_docs):
        topic = int(rng.integers(n_topics))
        m = min(per_doc, n_chunks - made)
        lengths = rng.integers(30, 70, size=m)
        general = rng.choice(len(vocab), size=int(lengths.sum()), p=p)
        special = topic_words[topic][rng.integers(40, size=general.size)]
        idx = np.where(rng.random(general.size) < 0.25, special, general)
        texts, pos = [], 0
        for n in lengths:
            words = [vocab[i] for i in idx[pos : pos + n]]
            pos += n
            texts.append(" ".join(words).capitalize() + ".")
        made += m
        yield d, texts, topic


def build_store(path: Path, embedder, n_chunks: int, per_doc: int, seed: int):
    """Fill a fresh store through `replace_documents`; returns (store, texts, seconds)."""
    from hearth.index.store import SQLiteStore
    from hearth.types import Chunk, Document

    rng = np.random.default_rng(seed + 1)
    centroids = rng.standard_normal((256, DIM)).astype(np.float32)
    store = SQLiteStore(path)
    store.check_embedder(embedder.name, embedder.dim)
    all_texts: list[str] = []
    batch: list = []
    with Timer() as t:
        for d, texts, topic in synthetic_corpus(n_chunks, per_doc, seed):
            text = "\n\n".join(texts)
            chunks, start = [], 0
            for i, chunk_text in enumerate(texts):
                chunks.append(Chunk(chunk_text, start, start + len(chunk_text), ordinal=i))
                start += len(chunk_text) + 2
            vecs = centroids[topic] + 0.9 * rng.standard_normal((len(texts), DIM))
            vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
            doc = Document(
                source=f"/synthetic/doc{d:06d}.txt",
                media_type="text/plain",
                text=text,
                content_hash=f"{d:064x}",
                metadata={"file_type": "txt"},
            )
            batch.append((doc, chunks, vecs))
            all_texts.extend(texts)
            if len(batch) == 500:
                store.replace_documents(batch)
                batch = []
        if batch:
            store.replace_documents(batch)
    return store, all_texts, t.seconds


def make_queries(n: int, seed: int) -> list[str]:
    """2-5 words drawn from the same Zipf vocabulary, skipping the 50 commonest words."""
    rng = np.random.default_rng(seed + 2)
    vocab = vocabulary()[50:]
    ranks = np.arange(1, len(vocab) + 1, dtype=float)
    p = 1.0 / ranks
    p /= p.sum()
    out = []
    for _ in range(n):
        words = rng.choice(len(vocab), size=int(rng.integers(2, 6)), p=p)
        out.append(" ".join(vocab[i] for i in words))
    return out


def latencies(fn, queries) -> list[float]:
    out = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        out.append(1000 * (time.perf_counter() - t0))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--per-doc", type=int, default=10, help="chunks per synthetic document")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--peer-queries", type=int, default=30, help="rank_bm25 is slow: cap")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--backend", default="auto", help="embedder backend for queries")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from hearth.index.embedder import load_embedder
    from hearth.rag.retrievers import make_retriever

    embedder = load_embedder(backend=args.backend)
    embedder.embed(["load the model before timing"])
    queries = make_queries(args.queries, args.seed)

    with tempfile.TemporaryDirectory(prefix="hearth-bench-latency-") as tmp:
        store, texts, build_s = build_store(
            Path(tmp) / "index.sqlite3", embedder, args.chunks, args.per_doc, args.seed
        )
        print(f"store: {len(texts):,} chunks inserted in {build_s:.1f} s", flush=True)
        qvecs = {q: np.asarray(embedder.embed([q]), dtype=np.float32)[0] for q in queries}
        with Timer() as first:
            store.search_dense(qvecs[queries[0]], args.k)  # loads the vector matrix once
        retrievers = {
            kind: make_retriever(kind, store, embedder) for kind in ("bm25", "dense", "hybrid")
        }
        hybrid = retrievers["hybrid"]
        depth = hybrid.depth(args.k) if hasattr(hybrid, "depth") else args.k
        for r in retrievers.values():
            r.retrieve(queries[0], k=args.k)
        runs = {
            "bm25": latencies(lambda q: retrievers["bm25"].retrieve(q, k=args.k), queries),
            "dense (vector search only)": latencies(
                lambda q: store.search_dense(qvecs[q], args.k), queries
            ),
            "query embedding only": latencies(lambda q: embedder.embed([q]), queries),
            "dense (embed + search)": latencies(
                lambda q: retrievers["dense"].retrieve(q, k=args.k), queries
            ),
            # What hybrid asks of each component: its candidate depth, not k.
            f"bm25 at hybrid depth (k={depth})": latencies(
                lambda q: retrievers["bm25"].retrieve(q, k=depth), queries
            ),
            f"dense vector search at hybrid depth (k={depth})": latencies(
                lambda q: store.search_dense(qvecs[q], depth), queries
            ),
            "hybrid (embed + bm25 + dense + fusion)": latencies(
                lambda q: retrievers["hybrid"].retrieve(q, k=args.k), queries
            ),
        }
        store.close()

    from rank_bm25 import BM25Okapi

    def tokens(text: str) -> list[str]:
        return re.findall(r"\w+", text.lower())

    with Timer() as peer_build:
        peer = BM25Okapi([tokens(t) for t in texts])
    del texts

    def peer_search(q: str):
        scores = peer.get_scores(tokens(q))
        return np.argpartition(-scores, args.k)[: args.k]

    peer_queries = queries[: args.peer_queries]
    runs["rank_bm25 BM25Okapi (peer)"] = latencies(peer_search, peer_queries)

    rows, stats = [], {}
    for name, ms in runs.items():
        s = {
            "n": len(ms),
            "p50_ms": percentile(ms, 50),
            "p95_ms": percentile(ms, 95),
            "mean_ms": float(np.mean(ms)),
        }
        stats[name] = s
        rows.append([name, s["n"], s["p50_ms"], s["p95_ms"], s["mean_ms"]])
    table = print_table(
        f"Search latency at {args.chunks:,} chunks, k={args.k}, embedder {embedder.name} "
        f"({args.backend}); model load excluded",
        ["search", "queries", "p50 ms", "p95 ms", "mean ms"],
        rows,
    )
    peer_ratio = stats["rank_bm25 BM25Okapi (peer)"]["mean_ms"] / stats["bm25"]["mean_ms"]
    claims = {
        f"{kind} p50 <= 50 ms": stats[name]["p50_ms"] <= 50.0
        for kind, name in (
            ("bm25", "bm25"),
            ("dense", "dense (embed + search)"),
            ("hybrid", "hybrid (embed + bm25 + dense + fusion)"),
        )
    }
    for claim, ok in claims.items():
        print(f"{claim}: {verdict(ok)}")
    print(f"Hearth bm25 is {peer_ratio:.0f}x faster per query than rank_bm25 (mean)")
    print(
        f"first dense search (matrix load) {1000 * first.seconds:.0f} ms; "
        f"rank_bm25 index build {peer_build.seconds:.1f} s"
    )
    path = write_result(
        "bench_search_latency",
        {
            "chunks": args.chunks,
            "k": args.k,
            "backend": args.backend,
            "store_build_s": build_s,
            "first_dense_search_ms": 1000 * first.seconds,
            "peer_build_s": peer_build.seconds,
            "latency": stats,
            "bm25_speedup_vs_rank_bm25": peer_ratio,
            "claims": claims,
            "table": table,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
