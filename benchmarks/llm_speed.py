"""LLM speed on llama.cpp per embedded model: Hearth's backend vs llama-cpp-python used directly.

The prompt is the one `hearth ask` builds: the handbook (benchmarks/data/handbook) is ingested
as `hearth ingest` does, k=5 passages are retrieved for one handbook question (default q15, "How
much does a day pass cost?", the longest handbook prompt: ~710 tokens with SmolLM2's tokenizer,
~630 with Qwen's; handbook prompts run 350-710) and trimmed to fit by Hearth's prompt builder
(`fit_prompt`, max_tokens 256 as in `hearth ask`), then rendered with each model's own chat
template. Each model then writes up to 64 tokens at temperature 0 (greedy: both engines write the
same tokens; fewer than 64 when the model ends its answer).

Engines, each run in a fresh subprocess (so peak RSS is that engine's alone, and no KV cache
carries a prompt over from an earlier run):
  hearth            `hearth.llm.load(spec).stream_events(messages, max_tokens=64, temperature=0)`
  llama-cpp-python  `llama_cpp.Llama(path, n_ctx=2048, n_threads=..., n_threads_batch=...)`
                    `.create_completion(prompt=<the same token ids>, max_tokens=64,
                    temperature=0, stream=True)`, with the threads Hearth picks
                    (hearth.llm.llamacpp.default_threads / prompt_threads)
Both get OMP_WAIT_POLICY=passive, as Hearth sets it for itself.

Measured per run, from outside the engine: TTFT (call to first text delta), prompt tok/s
(prompt tokens / TTFT), output tok/s ((output tokens - 1) / (end - first delta)), total time
(call to end of stream), peak RSS (VmHWM of the subprocess: weights, context, Python and
imports). llama.cpp's own counters (prompt-eval and eval ms and token counts) are kept in the
result file as a cross-check. Runs are repeated (`--repeats`, default 5), Hearth and the peer
interleaved, the order flipped each round; the table shows the MEDIAN of the repeats per model
and engine, and each ratio is the median over rounds of the ratio between the two runs of that
round (back to back, so both met the same load: on a shared machine this is far steadier than a
ratio of medians). Load averages at start and end are recorded: rerun when the machine was busy.

~4 minutes on 2 cores (20 fresh-process runs; each loads its model, ~0.6 s SmolLM2, ~1.2 s Qwen,
then reads a ~700-token prompt: ~8 s on 2 cores with a little other work).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # what hearth.llm.llamacpp sets for itself

NAME = "llm_speed"
HERE = Path(__file__).resolve().parent
DEFAULT_MODELS = "local:smollm2,local:qwen2.5-coder-0.5b"
ENGINES = ("hearth", "llama-cpp-python")
MAX_NEW_TOKENS = 64
N_CTX = 2048
# 1-minute load average above this: another process was computing too (this benchmark's own
# subprocess keeps up to 2 threads runnable, so ~2 is its own share on 2 cores)
BUSY_LOAD = 3.0


# --------------------------------------------------------------------------- the prompt


def build_jobs(specs: list[str], question_id: str) -> tuple[dict, list[dict]]:
    """The `hearth ask` prompt for each model: messages, their token ids, the thread settings."""
    from llama_cpp import Llama

    from bench_answers import CORPORA, build_index, load_questions
    from hearth import llm
    from hearth.config import Settings
    from hearth.llm.llamacpp import default_threads, prompt_threads
    from hearth.rag.prompt import fit_prompt
    from hearth.rag.retrievers import make_retriever

    settings = Settings()
    handbook = CORPORA["handbook"]
    by_id = {q.id: q for q in load_questions(handbook.questions, handbook.folder)}
    if question_id not in by_id:
        raise SystemExit(f"--question {question_id!r} is not in {handbook.questions.name}")
    question = by_id[question_id]
    with tempfile.TemporaryDirectory(prefix="hearth-bench-llm-speed-") as tmp:
        store, embedder, _ = build_index(
            Path(tmp), settings.chunk_tokens, settings.chunk_overlap, handbook.folder
        )
        hits = make_retriever(settings.retriever, store, embedder).retrieve(
            question.question, k=settings.top_k
        )
        store.close()
    jobs = []
    for spec in specs:
        model = llm.load(spec, context_size=N_CTX)
        prompt = fit_prompt(question.question, hits, model, settings.max_tokens)
        text = model.render(prompt.messages)
        # tokenized as Hearth's backend does it (template writes its special tokens, no BOS)
        vocab = Llama(model_path=str(model.path), vocab_only=True, verbose=False)
        ids = vocab.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        if len(ids) != prompt.prompt_tokens:
            raise SystemExit(
                f"{spec}: {len(ids)} token ids vs Hearth's count {prompt.prompt_tokens}"
            )
        decode = default_threads(model.path)
        jobs.append(
            {
                "spec": spec,
                "path": str(model.path),
                "file_mib": round(model.path.stat().st_size / 2**20, 1),
                "messages": [{"role": m.role, "content": m.content} for m in prompt.messages],
                "token_ids": list(ids),
                "prompt_tokens": len(ids),
                "dropped_passages": prompt.dropped_passages,
                "n_threads": decode,
                "n_threads_batch": prompt_threads(decode),
            }
        )
        del model, vocab
    about = {
        "question_id": question.id,
        "question": question.question,
        "k": settings.top_k,
        "passages": [h.chunk.source.rsplit("/", 1)[-1] for h in hits],
        "max_tokens_reserved": settings.max_tokens,
    }
    return about, jobs


# --------------------------------------------------------------------------- one run (child)


def peak_rss_mib() -> float:
    """This process's peak resident memory: VmHWM, not getrusage's ru_maxrss, which Linux
    carries over exec from the parent that spawned us (this parent holds the embedder and
    both models, so ru_maxrss would report the parent's size)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: best effort


def llama_counters(llama: Any) -> dict | None:
    """llama.cpp's own timings of the last generation (prompt eval and eval), when reachable."""
    try:
        import llama_cpp

        data = llama_cpp.llama_perf_context(llama._ctx.ctx)
        return {
            "prompt_eval_ms": round(data.t_p_eval_ms, 1),
            "prompt_eval_tokens": data.n_p_eval,
            "eval_ms": round(data.t_eval_ms, 1),
            "eval_tokens": data.n_eval,
        }
    except Exception as exc:  # noqa: BLE001 - a cross-check only
        return {"error": repr(exc)}


def run_hearth(job: dict) -> dict:
    t0 = time.perf_counter()
    from hearth import llm
    from hearth.types import Message, StreamEnd

    model = llm.load(job["spec"], context_size=N_CTX)
    model.warm_up()
    load_s = time.perf_counter() - t0
    threads = (model.n_threads, model.n_threads_batch)
    messages = [Message(m["role"], m["content"]) for m in job["messages"]]
    text, first, end_event = "", None, None
    start = time.perf_counter()
    for event in model.stream_events(messages, max_tokens=MAX_NEW_TOKENS, temperature=0.0):
        if isinstance(event, StreamEnd):
            end_event = event
            continue
        if first is None and event:
            first = time.perf_counter()
        text += event
    end = time.perf_counter()
    assert end_event is not None
    return {
        "load_s": load_s,
        "threads": threads,
        "start": start,
        "first": first,
        "end": end,
        "text": text,
        "prompt_tokens_seen": end_event.usage.prompt_tokens,
        "output_tokens": end_event.usage.completion_tokens,
        "finish_reason": end_event.finish_reason,
        "llama_cpp": llama_counters(model._llama),  # private: read-only cross-check
    }


def run_peer(job: dict) -> dict:
    t0 = time.perf_counter()
    from llama_cpp import Llama

    llama = Llama(
        model_path=job["path"],
        n_ctx=N_CTX,
        n_threads=job["n_threads"],
        n_threads_batch=job["n_threads_batch"],
        verbose=False,
    )
    load_s = time.perf_counter() - t0
    text, first, finish = "", None, None
    start = time.perf_counter()
    for part in llama.create_completion(
        prompt=job["token_ids"], max_tokens=MAX_NEW_TOKENS, temperature=0.0, stream=True
    ):
        choice = part["choices"][0]
        finish = choice.get("finish_reason") or finish
        if first is None and choice["text"]:
            first = time.perf_counter()
        text += choice["text"]
    end = time.perf_counter()
    # counted as Hearth's backend counts output tokens: the text tokenized again
    out_tokens = len(llama.tokenize(text.encode("utf-8"), add_bos=False)) if text else 0
    return {
        "load_s": load_s,
        "threads": (job["n_threads"], job["n_threads_batch"]),
        "start": start,
        "first": first,
        "end": end,
        "text": text,
        "prompt_tokens_seen": len(job["token_ids"]),
        "output_tokens": out_tokens,
        "finish_reason": finish,
        "llama_cpp": llama_counters(llama),
    }


def child(engine: str, job_file: str, index: int, out_file: str) -> None:
    job = json.loads(Path(job_file).read_text())[index]
    load_before = os.getloadavg()[0]
    raw = run_hearth(job) if engine == "hearth" else run_peer(job)
    ttft = raw["first"] - raw["start"]
    decode_s = raw["end"] - raw["first"]
    result = {
        "model": job["spec"],
        "engine": engine,
        "prompt_tokens": raw["prompt_tokens_seen"],
        "output_tokens": raw["output_tokens"],
        "finish_reason": raw["finish_reason"],
        "ttft_s": round(ttft, 4),
        "prompt_tok_s": round(raw["prompt_tokens_seen"] / ttft, 1),
        "output_tok_s": round((raw["output_tokens"] - 1) / decode_s, 2) if decode_s else None,
        "total_s": round(raw["end"] - raw["start"], 4),
        "load_s": round(raw["load_s"], 3),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "threads": list(raw["threads"]),
        "load_avg_1m_before": round(load_before, 2),
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
        "text": raw["text"],
        "llama_cpp": raw["llama_cpp"],
    }
    Path(out_file).write_text(json.dumps(result))


# --------------------------------------------------------------------------- the parent

METRICS = ("prompt_tok_s", "output_tok_s", "ttft_s", "total_s", "peak_rss_mib")


def spawn(engine: str, job_file: Path, index: int, tmp: Path) -> dict:
    out = tmp / f"run-{engine}-{index}-{time.monotonic_ns()}.json"
    cmd = [sys.executable, __file__, "--child", engine, str(job_file), str(index), str(out)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0 or not out.is_file():
        raise SystemExit(f"{engine} run failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}")
    return json.loads(out.read_text())


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def short(spec: str) -> str:
    return spec.removeprefix("local:")


def main(argv: list[str] | None = None) -> int:
    from common import environment, print_table, write_result

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated model specs")
    parser.add_argument("--question", default="q15", help="handbook question id (answer set)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per model and engine")
    args = parser.parse_args(argv)
    specs = [s.strip() for s in args.models.split(",") if s.strip()]
    load_start = os.getloadavg()
    t_start = time.perf_counter()

    about, jobs = build_jobs(specs, args.question)
    for job in jobs:
        print(
            f"{job['spec']}: prompt {job['prompt_tokens']} tokens "
            f"({job['dropped_passages']} passages dropped), threads decode {job['n_threads']} / "
            f"prompt {job['n_threads_batch']}",
            flush=True,
        )
    runs: dict[str, dict[str, list[dict]]] = {j["spec"]: {e: [] for e in ENGINES} for j in jobs}
    with tempfile.TemporaryDirectory(prefix="hearth-bench-llm-speed-") as tmp:
        job_file = Path(tmp) / "jobs.json"
        job_file.write_text(json.dumps(jobs))
        for rep in range(args.repeats):
            order = list(enumerate(jobs)) if rep % 2 == 0 else list(enumerate(jobs))[::-1]
            for index, job in order:
                engines = ENGINES if (rep + index) % 2 == 0 else ENGINES[::-1]
                for engine in engines:
                    r = spawn(engine, job_file, index, Path(tmp))
                    runs[job["spec"]][engine].append(r)
                    print(
                        f"  [{rep + 1}/{args.repeats}] {short(job['spec']):<22} {engine:<16} "
                        f"prompt {r['prompt_tok_s']:7.1f} tok/s  out {r['output_tok_s']:6.2f} "
                        f"tok/s ({r['output_tokens']} tok)  TTFT {r['ttft_s']:.3f}s  "
                        f"total {r['total_s']:.2f}s  RSS {r['peak_rss_mib']:.0f} MiB  "
                        f"load {r['load_avg_1m_before']:.2f}",
                        flush=True,
                    )

    # checks: both engines saw the same prompt and (greedy) wrote the same text
    checks = {}
    for job in jobs:
        spec = job["spec"]
        texts = {r["text"] for e in ENGINES for r in runs[spec][e]}
        seen = {r["prompt_tokens"] for e in ENGINES for r in runs[spec][e]}
        checks[f"{short(spec)}: same prompt tokens in every run"] = seen == {job["prompt_tokens"]}
        checks[f"{short(spec)}: same output text from both engines"] = len(texts) == 1

    med = {
        spec: {
            e: {m: median_of(rs, m) for m in (*METRICS, "output_tokens", "load_s")}
            for e, rs in per.items()
        }
        for spec, per in runs.items()
    }
    rows = []
    for job in jobs:
        spec = job["spec"]
        for engine in ENGINES:
            m = med[spec][engine]
            rows.append(
                [
                    short(spec),
                    engine,
                    job["prompt_tokens"],
                    f"{m['prompt_tok_s']:.0f}",
                    f"{m['output_tokens']:.0f}",
                    f"{m['output_tok_s']:.1f}",
                    f"{m['ttft_s']:.2f}",
                    f"{m['total_s']:.2f}",
                    f"{m['peak_rss_mib']:.0f}",
                ]
            )
    ratios: dict[str, dict[str, float]] = {}

    def ratio_row(label: str, a: list[dict], b: list[dict]) -> list:
        """Median over the rounds of run-by-run ratios: the two runs of a round ran back to
        back, so each ratio compares runs that met the same machine load."""
        r = {
            m: round(statistics.median(x[m] / y[m] for x, y in zip(a, b, strict=True)), 3)
            for m in METRICS
        }
        ratios[label] = r
        return [
            label,
            "",
            "",
            f"{r['prompt_tok_s']:.2f}x",
            "",
            f"{r['output_tok_s']:.2f}x",
            f"{r['ttft_s']:.2f}x",
            f"{r['total_s']:.2f}x",
            f"{r['peak_rss_mib']:.2f}x",
        ]

    for job in jobs:
        spec = job["spec"]
        per = runs[spec]
        rows.append(ratio_row(f"{short(spec)}: hearth / peer", per["hearth"], per[ENGINES[1]]))
    if len(jobs) == 2:
        small, big = jobs[0]["spec"], jobs[1]["spec"]
        for engine in ENGINES:
            rows.append(
                ratio_row(
                    f"{short(big)} / {short(small)} ({engine})",
                    runs[big][engine],
                    runs[small][engine],
                )
            )
    load_end = os.getloadavg()
    busiest = max(
        max(r["load_avg_1m_before"], r["load_avg_1m_after"])
        for per in runs.values()
        for rs in per.values()
        for r in rs
    )
    title = (
        f"LLM speed on llama.cpp: `hearth ask` prompt for handbook {about['question_id']} "
        f"(k={about['k']}), {MAX_NEW_TOKENS} new tokens max at temperature 0, median of "
        f"{args.repeats} fresh-process runs per row; ratios: median of the {args.repeats} "
        "round-by-round ratios; peer = llama-cpp-python used directly"
    )
    table = print_table(
        title,
        [
            "model",
            "engine",
            "prompt tok",
            "prompt tok/s",
            "output tok",
            "output tok/s",
            "TTFT s",
            "total s",
            "peak RSS MiB",
        ],
        rows,
    )
    claims = {}
    for job in jobs:
        r = ratios[f"{short(job['spec'])}: hearth / peer"]
        claims[
            f"{short(job['spec'])}: Hearth's backend at most 10% slower than "
            "llama-cpp-python (output tok/s and TTFT)"
        ] = r["output_tok_s"] >= 0.9 and r["ttft_s"] <= 1.1
    claims.update(checks)
    for claim, ok in claims.items():
        print(f"{claim}: {'yes' if ok else 'no'}")
    run_s = time.perf_counter() - t_start
    note = (
        f"busy: 1-minute load average reached {busiest:.2f} (> {BUSY_LOAD}); rerun when "
        "the machine is quieter"
        if busiest > BUSY_LOAD
        else "quiet enough"
    )
    print(f"run took {run_s:.0f}s; load average {load_start} at start, {load_end} at end; {note}")
    path = write_result(
        NAME,
        {
            "prompt": about,
            "models": [
                {k: v for k, v in j.items() if k not in ("messages", "token_ids")} for j in jobs
            ],
            "max_new_tokens": MAX_NEW_TOKENS,
            "n_ctx": N_CTX,
            "repeats": args.repeats,
            "statistic": "rows: median of the repeats; ratios: median over rounds of the "
            "ratio of the two runs in that round (they ran back to back)",
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "run_s": round(run_s, 1),
            "load_avg_start": load_start,
            "load_avg_end": load_end,
            "load_avg_1m_max_seen": busiest,
            "busy": busiest > BUSY_LOAD,
            "environment_end": environment(),
            "median": med,
            "ratios": ratios,
            "claims": claims,
            "table": table,
            "runs": runs,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        sys.path.insert(0, str(HERE))
        sys.exit(main())
