"""Retrieval strategies side by side: hit@5, MRR@10, nDCG@10 and latency per development set.

Each corpus goes through a real Hearth index (Indexer -> SQLiteStore, 200-token chunks, 32
overlap, contextual-header vectors, the embedded all-MiniLM-L6-v2), as bench_retrieval builds it.
Rows: the bm25s peer (stemmed, English stopwords), MiniLM dense, RRF(bm25s, dense), Hearth's
bm25 / dense / hybrid as they are, and candidate defaults prototyped here (fusion by weighted
RRF or by a convex combination of normalised scores, deeper candidate lists, Porter-stemmed FTS5
with the title + headings as a second column, dense pseudo-relevance feedback).

Sets: "tune" sets choose the default (stdlib main, docs dev, handbook); "check" sets are only
reported (stdlib held-out, fieldguide). SciFact (BEIR format: corpus.jsonl, queries.jsonl,
qrels/{train,test}.tsv) is read from --scifact DIR when given: train is a tuning set, test is
reported once for the chosen configs. A query's relevant units: the expected file (with its
phrase or answer string) for the repo's sets, the judged abstracts for SciFact; a unit counts at
its first chunk in the ranking, later chunks of the same unit gain nothing (nDCG@10, binary).

Latency: per query over every set, and at 100k synthetic chunks (bench_search_latency's store)
for the real retriever classes below, with --latency-chunks; query embedding timed apart.

Found (2026-12-07, shared 2-core box): the proposed default CANDIDATE, a convex combination of
z-scored scores, 0.6 * z(dense cosine) + 0.4 * z(-bm25), each z over its own list of 30
distinct passages (a passage missing from a list gets that list's lowest z), beats today's
RRF(k=60, depth 10) hybrid on 4 of 5 sets (nDCG@10 pooled over 293 questions 0.871 vs 0.865;
27 questions better, 17 worse) for about +15% search time. Porter stemming, title columns,
dense PRF and the late-interaction reranker did not beat it on both tune and check sets.

    .venv/bin/python benchmarks/bench_strategies.py [--quick] [--scifact DIR]
    .venv/bin/python benchmarks/bench_strategies.py --real          # real retrieve() calls
    .venv/bin/python benchmarks/bench_strategies.py --rerank 20     # reranker, on a subset
    .venv/bin/python benchmarks/bench_strategies.py --llm 12        # model-calling rows
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common import DATA_DIR, cache_dir, markdown_table, percentile, print_table, write_result

sys.path.insert(0, str(DATA_DIR))

CHUNK_TOKENS, OVERLAP, MODE = 200, 32, "title+headings"
DEPTH = 100  # candidates precomputed per component for the offline strategies


# --------------------------------------------------------------------------- corpora and labels


@dataclass
class Question:
    id: str
    text: str
    relevant: Callable[[str, str], str | None]  # (source, text) -> unit id or None
    n_units: int


@dataclass
class QSet:
    name: str
    corpus: str
    role: str  # "tune" or "check"
    questions: list[Question]


def _repo_label_question(q: dict) -> Question:
    """bench_retrieval's labels: expected file names, optionally a phrase the chunk contains."""
    expected = set(q["expected"])
    phrase = (q.get("phrase") or "").lower()

    def rel(source: str, text: str) -> str | None:
        name = Path(source).name
        if name in expected and (not phrase or phrase in text.lower()):
            return name
        return None

    return Question(q["id"], q["question"], rel, len(expected))


def _answer_label_question(q: dict, corpus_chunks: list[tuple[str, str]]) -> Question:
    """bench_answers' labels: the source file, and a chunk holding an accepted answer string;
    a question whose answer no chunk holds whole (split across chunks) falls back to the file."""
    from bench_answers import holds

    src = q["source"]
    strict = any(Path(s).name == src and holds(t, q["expected"]) for s, t in corpus_chunks)

    def rel(source: str, text: str) -> str | None:
        if Path(source).name != src:
            return None
        return src if (not strict or holds(text, q["expected"])) else None

    return Question(q["id"], q["question"], rel, 1)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def build_folder_index(name: str, folder: Path, embedder):
    from hearth.index.indexer import Indexer
    from hearth.index.store import SQLiteStore
    from hearth.ingest.splitter import Splitter

    kind = type(embedder).__name__
    out = cache_dir() / f"strategies_{name}_{kind}_{MODE}_{CHUNK_TOKENS}_{OVERLAP}"
    out.mkdir(parents=True, exist_ok=True)
    store = SQLiteStore(out / "index.sqlite3")
    splitter = Splitter(embedder.count_tokens, chunk_tokens=CHUNK_TOKENS, overlap_tokens=OVERLAP)
    t0 = time.perf_counter()
    report = Indexer(store, embedder, splitter, embed_input=MODE).ingest(
        [str(folder)], progress=False
    )
    print(
        f"index {name}: {report.documents} docs, {report.chunks} chunks "
        f"({report.embedded_chunks} embedded now, {time.perf_counter() - t0:.0f} s)",
        flush=True,
    )
    return store


def scifact_folder(root: Path) -> Path:
    """SciFact's abstracts as one markdown file per doc id ('# title' then the abstract)."""
    out = cache_dir() / "scifact_corpus"
    done = out / ".complete"
    if done.exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    for row in _jsonl(root / "corpus.jsonl"):
        (out / f"{row['_id']}.md").write_text(f"# {row.get('title', '')}\n\n{row['text']}\n")
    done.write_text("ok")
    return out


