"""Serving under load: 1, 4, 16 and 64 concurrent streaming clients, Hearth vs llama.cpp's server.

Servers, each its own process on 127.0.0.1, all on the same GGUF (`--model`, default the bundled
SmolLM2-135M Q4_1; `local:qwen2.5-coder-0.5b` for the default chat model):
  hearth serve      `hearth serve` serving that one model (HEARTH_MODEL and HEARTH_INSTRUCT_MODEL
                    set to it), its own defaults plus `--hearth-args` (default `--queue-size 256`:
                    the queue must hold every waiting client)
  llama-server      llama.cpp's own C++ server, built from the vendored llama.cpp of the installed
                    llama-cpp-python (llama_server.py; cached outside the venv), with its best
                    settings for each level: `-np <clients>` (one slot per client, continuous
                    batching), `-c <clients * 2048>` (2048 tokens per slot, Hearth's context),
                    `-t`/`-tb` all cores.
  llama_cpp.server  llama-cpp-python's OpenAI server (`python -m llama_cpp.server`), optional:
                    `--peers llama-server,llama_cpp.server`; set up like Hearth's backend.

Every server gets the same streamed chat requests (temperature 0, max_tokens 64, no repeat
penalty on any: llama-server and llama_cpp.server are sent `repeat_penalty: 1.0`); loadgen.py
measures vLLM benchmark_serving's metrics client-side (output tok/s, TTFT, TPOT, ITL, E2E).
Every server is started afresh at each level (llama-server's slots must equal the clients, and
then no server carries a cache or memory over from an earlier level that another lacks), warmed
up with two requests whose prompts are in no workload, and loaded alone: each level's requests
are split into `--rounds` runs per server, servers taking turns in ABBA order, so drifting
machine load hits them alike; the outputs of identical requests are compared.
Also per level: failures, each server's peak RSS (its process and children, psutil, sampled every
0.1 s while it is loaded) and "server CPU ms/token" (its CPU time per output token: on busy cores
llama.cpp's OpenMP threads can spin at barriers instead of computing, and this column shows it).

Workloads (`--workload`):
  chat  fixed creative prompts that make the model write past max_tokens
  rag   what `hearth ask` sends: the handbook (benchmarks/data/handbook) ingested as
        `hearth ingest` does; for each source file with >= 2 handbook questions, k=5 passages
        are retrieved once (for its first question) and every question about that file is put
        to the model with those same passages (Hearth's prompt builder `fit_prompt`: instruction
        and numbered passages in the system turn, the question alone in the user turn), sent as
        plain chat completions. The same few system prompts recur across requests with different
        questions: the traffic where prefix caching and prompt-lookup speculation pay. Writes
        results/serve_load_rag.json by default.

Claims (each only when its levels were run): 16 clients: Hearth output tok/s >= 1.0x
llama-server, TTFT p95 <= llama-server's; 1 client: >= 0.95x; 64 clients: no failed Hearth
request, Hearth peak RSS <= 1.5x its peak at 16 clients (bounded memory); no failed Hearth request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from contextlib import ExitStack
from pathlib import Path

import loadgen
import serve_procs
from common import print_table, verdict, write_result

# Prompts that make SmolLM2 write past 64 tokens, so the servers generate the full max_tokens
# (an ignore_eos stand-in no API needs); the tokens actually produced are reported.
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

# Warm-up only (loads the weights, starts the threads), never measured.
WARM_UP_PROMPTS = [
    "Write a short note about the weather today.",
    "List a few things to pack for a weekend trip.",
]

HEARTH = "hearth serve"
LLAMA_SERVER = "llama-server"
LCP = "llama_cpp.server"
PEERS = (LLAMA_SERVER, LCP)
# requests per level (default, --quick): at least `rounds` x clients, so every round keeps all
# clients busy at once
REQUESTS = {1: (16, 4), 4: (48, 8), 16: (64, 32), 64: (128, 128)}
# sampler settings sent to each server besides temperature 0: llama.cpp's servers have sampler
# defaults of their own; a repeat penalty (llama_cpp.server's default is 1.1) would change the
# text. Hearth applies none.
EXTRA_BODY = {HEARTH: {}, LLAMA_SERVER: {"repeat_penalty": 1.0}, LCP: {"repeat_penalty": 1.0}}


# --------------------------------------------------------------------------- the model


def resolve_model(spec: str) -> tuple[str, str]:
    """(spec the servers are asked for, GGUF path): `local:NAME` of an embedded model or a .gguf."""
    from hearth.llm import catalog, embedded_path

    name = spec.split(":", 1)[1] if spec.startswith("local:") else spec
    embedded = catalog.find(name)
    if embedded is not None:
        return f"local:{embedded.name}", str(embedded_path(embedded.name))
    path = Path(name).expanduser().resolve()
    if path.suffix.lower() != ".gguf" or not path.is_file():
        raise SystemExit(
            f"--model {spec!r}: not an embedded model ({catalog.known_names()}) nor a .gguf file"
        )
    return str(path), str(path)


# --------------------------------------------------------------------------- the requests


def chat_conversations() -> tuple[list[list[dict]], dict]:
    convs = [[{"role": "user", "content": p}] for p in PROMPTS]
    return convs, {"workload": "chat", "distinct_prompts": len(convs)}


def rag_conversations(spec: str, max_sources: int | None) -> tuple[list[list[dict]], dict]:
    """The messages `hearth ask` would send for each handbook question, passages shared per file.

    Ordered round-robin across the source files (file A's first question, file B's first, ...,
    then each file's second), so consecutive requests mostly carry different passages.
    """
    import tempfile

    from bench_answers import CORPORA, build_index, load_questions
    from hearth import llm
    from hearth.config import Settings
    from hearth.rag.prompt import fit_prompt
    from hearth.rag.retrievers import make_retriever

    settings = Settings()
    handbook = CORPORA["handbook"]
    groups: dict[str, list] = {}
    for q in load_questions(handbook.questions, handbook.folder):
        groups.setdefault(q.source, []).append(q)
    chosen = sorted(
        (g for g in groups.values() if len(g) >= 2), key=lambda g: (-len(g), g[0].source)
    )[: max_sources or None]
    model = llm.load(spec, context_size=2048)
    prompts: list[list[dict]] = []
    per_source = []
    with tempfile.TemporaryDirectory(prefix="hearth-bench-serve-rag-") as tmp:
        store, embedder, _ = build_index(
            Path(tmp), settings.chunk_tokens, settings.chunk_overlap, handbook.folder
        )
        retriever = make_retriever(settings.retriever, store, embedder)
        built = []
        for group in chosen:
            hits = retriever.retrieve(group[0].question, k=settings.top_k)
            convs, tokens = [], []
            for q in group:
                prompt = fit_prompt(q.question, hits, model, settings.max_tokens)
                convs.append([{"role": m.role, "content": m.content} for m in prompt.messages])
                tokens.append(prompt.prompt_tokens)
            built.append(convs)
            per_source.append(
                {
                    "source": group[0].source,
                    "questions": len(group),
                    "passages": [h.chunk.source.rsplit("/", 1)[-1] for h in hits],
                    "prompt_tokens": tokens,
                }
            )
        store.close()
    del model
    for i in range(max(len(b) for b in built)):
        prompts += [b[i] for b in built if i < len(b)]
    all_tokens = [t for s in per_source for t in s["prompt_tokens"]]
    about = {
        "workload": "rag",
        "corpus": "handbook",
        "k": settings.top_k,
        "retriever": settings.retriever,
        "distinct_prompts": len(prompts),
        "distinct_system_prompts": len(built),
        "prompt_tokens_min_mean_max": [
            min(all_tokens),
            round(sum(all_tokens) / len(all_tokens), 1),
            max(all_tokens),
        ],
        "sources": per_source,
    }
    return prompts, about


def request_bodies(
    model_id: str, convs: list[list[dict]], start: int, n: int, max_tokens: int, extra: dict
) -> list[dict]:
    """Requests start..start+n-1 of the workload (cycling through its prompts)."""
    return [
        {
            "model": model_id,
            "messages": convs[i % len(convs)],
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream_options": {"include_usage": True},
            **extra,
        }
        for i in range(start, start + n)
    ]


# --------------------------------------------------------------------------- measuring


def hearth_source_state() -> dict:
    """Which Hearth was measured: HEAD and the uncommitted changes to its serving code."""
    import subprocess

    def git(*cmd: str) -> str:
        try:
            out = subprocess.run(
                ["git", *cmd], capture_output=True, text=True, timeout=30, cwd=Path(__file__).parent
            )
            return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    paths = ["src/hearth/serve", "src/hearth/llm"]
    return {
        "head": git("rev-parse", "--short", "HEAD"),
        "changed": git("status", "--short", "--", *(f":/{p}" for p in paths)).splitlines(),
    }


def export_hearth(rev: str, dest: Path) -> tuple[Path, str]:
    """Hearth's src/ as committed at `rev` (`git archive`, read-only), for `hearth serve` to run
    instead of the working tree (PYTHONPATH comes before the editable install)."""
    import subprocess
    import tarfile

    repo = Path(__file__).resolve().parent.parent
    sha = subprocess.run(
        ["git", "rev-parse", "--short", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        cwd=repo,
        check=True,
    ).stdout.strip()
    archive = dest / "src.tar"
    with archive.open("wb") as out:
        subprocess.run(
            ["git", "archive", "--format=tar", sha, "src"], stdout=out, cwd=repo, check=True
        )
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest / "src", sha


def cpu_seconds(pid: int) -> float:
    import psutil

    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def measure(server, bodies, concurrency, count_tokens) -> dict:
    """One run of `bodies` from `concurrency` clients, outputs kept raw, RSS sampled."""
    load_before = os.getloadavg()[0]
    cpu_before = cpu_seconds(server.proc.pid)
    with serve_procs.RssSampler(server.proc.pid) as rss:
        outputs, duration = asyncio.run(loadgen.run_load(server.base_url, bodies, concurrency))
    cpu = cpu_seconds(server.proc.pid) - cpu_before
    loadgen.count_output_tokens(outputs, count_tokens)
    return {
        "outputs": outputs,
        "duration": duration,
        "cpu": cpu,
        "load": load_before,
        "peak_rss_mib": rss.peak_mib,
    }


def start_server(name, args, spec, model_path, clients, hearth_env, all_env):
    """The context manager that runs server `name` for a level of `clients` clients."""
    if name == HEARTH:
        return serve_procs.hearth_server(args.hearth_args.split(), model_id=spec, env=hearth_env)
    if name == LCP:
        return serve_procs.llama_cpp_server(
            model_path, threads=args.threads_used, model_id=spec, env=all_env
        )
    return serve_procs.llama_server(
        model_path,
        clients,
        threads=args.llama_server_threads,
        ctx_per_slot=args.ctx_per_slot,
        model_id=spec,
        binary=args.llama_server_binary,
        extra_args=args.llama_server_args.split(),
        env=all_env,
    )


def warm_up(name, server, max_tokens, count_tokens) -> None:
    """Two requests whose prompts are in no workload, so no server starts with a primed cache."""
    convs = [[{"role": "user", "content": p}] for p in WARM_UP_PROMPTS]
    bodies = request_bodies(server.model_id, convs, 0, 2, max_tokens, EXTRA_BODY[name])
    warm = measure(server, bodies, 1, count_tokens)["outputs"]
    if not all(o.ok for o in warm):
        raise SystemExit(f"{name} failed its warm-up requests: {[o.error for o in warm]}")


def combine(name: str, clients: int, parts: list[dict], extra: dict) -> dict:
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
        "peak_rss_mib": max(p["peak_rss_mib"] for p in parts),
        "load_avg_1m": sum(p["load"] for p in parts) / len(parts),
        "errors": sorted({o.error for o in outputs if o.error})[:5],
        "usage_given": sum(o.usage_tokens is not None for o in outputs),
        "prompt_tokens": sum(o.prompt_tokens or 0 for o in outputs),
        # prompt tokens the server said it took from its prefix cache (None: it never said)
        "cached_prompt_tokens": (
            sum(o.cached_tokens or 0 for o in outputs)
            if any(o.cached_tokens is not None for o in outputs)
            else None
        ),
        "finish_reasons": {
            r: sum(o.finish_reason == r for o in outputs)
            for r in sorted({str(o.finish_reason) for o in outputs})
        },
        "texts": [o.text for p in parts for o in sorted(p["outputs"], key=lambda o: o.index)],
        **extra,
    }


def cells(d) -> str:
    return f"{d.p50:,.0f} / {d.p95:,.0f}"


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


# --------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", default="1,4,16,64", help="concurrency levels")
    parser.add_argument(
        "--requests",
        default=None,
        help="requests per level, one number or one per level (default 16,48,64,128 for "
        "1,4,16,64 clients, else 2 x clients; --quick 4,8,32,128)",
    )
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--workload", choices=("chat", "rag"), default="chat")
    parser.add_argument(
        "--rag-sources",
        type=int,
        default=None,
        help="rag: the N handbook files with the most questions (default all with >= 2)",
    )
    parser.add_argument(
        "--model",
        default="local:smollm2",
        help="embedded model (local:smollm2, local:qwen2.5-coder-0.5b) or a .gguf, for all servers",
    )
    parser.add_argument(
        "--peers",
        default=LLAMA_SERVER,
        help=f"comma-separated peers of Hearth: {', '.join(PEERS)} (default llama-server)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="llama.cpp decode threads for Hearth and llama_cpp.server (default: Hearth picks "
        "its own, every core for its batcher; llama_cpp.server gets what Hearth's unbatched "
        "backend would use, 1 for a small model); both read prompts on every core",
    )
    parser.add_argument(
        "--llama-server-threads",
        type=int,
        default=None,
        help="llama-server -t/-tb (default: all cores, its best setting for batched decoding)",
    )
    parser.add_argument(
        "--ctx-per-slot", type=int, default=2048, help="llama-server context per slot (-c = x np)"
    )
    parser.add_argument(
        "--llama-server-args", default="", help="extra llama-server options (quoted)"
    )
    parser.add_argument(
        "--llama-server-binary",
        default=None,
        help="llama-server to run (default: the cached build of llama_server.py, built if needed)",
    )
    parser.add_argument(
        "--hearth-args",
        default="--queue-size 256",
        help="extra `hearth serve` options (quoted); the queue must hold every waiting client",
    )
    parser.add_argument(
        "--hearth-rev",
        default=None,
        help="run `hearth serve` from this commit's src/ (git archive into a temporary folder, "
        "put first on PYTHONPATH) instead of the working tree: e.g. HEAD for a before/after",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment variable for every server (repeatable); OMP_WAIT_POLICY=passive is "
        "always set unless given here: Hearth sets it itself, and llama.cpp's spinning OpenMP "
        "threads make any server 3-10x slower at random on busy cores",
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
    parser.add_argument(
        "--quick", action="store_true", help="4/8/32/128 requests, max_tokens 32 (a smoke run)"
    )
    parser.add_argument(
        "--result-name",
        default=None,
        help="writes benchmarks/results/<name>.json (default serve_load, serve_load_rag for rag)",
    )
    args = parser.parse_args()
    args.levels = [int(x) for x in args.clients.split(",")]
    if args.requests:
        args.sizes = [int(x) for x in args.requests.split(",")]
        if len(args.sizes) == 1:
            args.sizes = args.sizes * len(args.levels)
    else:
        args.sizes = [REQUESTS.get(c, (2 * c, 2 * c))[1 if args.quick else 0] for c in args.levels]
    if len(args.sizes) != len(args.levels):
        parser.error("--requests needs one number or one per --clients level")
    args.max_tokens = min(args.max_tokens, 32) if args.quick else args.max_tokens
    args.peer_list = [p.strip() for p in args.peers.split(",") if p.strip()]
    if unknown := [p for p in args.peer_list if p not in PEERS]:
        parser.error(f"--peers: unknown {unknown}; choose from {', '.join(PEERS)}")
    if any("=" not in item for item in args.env + args.hearth_env):
        parser.error("--env and --hearth-env take NAME=VALUE")
    args.result_name = args.result_name or (
        "serve_load_rag" if args.workload == "rag" else "serve_load"
    )
    return args


def main() -> None:
    args = parse_args()
    levels, sizes, max_tokens = args.levels, args.sizes, args.max_tokens
    all_env = {"OMP_WAIT_POLICY": "passive"}
    all_env.update(item.split("=", 1) for item in args.env)
    hearth_env = {**all_env, **dict(item.split("=", 1) for item in args.hearth_env)}

    hearth_rev = None
    exported = ExitStack()
    if args.hearth_rev:
        import tempfile

        tmp = Path(exported.enter_context(tempfile.TemporaryDirectory(prefix="hearth-rev-")))
        src, sha = export_hearth(args.hearth_rev, tmp)
        hearth_env["PYTHONPATH"] = os.pathsep.join(
            [str(src), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        hearth_rev = {"rev": args.hearth_rev, "commit": sha}
    spec, model_path = resolve_model(args.model)
    count_tokens = loadgen.gguf_token_counter(model_path)
    threads = args.threads or serve_procs.n_threads(model_path)
    if args.threads:  # else Hearth picks its own (its batcher decodes on every core)
        hearth_env.setdefault("HEARTH_LLAMA_THREADS", str(threads))
    args.threads_used = threads
    ls_threads = args.llama_server_threads or serve_procs.cores()
    build = {}
    if LLAMA_SERVER in args.peer_list:
        import llama_server

        args.llama_server_binary = args.llama_server_binary or str(llama_server.ensure())
        build = (
            llama_server.build_info()
            if Path(args.llama_server_binary) == (llama_server.binary_path())
            else {"binary": args.llama_server_binary}
        )
    args.llama_server_threads = ls_threads
    if args.workload == "rag":
        print("building the RAG prompts (handbook index, retrieval, fit_prompt) ...", flush=True)
        convs, about = rag_conversations(spec, args.rag_sources)
    else:
        convs, about = chat_conversations()
    names = [HEARTH, *args.peer_list]

    runs: list[dict] = []
    commands: dict[str, list] = {}
    t0 = time.perf_counter()
    load_start = os.getloadavg()
    source_start = hearth_source_state()
    step = 0
    next_request = 0  # every server gets the same requests in each round
    for clients, n in zip(levels, sizes, strict=True):
        # Every server starts afresh at each level: llama-server's slots must equal the clients,
        # and a fresh process for all means no server carries a cache (or memory) over from an
        # earlier level that its peer lacks.
        with ExitStack() as stack:
            servers, extra = {}, {name: {} for name in names}
            for name in names:
                started = time.perf_counter()
                servers[name] = stack.enter_context(
                    start_server(name, args, spec, model_path, clients, hearth_env, all_env)
                )
                commands[f"{name} ({clients} clients)"] = servers[name].cmd
                warm_up(name, servers[name], max_tokens, count_tokens)
                extra[name]["startup_s"] = time.perf_counter() - started
            parts: dict[str, list[dict]] = {name: [] for name in names}
            per_round = [n // args.rounds + (r < n % args.rounds) for r in range(args.rounds)]
            for r, n_round in enumerate(per_round):
                order = names if step % 2 == 0 else names[::-1]
                step += 1
                for name in order:
                    print(
                        f"{name}: {clients} client(s), round {r + 1}/{args.rounds}, "
                        f"{n_round} requests ...",
                        flush=True,
                    )
                    bodies = request_bodies(
                        spec, convs, next_request, n_round, max_tokens, EXTRA_BODY[name]
                    )
                    parts[name].append(measure(servers[name], bodies, clients, count_tokens))
                next_request += n_round
            runs += [combine(name, clients, parts[name], extra[name]) for name in names]
    load_end = os.getloadavg()
    exported.close()

    def run_of(name, clients):
        return next(r for r in runs if r["server"] == name and r["clients"] == clients)

    rows_tp, rows_lat = [], []
    for clients in levels:
        for name in names:
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
                    r["peak_rss_mib"],
                    (
                        f"{100 * r['cached_prompt_tokens'] / r['prompt_tokens']:.0f}%"
                        if r["cached_prompt_tokens"] is not None and r["prompt_tokens"]
                        else "-"
                    ),
                    cpu_ms,
                    r["load_avg_1m"],
                ]
            )
            rows_lat.append([clients, name, cells(m.ttft_ms), cells(m.tpot_ms), cells(m.e2el_ms)])
    workload = (
        f"RAG prompts ({about['distinct_prompts']} questions over "
        f"{about['distinct_system_prompts']} shared passage sets, "
        f"{about['prompt_tokens_min_mean_max'][1]:.0f} prompt tokens on average)"
        if args.workload == "rag"
        else "chat prompts"
    )
    table_tp = print_table(
        f"Throughput: streamed chat, {Path(model_path).name}, {workload}, max_tokens "
        f"{max_tokens}, temperature 0; decode threads: Hearth {args.threads or 'its own'}, "
        f"llama_cpp.server {threads}, llama-server {ls_threads}",
        [
            "clients",
            "server",
            "ok",
            "failed",
            "req/s",
            "output tok/s",
            "mean output tokens",
            "peak RSS MiB",
            "prompt cached",
            "server CPU ms/token",
            "load avg",
        ],
        rows_tp,
    )
    table_lat = print_table(
        "Latency, ms: p50 / p95",
        ["clients", "server", "TTFT", "TPOT", "E2E latency"],
        rows_lat,
    )

    ratios = {}
    rows_ratio = []
    for peer in args.peer_list:
        for clients in levels:
            h, p = run_of(HEARTH, clients)["metrics"], run_of(peer, clients)["metrics"]
            ratios[f"{peer}@{clients}"] = {
                "output_tok_s": ratio(h.output_throughput, p.output_throughput),
                "ttft_p95": ratio(h.ttft_ms.p95, p.ttft_ms.p95),
                "tpot_p50": ratio(h.tpot_ms.p50, p.tpot_ms.p50),
            }
            rows_ratio.append(
                [
                    clients,
                    peer,
                    ratios[f"{peer}@{clients}"]["output_tok_s"],
                    ratios[f"{peer}@{clients}"]["ttft_p95"],
                    ratios[f"{peer}@{clients}"]["tpot_p50"],
                ]
            )
    table_ratio = print_table(
        "Hearth / peer (output tok/s: higher is better for Hearth; TTFT, TPOT: lower is)",
        ["clients", "peer", "output tok/s", "TTFT p95", "TPOT p50"],
        rows_ratio,
    )

    same_text = {
        peer: {
            clients: sum(
                a == b
                for a, b in zip(
                    run_of(HEARTH, clients)["texts"], run_of(peer, clients)["texts"], strict=True
                )
            )
            for clients in levels
        }
        for peer in args.peer_list
    }
    hearth_failed = sum(r["metrics"].failed for r in runs if r["server"] == HEARTH)
    claims: dict[str, bool] = {}
    if LLAMA_SERVER in args.peer_list:
        if 16 in levels:
            r16 = ratios[f"{LLAMA_SERVER}@16"]
            claims["16 clients: Hearth output tok/s >= 1.0x llama-server"] = (
                r16["output_tok_s"] >= 1.0
            )
            claims["16 clients: Hearth TTFT p95 <= llama-server's"] = r16["ttft_p95"] <= 1.0
        if 1 in levels:
            claims["1 client: Hearth output tok/s >= 0.95x llama-server"] = (
                ratios[f"{LLAMA_SERVER}@1"]["output_tok_s"] >= 0.95
            )
    if 64 in levels:
        claims["64 clients: no failed Hearth request"] = run_of(HEARTH, 64)["metrics"].failed == 0
        if 16 in levels:
            claims["64 clients: Hearth peak RSS <= 1.5x its peak at 16 clients"] = (
                run_of(HEARTH, 64)["peak_rss_mib"] <= 1.5 * run_of(HEARTH, 16)["peak_rss_mib"]
            )
    claims["no failed Hearth request"] = hearth_failed == 0

    for peer in args.peer_list:
        print(
            f"identical output text, Hearth vs {peer} (same request): "
            + ", ".join(
                f"{c} clients {same_text[peer][c]}/{run_of(HEARTH, c)['requests']}" for c in levels
            )
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
    sample_texts = {name: run_of(name, levels[0])["texts"][: min(3, len(convs))] for name in names}
    path = write_result(
        args.result_name,
        {
            "model": spec,
            "model_path": model_path,
            "workload": about,
            "max_tokens": max_tokens,
            "threads": threads,
            "llama_server_threads": ls_threads,
            "llama_server_ctx_per_slot": args.ctx_per_slot,
            "llama_server_build": build,
            "levels": levels,
            "requests": sizes,
            "peers": args.peer_list,
            "hearth_args": args.hearth_args,
            "hearth_source": {
                "run_from": hearth_rev or "working tree",
                "start": source_start,
                "end": hearth_source_state(),
            },
            "server_commands": commands,
            "env_all": all_env,
            "hearth_env": hearth_env,
            "extra_body": {name: EXTRA_BODY[name] for name in names},
            "runs": results,
            "ratios": ratios,
            "identical_texts": same_text,
            "sample_texts": sample_texts,
            "hearth_failed": hearth_failed,
            "load_avg_start": load_start,
            "load_avg_end": load_end,
            "seconds": time.perf_counter() - t0,
            "claims": claims,
            "table": table_tp + "\n\n" + table_lat + "\n\n" + table_ratio,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
