"""Retrieval quality: hit@5 and MRR@10 of bm25, dense and hybrid on labeled stdlib-doc questions.

Corpus: Python's own module docs (pydoc plain text, built by data/build_stdlib_corpus.py);
questions: data/retrieval_questions.jsonl ("main", 66) and data/retrieval_questions_heldout.jsonl
("held-out", 82), plain-word questions and keyword queries as users type them, each labeled with
the file(s) that answer it and optionally a phrase the retrieved chunk must contain; every
figure is given per set and for both together.
Peer: rank_bm25's BM25Okapi over the very same chunks (a reference BM25).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from common import DATA_DIR, REPO_ROOT, cache_dir, print_table, verdict, write_result

sys.path.insert(0, str(DATA_DIR))
from build_stdlib_corpus import build_corpus  # noqa: E402

KINDS = ("bm25", "dense", "hybrid")
# "question": a question in plain words; "keyword": identifiers typed into a search box.
STYLES = ("question", "keyword")


def style_of(q: dict) -> str:
    return q.get("style", "question")


def load_questions(path: Path, corpus: Path) -> list[dict]:
    """Read the labeled set and check every label points at a real file and phrase."""
    questions = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for q in questions:
        for name in q["expected"]:
            file = corpus / name
            if not file.is_file():
                raise SystemExit(f"{path}: {q['id']} expects {name}, not in {corpus}")
            phrase = q.get("phrase")
            if phrase and phrase.lower() not in file.read_text().lower():
                raise SystemExit(f"{path}: {q['id']}: phrase {phrase!r} is not in {name}")
    return questions


def is_relevant(q: dict, source: str, text: str) -> bool:
    if Path(source).name not in q["expected"]:
        return False
    phrase = q.get("phrase")
    return not phrase or phrase.lower() in text.lower()


def first_relevant_rank(q: dict, hits: list[tuple[str, str]]) -> int | None:
    """1-based rank of the first relevant (source, text) hit, or None."""
    for rank, (source, text) in enumerate(hits, start=1):
        if is_relevant(q, source, text):
            return rank
    return None


def metrics(ranks: list[int | None]) -> dict[str, float]:
    n = len(ranks)
    return {
        "hit@1": sum(r is not None and r <= 1 for r in ranks) / n,
        "hit@5": sum(r is not None and r <= 5 for r in ranks) / n,
        "mrr@10": sum(1.0 / r for r in ranks if r is not None and r <= 10) / n,
    }


class RankBM25Peer:
    """BM25Okapi (rank_bm25) over the same chunks, lower-cased word tokens; chunks with the same
    text count once, as in Hearth's retrievers."""

    name = "rank_bm25 (peer)"

    def __init__(self, chunks: list[tuple[str, str]]):
        from rank_bm25 import BM25Okapi

        self.chunks = chunks
        self.bm25 = BM25Okapi([self.tokens(text) for _, text in chunks])

    @staticmethod
    def tokens(text: str) -> list[str]:
        return re.findall(r"\w+", text.lower())

    def search(self, query: str, k: int) -> list[tuple[str, str]]:
        import numpy as np

        from hearth.rag.retrievers import passage_key

        scores = self.bm25.get_scores(self.tokens(query))
        hits: dict[str, tuple[str, str]] = {}
        for i in np.argsort(-scores, kind="stable"):
            hits.setdefault(passage_key(self.chunks[i][1]), self.chunks[i])
            if len(hits) == k:
                break
        return list(hits.values())


# The development set's corpus is docs/ as of this commit, not the working tree's docs/: the
# docs are rewritten often, and every edit moved the dev figures by up to 0.03.
DEV_DOCS_COMMIT = "872b5be669139cb55dc07ced8c9259a4865d1f58"