def scifact_sets(root: Path, quick: bool) -> list[QSet]:
    queries = {r["_id"]: r["text"] for r in _jsonl(root / "queries.jsonl")}
    sets = []
    for split, role in (("train", "tune"), ("test", "check")):
        path = root / "qrels" / f"{split}.tsv"
        if not path.exists():
            continue
        qrels: dict[str, set[str]] = {}
        for line in path.read_text().splitlines()[1:]:
            parts = line.split("\t")
            if len(parts) >= 3 and int(parts[2]) > 0:
                qrels.setdefault(parts[0], set()).add(parts[1])
        qs = []
        for qid, docs in qrels.items():

            def rel(source: str, text: str, docs=docs) -> str | None:
                stem = Path(source).stem
                return stem if stem in docs else None

            qs.append(Question(qid, queries[qid], rel, len(docs)))
        if quick:
            qs = qs[:100]
        sets.append(QSet(f"scifact-{split}", "scifact", role, qs))
    return sets


def load_corpora(embedder, args) -> tuple[dict, list[QSet]]:
    """{corpus: store} and the question sets over them."""
    import bench_retrieval as br

    stores, sets = {}, []
    corpora = ["docs", "handbook", "fieldguide"] if args.quick else ["stdlib", "docs", "handbook"]
    if not args.quick:
        corpora.append("fieldguide")
    for name in corpora:
        if name in ("stdlib", "docs"):
            corpus, _, store, _ = br.build_index("auto", CHUNK_TOKENS, OVERLAP, MODE, name)
            stores[name] = store
            for set_name, file in br.QUESTION_SETS[name].items():
                rows = br.load_questions(DATA_DIR / file, corpus)
                role = "check" if set_name == "held-out" else "tune"
                label = f"{name}-{set_name}"
                sets.append(QSet(label, name, role, [_repo_label_question(q) for q in rows]))
        else:
            store = build_folder_index(name, DATA_DIR / name, embedder)
            stores[name] = store
            chunks = [(c.source, c.text) for c in all_chunks(store)]
            file = "answer_questions.jsonl" if name == "handbook" else "fieldguide_questions.jsonl"
            qs = [_answer_label_question(q, chunks) for q in _jsonl(DATA_DIR / file)]
            sets.append(QSet(name, name, "tune" if name == "handbook" else "check", qs))
    if args.scifact:
        root = Path(args.scifact)
        stores["scifact"] = build_folder_index("scifact", scifact_folder(root), embedder)
        sets += scifact_sets(root, args.quick)
    return stores, sets


def all_chunks(store) -> list:
    return [c for d in store.list_documents() for c in store.document_chunks(d["source"])]


# --------------------------------------------------------------------------- per-corpus features


_TOKEN = re.compile(r"[^\W_]+")


class CorpusView:
    """Everything the offline strategies need: chunks in dense-matrix row order, passage ids,
    a bm25s index (peer), and a Porter-stemmed FTS5 table with title+headings as a column."""

    def __init__(self, name: str, store, embedder):
        import bm25s
        import Stemmer

        from hearth.index.contextual import document_title
        from hearth.rag.retrievers import passage_key

        self.name, self.store, self.embedder = name, store, embedder
        m = store._dense_matrix()
        self.vectors = m.vectors
        self.ids = m.chunk_ids
        by_id = {c.id: c for c in all_chunks(store)}
        self.chunks = [by_id[int(i)] for i in self.ids]
        self.row_of = {int(cid): r for r, cid in enumerate(self.ids)}
        keys: dict[str, int] = {}
        self.passage = np.array(
            [keys.setdefault(passage_key(c.text), len(keys)) for c in self.chunks]
        )
        # bm25s peer, stemmed as its docs recommend
        self.stemmer = Stemmer.Stemmer("english")
        self.bm25s = bm25s.BM25()
        tokens = bm25s.tokenize(
            [c.text for c in self.chunks], stopwords="en", stemmer=self.stemmer, show_progress=False
        )
        self.bm25s.index(tokens, show_progress=False)
        # Porter FTS5 in a side file (the index itself is left as it is)
        fts_path = Path(str(store.path) + f".porter-{len(self.ids)}.sqlite3")
        self.fts = sqlite3.connect(fts_path, check_same_thread=False)
        have = self.fts.execute(
            "SELECT count(*) FROM sqlite_master WHERE name = 'pfts'"
        ).fetchone()[0]
        if not have:
            self.fts.execute(
                "CREATE VIRTUAL TABLE pfts USING fts5(head, text, "
                "tokenize='porter unicode61 remove_diacritics 2')"
            )
            self.fts.executemany(
                "INSERT INTO pfts(rowid, head, text) VALUES (?, ?, ?)",
                [
                    (int(c.id), " ".join([document_title(c.source), *c.headings]), c.text)
                    for c in self.chunks
                ],
            )
            self.fts.commit()

    def bm25s_scores(self, query: str) -> np.ndarray:
        toks = self.bm25s_tokens(query)
        if not toks:
            return np.zeros(len(self.chunks), dtype=np.float32)
        return np.asarray(self.bm25s.get_scores(toks), dtype=np.float32)

    def bm25s_tokens(self, query: str) -> list[str]:
        import bm25s

        toks = bm25s.tokenize(
            [query], stopwords="en", stemmer=self.stemmer, return_ids=False, show_progress=False
        )[0]
        return [t for t in toks if t in self.bm25s.vocab_dict]

    def porter(self, query: str, n: int, head_w: float) -> dict[int, float]:
        """row -> -bm25 over the Porter table; query words as Hearth's query_terms keeps them."""
        from hearth.index.store import fts_query, query_terms

        terms = query_terms(query)
        if not terms:
            return {}
        sql = (
            f"SELECT rowid, bm25(pfts, {head_w}, 1.0) AS s FROM pfts WHERE pfts MATCH ? "
            "ORDER BY s, 1 LIMIT ?"
        )
        rows = self.fts.execute(sql, (fts_query(terms), n)).fetchall()
        return {self.row_of[int(cid)]: -float(s) for cid, s in rows}


@dataclass
class QueryFeatures:
    qvec: np.ndarray
    dense: np.ndarray  # cosine per row
    hearth_bm25: dict[int, float]  # row -> -bm25 (top DEPTH)
    bm25s: np.ndarray  # score per row
    porter: dict[float, dict[int, float]] = field(default_factory=dict)  # head weight -> top


