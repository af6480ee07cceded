"""Run every benchmark with its default (2-core friendly) settings and write results/summary.md.

Each benchmark runs in its own process, so one's memory or threads never colour another's;
the summary collects their tables, claims and the exact commands to reproduce them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from common import BENCH_DIR, RESULTS_DIR, environment

BENCHMARKS = [
    "bench_retrieval",
    "bench_embedder",
    "bench_ingest",
    "bench_search_latency",
    "bench_ingest_memory",
    "engine_speculative",
    # Single-stream decode: ours fp32/bf16/int8 vs transformers and llama.cpp, SmolLM2
    # (~9 minutes on 2 AVX2 cores: int8 compile=True decodes slowly there).
    "engine_decode",
    # The same on Qwen2.5-Coder-0.5B: fp32, bf16, int8, int8 compile=True, transformers,
    # llama.cpp (~15 minutes on 2 cores, peak RSS 11.5 GB).
    "engine_decode_qwen2.5-coder-0.5b",
    # Default precision: perplexity vs fp32 on ~11k tokens of stdlib docstrings and what
    # `hearth generate` delivers vs transformers, both models, 5 interleaved rounds of fresh
    # processes (~24 minutes of timing, then ~10 minutes of perplexity on 2 quiet cores).
    "engine_precision",
    # fp32 linears at 1-64 rows: MKL (torch's default) vs hearth.engine.kernels (~15 s).
    "engine_kernels",
    # SDPA vs plain-math attention at 512/2k/4k context: time and peak memory (~5 minutes).
    "engine_attention",
    # Batched decode at 1/4/16 sequences vs single-stream, prefix-cache TTFT (~3 minutes).
    "engine_batching",
    "serve_embeddings_overhead",
    # hearth.structured's accepts() against the official JSON-Schema-Test-Suite, drafts 2020-12
    # and 7 (the suite comes from the jsonschema sdist, downloaded once; ~10 s).
    "structured_suite",
    # Real-world schemas (BFCL functions, OpenAI/Anthropic SDK models, package schemas): compile
    # share, compile and per-token mask time vs outlines-core and XGrammar, valid output of
    # SmolLM2 on a sample (needs the `bench` extra; ~15 minutes on 2 busy cores).
    "structured_speed",
    # Constrained vs unconstrained output tok/s: llama.cpp, its batcher, the engine (~6 min).
    "structured_e2e",
    # 100 generations against 20 varied schemas with SmolLM2: valid or StructuredOutputError.
    "structured_generations",
    # hearth serve vs llama.cpp's own llama-server at 1/4/16/64 streaming clients (~13 minutes;
    # the first run builds llama-server from llama-cpp-python's source, ~15 minutes on 2 cores),
    # then the RAG traffic with prefix cache and prompt lookup on, and both off (~10 minutes).
    "serve_load",
    "serve_load_rag",
    "serve_load_rag_plain",
    # Hearth's llama.cpp backend vs llama-cpp-python used directly, SmolLM2 and Qwen2.5-Coder,
    # on a `hearth ask` prompt: 5 fresh-process runs per model and engine (~4 minutes).
    "llm_speed",
    # Retrieval: the default against bm25s, MiniLM and their RRF on the dev sets, fusion
    # variants, 100k latency (~20 minutes); every query strategy and reranker through the real
    # pipeline with Qwen on 15 questions, LLM rerankers left out (~18 minutes); rerankers and
    # MMR alone; the judge on corrupted rows and against Ragas 0.4 through hearth serve (~30
    # minutes); pgvector against SQLite at 100k chunks (~15 minutes, most of it pgvector ingest).
    "strategies",
    "strategies_llm",
    "bench_rerank",
    "eval_judge",
    "pgvector",
    # Query construction, agents, knowledge graphs: text-to-SQL execution accuracy with and
    # without the grammar and hostile requests, Qwen and SmolLM2 (~30 minutes); agent tasks and
    # breakouts per model (~25 minutes); two-hop questions with and without the graph, graph
    # build, LadybugDB against SQLite at 10k / 100k triples (~20 minutes).
    "text_to_sql",
    "agents",
    "graph",
    # Last: the slow one. 111 questions on two corpora, extractive once and generative with
    # SmolLM2 and Qwen2.5-Coder-0.5B: 40 minutes on 2 cores busy with other work (load 3-4).
    "bench_answers",
]


# result name -> (script, its arguments), where the two differ
SCRIPTS = {
    "serve_load": ("serve_load", ["--rounds", "4"]),  # the cores are noisy: more turns each
    "serve_load_rag": ("serve_load", ["--workload", "rag", "--clients", "1,16"]),
    "serve_load_rag_plain": (
        "serve_load",
        [
            "--workload",
            "rag",
            "--clients",
            "1,16",
            "--result-name",
            "serve_load_rag_plain",
            "--hearth-args",
            "--queue-size 256 --no-prefix-cache --no-prompt-lookup",
        ],
    ),  # fmt: skip
    "engine_decode_qwen2.5-coder-0.5b": ("engine_decode", ["--model", "qwen2.5-coder-0.5b"]),
    "engine_precision": ("engine_precision", ["--repeats", "5"]),
    "strategies": ("bench_strategies", ["--top", "20"]),
    "strategies_llm": (
        "bench_strategies",
        ["--llm", "3", "--llm-skip", "rerank llm-pointwise,rerank llm-listwise"],
    ),
    "bench_rerank": ("bench_rerank", ["--llm-limit", "0"]),
    "pgvector": ("bench_pgvector", ["--chunks", "100000", "--queries", "200"]),
    "text_to_sql": ("bench_text_to_sql", []),
    "agents": ("bench_agents", []),
    "graph": ("bench_graph", []),
}


def command(name: str) -> list[str]:
    script, extra = SCRIPTS.get(name, (name, []))
    return [f"benchmarks/{script}.py", *extra]


def run(name: str) -> tuple[int, float]:
    script, *extra = command(name)
    cmd = [sys.executable, str(BENCH_DIR.parent / script), *extra]
    print(f"\n=== {name}: {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    code = subprocess.call(cmd)
    return code, time.perf_counter() - t0


def summary(names: list[str], outcomes: dict[str, tuple[int, float]]) -> str:
    env = environment()
    lines = [
        "# Hearth benchmark results",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {env['cpus']} CPU core(s), Python "
        f"{env['python']}, torch {env.get('torch', '?')}. The machine was shared with other "
        "work: absolute numbers are noisy; ratios against the peer measured in the same run "
        "are the claims.",
        "",
        "Reproduce (from the repository root, after `make install`):",
        "",
        "```",
        "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/run_all.py   # or: make bench",
    ]
    lines += [f"HF_HUB_OFFLINE=1 .venv/bin/python {' '.join(command(n))}" for n in names]
    lines += ["```", ""]
    for name in names:
        path = RESULTS_DIR / f"{name}.json"
        code, seconds = outcomes.get(name, (None, 0.0))
        lines.append(f"## {name}")
        lines.append("")
        if code not in (0, None) or not path.is_file():
            lines += [f"Failed (exit code {code}); see its output.", ""]
            continue
        result = json.loads(path.read_text())
        took = f"{seconds:.0f} s, " if code is not None else ""
        lines += [f"`{result['command']}` ({took}measured {result['measured_at']})", ""]
        lines += [result["table"], ""]
        claims = result.get("claims") or result.get("checks") or {}
        for claim, ok in claims.items():
            lines.append(f"- {claim}: {'met' if ok else '**missed**'}")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", choices=BENCHMARKS, help="run just these")
    parser.add_argument(
        "--summary-only", action="store_true", help="rebuild summary.md from existing results"
    )
    args = parser.parse_args()
    names = args.only or BENCHMARKS
    outcomes: dict[str, tuple[int, float]] = {}
    if not args.summary_only:
        for name in names:
            outcomes[name] = run(name)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / "summary.md"
    path.write_text(summary(names, outcomes) + "\n")
    print(f"\nwrote {path}")
    failed = [n for n, (code, _) in outcomes.items() if code != 0]
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