def frozen_docs() -> Path:
    """docs/ at DEV_DOCS_COMMIT, extracted once (`git archive`) into the benchmark cache."""
    out = cache_dir() / f"docs_dev_corpus_{DEV_DOCS_COMMIT[:12]}"
    if (out / "docs").is_dir():
        return out / "docs"
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", DEV_DOCS_COMMIT, "docs"], capture_output=True
    )
    if archive.returncode != 0:
        raise SystemExit(
            f"--corpus docs reads docs/ at commit {DEV_DOCS_COMMIT[:12]} from the git history "
            f"(a full clone has it): {archive.stderr.decode(errors='replace').strip()}"
        )
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(partial, filter="data")
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return out / "docs"


def build_index(
    backend: str,
    chunk_tokens: int,
    overlap: int,
    mode: str = "title+headings",
    corpus_name: str = "stdlib",
):
    from hearth.index.embedder import load_embedder
    from hearth.index.indexer import Indexer
    from hearth.index.store import SQLiteStore
    from hearth.ingest.splitter import Splitter

    corpus = build_corpus("retrieval") if corpus_name == "stdlib" else frozen_docs()
    embedder = load_embedder(backend=backend)
    # keyed by what shapes the vectors: an index built by another embedder implementation
    # (torch fp32 vs int8 ONNX) or embedding mode would be reused as unchanged files
    kind = type(embedder).__name__
    name = (
        "retrieval_index"
        if corpus_name == "stdlib"
        else f"retrieval_index_{corpus_name}_{DEV_DOCS_COMMIT[:12]}"
    )
    folder = cache_dir() / f"{name}_{kind}_{mode}_{chunk_tokens}_{overlap}"
    folder.mkdir(parents=True, exist_ok=True)
    store = SQLiteStore(folder / "index.sqlite3")
    splitter = Splitter(embedder.count_tokens, chunk_tokens=chunk_tokens, overlap_tokens=overlap)
    t0 = time.perf_counter()
    indexer = Indexer(store, embedder, splitter, embed_input=mode)
    report = indexer.ingest([str(corpus)], progress=False)
    print(
        f"index: {report.documents} documents, {report.chunks} chunks "
        f"({report.embedded_chunks} embedded now, {time.perf_counter() - t0:.1f} s) in {folder}"
    )
    return corpus, embedder, store, report


# Question sets per corpus: "main" was written first; "held-out" was written after retrieval
# changes had been tried on "main" and run once, to check them on questions nobody tuned for.
QUESTION_SETS = {
    "stdlib": {
        "main": "retrieval_questions.jsonl",
        "held-out": "retrieval_questions_heldout.jsonl",
    },
    "docs": {"dev": "docs_dev_questions.jsonl"},
}


def evaluate(searchers: dict, questions: list[dict]) -> dict[str, dict]:
    """Rank of the first relevant hit per question for every searcher, and its metrics."""
    results = {}
    for name, search in searchers.items():
        search(questions[0]["question"], 10)  # warm caches (dense matrix load)
        ranks, seconds = [], 0.0
        for q in questions:
            t0 = time.perf_counter()
            hits = search(q["question"], 10)
            seconds += time.perf_counter() - t0
            ranks.append(first_relevant_rank(q, hits))
        results[name] = summarize(questions, ranks)
        results[name]["ms_per_query"] = 1000 * seconds / len(questions)
    return results