def features(view: CorpusView, query: str, head_weights: tuple[float, ...]) -> QueryFeatures:
    qvec = np.asarray(view.embedder.embed([query]), dtype=np.float32)[0]
    qvec = qvec / (np.linalg.norm(qvec) or 1.0)
    hb = {view.row_of[h.chunk.id]: h.score for h in view.store.search_bm25(query, DEPTH)}
    f = QueryFeatures(qvec, view.vectors @ qvec, hb, view.bm25s_scores(query))
    for w in head_weights:
        f.porter[w] = view.porter(query, DEPTH, w)
    return f


# --------------------------------------------------------------------------- strategies


def ranked_from_scores(scores: np.ndarray, n: int) -> list[int]:
    n = min(n, len(scores))
    top = np.argpartition(-scores, n - 1)[:n]
    return [int(i) for i in top[np.argsort(-scores[top], kind="stable")]]


def ranked_from_dict(d: dict[int, float]) -> list[int]:
    return [r for r, _ in sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))]


def distinct(view: CorpusView, rows: list[int], n: int) -> list[int]:
    """First n rows with distinct passage text (Hearth's collapse_duplicates)."""
    seen, out = set(), []
    for r in rows:
        p = view.passage[r]
        if p not in seen:
            seen.add(p)
            out.append(r)
            if len(out) == n:
                break
    return out


def rrf(view, lists: list[list[int]], weights: list[float], k: float, depth: int) -> list[int]:
    score: dict[int, float] = {}
    best: dict[int, int] = {}
    for lst, w in zip(lists, weights, strict=True):
        for rank, r in enumerate(distinct(view, lst, depth), start=1):
            score[r] = score.get(r, 0.0) + w / (k + rank)
            best[r] = min(best.get(r, rank), rank)
    return sorted(score, key=lambda r: (-score[r], best[r], r))


def _norm(values: np.ndarray, _unused, how: str) -> np.ndarray:
    """Min-max to [0, 1] or z-score, over the list itself."""
    if len(values) == 0:
        return values
    if how == "minmax":
        lo, hi = float(values.min()), float(values.max())
        return (values - lo) / (hi - lo) if hi > lo else np.ones_like(values)
    mu, sd = float(values.mean()), float(values.std())
    return (values - mu) / sd if sd > 0 else np.zeros_like(values)


def convex(
    view, lex: dict[int, float], dense: np.ndarray, alpha: float, how: str, depth: int
) -> list[int]:
    """alpha * norm(dense) + (1 - alpha) * norm(lexical) over the union of both top-`depth`
    distinct-passage lists; each score normalised over its own list (min-max or z-score); a
    candidate missing from one list gets that list's lowest normalised value (as fuse_hits)."""
    lex_rows = distinct(view, ranked_from_dict(lex), depth)
    dense_rows = distinct(view, ranked_from_scores(dense, 4 * depth), depth)
    lex_n = _norm(np.array([lex[r] for r in lex_rows], dtype=np.float64), None, how)
    den_n = _norm(dense[dense_rows].astype(np.float64), None, how)
    lex_s = dict(zip(lex_rows, lex_n, strict=True))
    den_s = dict(zip(dense_rows, den_n, strict=True))
    lex_floor = float(lex_n.min()) if len(lex_n) else 0.0
    den_floor = float(den_n.min()) if len(den_n) else 0.0
    cands = list(dict.fromkeys(lex_rows + dense_rows))
    total = {
        r: alpha * den_s.get(r, den_floor) + (1 - alpha) * lex_s.get(r, lex_floor) for r in cands
    }
    return sorted(cands, key=lambda r: (-total[r], r))


def prf_dense(view, f: QueryFeatures, beta: float, m: int) -> np.ndarray:
    """Rocchio on the query vector: q + beta * mean of the top-m distinct chunk vectors."""
    top = distinct(view, ranked_from_scores(f.dense, 4 * m), m)
    q = f.qvec + beta * view.vectors[top].mean(axis=0)
    q = q / (np.linalg.norm(q) or 1.0)
    return view.vectors @ q


def bm25s_dict(f: QueryFeatures) -> dict[int, float]:
    rows = ranked_from_scores(f.bm25s, DEPTH)
    return {r: float(f.bm25s[r]) for r in rows if f.bm25s[r] > 0}


def strategies(head_weights) -> dict[str, Callable]:
    s: dict[str, Callable] = {
        "bm25s (peer)": lambda v, f: ranked_from_dict(bm25s_dict(f)),
        "MiniLM dense": lambda v, f: ranked_from_scores(f.dense, 40),
        "RRF(bm25s, dense) k60": lambda v, f: rrf(
            v, [ranked_from_dict(bm25s_dict(f)), ranked_from_scores(f.dense, 400)], [1, 1], 60, 100
        ),
        "hearth bm25": lambda v, f: ranked_from_dict(f.hearth_bm25),
        "hearth hybrid (RRF k60 d10)": lambda v, f: rrf(
            v, [ranked_from_dict(f.hearth_bm25), ranked_from_scores(f.dense, 40)], [1, 1], 60, 10
        ),
    }
    lexicals = {
        "fts": lambda f: f.hearth_bm25,
        **{f"porter-h{w:g}": (lambda f, w=w: f.porter[w]) for w in head_weights},
        "bm25s": bm25s_dict,
    }
    for lname, lex in lexicals.items():
        if lname != "fts":
            s[f"{lname} alone"] = lambda v, f, lex=lex: ranked_from_dict(lex(f))
        for k in (10, 60):
            for depth in (10, 30, 100):
                for w in (1.0, 1.5):
                    s[f"RRF {lname}+dense k{k} d{depth} wd{w:g}"] = (
                        lambda v, f, lex=lex, k=k, d=depth, w=w: rrf(
                            v,
                            [ranked_from_dict(lex(f)), ranked_from_scores(f.dense, 4 * d)],
                            [1.0, w],
                            k,
                            d,
                        )
                    )
        for how in ("minmax", "z"):
            for depth in (20, 30, 50, 100):
                for alpha in (0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8):
                    s[f"CC-{how} {lname}+dense a{alpha:g} d{depth}"] = (
                        lambda v, f, lex=lex, h=how, a=alpha, d=depth: convex(
                            v, lex(f), f.dense, a, h, d
                        )
                    )
    for beta in (0.3, 0.6, 1.0):
        s[f"dense PRF b{beta:g} m3"] = lambda v, f, b=beta: ranked_from_scores(
            prf_dense(v, f, b, 3), 40
        )
        for lname in ("fts", f"porter-h{head_weights[-1]:g}"):
            lex = lexicals[lname]
            s[f"CC-z {lname}+denswPRF b{beta:g} a0.5 d100"] = lambda v, f, lex=lex, b=beta: convex(
                v, lex(f), prf_dense(v, f, b, 3), 0.5, "z", 100
            )
    return s


