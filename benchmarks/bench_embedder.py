"""Embedding throughput and quality of Hearth's backends against plain sentence-transformers.

Claim measured: the "auto" backend embeds realistic chunks (~150-200 tokens of real docs
text: Python stdlib docstrings) at least 2x faster than SentenceTransformer.encode, with the
same retrieval quality. Peer: sentence-transformers `encode` (batch 64, normalised) on the
same chunks in the same run. Quality: cosine of each backend's vectors to the torch ones, and
recall@5 / top-1 agreement for queries made of each passage's first sentence (removed from the
passage). Claims: auto >= 2x ST encode; auto recall@5 within 1 point of torch's. Prints a
table; writes benchmarks/results/bench_embedder.json.

    .venv/bin/python benchmarks/bench_embedder.py [--chunks N] [--repeats R]
"""

from __future__ import annotations

import argparse
import ast
import inspect
import os
import platform
import random
import re
import statistics
import sys
import sysconfig
import time
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from common import print_table, verdict, write_result  # noqa: E402
from hearth.index.embed_base import available_cores, no_load_progress_bars  # noqa: E402
from hearth.index.embed_onnx import OnnxEmbedder, OnnxInt8Embedder  # noqa: E402
from hearth.index.embedder import AUTO_BACKEND, resolve_model  # noqa: E402

