"""PostgreSQL + pgvector store against the SQLite store on the same synthetic corpus.

Same corpus and queries as bench_search_latency.py (Zipf words, clustered unit vectors put in
through `replace_documents`; queries embedded for real). Measures ingest chunks/s, top-5
agreement (dense, keyword, hybrid) and search p50/p95 for both stores. PostgreSQL comes from
pgserver in a temp folder unless --url names a server (it must have pgvector; the database is
used as is, so give an empty one).
"""

from __future__ import annotations

import argparse
import tempfile
import uuid
from pathlib import Path

import numpy as np

from bench_search_latency import DIM, latencies, make_queries, synthetic_corpus
from common import Timer, percentile, print_table, write_result


def corpus_batches(n_chunks: int, per_doc: int, seed: int, batch_docs: int = 500):
    """The whole corpus as replace_documents batches (built once, fed to both stores)."""
    from hearth.types import Chunk, Document

    rng = np.random.default_rng(seed + 1)
    centroids = rng.standard_normal((256, DIM)).astype(np.float32)
    batches, batch = [], []
    for d, texts, topic in synthetic_corpus(n_chunks, per_doc, seed):
        chunks, start = [], 0
        for i, chunk_text in enumerate(texts):
            chunks.append(Chunk(chunk_text, start, start + len(chunk_text), ordinal=i))
            start += len(chunk_text) + 2
        vecs = centroids[topic] + 0.9 * rng.standard_normal((len(texts), DIM))
        vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
        doc = Document(
            source=f"/synthetic/doc{d:06d}.txt",
            media_type="text/plain",
            text="\n\n".join(texts),
            content_hash=f"{d:064x}",
            metadata={"file_type": "txt"},
        )
        batch.append((doc, chunks, vecs))
        if len(batch) == batch_docs:
            batches.append(batch)
            batch = []
    if batch:
        batches.append(batch)
    return batches


def fill(store, embedder, batches) -> float:
    store.check_embedder(embedder.name, embedder.dim)
    with Timer() as t:
        for i, batch in enumerate(batches):
            store.replace_documents(batch)
            print(f"  {type(store).__name__}: batch {i + 1}/{len(batches)}", end="\r", flush=True)
    print()
    return t.seconds


def keys(hits) -> list[tuple[str, int]]:
    return [(h.chunk.source, h.chunk.ordinal) for h in hits]


def overlap(a: list, b: list, k: int) -> float:
    return len(set(a[:k]) & set(b[:k])) / k