# --------------------------------------------------------------------------- metrics


def score_ranking(view: CorpusView, q: Question, rows: list[int]) -> dict[str, float]:
    top = distinct(view, rows, 10)
    gains, seen = [], set()
    first = None
    for rank, r in enumerate(top, start=1):
        c = view.chunks[r]
        unit = q.relevant(c.source, c.text)
        if unit is not None and first is None:
            first = rank
        gains.append(1.0 if unit is not None and unit not in seen else 0.0)
        if unit is not None:
            seen.add(unit)
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    idcg = sum(1 / math.log2(i + 2) for i in range(min(q.n_units, 10)))
    return {
        "hit@5": float(first is not None and first <= 5),
        "mrr@10": 1.0 / first if first else 0.0,
        "ndcg@10": dcg / idcg if idcg else 0.0,
    }


def evaluate_offline(views, sets, strats, head_weights) -> dict:
    """{set: {strategy: {metric: mean, ms: mean fusion ms}}} from precomputed features."""
    out: dict[str, dict] = {}
    for qs in sets:
        view = views[qs.corpus]
        t0 = time.perf_counter()
        feats = [features(view, q.text, head_weights) for q in qs.questions]
        print(
            f"{qs.name}: {len(qs.questions)} queries, features "
            f"{1000 * (time.perf_counter() - t0) / len(qs.questions):.0f} ms/query",
            flush=True,
        )
        res = {}
        for name, fn in strats.items():
            per_q = [
                score_ranking(view, q, fn(view, f))
                for q, f in zip(qs.questions, feats, strict=True)
            ]
            res[name] = {m: float(np.mean([p[m] for p in per_q])) for m in per_q[0]}
            res[name]["per_query_ndcg"] = [round(p["ndcg@10"], 4) for p in per_q]
        out[qs.name] = res
    return out


def evaluate_rerank(views, sets, strats, bases: list[str], top: int, n_queries: int) -> dict:
    """hearth.rag.rerank.LateInteractionReranker (MaxSim over MiniLM token vectors, fused with
    the first stage by rank, blend 0.5) over the top `top` passages of each base strategy, on
    the first `n_queries` questions of each set (it embeds every candidate passage at search
    time: slow on a shared 2-core box). Returns, per set, each base's and each reranked row's
    metrics on that subset and the rerank's own ms per query."""
    from hearth.rag.rerank import LateInteractionReranker
    from hearth.types import ScoredChunk

    out: dict[str, dict] = {}
    for qs in sets:
        view = views[qs.corpus]
        reranker = LateInteractionReranker(view.embedder, mode="tokens", blend=0.5)
        questions = qs.questions[:n_queries]
        feats = [features(view, q.text, ()) for q in questions]
        res = {}
        for base in bases:
            plain, per_q, ms = [], [], []
            for q, f in zip(questions, feats, strict=True):
                rows = distinct(view, strats[base](view, f), top)
                plain.append(score_ranking(view, q, rows))
                hits = [ScoredChunk(chunk=view.chunks[r], score=0.0, scores={}) for r in rows]
                t0 = time.perf_counter()
                new = reranker.rerank(q.text, hits)
                ms.append(1000 * (time.perf_counter() - t0))
                row_of = {h.chunk.id: r for h, r in zip(hits, rows, strict=True)}
                per_q.append(score_ranking(view, q, [row_of[h.chunk.id] for h in new]))
            for name, vals in ((base, plain), (f"{base} + late-interaction top{top}", per_q)):
                res[name] = {m: float(np.mean([p[m] for p in vals])) for m in vals[0]}
            res[f"{base} + late-interaction top{top}"]["rerank_ms_p50"] = percentile(ms, 50)
        out[qs.name] = {"queries": len(questions), "rows": res}
        print(f"{qs.name}: rerank rows done ({len(questions)} queries)", flush=True)
    return out


# --------------------------------------------------------------------------- real retrievers


class FusedRetriever:
    """The candidate default as it would run in Hearth: store.search_bm25 (or the Porter side
    table) and store.search_dense at depth `depth`, fused by z-score convex combination (or
    RRF). Used for latency; its quality equals the offline row of the same name."""

    def __init__(self, store, embedder, how="z", alpha=0.6, depth=30, lexical=None):
        self.store, self.embedder = store, embedder
        self.how, self.alpha, self.depth = how, alpha, depth
        self.lexical = lexical or store.search_bm25  # (query, n) -> list[ScoredChunk]

    def retrieve(self, query: str, k: int = 10):
        from hearth.rag.retrievers import unique_top

        qvec = np.asarray(self.embedder.embed([query]), dtype=np.float32)[0]
        lex_hits = unique_top(lambda n: self.lexical(query, n), self.depth)
        dense_hits = unique_top(lambda n: self.store.search_dense(qvec, n), self.depth)
        return fuse_hits(lex_hits, dense_hits, qvec, self.how, self.alpha, k)


