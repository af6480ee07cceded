"""Does `hearth eval`'s judge mean something? Clean vs deliberately corrupted rows, scored by the
non-LLM fallback, by Hearth's LLM judge and by Ragas 0.4 pointed at `hearth serve`, side by side.

Hand-written harness; Ragas is the peer. Rows come from benchmarks/data/handbook and
answer_questions.jsonl: for each question the clean row's answer is the handbook sentence that
holds the expected answer, its contexts that paragraph plus a distractor paragraph of another
file, its ground truth the same sentence. Two corruptions per question: "wrong_answer" (the
clean answer of another question: faithfulness and answer relevancy should fall) and
"wrong_contexts" (two paragraphs of other files: context precision and recall should fall).
Reported per metric and judge: pairwise accuracy (share of (clean, corrupted) pairs where clean
scores higher, ties count half: the AUC of the paired labels), NaN count, seconds per row, and
Spearman/Pearson between Hearth's LLM judge and Ragas over the same rows.

Ragas runs in its own virtual environment so it never enters Hearth's dependencies:
    python3 -m venv /tmp/ragas-venv
    /tmp/ragas-venv/bin/pip install "ragas==0.4.*" "langchain<1" "langchain-core<1" \
        "langchain-community<0.4" "langchain-openai<1"
(ragas 0.4.3 imports langchain_community.chat_models.vertexai, gone in langchain-community 0.4)
(the script runs that itself when /tmp/ragas-venv is missing; RAGAS_PYTHON overrides the path).
Its LLM and embeddings are this machine's `hearth serve` (started here on a free port):
/v1/chat/completions with the judge model, /v1/embeddings with the index's embedder.

    python benchmarks/eval_judge.py                  # fallback on all questions, LLM + Ragas on 2
    python benchmarks/eval_judge.py --llm-questions 4 --no-ragas
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA_DIR, write_result  # noqa: E402

METRICS = ("faithfulness", "answer_relevancy", "context_precision", "context_recall")
# which corruption each metric should notice
LABEL_OF = {
    "faithfulness": ("wrong_answer", "wrong_number"),
    "answer_relevancy": ("wrong_answer",),
    "context_precision": ("wrong_contexts",),
    "context_recall": ("wrong_contexts",),
}
KINDS = ("clean", "wrong_answer", "wrong_number", "wrong_contexts")
RAGAS_VENV = Path(os.environ.get("RAGAS_VENV", "/tmp/ragas-venv"))
RAGAS_PYTHON = Path(os.environ.get("RAGAS_PYTHON", RAGAS_VENV / "bin" / "python"))
RAGAS_INSTALL = [sys.executable, "-m", "venv", str(RAGAS_VENV)]
RAGAS_PIP = [
    str(RAGAS_VENV / "bin" / "pip"),
    "install",
    "ragas==0.4.*",
    "langchain<1",
    "langchain-core<1",
    "langchain-community<0.4",
    "langchain-openai<1",
]


# --------------------------------------------------------------------------- the labeled rows


def paragraphs(text: str) -> list[str]:
    out = []
    for block in re.split(r"\n\s*\n", text):
        block = " ".join(block.split())
        if len(block) > 60 and not block.startswith("#"):
            out.append(block)
    return out


def sentence_with(paragraph: str, expected: str) -> str | None:
    for s in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9])", paragraph):
        if expected.lower() in s.lower():
            return s.strip()
    return None


def build_rows(limit: int | None = None) -> list[dict]:
    docs = {
        p.name: paragraphs(p.read_text(encoding="utf-8")) for p in (DATA_DIR / "handbook").iterdir()
    }
    questions = [json.loads(line) for line in (DATA_DIR / "answer_questions.jsonl").open()]
    clean = []
    for q in questions:
        paras = docs.get(q.get("source", ""))
        if not paras or not q.get("expected"):
            continue
        found = next(
            ((p, s) for p in paras for e in q["expected"] if (s := sentence_with(p, e))), None
        )
        if found is None:
            continue
        para, sentence = found
        others = [p for name, ps in sorted(docs.items()) if name != q["source"] for p in ps]
        distractor = others[len(clean) * 7 % len(others)]
        clean.append(
            {
                "id": q["id"],
                "question": q["question"],
                "answer": sentence,
                "contexts": [para, distractor],
                "ground_truth": sentence,
                "others": [
                    others[(len(clean) * 7 + 3) % len(others)],
                    others[(len(clean) * 11 + 5) % len(others)],
                ],
            }
        )
    if limit:
        clean = spread(clean, limit)
    rows = []
    for i, c in enumerate(clean):
        other = clean[(i + max(1, len(clean) // 2)) % len(clean)]
        base = {k: v for k, v in c.items() if k != "others"}
        rows.append({**base, "kind": "clean"})
        rows.append({**base, "kind": "wrong_answer", "answer": other["answer"]})
        rows.append({**base, "kind": "wrong_contexts", "contexts": c["others"]})
        if (changed := other_numbers(c["answer"])) is not None:  # a contradiction, same topic
            rows.append({**base, "kind": "wrong_number", "answer": changed})
    return rows


def other_numbers(sentence: str) -> str | None:
    """The sentence with each number changed (4719 -> 5820, 10:05 -> 21:16), or None."""
    if not re.search(r"\d", sentence):
        return None
    return re.sub(r"\d", lambda m: str((int(m.group()) + 1) % 10), sentence)


def spread(items: list, n: int) -> list:
    """n items spread over the list (not just its first file)."""
    if n >= len(items):
        return items
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


# --------------------------------------------------------------------------- agreement


def pairwise(rows: list[dict], scores: list[dict], metric: str) -> float | None:
    """Share of (clean, corrupted) pairs of a question where the clean row scores higher."""
    by = {(r["id"], r["kind"]): s.get(metric) for r, s in zip(rows, scores, strict=True)}
    wins = []
    for (qid, kind), value in by.items():
        if kind != "clean":
            continue
        for label in LABEL_OF[metric]:
            bad = by.get((qid, label))
            if (qid, label) not in by or _nan(value) or _nan(bad):
                continue
            wins.append(1.0 if value > bad else 0.5 if value == bad else 0.0)
    return round(float(np.mean(wins)), 3) if wins else None


def _nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    for v in np.unique(x):  # ties: average rank
        ranks[x == v] = ranks[x == v].mean()
    return ranks


def correlations(a: list, b: list) -> dict:
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if not _nan(x) and not _nan(y)]
    if len(pairs) < 3:
        return {"n": len(pairs), "spearman": None, "pearson": None}
    x, y = (np.array(v, dtype=float) for v in zip(*pairs, strict=True))

    def corr(u, v):
        if u.std() == 0 or v.std() == 0:
            return None
        return round(float(np.corrcoef(u, v)[0, 1]), 3)

    return {"n": len(pairs), "spearman": corr(_ranks(x), _ranks(y)), "pearson": corr(x, y)}


def judge_rows(judge, rows: list[dict]) -> tuple[list[dict], float]:
    out = []
    started = time.perf_counter()
    for i, r in enumerate(rows):
        t = time.perf_counter()
        s = judge.score(r["question"], r["answer"], r["contexts"], r["ground_truth"])
        fell = [m for m in METRICS if s[m].judge == "fallback" and judge.name != "fallback"]
        out.append({m: s[m].value for m in METRICS} | {"fallback": fell})
        print(
            f"  {judge.name} row {i + 1}/{len(rows)} {r['kind']}: "
            + " ".join(f"{m[:8]}={out[-1][m]:.2f}" for m in METRICS)
            + f" ({time.perf_counter() - t:.1f}s)",
            flush=True,
        )
    return out, (time.perf_counter() - started) / max(1, len(rows))


# ------------------------------------------------------------- Ragas through hearth serve

RAGAS_DRIVER = r"""
import json, math, sys, time, warnings
warnings.filterwarnings("ignore")
from ragas import EvaluationDataset, evaluate
from ragas.llms import LangchainLLMWrapper
from ragas.embeddings import LangchainEmbeddingsWrapper
from ragas.metrics import (Faithfulness, AnswerRelevancy, LLMContextPrecisionWithReference,
                           LLMContextRecall)