NAME = "bench_embedder"
PEER = "st encode (torch)"
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`(])")


@dataclass
class Passage:
    query: str  # the first sentence, removed from the text ("" for chunks without a query)
    text: str


@dataclass
class Row:
    backend: str
    chunks_per_s: float
    runs_s: list[float]
    ratio_vs_st: float
    mean_cosine: float
    min_cosine: float
    recall_at_5: float
    top1_agreement: float
    top5_overlap: float


def stdlib_paragraphs() -> list[list[str]]:
    """Docstring paragraphs of the standard library, one list per module file, in file order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "site-packages", "ensurepip"}
    files: list[list[str]] = []
    for path in sorted(root.rglob("*.py")):
        if skip & set(path.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        paragraphs: list[str] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node, clean=False)
                if doc:
                    for para in inspect.cleandoc(doc).split("\n\n"):
                        if len(para.split()) >= 4:
                            paragraphs.append(" ".join(para.split()))
        if paragraphs:
            files.append(paragraphs)
    return files


def build_passages(count_tokens, n: int, n_queries: int, lo: int = 140, hi: int = 210):
    """n chunks of consecutive docstring paragraphs of one module (lo..hi tokens), sampled
    with a fixed seed; for n_queries of them the first sentence becomes the query and is
    taken out of the chunk, so the query does not simply repeat its passage."""
    chunks: list[str] = []
    for paragraphs in stdlib_paragraphs():
        parts: list[str] = []
        for para in paragraphs:
            parts.append(para)
            text = "\n\n".join(parts)
            tokens = count_tokens(text)
            if tokens < lo:
                continue
            while tokens > hi:  # cut at a word boundary inside the budget
                words = text.split(" ")
                text = " ".join(words[: int(len(words) * hi / tokens * 0.97)])
                tokens = count_tokens(text)
            if tokens >= lo:
                chunks.append(text)
            parts = []
    rng = random.Random(0)
    if len(chunks) < n:
        print(f"only {len(chunks)} chunks available; using all", file=sys.stderr)
    chunks = rng.sample(chunks, min(n, len(chunks)))
    passages: list[Passage] = []
    seen: set[str] = set()
    for text in chunks:
        sentences = SENTENCE_END.split(text, maxsplit=1)
        query = sentences[0]
        if (
            len(passages) < n_queries
            and len(sentences) == 2
            and 5 <= len(query.split()) <= 40
            and query not in seen
            and count_tokens(sentences[1]) >= lo // 2
        ):
            seen.add(query)
            passages.append(Passage(query=query, text=sentences[1]))
    queried = {p.text for p in passages}
    rest = [
        Passage(query="", text=t) for t in chunks if SENTENCE_END.split(t, 1)[-1] not in queried
    ]
    return passages + rest


def retrieval(query_vecs: np.ndarray, passage_vecs: np.ndarray, k: int = 5) -> np.ndarray:
    """Top-k passage indices per query (queries i belongs to passage i)."""
    scores = query_vecs @ passage_vecs.T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def percent(values) -> float:
    return round(float(np.mean(values)) * 100, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=400, help="chunks to embed (default 400)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per backend")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    cores = available_cores()
    torch.set_num_threads(cores)
    model = resolve_model("all-MiniLM-L6-v2")
    backends = {
        "onnx": OnnxEmbedder(model, args.batch_size),
        "onnx unsorted": OnnxEmbedder(model, args.batch_size, sort_by_length=False),
        "onnx-int8": OnnxInt8Embedder(model, args.batch_size),
        "onnx-int8 batched": OnnxInt8Embedder(model, args.batch_size, one_text_per_run=False),
    }
    tokenizer = backends["onnx"].tokenizer
    t0 = time.perf_counter()
    passages = build_passages(tokenizer.count, args.chunks, args.queries)
    texts = [p.text for p in passages]
    queries = [p.query for p in passages if p.query]
    tokens = tokenizer.count_batch(texts)
    print(
        f"{len(texts)} chunks of stdlib docstrings, tokens mean {statistics.mean(tokens):.0f} "
        f"(min {min(tokens)}, max {max(tokens)}); {len(queries)} queries; {cores} threads; "
        f"corpus built in {time.perf_counter() - t0:.1f}s"
    )

    with no_load_progress_bars():
        st = SentenceTransformer(str(model.path), device="cpu", local_files_only=True)

    def st_encode(batch: list[str]) -> np.ndarray:
        return st.encode(batch, batch_size=args.batch_size, normalize_embeddings=True)

    t0 = time.perf_counter()
    for embedder in backends.values():
        embedder.warm_up()
    setup_s = time.perf_counter() - t0
    embedders = {PEER: st_encode} | {k: v.embed for k, v in backends.items()}
    for embed in embedders.values():
        embed(texts[:64])  # first-call allocations out of the timings

    # Interleave the repeats so a burst of load from other processes hits every backend.
    runs: dict[str, list[float]] = {name: [] for name in embedders}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for name, embed in embedders.items():
            start = time.perf_counter()
            vectors[name] = np.asarray(embed(texts), dtype=np.float32)
            runs[name].append(time.perf_counter() - start)

    reference = vectors[PEER]
    reference_top = retrieval(st_encode(queries), reference)
    peer_speed = len(texts) / statistics.median(runs[PEER])
    rows = []
    for name, embed in embedders.items():
        top = retrieval(np.asarray(embed(queries), dtype=np.float32), vectors[name])
        cosines = np.sum(vectors[name] * reference, axis=1)
        speed = len(texts) / statistics.median(runs[name])
        rows.append(
            Row(
                backend=name,
                chunks_per_s=round(speed, 1),
                runs_s=[round(t, 2) for t in runs[name]],
                ratio_vs_st=round(speed / peer_speed, 2),
                mean_cosine=round(float(cosines.mean()), 5),
                min_cosine=round(float(cosines.min()), 5),
                recall_at_5=percent([i in top[i] for i in range(len(queries))]),
                top1_agreement=percent(top[:, 0] == reference_top[:, 0]),
                top5_overlap=percent(
                    [len(set(a) & set(b)) / 5 for a, b in zip(top, reference_top, strict=True)]
                ),
            )
        )

    table = print_table(
        f"Embedding {len(texts)} chunks of stdlib docstrings (tokens mean "
        f"{statistics.mean(tokens):.0f}), batch {args.batch_size}, median of {args.repeats} "
        f"interleaved runs, {cores} threads; recall@5 over {len(queries)} queries; "
        f"auto = {AUTO_BACKEND}; backend setup (export/load) {setup_s:.1f}s",
        ["backend", "chunks/s", "x ST", "cos mean", "cos min", "R@5", "top-1 = ST", "top-5 ∩ ST"],
        [
            [
                f"{r.backend} (auto)" if r.backend == AUTO_BACKEND else r.backend,
                f"{r.chunks_per_s:.1f}",
                r.ratio_vs_st,
                f"{r.mean_cosine:.4f}",
                f"{r.min_cosine:.4f}",
                f"{r.recall_at_5:.1f}",
                f"{r.top1_agreement:.1f}",
                f"{r.top5_overlap:.1f}",
            ]
            for r in rows
        ],
    )
    by_name = {r.backend: r for r in rows}
    auto, peer = by_name[AUTO_BACKEND], by_name[PEER]
    claims = {
        "auto >= 2x sentence-transformers encode": auto.ratio_vs_st >= 2.0,
        "auto recall@5 within 1 point of torch": abs(auto.recall_at_5 - peer.recall_at_5) <= 1.0,
    }
    for claim, ok in claims.items():
        print(f"{claim}: {verdict(ok)}")

    import onnxruntime
    import sentence_transformers

    report = {
        "claim": "auto embedder backend vs sentence-transformers encode, same chunks",
        "auto_backend": AUTO_BACKEND,
        "chunks": len(texts),
        "queries": len(queries),
        "tokens_mean": round(statistics.mean(tokens), 1),
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "threads": cores,
        "machine": platform.processor() or platform.machine(),
        "versions": {
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "sentence_transformers": sentence_transformers.__version__,
        },
        "setup_s": round(setup_s, 1),
        "rows": [asdict(r) for r in rows],
        "claims": claims,
        "table": table,
    }
    path = write_result(NAME, report)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
