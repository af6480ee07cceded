"""Ingest throughput (chunks/s, embedding included) of Hearth's Indexer against plain ST encode.

Peer: sentence-transformers `encode` on the very same embedding inputs (chunk texts with their
contextual headers), same batch size, same process.
Claims: the pipeline (discover, load, split, embed, store) costs <= 10% over the bare torch encode;
the fast backend ("auto") ingests >= 2x faster than that bare torch encode.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from common import DATA_DIR, Timer, model_path, print_table, verdict, write_result

sys.path.insert(0, str(DATA_DIR))
from build_stdlib_corpus import build_corpus  # noqa: E402


def hearth_ingest(corpus: Path, embedder, chunk_tokens: int, overlap: int, workdir: Path):
    """One full ingest into a fresh store; returns (seconds, report, the texts it embedded)."""
    from hearth.index.contextual import embedding_input
    from hearth.index.indexer import Indexer
    from hearth.index.store import SQLiteStore
    from hearth.ingest.splitter import Splitter

    folder = Path(tempfile.mkdtemp(dir=workdir))
    with SQLiteStore(folder / "index.sqlite3") as store:
        splitter = Splitter(
            embedder.count_tokens, chunk_tokens=chunk_tokens, overlap_tokens=overlap
        )
        with Timer() as t:
            report = Indexer(store, embedder, splitter).ingest([str(corpus)], progress=False)
        mode = store.embed_input("title+headings")  # what the Indexer recorded and embedded
        texts = [
            embedding_input(c, d["source"], mode)
            for d in store.list_documents()
            for c in store.document_chunks(d["source"])
        ]
    return t.seconds, report, texts


def load_and_split(corpus: Path, embedder, chunk_tokens: int, overlap: int) -> float:
    """The pipeline's non-embedding front half alone (discover, load, split with token counts)."""
    from hearth.ingest.discover import discover
    from hearth.ingest.loaders import load_document
    from hearth.ingest.splitter import Splitter

    splitter = Splitter(embedder.count_tokens, chunk_tokens=chunk_tokens, overlap_tokens=overlap)
    with Timer() as t:
        for path in discover([str(corpus)]).files:
            splitter.split(load_document(path))
    return t.seconds


def st_encode(model, texts: list[str], batch_size: int) -> float:
    with Timer() as t:
        model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    return t.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--corpus",
        choices=["retrieval", "ingest"],
        default="retrieval",
        help="stdlib docs corpus: 'retrieval' (46 modules, ~1.8k chunks) or 'ingest' (95, ~6k)",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--chunk-tokens", type=int, default=200)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--fast-backend", default="auto")
    parser.add_argument("--repeats", type=int, default=1, help="runs per setup; best is kept")
    args = parser.parse_args()

    from sentence_transformers import SentenceTransformer

    from hearth.index.embedder import load_embedder

    corpus = build_corpus(args.corpus)
    torch_emb = load_embedder(backend="torch", batch_size=args.batch_size)
    fast_emb = load_embedder(backend=args.fast_backend, batch_size=args.batch_size)
    st = SentenceTransformer(model_path(), device="cpu")
    for warm in (torch_emb.embed, fast_emb.embed):
        warm(["warm up the model before timing"] * 4)
    st.encode(["warm up the model before timing"] * 4)

    times: dict[str, list[float]] = {"st": [], "hearth_torch": [], "hearth_fast": [], "split": []}
    texts: list[str] = []
    with tempfile.TemporaryDirectory(prefix="hearth-bench-ingest-") as tmp:
        work = Path(tmp)
        for i in range(args.repeats):
            # Interleaved so drifting load on a shared machine hits every setup alike.
            secs, report, texts = hearth_ingest(
                corpus, torch_emb, args.chunk_tokens, args.overlap, work
            )
            times["hearth_torch"].append(secs)
            times["st"].append(st_encode(st, texts, args.batch_size))
            secs, fast_report, _ = hearth_ingest(
                corpus, fast_emb, args.chunk_tokens, args.overlap, work
            )
            times["hearth_fast"].append(secs)
            times["split"].append(
                load_and_split(corpus, torch_emb, args.chunk_tokens, args.overlap)
            )
            print(
                f"run {i + 1}: hearth torch {times['hearth_torch'][-1]:.1f} s, "
                f"st encode {times['st'][-1]:.1f} s, hearth fast {secs:.1f} s",
                flush=True,
            )

    # Agreement of the fast backend's vectors with the reference on a sample.
    import numpy as np

    sample = texts[:256]
    cos = float(
        np.mean(
            np.sum(
                np.asarray(fast_emb.embed(sample))
                * st.encode(sample, batch_size=args.batch_size, normalize_embeddings=True),
                axis=1,
            )
        )
    )

    n = len(texts)
    best = {k: min(v) for k, v in times.items()}
    rate = {k: n / s for k, s in best.items()}
    overhead = best["hearth_torch"] / best["st"] - 1.0
    speedup = rate["hearth_fast"] / rate["st"]
    fast_name = f"Hearth Indexer, {args.fast_backend} backend"
    if hasattr(fast_emb, "backend"):
        fast_name += f" ({fast_emb.backend})"
    rows = [
        ["sentence-transformers encode (peer)", n, best["st"], rate["st"], 1.0, "-"],
        [
            "Hearth Indexer, torch backend",
            n,
            best["hearth_torch"],
            rate["hearth_torch"],
            rate["hearth_torch"] / rate["st"],
            f"overhead {overhead:+.1%} (<= 10%: {verdict(overhead <= 0.10)})",
        ],
        [
            fast_name,
            n,
            best["hearth_fast"],
            rate["hearth_fast"],
            speedup,
            f">= 2x: {verdict(speedup >= 2.0)}; cosine to torch {cos:.4f}",
        ],
        [
            "(discover + load + split only, no embedding)",
            n,
            best["split"],
            rate["split"],
            rate["split"] / rate["st"],
            f"{best['split'] / best['st']:.1%} of the peer's time",
        ],
    ]
    table = print_table(
        f"Ingest throughput: {report.documents} stdlib docs, {n} chunks of <= "
        f"{args.chunk_tokens} tokens, batch {args.batch_size}, best of {args.repeats}",
        ["pipeline", "chunks", "seconds", "chunks/s", "x peer", "claim"],
        rows,
    )
    path = write_result(
        "bench_ingest",
        {
            "corpus": str(corpus),
            "documents": report.documents,
            "chunks": n,
            "fast_chunks": fast_report.chunks,
            "batch_size": args.batch_size,
            "chunk_tokens": args.chunk_tokens,
            "repeats": args.repeats,
            "seconds": times,
            "chunks_per_s": rate,
            "torch_pipeline_overhead": overhead,
            "fast_speedup_vs_st": speedup,
            "fast_backend": args.fast_backend,
            "fast_mean_cosine_to_st": cos,
            "claims": {
                "torch overhead <= 10%": overhead <= 0.10,
                "fast >= 2x st": speedup >= 2.0,
            },
            "table": table,
            "finished": time.strftime("%H:%M:%S"),
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
