"""What the HTTP API adds to one embedding: POST /v1/embeddings vs calling the embedder in-process.

One short text, p50 over N calls each, interleaved (in-process, HTTP, in-process, ...) so both
meet the same background load; httpx keeps one connection alive, as an API client would.
Peer: the same embedder (`hearth.index.embedder.load_embedder()`) called in this process.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import serve_procs
from common import percentile, print_table, verdict, write_result

TEXT = "How do I reset the door code?"


def stats(ms: list[float]) -> dict:
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "mean_ms": float(np.mean(ms)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", "--calls", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--budget-ms", type=float, default=5.0, help="allowed extra p50")
    parser.add_argument("--quick", action="store_true", help="50 calls")
    args = parser.parse_args()
    n = 50 if args.quick else args.calls

    import httpx

    from hearth.index.embedder import load_embedder

    embedder = load_embedder()
    local = np.asarray(embedder.embed([TEXT]), dtype=np.float32)[0]
    load_start = os.getloadavg()
    with serve_procs.hearth_server() as server, httpx.Client(timeout=60.0) as client:
        ids = [m["id"] for m in client.get(server.base_url + "/v1/models").json()["data"]]
        if embedder.name not in ids:
            raise SystemExit(
                f"the server does not list this process's embedder {embedder.name!r} "
                f"(it lists {ids}); both sides must run the same embedder"
            )
        url = server.base_url + "/v1/embeddings"
        body = {"model": embedder.name, "input": TEXT}

        def over_http() -> list[float]:
            response = client.post(url, json=body)
            response.raise_for_status()
            return response.json()["data"][0]["embedding"]

        def health() -> None:
            client.get(server.base_url + "/health").raise_for_status()

        remote = np.asarray(over_http(), dtype=np.float32)
        cosine = float(local @ remote / (np.linalg.norm(local) * np.linalg.norm(remote)))
        calls = {
            "in-process embed (peer)": lambda: embedder.embed([TEXT]),
            "POST /v1/embeddings": over_http,
            "GET /health (HTTP round trip alone)": health,
        }
        for _ in range(args.warmup):
            for fn in calls.values():
                fn()
        ms: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(n):
            for name, fn in calls.items():
                t0 = time.perf_counter()
                fn()
                ms[name].append(1000 * (time.perf_counter() - t0))
    load_end = os.getloadavg()

    results = {name: stats(v) for name, v in ms.items()}
    rows = [[name, s["n"], s["p50_ms"], s["p95_ms"], s["mean_ms"]] for name, s in results.items()]
    table = print_table(
        f"One short text ({len(TEXT)} chars), embedder {embedder.name}, interleaved calls",
        ["path", "calls", "p50 ms", "p95 ms", "mean ms"],
        rows,
    )
    extra = results["POST /v1/embeddings"]["p50_ms"] - results["in-process embed (peer)"]["p50_ms"]
    claims = {f"/v1/embeddings p50 adds <= {args.budget_ms:g} ms": extra <= args.budget_ms}
    print(f"extra p50 over HTTP: {extra:.2f} ms (cosine server vs in-process {cosine:.6f})")
    print(f"load average (1/5/15 min) at start {load_start}, at end {load_end}")
    for claim, ok in claims.items():
        print(f"{claim}: {verdict(ok)}")
    path = write_result(
        "serve_embeddings_overhead",
        {
            "text": TEXT,
            "embedder": embedder.name,
            "latency": results,
            "extra_p50_ms": extra,
            "cosine_server_vs_in_process": cosine,
            "load_avg_start": load_start,
            "load_avg_end": load_end,
            "claims": claims,
            "table": table,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