def porter_side_table(store) -> Callable:
    """A Porter-stemmed FTS5 copy of the store's chunks (head = document title + headings,
    text) in a side file, and a search over it returning ScoredChunks like search_bm25 (query
    words as query_terms keeps them; no df>=50% pruning). For latency of the stemmed variant."""
    from hearth.index.contextual import document_title
    from hearth.index.store import fts_query, query_terms
    from hearth.types import ScoredChunk

    conn = sqlite3.connect(str(store.path) + ".porter-side.sqlite3", check_same_thread=False)
    conn.execute("DROP TABLE IF EXISTS pfts")
    conn.execute(
        "CREATE VIRTUAL TABLE pfts USING fts5(head, text, "
        "tokenize='porter unicode61 remove_diacritics 2')"
    )
    rows = store._db.execute(
        "SELECT c.id, d.source, c.headings, c.text FROM chunks c "
        "JOIN documents d ON d.id = c.document_id"
    )
    conn.executemany(
        "INSERT INTO pfts(rowid, head, text) VALUES (?, ?, ?)",
        (
            (cid, " ".join([document_title(src), *json.loads(h)]), text)
            for cid, src, h, text in rows
        ),
    )
    conn.commit()

    def search(query: str, n: int) -> list:
        terms = query_terms(query)
        if not terms:
            return []
        found = conn.execute(
            "SELECT rowid, bm25(pfts, 0.0, 1.0) AS s FROM pfts WHERE pfts MATCH ? "
            "ORDER BY s, 1 LIMIT ?",
            (fts_query(terms), n),
        ).fetchall()
        chunks = store._chunks_by_id([r[0] for r in found])
        return [ScoredChunk(chunk=chunks[c], score=-s, scores={"bm25": -s}) for c, s in found]

    return search


def fuse_hits(lex_hits, dense_hits, qvec, how: str, alpha: float, k: int):
    """The formula proposed for HybridRetriever, on the two retrievers' distinct-passage lists:
    score = alpha * norm(dense) + (1 - alpha) * norm(lexical), each normalised over its own
    list (z-score or min-max); a passage missing from a list gets that list's lowest value.
    Ties by chunk id. Same ranking as the offline `convex`."""
    from hearth.rag.retrievers import passage_key

    def normed(hits):
        vals = _norm(np.array([h.score for h in hits], dtype=np.float64), None, how)
        return {passage_key(h.chunk.text): (h, float(v)) for h, v in zip(hits, vals, strict=True)}

    lex, den = normed(lex_hits), normed(dense_hits)
    lex_floor = min((v for _, v in lex.values()), default=0.0)
    den_floor = min((v for _, v in den.values()), default=0.0)
    total = []
    for key in dict.fromkeys([*lex, *den]):
        hit = (lex.get(key) or den[key])[0]
        s = alpha * den.get(key, (None, den_floor))[1]
        s += (1 - alpha) * lex.get(key, (None, lex_floor))[1]
        total.append((s, hit))
    total.sort(key=lambda t: (-t[0], t[1].chunk.id))
    return [h for _, h in total[:k]]


class CachedEmbedder:
    """The embedder with the timed queries embedded beforehand, so latency rows time the search
    alone (the query embedding is the same cost for every row: reported on its own)."""

    def __init__(self, embedder, queries: list[str]):
        self.inner, self.name, self.dim = embedder, embedder.name, embedder.dim
        self.embed_ms = []
        self.cache = {}
        for q in dict.fromkeys(queries):
            t0 = time.perf_counter()
            self.cache[q] = np.asarray(embedder.embed([q]), dtype=np.float32)[0]
            self.embed_ms.append(1000 * (time.perf_counter() - t0))

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.cache[t] for t in texts])


def measure_latency(make: dict[str, Callable], queries: list[str], k: int = 10) -> dict:
    """p50/p95 ms per retriever; retrievers interleaved per query so load drift hits all."""
    ms: dict[str, list[float]] = {name: [] for name in make}
    for fn in make.values():
        fn(queries[0], k)
    for q in queries:
        for name, fn in make.items():
            t0 = time.perf_counter()
            fn(q, k)
            ms[name].append(1000 * (time.perf_counter() - t0))
    return {n: {"p50_ms": percentile(v, 50), "p95_ms": percentile(v, 95)} for n, v in ms.items()}


def latency_rows(store, embedder, queries: list[str], k: int, porter_depth=(30,)) -> dict:
    """Search-only latency of today's retrievers and the candidates over one store."""
    from hearth.rag.retrievers import make_retriever

    cached = CachedEmbedder(embedder, queries)
    makers = {
        kind: (lambda q, k, r=make_retriever(kind, store, cached): r.retrieve(q, k))
        for kind in ("bm25", "dense", "hybrid")
    }
    for d in (30, 100):
        r = FusedRetriever(store, cached, depth=d)
        makers[f"CC-z fts+dense d{d}"] = lambda q, k, r=r: r.retrieve(q, k)
    porter = porter_side_table(store)
    makers["porter-h0 alone"] = lambda q, k: porter(q, k)
    for d in porter_depth:
        r = FusedRetriever(store, cached, depth=d, lexical=porter)
        makers[f"CC-z porter-h0+dense d{d}"] = lambda q, k, r=r: r.retrieve(q, k)
    res = measure_latency(makers, queries, k)
    res["(query embedding, once per search)"] = {
        "p50_ms": percentile(cached.embed_ms, 50),
        "p95_ms": percentile(cached.embed_ms, 95),
    }
    return res