def summarize(questions: list[dict], ranks: list[int | None]) -> dict:
    by_style = {
        style: metrics([r for q, r in zip(questions, ranks, strict=True) if style_of(q) == style])
        for style in STYLES
        if any(style_of(q) == style for q in questions)
    }
    return {
        **metrics(ranks),
        "by_style": by_style,
        "ranks": dict(zip([q["id"] for q in questions], ranks, strict=True)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", default="auto", help="embedder backend (auto, torch, ...)")
    parser.add_argument("--chunk-tokens", type=int, default=200)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument(
        "--corpus",
        choices=["stdlib", "docs"],
        default="stdlib",
        help="stdlib: Python's module docs (the test sets); docs: Hearth's own docs/ with "
        "data/docs_dev_questions.jsonl (the development set fusion settings were tried on)",
    )
    parser.add_argument(
        "--questions", type=Path, nargs="+", default=None, help="labeled question files (JSONL)"
    )
    parser.add_argument("--no-peer", action="store_true", help="skip the rank_bm25 peer")
    parser.add_argument(
        "--embed-input",
        choices=["title+headings", "text"],
        default="title+headings",
        help="what each chunk's vector is computed from (hearth.index.contextual)",
    )
    args = parser.parse_args()

    from hearth.rag.retrievers import make_retriever

    corpus, embedder, store, report = build_index(
        args.backend, args.chunk_tokens, args.overlap, args.embed_input, args.corpus
    )
    files = (
        {path.stem: path for path in args.questions}
        if args.questions
        else {name: DATA_DIR / f for name, f in QUESTION_SETS[args.corpus].items()}
    )
    sets = {name: load_questions(path, corpus) for name, path in files.items()}
    embedder.embed(["warm up"])

    searchers = {}
    for kind in KINDS:
        retriever = make_retriever(kind, store, embedder)
        searchers[kind] = lambda q, k, r=retriever: [
            (h.chunk.source, h.chunk.text) for h in r.retrieve(q, k=k)
        ]
    if not args.no_peer:
        chunks = [
            (c.source, c.text)
            for d in store.list_documents()
            for c in store.document_chunks(d["source"])
        ]
        peer = RankBM25Peer(chunks)
        searchers[peer.name] = peer.search

    results = {name: evaluate(searchers, questions) for name, questions in sets.items()}
    if len(sets) > 1:
        every = [q for questions in sets.values() for q in questions]
        results["all"] = {
            name: summarize(every, [r for s in sets for r in results[s][name]["ranks"].values()])
            for name in searchers
        }
    rows = []
    styles_of = "all" if len(sets) > 1 else next(iter(sets))  # per-style rows for this set
    for set_name, by_searcher in results.items():
        n = len(next(iter(by_searcher.values()))["ranks"])
        for name, m in by_searcher.items():
            ms = m.get("ms_per_query")
            rows.append(
                [f"{set_name} ({n})", name, "all", m["hit@1"], m["hit@5"], m["mrr@10"], ms or ""]
            )
            if set_name == styles_of:
                for style, sm in m["by_style"].items():
                    rows.append(["", "", style, sm["hit@1"], sm["hit@5"], sm["mrr@10"], ""])

    total = sum(len(q) for q in sets.values())
    table = print_table(
        f"Retrieval quality: {total} questions, {report.documents} {args.corpus} docs, "
        f"{report.chunks} chunks, embedder {embedder.name} ({args.backend}, embeds "
        f"{args.embed_input})",
        ["set (questions)", "retriever", "queries", "hit@1", "hit@5", "MRR@10", "ms/query"],
        rows,
    )
    checks = {
        f"{set_name}: hybrid >= {kind} on {metric}": by_searcher["hybrid"][metric]
        >= by_searcher[kind][metric]
        for set_name, by_searcher in results.items()
        for kind in ("bm25", "dense")
        for metric in ("hit@5", "mrr@10")
    }
    for claim, ok in checks.items():
        print(f"{claim}: {verdict(ok)}")
    missed = {
        set_name: {
            name: [qid for qid, r in m["ranks"].items() if r is None]
            for name, m in by_searcher.items()
        }
        for set_name, by_searcher in results.items()
        if set_name != "all"
    }
    path = write_result(
        "bench_retrieval"
        + ("" if args.corpus == "stdlib" else f"_{args.corpus}")
        + ("" if args.backend == "auto" else f"_{args.backend}")
        + ("" if args.embed_input == "title+headings" else "_text")
        + ("" if args.questions is None else "_" + "_".join(files)),
        {
            "corpus": str(corpus),
            "documents": report.documents,
            "chunks": report.chunks,
            "question_sets": {name: str(path) for name, path in files.items()},
            "embedder": embedder.name,
            "backend": args.backend,
            "chunk_tokens": args.chunk_tokens,
            "overlap": args.overlap,
            "embed_input": args.embed_input,
            "results": results,
            "not_found_in_top10": missed,
            "checks": checks,
            "table": table,
        },
    )
    print(f"wrote {path}")
    store.close()


if __name__ == "__main__":
    main()