from ragas.run_config import RunConfig
from langchain_openai import ChatOpenAI, OpenAIEmbeddings

cfg = json.load(open(sys.argv[1]))
url = cfg["base_url"]
llm = LangchainLLMWrapper(ChatOpenAI(model=cfg["chat_model"], base_url=url, api_key="local",
                                     temperature=0.0, max_tokens=1024, timeout=900))
emb = LangchainEmbeddingsWrapper(OpenAIEmbeddings(model=cfg["embed_model"], base_url=url,
                                                  api_key="local",
                                                  check_embedding_ctx_length=False))
data = EvaluationDataset.from_list([
    {"user_input": r["question"], "response": r["answer"], "retrieved_contexts": r["contexts"],
     "reference": r["ground_truth"]} for r in cfg["rows"]])
metrics = [Faithfulness(), AnswerRelevancy(strictness=3), LLMContextPrecisionWithReference(),
           LLMContextRecall()]
t = time.perf_counter()
result = evaluate(data, metrics=metrics, llm=llm, embeddings=emb, show_progress=False,
                  run_config=RunConfig(timeout=900, max_retries=2, max_workers=4),
                  raise_exceptions=False)
seconds = time.perf_counter() - t
df = result.to_pandas()
names = {"faithfulness": "faithfulness", "answer_relevancy": "answer_relevancy",
         "context_precision": "llm_context_precision_with_reference",
         "context_recall": "context_recall"}
