"""Answer quality: does `hearth ask` state the right fact, and cite a passage that holds it?

Two fictional corpora, each ingested with the real pipeline into an index of its own (built
once per run): benchmarks/data/handbook (a co-working space, 54 questions in
answer_questions.jsonl; seen during development: answer code was changed after reading its
results) and benchmarks/data/fieldguide (a ferry operator, 57 questions in
fieldguide_questions.jsonl; HELD OUT: written after the answer code and prompt were settled,
nothing was tuned on it). Every question is asked in extractive mode once per corpus (the
best supporting span; rag/answer.py never calls the chat model there, so the bench passes
none) and in generative mode once per model (`--models`, default the two embedded ones:
SmolLM2-135M and Qwen2.5-Coder-0.5B), the models taking turns question by question so that
drifting machine load hits them alike. Writes benchmarks/results/bench_answers.json (per-question
rows included) and one table per corpus with the models side by side.

There is no pass/fail target; the claims recorded are descriptive (extractive both >= generative
both, per corpus and model). The slow benchmark: 111 questions, each answered three ways;
40 minutes on 2 cores busy with other work (load average 3-4: ~6 s per SmolLM2 answer, ~9-15
s per Qwen answer; ~2 s per SmolLM2 answer on quiet cores). `--modes extractive` for the quick
half, `--limit N` for the first N questions of each set, `--corpus handbook` for one set,
`--models local:smollm2` for one model.

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
os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # as `hearth ask` sets it (llamacpp.py)

from common import environment, print_table, write_result  # noqa: E402

NAME = "bench_answers"
HERE = Path(__file__).resolve().parent
MODES = ("generative", "extractive")
DEFAULT_MODELS = "local:smollm2,local:qwen2.5-coder-0.5b"


@dataclass(frozen=True)
class Corpus:
    name: str
    folder: Path
    questions: Path
    held_out: bool
    note: str


CORPORA = {
    "handbook": Corpus(
        "handbook",
        HERE / "data" / "handbook",
        HERE / "data" / "answer_questions.jsonl",
        held_out=False,
        note="co-working handbook, seen during development",
    ),
    "fieldguide": Corpus(
        "fieldguide",
        HERE / "data" / "fieldguide",
        HERE / "data" / "fieldguide_questions.jsonl",
        held_out=True,
        note="ferry field guide, HELD OUT: nothing was tuned on it",
    ),
}
# kept for callers of the one-corpus version
HANDBOOK = CORPORA["handbook"].folder
QUESTIONS = CORPORA["handbook"].questions


@dataclass
class Question:
    id: str
    question: str
    expected: list[str]
    source: str  # file name inside the corpus folder


def normalise(text: str) -> str:
    """Lowercase, punctuation to spaces, whitespace collapsed, padded for whole-word search."""
    return " " + " ".join(re.sub(r"[^\w]+", " ", text.lower()).split()) + " "


def holds(text: str, expected: list[str]) -> bool:
    """True when any accepted string occurs in `text` as whole words."""
    hay = normalise(text)
    return any(normalise(e) in hay for e in expected if normalise(e).strip())


def load_questions(path: Path = QUESTIONS, folder: Path = HANDBOOK) -> list[Question]:
    """The question set; refuses a row whose source file is missing or does not hold the fact."""
    questions = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        expected = row["expected"]
        if isinstance(expected, str):
            expected = [expected]
        source = folder / row["source"]
        if not source.is_file():
            raise SystemExit(f"{path}:{lineno}: source {row['source']!r} is not in {folder}")
        if not holds(source.read_text(encoding="utf-8"), expected):
            raise SystemExit(f"{path}:{lineno}: no accepted string of {expected} is in {source}")
        questions.append(Question(str(row["id"]), row["question"], list(expected), row["source"]))
    return questions


def build_index(index_dir: Path, chunk_tokens: int, overlap: int, folder: Path = HANDBOOK):
    """The corpus in a fresh index, built exactly as `hearth ingest` builds one."""
    from hearth.index.embedder import load_embedder
    from hearth.index.indexer import Indexer
    from hearth.index.store import SQLiteStore
    from hearth.ingest.splitter import Splitter

    store = SQLiteStore(index_dir / "index.sqlite3")
    embedder = load_embedder()
    store.check_embedder(embedder.name, embedder.dim)
    splitter = Splitter(embedder.count_tokens, chunk_tokens=chunk_tokens, overlap_tokens=overlap)
    report = Indexer(store, embedder, splitter).ingest([str(folder)], progress=False)
    if report.skipped:
        raise SystemExit(f"{folder.name} files were skipped: {report.skipped}")
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


def prompt_tokens(answerer: Any, q: Question, answer: Any) -> int | None:
    """Tokens of the grounded prompt the model was given (its own template and tokenizer)."""
    from hearth.rag.prompt import build_messages

    if not answer.passages:
        return None  # nothing relevant retrieved: the model was not called
    return answerer.model.count_tokens(build_messages(q.question, answer.passages))


def ask(answerer: Any, q: Question, mode: str, k: int) -> dict:
    """One question, timed, scored; the row kept in the result file."""
    start = time.perf_counter()
    answer = answerer.answer(q.question, k=k, extractive=mode == "extractive")
    seconds = time.perf_counter() - start
    stated = holds(answer.text, q.expected)
    cited = cited_fact(answer, q)
    row = {
        "id": q.id,
        "question": q.question,
        "expected": q.expected,
        "source": q.source,
        "answer": answer.text,
        "found": answer.found,
        "citations": [
            {"n": c.n, "source": Path(c.source).name, "text": c.text} for c in answer.citations
        ],
        "fact_in_passages": fact_in_passages(answer, q),
        "stated": stated,
        "cited": cited,
        "quoted": quoted_fact(answer, q),
        "both": stated and cited,
        "seconds": round(seconds, 3),
    }
    if mode == "generative":
        row.update(
            generated=answer.generated,  # the model's own words, before citation checking
            generated_states=holds(answer.generated, q.expected),
            fallback=answer.fallback,  # no supported sentence: the best span was shown instead
            finish_reason=answer.finish_reason,
            dropped_passages=answer.dropped_passages,
            prompt_tokens=prompt_tokens(answerer, q, answer),
        )
    return row


def mark(row: dict) -> str:
    if row["stated"] and row["cited"]:
        return "ok"
    return "stated" if row["stated"] else ("cited" if row["cited"] else "-")


def summarise(rows: list[dict]) -> dict:
    n = len(rows)

    def share(key: str) -> float:
        return round(sum(bool(r.get(key)) for r in rows) / n, 3)

    secs = [r["seconds"] for r in rows]
    out = {
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
    if rows and "generated" in rows[0]:
        tokens = [r["prompt_tokens"] for r in rows if r.get("prompt_tokens")]
        out.update(
            generated_states=share("generated_states"),
            fallback=share("fallback"),
            stopped_at_max_tokens=sum(r.get("finish_reason") == "length" for r in rows),
            answers_with_dropped_passages=sum(bool(r.get("dropped_passages")) for r in rows),
            prompt_tokens_median=statistics.median(tokens) if tokens else None,
            prompt_tokens_max=max(tokens) if tokens else None,
        )
    return out


def pct(share: float | None) -> str:
    return "-" if share is None else f"{share:.1%}"


# (label, summary key, formatter); rows of each corpus table
METRICS = [
    ("states fact", "stated", pct),
    ("cites passage with fact", "cited", pct),
    ("quotes fact", "quoted", pct),
    ("both (states + cites)", "both", pct),
    ("model's own text states fact", "generated_states", pct),
    ("span shown instead (fallback)", "fallback", pct),
    ("fact given to model", "fact_in_passages", pct),
    ("stopped at max_tokens", "stopped_at_max_tokens", str),
    ("prompt tokens median / max", None, None),
    ("s/answer mean", "seconds_per_answer_mean", lambda v: f"{v:.2f}"),
    ("s/answer median", "seconds_per_answer_median", lambda v: f"{v:.2f}"),
]


def column_name(label: str) -> str:
    return label if label == "extractive" else f"generative {label.removeprefix('local:')}"


def corpus_table(corpus: Corpus, summary: dict[str, dict], title: str) -> str:
    labels = list(summary)
    rows = []
    for name, key, how in METRICS:
        cells = []
        for label in labels:
            s = summary[label]
            if key is None:
                med, top = s.get("prompt_tokens_median"), s.get("prompt_tokens_max")
                cells.append("-" if med is None else f"{med:.0f} / {top}")
            else:
                value = s.get(key)
                cells.append("-" if value is None else how(value))
        rows.append([name, *cells])
    return print_table(title, ["metric", *map(column_name, labels)], rows)


LEGEND = (
    "states fact: the answer text holds the expected fact; cites passage with fact: a citation "
    "from the expected file quotes it or cites a passage holding it; quotes fact: the quoted "
    "span itself holds it; both: states and cites; model's own text states fact: the raw "
    "generation holds it, before citation checking; fallback: no generated sentence was "
    "supported by a passage, so the answer shown is the best supporting span (as in "
    "extractive mode); fact given to model: a passage holding it was among those in the "
    "prompt (the ceiling for both). s/answer includes retrieval and citation checking."
)


def parse_models(args: argparse.Namespace) -> list[str]:
    if args.model:
        return [args.model]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        raise SystemExit("--models needs at least one model spec")
    return models


def main(argv: list[str] | None = None) -> int:
    from hearth import llm
    from hearth.config import Settings
    from hearth.rag.answer import Answerer
    from hearth.rag.retrievers import make_retriever

    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--corpus", choices=[*CORPORA, "both"], default="both")
    parser.add_argument("--limit", type=int, default=None, help="first N questions of each set")
    parser.add_argument("-k", type=int, default=defaults.top_k)
    parser.add_argument("--retriever", default=defaults.retriever)
    parser.add_argument(
        "--models", default=DEFAULT_MODELS, help=f"comma-separated specs (default {DEFAULT_MODELS})"
    )
    parser.add_argument("--model", default=None, help="one model spec (instead of --models)")
    args = parser.parse_args(argv)
    specs = parse_models(args) if "generative" in args.modes else []
    corpora = list(CORPORA.values()) if args.corpus == "both" else [CORPORA[args.corpus]]
    load_start = os.getloadavg()
    run_start = time.perf_counter()

    models = {spec: llm.load(spec, context_size=defaults.context_size) for spec in specs}
    rows: dict[str, dict[str, list[dict]]] = {}
    built: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="hearth-bench-answers-") as tmp:
        for corpus in corpora:
            every = load_questions(corpus.questions, corpus.folder)
            questions = every[: args.limit]
            t0 = time.perf_counter()
            index_dir = Path(tmp) / corpus.name
            index_dir.mkdir()
            store, embedder, report = build_index(
                index_dir, defaults.chunk_tokens, defaults.chunk_overlap, corpus.folder
            )
            ingest_s = time.perf_counter() - t0
            print(
                f"{corpus.name}: ingested {report.documents} files, {report.chunks} chunks "
                f"in {ingest_s:.1f}s; {len(questions)} questions"
            )
            built[corpus.name] = {
                "questions": len(questions),
                "chunks": report.chunks,
                "ingest_s": round(ingest_s, 1),
            }
            retriever = make_retriever(args.retriever, store, embedder)

            def answerer(model, retriever=retriever, embedder=embedder):
                return Answerer(
                    retriever,
                    model,
                    embedder,
                    max_tokens=defaults.max_tokens,
                    temperature=0.0,
                    min_relevance=defaults.min_relevance,
                )

            per: dict[str, list[dict]] = {}
            if "extractive" in args.modes:
                plain = answerer(None)  # extractive answers never call a chat model
                per["extractive"] = []
                for i, q in enumerate(questions, 1):
                    row = ask(plain, q, "extractive", args.k)
                    per["extractive"].append(row)
                    print(
                        f"  [{corpus.name} extractive {i:>2}/{len(questions)}] {q.id} "
                        f"{mark(row):<6} {row['seconds']:5.2f}s",
                        flush=True,
                    )
            if specs:
                answerers = {spec: answerer(model) for spec, model in models.items()}
                for spec, a in answerers.items():
                    per[spec] = []
                    # load the weights on the set's last question, so that the first one
                    # asked does not find its own prompt already in the KV cache
                    a.answer(every[-1].question, k=args.k)
                for i, q in enumerate(questions, 1):
                    # models take turns, first one then the other first, so drift hits both
                    order = specs if i % 2 else specs[::-1]
                    for spec in order:
                        row = ask(answerers[spec], q, "generative", args.k)
                        per[spec].append(row)
                        print(
                            f"  [{corpus.name} {spec} {i:>2}/{len(questions)}] {q.id} "
                            f"{mark(row):<6} {row['seconds']:5.2f}s",
                            flush=True,
                        )
            rows[corpus.name] = {
                label: per[label] for label in ["extractive", *specs] if label in per
            }
            store.close()

    summary = {c: {label: summarise(r) for label, r in per.items()} for c, per in rows.items()}
    tables, claims = [], {}
    for corpus in corpora:
        s = summary[corpus.name]
        kind = "HELD OUT, nothing tuned on it" if corpus.held_out else "seen during development"
        title = (
            f"Answer quality, {corpus.name} ({kind}): {built[corpus.name]['questions']} questions, "
            f"{args.retriever} retriever, k={args.k}, {built[corpus.name]['chunks']} chunks"
        )
        tables.append(f"{title}\n\n{corpus_table(corpus, s, title)}")
        if "extractive" in s:
            for spec in specs:
                claims[f"{corpus.name}: extractive both >= generative both ({spec})"] = (
                    s["extractive"]["both"] >= s[spec]["both"]
                )
    print(LEGEND)
    for claim, ok in claims.items():
        print(f"{claim}: {'yes' if ok else 'no'}")
    run_s = time.perf_counter() - run_start
    load_end = os.getloadavg()
    print(
        f"run took {run_s:.0f}s; load average (1/5/15 min) {load_start} at start, {load_end} at end"
    )
    path = write_result(
        NAME,
        {
            "corpora": {
                c.name: {
                    "folder": str(c.folder.relative_to(HERE.parent)),
                    "questions_file": str(c.questions.relative_to(HERE.parent)),
                    "held_out": c.held_out,
                    "note": c.note,
                    **built[c.name],
                }
                for c in corpora
            },
            "models": specs,
            "modes": args.modes,
            "embedder": embedder.name,
            "retriever": args.retriever,
            "k": args.k,
            "chunk_tokens": defaults.chunk_tokens,
            "max_tokens": defaults.max_tokens,
            "context_size": defaults.context_size or llm.DEFAULT_CONTEXT_SIZE,
            "run_s": round(run_s, 1),
            "load_avg_start": load_start,
            "load_avg_end": load_end,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "environment_end": environment(),
            "summary": summary,
            "claims": claims,
            "legend": LEGEND,
            "table": "\n\n".join(tables),
            "questions": rows,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
