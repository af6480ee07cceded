"""End-to-end cost of a JSON Schema constraint: output tokens/s of constrained generation
against the same generation without the constraint, on llama.cpp (`local:smollm2`), on
Hearth's engine (`engine:smollm2`) and through llama.cpp's batcher with several concurrent
requests (`BatchedLlamaCpp`, the serving path).

Both sides get the very same messages (a system prompt that shows the schema and asks for
JSON only, and a user prompt that asks for the object), temperature 0; the only difference is
`constraint=schema`. Output tokens/s counts from the first output token to the last (so the
shared prompt reading is left out; TTFT is reported beside it). Constrained and plain runs
alternate ABBA per schema and round; the first round is a warm-up (it compiles the
constraint and fills llama.cpp's prompt cache) and is not counted. Ratios are medians of the
per-pair ratios.

    python benchmarks/structured_e2e.py                 # ~6 minutes on 2 busy cores
    python benchmarks/structured_e2e.py --rounds 2 --max-tokens 48 --legs llamacpp   # quick

Claim (from the structured-outputs issue): constrained generation reaches >= 0.9x the tokens/s
of unconstrained generation, on the engine and on llama.cpp.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from typing import Any

from common import RESULTS_DIR, markdown_table, verdict, write_result

SCHEMAS: list[tuple[str, dict, str]] = [
    (
        "person",
        {"type": "object",
         "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                        "email": {"type": "string"},
                        "hobbies": {"type": "array", "items": {"type": "string"}}},
         "required": ["name", "age", "email", "hobbies"]},
        "Describe a made-up person: name, age, email and four hobbies.",
    ),
    (
        "order",
        {"type": "object",
         "properties": {"order_id": {"type": "string"},
                        "items": {"type": "array", "minItems": 2,
                                  "items": {"type": "object",
                                            "properties": {"sku": {"type": "string"},
                                                           "quantity": {"type": "integer"},
                                                           "price": {"type": "number"}},
                                            "required": ["sku", "quantity", "price"]}},
                        "status": {"enum": ["pending", "shipped", "delivered"]}},
         "required": ["order_id", "items", "status"]},
        "Write a shop order with three items.",
    ),
    (
        "book",
        {"type": "object",
         "properties": {"title": {"type": "string"}, "author": {"type": "string"},
                        "year": {"type": "integer", "minimum": 1400, "maximum": 2030},
                        "genres": {"type": "array", "items": {"type": "string"}},
                        "summary": {"type": "string"}},
         "required": ["title", "author", "year", "genres", "summary"]},
        "Describe a classic novel: title, author, year, genres and a two-sentence summary.",
    ),
    (
        "weather",
        {"type": "object",
         "properties": {"city": {"type": "string"},
                        "days": {"type": "array",
                                 "items": {"type": "object",
                                           "properties": {"day": {"type": "string"},
                                                          "high_c": {"type": "number"},
                                                          "low_c": {"type": "number"},
                                                          "sky": {"enum": ["sunny", "cloudy",
                                                                           "rain", "snow"]}},
                                           "required": ["day", "high_c", "low_c", "sky"]}}},
         "required": ["city", "days"]},
        "Give a five-day weather forecast for Lisbon.",
    ),
]  # fmt: skip


def messages_for(schema: dict, prompt: str) -> list[Any]:
    from hearth.types import Message

    shown = "Answer with JSON only, matching this JSON Schema:\n" + json.dumps(schema)
    return [Message("system", shown), Message("user", prompt)]


def timed(model: Any, messages: list[Any], max_tokens: int, constraint: Any) -> dict:
    """One generation, streamed: output tokens, TTFT, decode tokens/s."""
    from hearth.types import StreamEnd

    extra = {"constraint": constraint} if constraint is not None else {}
    started = time.perf_counter()
    first = last = None
    text, end = [], None
    for event in model.stream_events(messages, max_tokens=max_tokens, temperature=0.0, **extra):
        now = time.perf_counter()
        if isinstance(event, StreamEnd):
            end = event
            continue
        if event:
            first = first or now
            last = now
            text.append(event)
    n = end.usage.completion_tokens if end else 0
    decode = (last - first) if first and last and last > first else None
    return {
        "tokens": n,
        "ttft_s": (first - started) if first else None,
        "tok_s": (n - 1) / decode if decode and n > 1 else None,
        "total_s": time.perf_counter() - started,
        "finish": end.finish_reason if end else None,
        "text": "".join(text),
    }


def run_leg(model: Any, rounds: int, max_tokens: int) -> dict:
    """ABBA: constrained and plain alternate per schema and round; round 0 is a warm-up."""
    from hearth.structured import compile as compile_constraint

    pairs, runs = [], []
    for r in range(rounds + 1):
        for n, (name, schema, prompt) in enumerate(SCHEMAS):
            messages = messages_for(schema, prompt)
            sides = ["constrained", "plain"] if (r + n) % 2 == 0 else ["plain", "constrained"]
            got = {}
            for side in sides:
                c = compile_constraint(schema) if side == "constrained" else None
                got[side] = timed(model, messages, max_tokens, c)
            if r == 0:
                continue
            a, b = got["constrained"], got["plain"]
            valid = _valid(schema, a["text"])
            runs.append({"schema": name, "round": r, "constrained": _brief(a), "plain": _brief(b),
                         "constrained_valid": valid})  # fmt: skip
            if a["tok_s"] and b["tok_s"]:
                pairs.append(a["tok_s"] / b["tok_s"])
    return _summary(runs, pairs)


def run_batched(inner: Any, rounds: int, max_tokens: int, streams: int) -> dict:
    """`streams` concurrent requests through BatchedLlamaCpp, all constrained or all plain,
    alternating; each stream's output tokens/s (first to last token; the median of the
    streams is compared), and the batch's tokens over its wall clock beside it (that one
    favours the side that writes more tokens: the batch lasts as long as its longest answer)."""
    from hearth.llm.llamacpp_batch import BatchConfig, BatchedLlamaCpp
    from hearth.structured import compile as compile_constraint

    batched = BatchedLlamaCpp(inner, BatchConfig(slots=streams, prefix_cache=False,
                                                 speculative=False)).warm_up()  # fmt: skip
    pairs, runs = [], []
    try:
        for r in range(rounds + 1):
            sides = ["constrained", "plain"] if r % 2 == 0 else ["plain", "constrained"]
            got = {}
            for side in sides:
                results: list[dict] = [{}] * streams

                def one(i: int, side: str = side, results: list = results) -> None:
                    name, schema, prompt = SCHEMAS[i % len(SCHEMAS)]
                    c = compile_constraint(schema) if side == "constrained" else None
                    results[i] = timed(batched, messages_for(schema, prompt), max_tokens, c)

                started = time.perf_counter()
                threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                wall = time.perf_counter() - started
                tokens = sum(x["tokens"] for x in results)
                rates = [x["tok_s"] for x in results if x["tok_s"]]
                got[side] = {
                    "tokens": tokens,
                    "wall_s": wall,
                    "batch_tok_s": tokens / wall,  # the batch ends with its longest answer
                    "tok_s": statistics.median(rates) if rates else None,  # per stream
                }
            if r == 0:
                continue
            runs.append({"round": r, **got})
            pairs.append(got["constrained"]["tok_s"] / got["plain"]["tok_s"])
    finally:
        batched.close()
    return {
        "streams": streams,
        "rounds": runs,
        "ratio_median": statistics.median(pairs) if pairs else None,
        "constrained_tok_s": statistics.median(x["constrained"]["tok_s"] for x in runs),
        "plain_tok_s": statistics.median(x["plain"]["tok_s"] for x in runs),
    }


def _valid(schema: dict, text: str) -> bool:
    from hearth.structured import validation_error

    try:
        return validation_error(schema, json.loads(text)) is None
    except json.JSONDecodeError:
        return False


def _brief(r: dict) -> dict:
    return {**{k: v for k, v in r.items() if k != "text"}, "start": r["text"][:60]}


def _summary(runs: list[dict], pairs: list[float]) -> dict:
    def med(side: str, key: str) -> float | None:
        values = [x[side][key] for x in runs if x[side][key] is not None]
        return statistics.median(values) if values else None

    return {
        "runs": runs,
        "pairs": len(pairs),
        "ratio_median": statistics.median(pairs) if pairs else None,
        "ratio_min": min(pairs) if pairs else None,
        "ratio_max": max(pairs) if pairs else None,
        "constrained_tok_s": med("constrained", "tok_s"),
        "plain_tok_s": med("plain", "tok_s"),
        "constrained_tokens": med("constrained", "tokens"),
        "plain_tokens": med("plain", "tokens"),
        "constrained_ttft_s": med("constrained", "ttft_s"),
        "plain_ttft_s": med("plain", "ttft_s"),
        "constrained_valid": sum(x["constrained_valid"] for x in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="counted rounds (after a warm-up)")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument(
        "--legs",
        default="llamacpp,engine,batched",
        help="comma-separated: llamacpp, engine, batched",
    )
    parser.add_argument("--streams", type=int, default=4, help="concurrent requests (batched)")
    parser.add_argument("--engine-max-tokens", type=int, default=48)
    args = parser.parse_args()  # fmt: skip
    legs = args.legs.split(",")

    from hearth import llm

    started = time.perf_counter()
    results: dict[str, Any] = {}
    local = llm.load("local:smollm2")
    if "llamacpp" in legs:
        results["llamacpp"] = run_leg(local, args.rounds, args.max_tokens)
    if "batched" in legs:
        results["batched"] = run_batched(local, args.rounds, args.max_tokens, args.streams)
    if "engine" in legs:
        try:
            engine = llm.load("engine:smollm2")
            results["engine"] = run_leg(engine, args.rounds, args.engine_max_tokens)
        except (TypeError, NotImplementedError, ValueError) as exc:
            results["engine"] = {"unsupported": f"engine: not supported yet ({exc})"}

    earlier = RESULTS_DIR / "structured_e2e.json"
    if earlier.is_file():  # legs not run this time are kept from the last run, marked so
        kept = json.loads(earlier.read_text())
        for leg, r in kept.get("results", {}).items():
            if leg not in results:
                results[leg] = {**r, "from_run": r.get("from_run") or kept.get("measured_at")}
    rows, claims = [], {}
    for leg, r in results.items():
        if "unsupported" in r:
            rows.append([leg, "-", "-", "-", "-", r["unsupported"][:60]])
            continue
        if leg == "batched":
            name = f"llama.cpp batcher, {r['streams']} streams"
            rows.append([name, len(r["rounds"]), r["constrained_tok_s"], r["plain_tok_s"],
                         r["ratio_median"], ""])  # fmt: skip
        else:
            note = f"{r['constrained_valid']}/{len(r['runs'])} constrained answers valid"
            rows.append([leg, r["pairs"], r["constrained_tok_s"], r["plain_tok_s"],
                         r["ratio_median"], note])  # fmt: skip
        if r.get("ratio_median") is not None:
            claims[f"{leg}: constrained >= 0.9x the tokens/s of unconstrained"] = (
                r["ratio_median"] >= 0.9
            )
    table = markdown_table(
        ["path", "pairs", "constrained tok/s", "plain tok/s", "constrained / plain", "note"], rows
    )
    print(table)
    for leg, r in results.items():
        if r.get("ratio_median") is not None:
            print(f"{leg}: constrained / unconstrained output tok/s = {r['ratio_median']:.2f}x")
    for claim, ok in claims.items():
        print(f"{claim}: {verdict(ok)}")
    path = write_result(
        "structured_e2e",
        {"settings": vars(args), "results": results, "table": table, "claims": claims,
         "seconds": time.perf_counter() - started},
    )  # fmt: skip
    print(f"wrote {path} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
