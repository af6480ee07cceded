"""Answer quality: does `hearth ask` state the right fact, and cite a passage that holds it?

Ingests a fictional handbook (benchmarks/data/handbook) with the real pipeline, asks every
question in benchmarks/data/answer_questions.jsonl in generative and extractive mode with the
embedded model, and writes benchmarks/results/bench_answers.json plus a table. There is no
pass/fail target; the one claim recorded is descriptive (extractive both >= generative both).
The slow benchmark: a few minutes extractive, ~20 minutes generative on 2 busy cores (~3
minutes for both on quiet ones); `--modes extractive` for the quick half, `--limit N` for the
first N questions.

A fact counts as stated when one of its accepted strings occurs in the answer text; it counts
as cited when a citation from the expected file quotes it, or cites a passage that holds it.
Matching is case-insensitive, on whole words, after punctuation becomes whitespace.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from common import print_table, write_result  # noqa: E402

NAME = "bench_answers"
HERE = Path(__file__).resolve().parent
HANDBOOK = HERE / "data" / "handbook"
QUESTIONS = HERE / "data" / "answer_questions.jsonl"
MODES = ("generative", "extractive")


@dataclass
class Question:
    id: str
    question: str
    expected: list[str]
    source: str  # file name inside the handbook


def normalise(text: str) -> str:
    """Lowercase, punctuation to spaces, whitespace collapsed, padded for whole-word search."""
    return " " + " ".join(re.sub(r"[^\w]+", " ", text.lower()).split()) + " "


def holds(text: str, expected: list[str]) -> bool:
    """True when any accepted string occurs in `text` as whole words."""
    hay = normalise(text)
    return any(normalise(e) in hay for e in expected if normalise(e).strip())


def load_questions(path: Path = QUESTIONS) -> list[Question]:
    questions = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        expected = row["expected"]
        if isinstance(expected, str):
            expected = [expected]
        if not (HANDBOOK / row["source"]).is_file():
            raise SystemExit(f"{path}:{lineno}: source {row['source']!r} is not in {HANDBOOK}")
        questions.append(Question(str(row["id"]), row["question"], list(expected), row["source"]))
    return questions


def build_index(index_dir: Path, chunk_tokens: int, overlap: int):
    """The handbook in a fresh index, built exactly as `hearth ingest` builds one."""
    from hearth.index.embedder import load_embedder
    from hearth.index.indexer import Indexer
    from hearth.index.store import SQLiteStore
    from hearth.ingest.splitter import Splitter

    store = SQLiteStore(index_dir / "index.sqlite3")
    embedder = load_embedder()
    store.check_embedder(embedder.name, embedder.dim)
    splitter = Splitter(embedder.count_tokens, chunk_tokens=chunk_tokens, overlap_tokens=overlap)
    report = Indexer(store, embedder, splitter).ingest([str(HANDBOOK)], progress=False)
    if report.skipped:
        raise SystemExit(f"handbook files were skipped: {report.skipped}")
    return store, embedder, report


def cited_fact(answer: Any, q: Question) -> bool:
    """A citation from the expected file whose quote, or cited passage, holds the fact."""
    passages = {p.chunk.id: p.chunk.text for p in answer.passages}
    for c in answer.citations:
        if Path(c.source).name != q.source:
            continue
        if holds(c.text, q.expected) or holds(passages.get(c.chunk_id, ""), q.expected):
            return True
    return False


def quoted_fact(answer: Any, q: Question) -> bool:
    """Stricter than `cited_fact`: the quoted span itself (not just its passage) holds the fact."""
    return any(
        Path(c.source).name == q.source and holds(c.text, q.expected) for c in answer.citations
    )


def fact_in_passages(answer: Any, q: Question) -> bool:
    """Whether the model was given a passage from the expected file that holds the fact."""
    return any(
        Path(p.chunk.source).name == q.source and holds(p.chunk.text, q.expected)
        for p in answer.passages
    )


def run_mode(answerer: Any, questions: list[Question], mode: str, k: int) -> list[dict]:
    rows = []
    extractive = mode == "extractive"
    for i, q in enumerate(questions, 1):
        start = time.perf_counter()
        answer = answerer.answer(q.question, k=k, extractive=extractive)
        seconds = time.perf_counter() - start
        stated = holds(answer.text, q.expected)
        cited = cited_fact(answer, q)
        rows.append(
            {
                "id": q.id,
                "question": q.question,
                "expected": q.expected,
                "source": q.source,
                "answer": answer.text,
                "found": answer.found,
                "citations": [
                    {"n": c.n, "source": Path(c.source).name, "text": c.text}
                    for c in answer.citations
                ],
                "fact_in_passages": fact_in_passages(answer, q),
                "stated": stated,
                "cited": cited,
                "quoted": quoted_fact(answer, q),
                "both": stated and cited,
                "seconds": round(seconds, 3),
            }
        )
        mark = "ok" if stated and cited else ("stated" if stated else ("cited" if cited else "-"))
        print(f"  [{mode} {i:>2}/{len(questions)}] {q.id} {mark:<6} {seconds:5.2f}s", flush=True)
    return rows


def summarise(rows: list[dict]) -> dict:
    n = len(rows)

    def share(key: str) -> float:
        return round(sum(bool(r[key]) for r in rows) / n, 3)

    secs = [r["seconds"] for r in rows]
    return {
        "questions": n,
        "stated": share("stated"),
        "cited": share("cited"),
        "both": share("both"),
        "quoted": share("quoted"),
        "found": share("found"),
        "fact_in_passages": share("fact_in_passages"),
        "seconds_per_answer_mean": round(statistics.fmean(secs), 3),
        "seconds_per_answer_median": round(statistics.median(secs), 3),
    }


def pct(share: float) -> str:
    return f"{share:.1%}"


def answers_table(summary: dict[str, dict], title: str) -> str:
    return print_table(
        title,
        [
            "mode",
            "questions",
            "states fact",
            "cites passage with fact",
            "quotes fact",
            "both (states + cites)",
            "fact given to model",
            "s/answer mean",
            "s/answer median",
        ],
        [
            [
                mode,
                s["questions"],
                pct(s["stated"]),
                pct(s["cited"]),
                pct(s["quoted"]),
                pct(s["both"]),
                pct(s["fact_in_passages"]),
                f"{s['seconds_per_answer_mean']:.2f}",
                f"{s['seconds_per_answer_median']:.2f}",
            ]
            for mode, s in summary.items()
        ],
    )


LEGEND = (
    "states fact: the answer text holds the expected fact; cites passage with fact: a citation "
    "from the expected file quotes it or cites a passage holding it; quotes fact: the quoted "
    "span itself holds it; both: states and cites; fact given to model: a passage holding it "
    "was among those handed to the model (the ceiling for both)."
)


def main(argv: list[str] | None = None) -> int:
    from hearth import llm
    from hearth.config import Settings
    from hearth.rag.answer import Answerer
    from hearth.rag.retrievers import make_retriever

    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--limit", type=int, default=None, help="first N questions only")
    parser.add_argument("-k", type=int, default=defaults.top_k)
    parser.add_argument("--retriever", default=defaults.retriever)
    parser.add_argument("--model", default="local:smollm2")
    args = parser.parse_args(argv)

    questions = load_questions()[: args.limit]
    with tempfile.TemporaryDirectory(prefix="hearth-bench-answers-") as tmp:
        t0 = time.perf_counter()
        store, embedder, report = build_index(
            Path(tmp), defaults.chunk_tokens, defaults.chunk_overlap
        )
        ingest_s = time.perf_counter() - t0
        print(f"ingested {report.documents} files, {report.chunks} chunks in {ingest_s:.1f}s")
        model = llm.load(args.model, context_size=defaults.context_size)
        answerer = Answerer(
            make_retriever(args.retriever, store, embedder),
            model,
            embedder,
            max_tokens=defaults.max_tokens,
            temperature=0.0,
            min_relevance=defaults.min_relevance,
        )
        answerer.answer("warm up: when is the building open?", k=args.k)  # load weights
        rows = {mode: run_mode(answerer, questions, mode, args.k) for mode in args.modes}
        store.close()

    summary = {mode: summarise(r) for mode, r in rows.items()}
    table = answers_table(
        summary,
        f"Answer quality: {len(questions)} handbook questions, model {args.model}, "
        f"{args.retriever} retriever, k={args.k}, {report.chunks} chunks",
    )
    print(LEGEND)
    claims = {}
    if {"generative", "extractive"} <= summary.keys():
        claims["extractive both >= generative both"] = (
            summary["extractive"]["both"] >= summary["generative"]["both"]
        )
    for claim, ok in claims.items():
        print(f"{claim}: {'yes' if ok else 'no'}")
    path = write_result(
        NAME,
        {
            "corpus": str(HANDBOOK.relative_to(HERE.parent)),
            "model": args.model,
            "embedder": embedder.name,
            "retriever": args.retriever,
            "k": args.k,
            "chunk_tokens": defaults.chunk_tokens,
            "chunks": report.chunks,
            "ingest_s": round(ingest_s, 1),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "summary": summary,
            "claims": claims,
            "legend": LEGEND,
            "table": table,
            "questions": rows,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