out = []
for _, row in df.iterrows():
    vals = {}
    for ours, theirs in names.items():
        v = row.get(theirs)
        vals[ours] = None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
    out.append(vals)
json.dump({"scores": out, "seconds": seconds, "columns": list(df.columns)},
          open(sys.argv[2], "w"))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_ragas() -> None:
    if RAGAS_PYTHON.exists():
        return
    print("installing Ragas into", RAGAS_VENV, flush=True)
    subprocess.run(RAGAS_INSTALL, check=True)
    subprocess.run(RAGAS_PIP, check=True)


def start_serve(index: Path, chat_model: str) -> tuple[subprocess.Popen, str, str]:
    port = free_port()
    hearth = Path(sys.executable).parent / "hearth"
    log = open(Path(tempfile.gettempdir()) / f"hearth-serve-{port}.log", "w")
    proc = subprocess.Popen(
        [str(hearth), "--index", str(index), "serve", "--port", str(port), "--model", chat_model],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    base = f"http://127.0.0.1:{port}/v1"
    for _ in range(240):
        if proc.poll() is not None:
            raise RuntimeError(f"hearth serve exited ({proc.returncode}); see {log.name}")
        try:
            with urllib.request.urlopen(base + "/models", timeout=2) as resp:
                cards = json.load(resp)["data"]
            break
        except OSError:
            time.sleep(1)
    else:
        proc.terminate()
        raise RuntimeError("hearth serve did not start in 240 s")
    embed = next(c["id"] for c in cards if c.get("kind") == "embedding")
    return proc, base, embed


def run_ragas(rows: list[dict], chat_model: str, index: Path) -> dict:
    ensure_ragas()
    proc, base, embed = start_serve(index, chat_model)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / "cfg.json"
            out = Path(tmp) / "out.json"
            driver = Path(tmp) / "driver.py"
            driver.write_text(RAGAS_DRIVER)
            cfg.write_text(
                json.dumps(
                    {"base_url": base, "chat_model": chat_model, "embed_model": embed, "rows": rows}
                )
            )
            started = time.perf_counter()
            done = subprocess.run(
                [str(RAGAS_PYTHON), str(driver), str(cfg), str(out)],
                capture_output=True,
                text=True,
                timeout=3600,
            )
            wall = time.perf_counter() - started
            if done.returncode != 0:
                raise RuntimeError("Ragas failed:\n" + done.stderr[-3000:])
            got = json.loads(out.read_text())
            got["wall_seconds"] = wall
            return got
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# --------------------------------------------------------------------------- main


def summarize(name: str, rows, scores, per_row: float) -> dict:
    return {
        "judge": name,
        "rows": len(rows),
        "seconds_per_row": round(per_row, 3),
        "nan": {m: sum(1 for s in scores if _nan(s.get(m))) for m in METRICS},
        "fallback_metrics": sum(len(s.get("fallback", [])) for s in scores),
        "pairwise_accuracy": {m: pairwise(rows, scores, m) for m in METRICS},
        "mean_by_kind": {
            kind: {
                m: round(
                    float(
                        np.mean(
                            [
                                s[m]
                                for r, s in zip(rows, scores, strict=True)
                                if r["kind"] == kind and not _nan(s[m])
                            ]
                            or [float("nan")]
                        )
                    ),
                    3,
                )
                for m in METRICS
            }
            for kind in KINDS
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--llm-questions", type=int, default=2, help="questions for the LLM judges (x3 rows)"
    )
    ap.add_argument("--judge", default="local:qwen2.5-coder-0.5b")
    ap.add_argument("--no-ragas", action="store_true")
    ap.add_argument("--no-llm", action="store_true")
    ap.add_argument("--name", default="eval_judge", help="results/<name>.json")
    args = ap.parse_args()

    from hearth.evaluate import FallbackJudge, LLMJudge
    from hearth.index.embedder import load_embedder

    embedder = load_embedder()
    rows = build_rows()
    print(
        f"{len(rows)} rows: " + ", ".join(f"{sum(r['kind'] == k for r in rows)} {k}" for k in KINDS)
    )
    fb_scores, fb_time = judge_rows(FallbackJudge(embedder), rows)
    results = {"fallback_all": summarize("fallback", rows, fb_scores, fb_time)}

    sub = build_rows(limit=args.llm_questions)
    sub_fb, sub_fb_time = judge_rows(FallbackJudge(embedder), sub)
    side = {"fallback": (sub_fb, summarize("fallback", sub, sub_fb, sub_fb_time))}
    if not args.no_ragas:
        with tempfile.TemporaryDirectory() as idx:
            try:
                got = run_ragas(
                    [
                        {k: r[k] for k in ("question", "answer", "contexts", "ground_truth")}
                        for r in sub
                    ],
                    args.judge,
                    Path(idx) / "index",
                )
                rs = got["scores"]
                side["ragas"] = (
                    rs,
                    summarize("ragas-0.4", sub, rs, got["seconds"] / len(sub)),
                )
            except Exception as exc:  # noqa: BLE001 - reported, the rest still written
                print("Ragas run failed:", exc, flush=True)
                results["ragas_error"] = str(exc)[-2000:]
    if not args.no_llm:
        judge = LLMJudge(args.judge, embedder)
        llm_scores, llm_time = judge_rows(judge, sub)
        side["hearth_llm"] = (llm_scores, summarize(judge.name, sub, llm_scores, llm_time))
    results["subset"] = {name: summary for name, (_, summary) in side.items()}
    results["subset_rows"] = [
        {
            "id": r["id"],
            "kind": r["kind"],
            **{name: {m: s[i].get(m) for m in METRICS} for name, (s, _) in side.items()},
        }
        for i, r in enumerate(sub)
    ]
    agreement = {}
    names = list(side)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            agreement[f"{a}~{b}"] = {
                m: correlations([s[m] for s in side[a][0]], [s[m] for s in side[b][0]])
                for m in METRICS
            }
    results["agreement"] = agreement
    path = write_result(args.name, results)
    print(json.dumps({k: v for k, v in results.items() if k != "subset_rows"}, indent=1))
    print("wrote", path)


if __name__ == "__main__":
    main()
