"""Serving under load: 1, 4 and 16 concurrent streaming clients, Hearth vs llama.cpp's server.

Both servers run the bundled SmolLM2 GGUF on all cores and get the same streamed chat requests
(fixed prompts, temperature 0, max_tokens 64); loadgen.py measures vLLM benchmark_serving's
metrics client-side. Peer: llama-cpp-python's own OpenAI server (`python -m llama_cpp.server`).
"server CPU ms/token" is the server process's CPU time (psutil) per output token: on busy cores
llama.cpp's OpenMP threads can spin at barriers instead of computing, and this column shows it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from contextlib import ExitStack

import loadgen
import serve_procs
from common import print_table, verdict, write_result

# Prompts that make SmolLM2 write past 64 tokens, so both servers generate the full max_tokens
# (an ignore_eos stand-in neither API needs); the tokens actually produced are reported.
PROMPTS = [
    "Write a long story about a dragon who learns to bake bread.",
    "Write a detailed guide to planting a vegetable garden.",
    "Describe a busy day at a harbor from morning to night.",
    "Write a long letter to a friend about your summer holidays.",
    "Explain step by step how to cook a pot of rice.",
    "Write a story about a robot exploring an old library.",
    "Describe the four seasons in a small mountain village.",
    "Write an essay about why people enjoy reading books.",
    "Explain how rain forms, from the ocean to the clouds.",
    "Write a long story about a cat who becomes a sailor.",
    "Describe how to build a small wooden birdhouse.",
    "Write a detailed travel diary of a trip along a river.",
    "Explain how a library organizes its books and why.",
    "Write a story about two friends lost in a forest at night.",
    "Describe the history of bread in a long essay.",
    "Write a long poem about the sea.",
]

HEARTH = "hearth serve"
PEER = "llama_cpp.server"


def request_bodies(model_id: str, n: int, max_tokens: int, extra: dict) -> list[dict]:
    return [
        {
            "model": model_id,
            "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream_options": {"include_usage": True},
            **extra,
        }
        for i in range(n)
    ]


def cpu_seconds(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def measure(server, extra_body, concurrency, n_requests, max_tokens, count_tokens) -> dict:
    """One run: `n_requests` streamed requests from `concurrency` clients, outputs kept raw."""
    bodies = request_bodies(server.model_id, n_requests, max_tokens, extra_body)
    load_before = os.getloadavg()[0]
    cpu_before = cpu_seconds(server.proc.pid)
    outputs, duration = asyncio.run(loadgen.run_load(server.base_url, bodies, concurrency))
    cpu = cpu_seconds(server.proc.pid) - cpu_before
    loadgen.count_output_tokens(outputs, count_tokens)
    return {"outputs": outputs, "duration": duration, "cpu": cpu, "load": load_before}


def combine(name: str, clients: int, parts: list[dict]) -> dict:
    """Pool a level's rounds: all requests' timings together, durations and CPU summed."""
    outputs = [o for p in parts for o in p["outputs"]]
    duration = sum(p["duration"] for p in parts)
    return {
        "server": name,
        "clients": clients,
        "requests": len(outputs),
        "rounds": len(parts),
        "metrics": loadgen.summarize(outputs, duration),
        "server_cpu_s": sum(p["cpu"] for p in parts),
        "load_avg_1m": sum(p["load"] for p in parts) / len(parts),
        "errors": sorted({o.error for o in outputs if o.error})[:5],
        "usage_given": sum(o.usage_tokens is not None for o in outputs),
        "texts": [o.text for p in parts for o in sorted(p["outputs"], key=lambda o: o.index)],
    }


def cells(d) -> str:
    return f"{d.p50:,.0f} / {d.p95:,.0f} / {d.p99:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", default="1,4,16", help="concurrency levels")
    parser.add_argument(
        "--requests",
        default=None,
        help="requests per level, one number or one per level (default 16,48,64; --quick 4,8,16)",
    )
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="llama.cpp threads for both servers (default: what Hearth picks, 1 for a small model)",
    )
    parser.add_argument(
        "--hearth-args",
        default="--queue-size 256",
        help="extra `hearth serve` options (quoted); the queue must hold every waiting client",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment variable for both servers (repeatable); OMP_WAIT_POLICY=passive is "
        "always set unless given here: Hearth sets it itself, and llama.cpp's spinning OpenMP "
        "threads make either server 3-10x slower at random on busy cores",
    )
    parser.add_argument(
        "--hearth-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment variable for the Hearth server only (repeatable; for experiments)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="split each level's requests into this many runs per server, ordered ABBA...",
    )
    parser.add_argument("--quick", action="store_true", help="4/8/16 requests, max_tokens 32")
    parser.add_argument(
        "--result-name", default="serve_load", help="writes benchmarks/results/<name>.json"
    )
    args = parser.parse_args()
    levels = [int(x) for x in args.clients.split(",")]
    sizes = [int(x) for x in (args.requests or ("4,8,16" if args.quick else "16,48,64")).split(",")]
    max_tokens = min(args.max_tokens, 32) if args.quick else args.max_tokens
    if len(sizes) == 1:
        sizes = sizes * len(levels)
    if len(sizes) != len(levels):
        parser.error("--requests needs one number or one per --clients level")
    if any("=" not in item for item in args.env + args.hearth_env):
        parser.error("--env and --hearth-env take NAME=VALUE")
    both_env = {"OMP_WAIT_POLICY": "passive"}
    both_env.update(item.split("=", 1) for item in args.env)
    hearth_env = {**both_env, **dict(item.split("=", 1) for item in args.hearth_env)}

    from hearth.llm import smollm2_path

    model_path = str(smollm2_path())
    count_tokens = loadgen.gguf_token_counter(model_path)
    threads = args.threads or serve_procs.n_threads(model_path)
    hearth_env.setdefault("HEARTH_LLAMA_THREADS", str(threads))  # the same for both servers
    # The peer's sampler defaults add a repeat penalty of 1.1; Hearth applies none.
    extra = {HEARTH: {}, PEER: {"repeat_penalty": 1.0}}

    runs: list[dict] = []
    t0 = time.perf_counter()
    load_start = os.getloadavg()
    with ExitStack() as stack:
        servers = {
            PEER: stack.enter_context(
                serve_procs.llama_cpp_server(model_path, threads=threads, env=both_env)
            ),
            HEARTH: stack.enter_context(
                serve_procs.hearth_server(args.hearth_args.split(), env=hearth_env)
            ),
        }
        for name, server in servers.items():
            warm = measure(server, extra[name], 1, 2, max_tokens, count_tokens)["outputs"]
            if not all(o.ok for o in warm):
                raise SystemExit(f"{name} failed its warm-up requests: {[o.error for o in warm]}")
        # Both stay up (an idle server only waits on its socket); one is loaded at a time, in
        # ABBA order across rounds, so a drift in the background load hits both alike.
        step = 0
        for clients, n in zip(levels, sizes, strict=True):
            parts: dict[str, list[dict]] = {PEER: [], HEARTH: []}
            per_round = [n // args.rounds + (r < n % args.rounds) for r in range(args.rounds)]
            for r, n_round in enumerate(per_round):
                order = [PEER, HEARTH] if step % 2 == 0 else [HEARTH, PEER]
                step += 1
                for name in order:
                    print(
                        f"{name}: {clients} client(s), round {r + 1}/{args.rounds}, "
                        f"{n_round} requests ...",
                        flush=True,
                    )
                    parts[name].append(
                        measure(
                            servers[name], extra[name], clients, n_round, max_tokens, count_tokens
                        )
                    )
            runs += [combine(name, clients, parts[name]) for name in (HEARTH, PEER)]
    load_end = os.getloadavg()

    def run_of(name, clients):
        return next(r for r in runs if r["server"] == name and r["clients"] == clients)

    rows_tp, rows_lat = [], []
    for clients in levels:
        for name in (HEARTH, PEER):
            r = run_of(name, clients)
            m = r["metrics"]
            cpu_ms = (
                1000 * r["server_cpu_s"] / m.total_output_tokens if m.total_output_tokens else 0
            )
            rows_tp.append(
                [
                    clients,
                    name,
                    m.completed,
                    m.failed,
                    m.request_throughput,
                    m.output_throughput,
                    m.mean_output_tokens,
                    cpu_ms,
                    r["load_avg_1m"],
                ]
            )
            rows_lat.append(
                [
                    clients,
                    name,
                    cells(m.ttft_ms),
                    cells(m.tpot_ms),
                    cells(m.itl_ms),
                    cells(m.e2el_ms),
                ]
            )
    table_tp = print_table(
        f"Throughput: streamed chat, SmolLM2-135M Q4_1, max_tokens {max_tokens}, temperature 0, "
        f"{threads} threads",
        [
            "clients",
            "server",
            "ok",
            "failed",
            "req/s",
            "output tok/s",
            "mean output tokens",
            "server CPU ms/token",
            "load avg",
        ],
        rows_tp,
    )
    table_lat = print_table(
        "Latency, ms: p50 / p95 / p99",
        ["clients", "server", "TTFT", "TPOT", "ITL", "E2E latency"],
        rows_lat,
    )

    top = max(levels)
    ratio = (
        run_of(HEARTH, top)["metrics"].output_throughput
        / run_of(PEER, top)["metrics"].output_throughput
    )
    same_text = {
        clients: sum(
            a == b
            for a, b in zip(
                run_of(HEARTH, clients)["texts"], run_of(PEER, clients)["texts"], strict=True
            )
        )
        for clients in levels
    }
    hearth_failed = sum(r["metrics"].failed for r in runs if r["server"] == HEARTH)
    claims = {
        f"Hearth output tok/s at {top} clients >= 1.0x llama_cpp.server": ratio >= 1.0,
        "no failed Hearth request": hearth_failed == 0,
    }
    print(f"Hearth / llama_cpp.server output tok/s at {top} clients: {ratio:.2f}x")
    print(
        "identical output text, Hearth vs peer (same prompt): "
        + ", ".join(f"{c} clients {same_text[c]}/{run_of(HEARTH, c)['requests']}" for c in levels)
    )
    print(f"load average (1/5/15 min) at start {load_start}, at end {load_end}")
    for claim, ok in claims.items():
        print(f"{claim}: {verdict(ok)}")

    results = [
        {
            **{k: v for k, v in r.items() if k not in ("metrics", "texts")},
            "metrics": {
                **{k: v for k, v in vars(r["metrics"]).items() if not k.endswith("_ms")},
                **{k: vars(v) for k, v in vars(r["metrics"]).items() if k.endswith("_ms")},
            },
        }
        for r in runs
    ]
    path = write_result(
        args.result_name,
        {
            "model": model_path,
            "max_tokens": max_tokens,
            "threads": threads,
            "levels": levels,
            "requests": sizes,
            "hearth_args": args.hearth_args,
            "peer_env": both_env,
            "hearth_env": hearth_env,
            "peer_extra_body": extra[PEER],
            "runs": results,
            "output_throughput_ratio_at_top": ratio,
            "identical_texts": same_text,
            "hearth_failed": hearth_failed,
            "load_avg_start": load_start,
            "load_avg_end": load_end,
            "seconds": time.perf_counter() - t0,
            "claims": claims,
            "table": table_tp + "\n\n" + table_lat,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
