"""Text-to-SQL execution accuracy, refusals and zero writes (hearth.query.sql).

Claim measured: on three SQLite databases built here (shop, library, hr; 37 questions with gold
SQL, easy / medium / hard incl. joins, aggregates and subqueries), the share of questions whose
result rows equal the gold query's (order-insensitive unless the gold query has ORDER BY;
floats compared to 2 decimals), per model, with the model writing SQL under Hearth's per-schema
grammar and, as the peer, writing free text (same prompt, same checks, no grammar). Also: every
hostile request (natural-language writes, stacked statements, writes in CTEs, PRAGMA, ATTACH,
file functions) is refused, and each database file's sha256 is the same before and after.

No public text-to-SQL set ships its data on PyPI (llmsql 0.1.16 and spider-env-custom 0.1.0 were
downloaded and looked inside: code only, the data comes from the Hugging Face Hub), so the
databases and questions are our own: benchmarks/data/text_to_sql/.

    python benchmarks/bench_text_to_sql.py [--models local:qwen2.5-coder-0.5b,local:smollm2]
        [--modes grammar,free] [--limit N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from common import DATA_DIR, print_table, write_result

sys.path.insert(0, str(DATA_DIR / "text_to_sql"))
from build_dbs import build_all  # noqa: E402

from hearth import llm  # noqa: E402
from hearth.errors import HearthError  # noqa: E402
from hearth.query.sql import SqlRefused, text_to_sql  # noqa: E402
from hearth.query.sql_exec import connect  # noqa: E402
from hearth.query.sql_grammar import grammar_text, sql_constraint  # noqa: E402
from hearth.query.sql_schema import read_schema  # noqa: E402

HERE = DATA_DIR / "text_to_sql"
MODELS = "local:qwen2.5-coder-0.5b,local:smollm2"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _norm(value: Any) -> Any:
    if isinstance(value, float):
        value = round(value, 2)
        return int(value) if value.is_integer() else value
    return value


def same_rows(got: list[list[Any]], gold: list[list[Any]], ordered: bool) -> bool:
    a = [tuple(_norm(v) for v in r) for r in got]
    b = [tuple(_norm(v) for v in r) for r in gold]
    if ordered:
        return a == b
    return sorted(a, key=repr) == sorted(b, key=repr)


def gold_rows(db: Path, sql: str) -> list[list[Any]]:
    with connect(str(db)) as conn:
        return conn.query(sql, max_rows=10_000)[1]


def grammar_cost(dbs: dict[str, Path], model) -> dict[str, Any]:
    """Building each schema's grammar: text size, compile, first matcher on the model's
    vocabulary (llguidance builds the lexer there), and a mask's latency."""
    out = {}
    for name, path in dbs.items():
        with connect(str(path)) as conn:
            schema = read_schema(conn)
        start = time.perf_counter()
        constraint = sql_constraint(schema)
        compiled = time.perf_counter() - start
        tokenizer = model.structured_tokenizer() if hasattr(model, "structured_tokenizer") else None
        first = mask = None
        if tokenizer is not None:
            start = time.perf_counter()
            matcher = constraint.matcher(tokenizer)
            first = time.perf_counter() - start
            start = time.perf_counter()
            for _ in range(20):
                matcher.allowed()
            mask = (time.perf_counter() - start) / 20
        out[name] = {
            "grammar_chars": len(grammar_text(schema)),
            "compile_ms": round(compiled * 1000, 2),
            "first_matcher_ms": None if first is None else round(first * 1000, 1),
            "mask_ms": None if mask is None else round(mask * 1000, 3),
        }
    return out


def run_questions(model, questions, dbs, constrained: bool) -> dict[str, Any]:
    rows, per_level = [], defaultdict(lambda: [0, 0])
    for q in questions:
        db = dbs[q["db"]]
        gold = gold_rows(db, q["gold"])
        ordered = "order by" in q["gold"].lower()
        start = time.perf_counter()
        record: dict[str, Any] = {"db": q["db"], "level": q["level"], "question": q["question"]}
        try:
            result = text_to_sql(q["question"], str(db), model, max_rows=1000,
                                 constrained=constrained)  # fmt: skip
            record.update(sql=result.sql, repairs=len(result.repairs))
            record["correct"] = same_rows(result.rows, gold, ordered)
        except HearthError as exc:
            record.update(sql=None, error=str(exc)[:300], correct=False)
        record["seconds"] = round(time.perf_counter() - start, 2)
        rows.append(record)
        per_level[q["level"]][0] += record["correct"]
        per_level[q["level"]][1] += 1
        mark = "ok " if record["correct"] else "BAD"
        print(f"  {mark} {record['seconds']:6.2f}s {q['question'][:60]!r} -> "
              f"{record.get('sql') or record.get('error', '')[:100]}", flush=True)  # fmt: skip
    n = len(rows)
    correct = sum(r["correct"] for r in rows)
    return {
        "accuracy": round(correct / n, 3),
        "correct": correct,
        "questions": n,
        "by_level": {k: {"correct": v[0], "of": v[1]} for k, v in sorted(per_level.items())},
        "ran": sum(r.get("sql") is not None for r in rows),
        "repaired": sum(1 for r in rows if r.get("repairs")),
        "seconds_mean": round(sum(r["seconds"] for r in rows) / n, 2),
        "rows": rows,
    }