def stats_of(ms: list[float]) -> dict:
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "mean_ms": float(np.mean(ms)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--per-doc", type=int, default=10, help="chunks per synthetic document")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--backend", default="auto", help="embedder backend for queries")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--url", default=None, help="PostgreSQL URL (default: pgserver)")
    args = parser.parse_args()

    from hearth.index.embedder import load_embedder
    from hearth.index.pg_store import PostgresStore
    from hearth.index.store import SQLiteStore
    from hearth.rag.retrievers import make_retriever

    embedder = load_embedder(backend=args.backend)
    embedder.embed(["load the model before timing"])
    queries = make_queries(args.queries, args.seed)
    qvecs = {q: np.asarray(embedder.embed([q]), dtype=np.float32)[0] for q in queries}
    batches = corpus_batches(args.chunks, args.per_doc, args.seed)
    n_chunks = sum(len(c) for b in batches for _, c, _ in b)
    print(f"corpus: {n_chunks:,} chunks in {sum(len(b) for b in batches):,} documents")

    server = None
    with tempfile.TemporaryDirectory(prefix="hearth-bench-pgvector-") as tmp:
        url = args.url
        if url is None:
            import pgserver
            import psycopg

            server = pgserver.get_server(Path(tmp) / "pg", cleanup_mode="stop")
            name = f"bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(server.get_uri(), autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {name}")
                version = conn.execute("SHOW server_version").fetchone()[0]
            url = server.get_uri(name)
        else:
            version = "external"
        stores = {"sqlite": SQLiteStore(Path(tmp) / "index.sqlite3"), "pgvector": None}
        ingest_s = {"sqlite": fill(stores["sqlite"], embedder, batches)}
        stores["pgvector"] = PostgresStore(url)
        ingest_s["pgvector"] = fill(stores["pgvector"], embedder, batches)
        del batches
        pg = stores["pgvector"]
        pg_info = {"postgresql": version, "pgvector": ".".join(map(str, pg.pgvector_version))}
        for name, s in ingest_s.items():
            print(f"{name}: {n_chunks / s:,.0f} chunks/s ingest ({s:.1f} s)")

        retrievers = {
            name: {kind: make_retriever(kind, st, embedder) for kind in ("bm25", "hybrid")}
            for name, st in stores.items()
        }
        for name, st in stores.items():  # warm: SQLite loads its matrix, PG its caches
            st.search_dense(qvecs[queries[0]], args.k)
            for r in retrievers[name].values():
                r.retrieve(queries[0], k=args.k)

        # agreement with SQLite (exact cosine; FTS5 bm25 for keywords)
        k = args.k
        agree: dict[str, list[float]] = {"dense": [], "dense exact": [], "bm25": [], "hybrid": []}
        for q in queries:
            lite_dense = keys(stores["sqlite"].search_dense(qvecs[q], k))
            agree["dense"].append(overlap(keys(pg.search_dense(qvecs[q], k)), lite_dense, k))
            below = pg.exact_below
            pg.exact_below = 10**12
            agree["dense exact"].append(overlap(keys(pg.search_dense(qvecs[q], k)), lite_dense, k))
            pg.exact_below = below
            for kind in ("bm25", "hybrid"):
                a = keys(retrievers["pgvector"][kind].retrieve(q, k=k))
                b = keys(retrievers["sqlite"][kind].retrieve(q, k=k))
                agree[kind].append(overlap(a, b, k) if b else float(a == b))
        top5 = {
            kind: {
                "mean_overlap": float(np.mean(v)),
                "identical_sets": float(np.mean([x == 1.0 for x in v])),
            }
            for kind, v in agree.items()
        }

        runs: dict[str, dict] = {}
        for name, st in stores.items():
            r = retrievers[name]
            runs[f"{name} dense (vector search only)"] = stats_of(
                latencies(lambda q, st=st: st.search_dense(qvecs[q], k), queries)
            )
            runs[f"{name} bm25"] = stats_of(
                latencies(lambda q, r=r: r["bm25"].retrieve(q, k=k), queries)
            )
            runs[f"{name} hybrid (embed + bm25 + dense + RRF)"] = stats_of(
                latencies(lambda q, r=r: r["hybrid"].retrieve(q, k=k), queries)
            )
        pg.exact_below = 10**12
        runs["pgvector dense exact (no HNSW)"] = stats_of(
            latencies(lambda q: pg.search_dense(qvecs[q], k), queries[:50])
        )
        db_bytes = {name: st.stats()["db_bytes"] for name, st in stores.items()}
        for st in stores.values():
            st.close()
    if server is not None:
        server.cleanup()

    table = print_table(
        f"Search latency at {n_chunks:,} chunks, k={k}, {len(queries)} queries "
        f"(PostgreSQL {pg_info['postgresql']}, pgvector {pg_info['pgvector']})",
        ["search", "queries", "p50 ms", "p95 ms", "mean ms"],
        [[n, s["n"], s["p50_ms"], s["p95_ms"], s["mean_ms"]] for n, s in runs.items()],
    )
    agreement = print_table(
        f"pgvector top-{k} against the SQLite store (same corpus, same queries)",
        ["search", "mean overlap", "identical top-k sets"],
        [[kind, v["mean_overlap"], v["identical_sets"]] for kind, v in top5.items()],
    )
    rates = {name: n_chunks / s for name, s in ingest_s.items()}
    print(
        f"ingest: sqlite {rates['sqlite']:,.0f} chunks/s, pgvector {rates['pgvector']:,.0f} "
        f"chunks/s ({rates['pgvector'] / rates['sqlite']:.2f}x)"
    )
    path = write_result(
        "pgvector",
        {
            "chunks": n_chunks,
            "k": k,
            "queries": len(queries),
            "backend": args.backend,
            **pg_info,
            "ingest_seconds": ingest_s,
            "ingest_chunks_per_s": rates,
            "db_bytes": db_bytes,
            "top_k_agreement": top5,
            "latency": runs,
            "table": table + "\n" + agreement,
            "notes": "dense exact = PostgresStore with the HNSW index bypassed; bm25 on "
            "PostgreSQL is FTS5's bm25() formula (k1 1.2, b 0.75, FTS5 idf) over a postings "
            "table (term, chunk, tf, chunk length) written at ingest, in one SQL query",
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