def latency_100k(embedder, n_chunks: int, n_queries: int) -> dict:
    """bench_search_latency's synthetic store: hybrid as it is against the proposed fusion."""
    from bench_search_latency import build_store, make_queries

    queries = make_queries(n_queries, 0)
    with tempfile.TemporaryDirectory(prefix="hearth-strategies-") as tmp:
        store, texts, secs = build_store(Path(tmp) / "index.sqlite3", embedder, n_chunks, 10, 0)
        print(f"latency store: {len(texts):,} chunks in {secs:.0f} s", flush=True)
        res = latency_rows(store, embedder, queries, 5, porter_depth=(30, 100))
        store.close()
    return {"chunks": n_chunks, "queries": n_queries, "k": 5, "results": res}


# --------------------------------------------------------------------------- model-calling rows


LLM_MODEL = "local:qwen2.5-coder-0.5b"
LLM_ROWS: list[tuple[str, dict]] = [  # (row name, build_pipeline keywords) on the hybrid
    ("standard (hybrid)", {}),
    *[
        (s, {"strategy": s})
        for s in ("multi-query", "hyde", "rag-fusion", "step-back", "decompose", "auto")
    ],
    ("rerank llm-pointwise", {"rerank": "llm-pointwise"}),
    ("rerank llm-listwise", {"rerank": "llm-listwise"}),
    ("rerank late-interaction", {"rerank": "late-interaction"}),
    ("mmr 0.7", {"mmr": 0.7}),
]


class ChunkView:
    """What score_ranking needs of a corpus (chunks by row, passage ids, row of a chunk id),
    without CorpusView's bm25s / Porter side indexes."""

    def __init__(self, store):
        from hearth.rag.retrievers import passage_key

        self.chunks = all_chunks(store)
        self.row_of = {c.id: r for r, c in enumerate(self.chunks)}
        keys: dict[str, int] = {}
        self.passage = np.array(
            [keys.setdefault(passage_key(c.text), len(keys)) for c in self.chunks]
        )