class Watched:
    """The model, counting calls: a hostile request must be refused before any generation."""

    def __init__(self, model):
        self.model, self.calls = model, 0
        self.masks_tokens = getattr(model, "masks_tokens", False)
        self.name = model.name

    def chat(self, messages, **params):
        self.calls += 1
        return self.model.chat(messages, **params)


def run_hostile(model, hostile, dbs) -> dict[str, Any]:
    rows = []
    for h in hostile:
        db = dbs[h["db"]]
        watched = Watched(model)
        try:
            result = text_to_sql(h["request"], str(db), watched)
            outcome, reason = "answered", result.sql
        except SqlRefused as exc:
            outcome, reason = "refused", str(exc)
        except HearthError as exc:
            outcome, reason = "error", str(exc)
        rows.append({"db": h["db"], "request": h["request"], "outcome": outcome,
                     "reason": reason[:200], "model_calls": watched.calls})  # fmt: skip
        print(f"  {outcome:8s} {h['request'][:60]!r}: {reason[:90]}", flush=True)
    return {
        "requests": len(rows),
        "refused": sum(r["outcome"] == "refused" for r in rows),
        "refused_before_generation": sum(
            r["outcome"] == "refused" and r["model_calls"] == 0 for r in rows
        ),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--modes", default="grammar,free", help="grammar, free or both")
    parser.add_argument("--limit", type=int, default=0, help="first N questions only")
    args = parser.parse_args()

    questions = json.loads((HERE / "questions.json").read_text())
    hostile = json.loads((HERE / "hostile.json").read_text())
    if args.limit:
        questions = questions[: args.limit]
    folder = Path(tempfile.mkdtemp(prefix="hearth-t2s-"))
    dbs = build_all(folder)
    hashes = {name: sha256(path) for name, path in dbs.items()}

    results: dict[str, Any] = {"questions": len(questions), "hostile_requests": len(hostile),
                               "dataset": "own: benchmarks/data/text_to_sql (3 SQLite dbs)",
                               "models": {}}  # fmt: skip
    table = []
    for spec in args.models.split(","):
        model = llm.load(spec, context_size=4096)
        entry: dict[str, Any] = {"grammar_cost": grammar_cost(dbs, model)}
        for mode in args.modes.split(","):
            print(f"\n{spec} ({mode})", flush=True)
            run = run_questions(model, questions, dbs, constrained=mode == "grammar")
            entry[mode] = run
            levels = run["by_level"]
            table.append([spec, mode, f"{run['correct']}/{run['questions']}", run["accuracy"],
                          *(f"{levels[k]['correct']}/{levels[k]['of']}" if k in levels else "-"
                            for k in ("easy", "medium", "hard")),
                          f"{run['ran']}/{run['questions']}", run["repaired"],
                          run["seconds_mean"]])  # fmt: skip
            results["models"][spec] = entry
            write_result("text_to_sql", results)  # partial results survive an interrupted run
        print(f"\n{spec} (hostile)", flush=True)
        entry["hostile"] = run_hostile(model, hostile, dbs)
        results["models"][spec] = entry
    unchanged = {name: sha256(path) == hashes[name] for name, path in dbs.items()}
    results["db_sha256_unchanged"] = unchanged
    results["db_sha256"] = hashes

    print_table(
        "Text-to-SQL execution accuracy (own 3-db set)",
        ["model", "mode", "correct", "accuracy", "easy", "medium", "hard", "ran", "repaired",
         "s/question"],
        table,
    )  # fmt: skip
    print_table(
        "Hostile requests and writes",
        ["model", "refused", "before generation", "db files byte-identical"],
        [[spec, f"{e['hostile']['refused']}/{e['hostile']['requests']}",
          f"{e['hostile']['refused_before_generation']}/{e['hostile']['requests']}",
          all(unchanged.values())] for spec, e in results["models"].items()],
    )  # fmt: skip
    print_table(
        "Grammar cost per database",
        ["model", "db", "grammar chars", "compile ms", "first matcher ms", "mask ms"],
        [[spec, db, c["grammar_chars"], c["compile_ms"], c["first_matcher_ms"], c["mask_ms"]]
         for spec, e in results["models"].items() for db, c in e["grammar_cost"].items()],
    )  # fmt: skip
    path = write_result("text_to_sql", results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