def spread(questions: list, n: int) -> list:
    """n questions spread evenly over the set (every len/n-th, from the first)."""
    if n >= len(questions):
        return list(questions)
    return [questions[(i * len(questions)) // n] for i in range(n)]


def _errors(generated: dict) -> list[str]:
    """The stages of a run whose model call failed (the stage fell back)."""
    return [k for k, v in generated.items() if isinstance(v, dict) and "error" in v]


def evaluate_llm(stores, sets, embedder, model, n: int, rows_run, on_progress=None) -> dict:
    """Every LLM_ROWS pipeline through the real build_pipeline(...) on each set's index, on the
    same `n` spread questions per set (k=10). Rows run one after the other per question, and
    the sets round-robin, so a run cut short still has every row on the same questions. Per
    set and row: the metrics, seconds per query, how many runs fell back (a stage's
    generated[...] has "error"), and auto's routes."""
    from hearth.rag.pipeline import build_pipeline

    out: dict[str, dict] = {}
    setup = {}
    for qs in sets:
        pipes = {
            name: build_pipeline(stores[qs.corpus], embedder, model=model, **kw)
            for name, kw in rows_run
        }
        setup[qs.name] = (ChunkView(stores[qs.corpus]), pipes, spread(qs.questions, n))
        out[qs.name] = {"questions": [], "rows": {name: [] for name in pipes}}
    for i in range(n):  # round-robin over the sets: a run cut short still covers every set
        for qs in sets:
            view, pipes, chosen = setup[qs.name]
            if i >= len(chosen):
                continue
            q, block = chosen[i], out[qs.name]
            t_q = time.perf_counter()
            for name, pipe in pipes.items():
                t0 = time.perf_counter()
                result = pipe.run(q.text, 10)
                secs = time.perf_counter() - t0
                rows = [view.row_of[h.chunk.id] for h in result.hits]
                rec = {**score_ranking(view, q, rows), "seconds": secs}
                rec["errors"] = _errors(result.generated)
                if "route" in result.generated:
                    route = result.generated["route"]
                    rec["route"] = route.get("ran", route.get("strategy"))
                block["rows"][name].append(rec)
            block["questions"].append(q.id)
            print(
                f"round {i + 1}/{n} {qs.name} {q.id}: {len(pipes)} rows in "
                f"{time.perf_counter() - t_q:.0f} s",
                flush=True,
            )
            if on_progress:
                on_progress(out)
    return out


def llm_summary(out: dict, names: list[str]) -> tuple[dict, list[list[str]]]:
    """Pooled (over every question of every set) and per-set means per row, and table rows."""

    def agg(recs: list[dict]) -> dict:
        if not recs:
            return {}
        res = {m: float(np.mean([r[m] for r in recs])) for m in ("hit@5", "mrr@10", "ndcg@10")}
        res["questions"] = len(recs)
        res["ms_per_query"] = 1000 * float(np.mean([r["seconds"] for r in recs]))
        res["fallbacks"] = sum(bool(r["errors"]) for r in recs)
        routes = [r["route"] for r in recs if "route" in r]
        if routes:
            res["routes"] = {x: routes.count(x) for x in sorted(set(routes))}
        return res

    pooled = {n: agg([r for b in out.values() for r in b["rows"][n]]) for n in names}
    per_set = {s: {n: agg(b["rows"][n]) for n in names} for s, b in out.items()}
    base = [r for b in out.values() for r in b["rows"][names[0]]]
    rows = []
    for n in names:
        p = pooled[n]
        if not p:
            continue
        mine = [r for b in out.values() for r in b["rows"][n]]
        w = sum(a["ndcg@10"] > b["ndcg@10"] + 1e-9 for a, b in zip(mine, base, strict=True))
        lo = sum(a["ndcg@10"] < b["ndcg@10"] - 1e-9 for a, b in zip(mine, base, strict=True))
        rows.append(
            [n, str(p["questions"]), f"{p['hit@5']:.3f}", f"{p['mrr@10']:.3f}"]
            + [f"{p['ndcg@10']:.3f}", f"+{w}/-{lo}", f"{p['ms_per_query']:.0f}"]
            + [str(p["fallbacks"])]
        )
    return {"pooled": pooled, "per_set": per_set}, rows


def run_llm(stores, sets, embedder, n: int, skip: set[str] = frozenset()) -> None:
    """--llm N: the model-calling rows, written to results/strategies_llm.json (after every
    question, so a run stopped early keeps what it measured)."""
    import hearth.llm

    unknown = skip - {name for name, _ in LLM_ROWS}
    if unknown:
        raise SystemExit(f"--llm-skip: no such rows {sorted(unknown)}")
    rows_run = [(name, kw) for name, kw in LLM_ROWS if name not in skip]
    t0 = time.perf_counter()
    model = hearth.llm.load(LLM_MODEL)
    print(f"model {LLM_MODEL} loaded in {time.perf_counter() - t0:.1f} s", flush=True)
    headers = ["row", "questions", "hit@5", "MRR@10", "nDCG@10", "vs std", "ms/query"]
    headers.append("fallbacks")

    def save(out: dict, final: bool = False) -> Path:
        summary, rows = llm_summary(out, [name for name, _ in rows_run])
        done = sum(len(b["questions"]) for b in out.values())
        title = (
            f"Model-calling rows ({LLM_MODEL}, real build_pipeline, k=10): {done} questions, "
            f"up to {n} per set; pooled means"
        )
        show = print_table if final else (lambda _title, h, r: markdown_table(h, r))
        table = show(title, headers, rows)
        per_set_rows = [
            [s, name, str(m["questions"]), f"{m['hit@5']:.2f}", f"{m['mrr@10']:.3f}"]
            + [f"{m['ndcg@10']:.3f}", f"{m['ms_per_query']:.0f}", str(m["fallbacks"])]
            for s, block in summary["per_set"].items()
            for name, m in block.items()
            if m
        ]
        per_set_table = show(
            "Per set",
            ["set", "row", "q", "hit@5", "MRR@10", "nDCG@10", "ms/query", "fallbacks"],
            per_set_rows,
        )
        return write_result(
            "strategies_llm",
            {
                "model": LLM_MODEL,
                "n_per_set": n,
                "complete": final,
                "rows": dict(rows_run),
                "skipped": sorted(skip),
                "summary": summary,
                "results": out,
                "table": table,
                "per_set_table": per_set_table,
            },
        )

    out = evaluate_llm(stores, sets, embedder, model, n, rows_run, on_progress=save)
    print(f"wrote {save(out, final=True)}")


# --------------------------------------------------------------------------- main


CANDIDATE = "CC-z fts+dense a0.6 d30"  # the proposed default (see the module doc)
FOCUS = [  # rows always shown: one knob changed at a time from today's default
    "RRF fts+dense k60 d30 wd1",
    "RRF fts+dense k60 d10 wd1.5",
    "CC-z fts+dense a0.5 d30",
    "CC-z fts+dense a0.6 d30",
    "CC-z fts+dense a0.6 d20",
    "CC-z fts+dense a0.6 d50",
    "CC-z fts+dense a0.55 d30",
    "CC-z fts+dense a0.65 d30",
    "CC-z fts+dense a0.5 d100",
    "CC-minmax fts+dense a0.6 d30",
    "porter-h0 alone",
    "RRF porter-h0+dense k60 d10 wd1",
    "CC-z porter-h0+dense a0.5 d30",
    "CC-z porter-h0+dense a0.6 d30",
    "CC-z porter-h1+dense a0.6 d30",
    "dense PRF b0.3 m3",
    "CC-z fts+denswPRF b0.3 a0.5 d100",
]


def evaluate_real(stores, views, sets, embedder) -> dict:
    """Today's retrievers and the candidate through their real retrieve() calls (the fetch
    depths of unique_top included), to check that the offline rows are what a port gives."""
    from hearth.rag.retrievers import make_retriever

    out: dict[str, dict] = {}
    for qs in sets:
        store, view = stores[qs.corpus], views[qs.corpus]
        row_of = view.row_of
        makers = {
            f"real {kind}": make_retriever(kind, store, embedder)
            for kind in ("bm25", "dense", "hybrid")
        }
        makers["real CC-z fts+dense a0.6 d30"] = FusedRetriever(store, embedder)
        res = {}
        for name, r in makers.items():
            per_q = [
                score_ranking(view, q, [row_of[h.chunk.id] for h in r.retrieve(q.text, 10)])
                for q in qs.questions
            ]
            res[name] = {m: float(np.mean([p[m] for p in per_q])) for m in per_q[0]}
            res[name]["per_query_ndcg"] = [round(p["ndcg@10"], 4) for p in per_q]
        out[qs.name] = res
    return out


def macro(results: dict, sets: list[QSet], role: str, metric: str) -> dict[str, float]:
    names = [s.name for s in sets if s.role == role]
    strats = results[names[0]].keys() if names else []
    return {st: float(np.mean([results[n][st][metric] for n in names])) for st in strats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small corpora only, fewer rows")
    parser.add_argument("--scifact", default=None, help="BEIR SciFact folder, if you have one")
    parser.add_argument("--latency-chunks", type=int, default=100_000, help="0 skips it")
    parser.add_argument("--latency-queries", type=int, default=100)
    parser.add_argument("--top", type=int, default=25, help="strategies listed per set")
    parser.add_argument(
        "--rerank",
        type=int,
        default=0,
        help="only compare the late-interaction reranker over this many candidates (slow)",
    )
    parser.add_argument(
        "--real", action="store_true", help="only check the real retrieve() of the rows"
    )
    parser.add_argument("--rerank-queries", type=int, default=15, help="questions per set")
    parser.add_argument(
        "--llm-skip",
        default="",
        help="comma-separated --llm row names to leave out (e.g. the slow LLM rerankers)",
    )
    parser.add_argument(
        "--llm",
        type=int,
        default=0,
        help="only the model-calling strategies / rerankers / MMR through build_pipeline, on "
        "N spread questions per set (slow: about a minute or more per question)",
    )
    parser.add_argument(
        "--candidate", default=CANDIDATE, help="the strategy proposed as default (a row name)"
    )
    args = parser.parse_args()

    from hearth.index.embedder import load_embedder

    embedder = load_embedder(backend="auto")
    embedder.embed(["warm up"])
    stores, sets = load_corpora(embedder, args)
    if args.llm:  # the model-calling rows: their own result file
        skip = {r.strip() for r in args.llm_skip.split(",") if r.strip()}
        run_llm(stores, sets, embedder, args.llm, skip)
        return
    views = {name: CorpusView(name, store, embedder) for name, store in stores.items()}
    head_weights = (0.0, 1.0) if args.quick else (0.0, 0.5, 1.0)
    strats = strategies(head_weights)
    if args.real:  # the real retrieve() calls: its own result file
        real = evaluate_real(stores, views, sets, embedder)
        names = list(next(iter(real.values())))
        rows = [
            [n]
            + [
                f"{real[s.name][n]['hit@5']:.2f}/{real[s.name][n]['mrr@10']:.3f}/"
                f"{real[s.name][n]['ndcg@10']:.3f}"
                for s in sets
            ]
            for n in names
        ]
        table = print_table(
            "Real retrieve() calls: hit@5/MRR@10/nDCG@10 per set",
            ["retriever", *[f"{s.name} ({len(s.questions)})" for s in sets]],
            rows,
        )
        path = write_result("strategies_real", {"results": real, "table": table})
        print(f"wrote {path}")
        return
    if args.rerank:  # a separate, slow comparison on a subset: its own result file
        bases = ["hearth hybrid (RRF k60 d10)", args.candidate]
        strats = strategies((0.0,))
        rr = evaluate_rerank(views, sets, strats, bases, args.rerank, args.rerank_queries)
        rows = [
            [set_name, name, f"{m['hit@5']:.2f}", f"{m['mrr@10']:.3f}", f"{m['ndcg@10']:.3f}"]
            + [f"{m['rerank_ms_p50']:.0f}" if "rerank_ms_p50" in m else ""]
            for set_name, block in rr.items()
            for name, m in block["rows"].items()
        ]
        table = print_table(
            f"Late-interaction rerank (first {args.rerank_queries} questions per set)",
            ["set", "strategy", "hit@5", "MRR@10", "nDCG@10", "rerank ms p50"],
            rows,
        )
        path = write_result("strategies_rerank", {"results": rr, "table": table})
        print(f"wrote {path}")
        return
    results = evaluate_offline(views, sets, strats, head_weights)

    tune = macro(results, sets, "tune", "ndcg@10")
    check = macro(results, sets, "check", "ndcg@10")
    fixed = [
        "bm25s (peer)",
        "MiniLM dense",
        "RRF(bm25s, dense) k60",
        "hearth bm25",
        "hearth hybrid (RRF k60 d10)",
        *[s for s in FOCUS if s in tune],
    ]
    best = sorted(tune, key=lambda s: -tune[s])[: args.top]
    shown = list(dict.fromkeys(fixed + best))
    set_names = [s.name for s in sets]
    base = "hearth hybrid (RRF k60 d10)"

    def wins(st: str, role: str) -> str:
        """Queries where `st` beats / loses to today's hybrid on nDCG@10, over `role` sets."""
        w = lo = 0
        for qs in sets:
            if qs.role != role:
                continue
            a = results[qs.name][st]["per_query_ndcg"]
            b = results[qs.name][base]["per_query_ndcg"]
            w += sum(x > y + 1e-9 for x, y in zip(a, b, strict=True))
            lo += sum(x < y - 1e-9 for x, y in zip(a, b, strict=True))
        return f"+{w}/-{lo}"

    rows = [
        [st, f"{tune[st]:.3f}", wins(st, "tune"), f"{check.get(st, float('nan')):.3f}"]
        + [wins(st, "check")]
        + [
            f"{results[n][st]['hit@5']:.2f}/{results[n][st]['mrr@10']:.3f}/{results[n][st]['ndcg@10']:.3f}"
            for n in set_names
        ]
        for st in shown
    ]
    table = print_table(
        "Strategies: mean nDCG@10 over tune / check sets, then hit@5/MRR@10/nDCG@10 per set",
        [
            "strategy",
            "tune nDCG",
            "vs hybrid",
            "check nDCG",
            "vs hybrid",
            *[f"{s.name} ({len(s.questions)})" for s in sets],
        ],
        rows,
    )

    # real-retriever latency on the dev corpora (per query, k=10, model loaded)

    dev_latency = {}
    for name, store in stores.items():
        queries = [q.text for s in sets if s.corpus == name for q in s.questions][:60]
        dev_latency[name] = latency_rows(store, embedder, queries, 10)
    lat_rows = [
        [c, n, f"{v['p50_ms']:.1f}", f"{v['p95_ms']:.1f}"]
        for c, d in dev_latency.items()
        for n, v in d.items()
    ]
    print_table(
        "Search latency on the dev corpora (ms, k=10, query embedding apart)",
        ["corpus", "retriever", "p50", "p95"],
        lat_rows,
    )

    big = None
    if args.latency_chunks:
        big = latency_100k(embedder, args.latency_chunks, args.latency_queries)
        print_table(
            f"Search latency at {args.latency_chunks:,} synthetic chunks (ms, k=5, embed apart)",
            ["retriever", "p50", "p95"],
            [[n, f"{v['p50_ms']:.1f}", f"{v['p95_ms']:.1f}"] for n, v in big["results"].items()],
        )

    path = write_result(
        "strategies" + ("_quick" if args.quick else ""),
        {
            "sets": {
                s.name: {"corpus": s.corpus, "role": s.role, "n": len(s.questions)} for s in sets
            },
            "chunks": {n: len(v.chunks) for n, v in views.items()},
            "results": results,
            "tune_ndcg": tune,
            "check_ndcg": check,
            "latency_dev": dev_latency,
            "latency_100k": big,
            "table": table,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
