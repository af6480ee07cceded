"""Single-stream greedy decoding speed: our engine (fp32 / bf16 / int8 weights) against
transformers `generate` (fp32, greedy, static and dynamic cache) and llama-cpp-python on the
GGUF itself, same model, same prompts, same number of new tokens, same thread count.
`--model` picks the embedded model (smollm2, the default, or qwen2.5-coder-0.5b); `--variants`
which engines run (Qwen's default leaves out the unfused, dequantize-then-matmul and no-KV-cache
baselines: each engine copy holds ~2 GB of fp32 weights there).

Decoding one sequence reads every weight once per token, so each engine's effective memory
bandwidth (bytes of weights per token x tokens/s) is set against a large-copy probe of this
machine's bandwidth: how close each gets to the ceiling.
Target (issue 4): our decode tokens/s >= 2x transformers fp32.
"""

from __future__ import annotations

import argparse
import heapq
import os
import shutil
import tempfile
import time

from common import print_table, verdict, write_result

PROMPTS = [
    "Once upon a time, in a small village by the sea,",
    "The history of the printing press begins in",
]


def bandwidth_probe(threads: int, mib: int = 512) -> dict[str, float]:
    """Best-of-5 GB/s reading (sum) and copying a `mib` MiB fp32 tensor: the ceiling."""
    import torch

    torch.set_num_threads(threads)
    a = torch.rand(mib * 2**20 // 4)
    b = torch.empty_like(a)
    read = copy = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        a.sum()
        t1 = time.perf_counter()
        b.copy_(a)
        t2 = time.perf_counter()
        read, copy = min(read, t1 - t0), min(copy, t2 - t1)
    return {"read_gb_s": a.nbytes / read / 1e9, "copy_gb_s": 2 * a.nbytes / copy / 1e9}


class Run:
    """One engine: a callable (prompt ids, n) -> (tokens, prefill seconds, decode seconds)."""

    def __init__(self, name: str, precision: str, bytes_per_token: int, fn, tokens: int) -> None:
        self.name, self.precision, self.bytes_per_token = name, precision, bytes_per_token
        self.fn, self.tokens = fn, tokens
        self.best: dict[int, tuple[float, float]] = {}  # prompt index -> (prefill, decode) s
        self.outputs: dict[int, list[int]] = {}

    def measure(self, i: int, ids: list[int]) -> None:
        out, prefill, decode = self.fn(ids, self.tokens)
        assert len(out) == self.tokens, f"{self.name}: {len(out)} tokens, wanted {self.tokens}"
        old = self.best.get(i, (float("inf"), float("inf")))
        if prefill + decode < sum(old):
            self.best[i] = (prefill, decode)
        self.outputs[i] = out

    def decode_tok_s(self) -> float:
        """Tokens after the first one, per second of decoding (prefill excluded)."""
        return sum(self.tokens - 1 for _ in self.best) / sum(d for _, d in self.best.values())

    def end_to_end_tok_s(self) -> float:
        return sum(self.tokens for _ in self.best) / sum(p + d for p, d in self.best.values())


def ours(model):
    import torch

    @torch.inference_mode()
    def run(ids: list[int], n: int):
        """cached_greedy's loop (hearth.engine.speculative), with a clock after the prefill."""
        cache = model.new_cache(len(ids) + n + 1)
        t0 = time.perf_counter()
        logits = model(torch.tensor(ids), kv_cache=cache, last_only=True)[-1]
        out = [int(logits.argmax())]
        t1 = time.perf_counter()
        while len(out) < n:
            logits = model(torch.tensor([out[-1]]), kv_cache=cache, last_only=True)[-1]
            out.append(int(logits.argmax()))
        return out, t1 - t0, time.perf_counter() - t1

    return run


def ours_uncached(model):
    import torch

    @torch.inference_mode()
    def run(ids: list[int], n: int):
        """No KV cache: every step runs the whole sequence again (the baseline it saves)."""
        seq = list(ids)
        t0 = time.perf_counter()
        seq.append(int(model(torch.tensor(seq), last_only=True)[-1].argmax()))
        t1 = time.perf_counter()
        while len(seq) - len(ids) < n:
            seq.append(int(model(torch.tensor(seq), last_only=True)[-1].argmax()))
        return seq[len(ids) :], t1 - t0, time.perf_counter() - t1

    return run


def transformers_generate(model, eos: int, cache: str | None):
    import torch
    from transformers.generation.streamers import BaseStreamer

    class Clock(BaseStreamer):
        """Timestamps: the first put() is the prompt, the second the first new token."""

        def __init__(self) -> None:
            self.times: list[float] = []

        def put(self, value) -> None:
            self.times.append(time.perf_counter())

        def end(self) -> None:
            self.times.append(time.perf_counter())

    @torch.inference_mode()
    def run(ids: list[int], n: int):
        x = torch.tensor([ids])
        clock = Clock()
        extra = {"cache_implementation": cache} if cache else {}
        t0 = time.perf_counter()
        out = model.generate(
            x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=n,
            min_new_tokens=n, pad_token_id=eos, streamer=clock, **extra,
        )  # fmt: skip
        first = clock.times[1]
        return out[0, len(ids) :].tolist(), first - t0, clock.times[-1] - first

    return run


def llama_cpp_generate(llm):
    def run(ids: list[int], n: int):
        llm.reset()  # no prompt reuse from the previous run
        out: list[int] = []
        t0 = time.perf_counter()
        first = t0
        gen = llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0)
        for token in gen:
            out.append(token)
            if len(out) == 1:
                first = time.perf_counter()
            if len(out) == n:
                break
        return out, first - t0, time.perf_counter() - first

    return run


def prefill_seconds(models: dict, ids: list[int]) -> dict[str, float]:
    """Best-of-2 seconds of one forward over `ids` (the time to the first token)."""
    import torch

    out = {}
    x = torch.tensor([ids])
    with torch.inference_mode():
        for name, model in models.items():
            best = float("inf")
            for _ in range(2):
                start = time.perf_counter()
                if name.startswith("transformers"):
                    model(x, logits_to_keep=1)
                else:
                    model(x, last_only=True)
                best = min(best, time.perf_counter() - start)
            out[name] = best
    return out


def gguf_bytes(path) -> int:
    """Bytes of the GGUF's tensors: what llama.cpp reads per token (tied embeddings: the
    token table is also the output matrix, read whole). From the header alone (gguf's
    GGUFReader maps every tensor: ~12 s on Qwen)."""
    import math

    import gguf

    from hearth.llm.gguf_info import read_header

    total = 0
    for t in read_header(path).tensors:
        block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(t.ggml_type)]
        total += math.prod(t.dims) // block * size
    return total


def gguf_kind(path) -> str:
    """The GGUF's weight format as llama.cpp names it (Q4_1, Q4_K_M, ...)."""
    import gguf

    from hearth.llm.gguf_info import read_metadata

    file_type = read_metadata(path).get("general.file_type")
    try:
        return gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_") + " GGUF"
    except ValueError:
        return "GGUF"


# engine variants: name -> (row label, precision, options); `--variants` picks among these
ENGINES = {
    "fp32": ("hearth", "fp32", {}),
    "bf16": ("hearth", "bf16", {}),
    "int8": ("hearth", "int8", {}),
    "int8-compile": ("hearth (compile=True)", "int8", {"compile": True}),
    "fp32-unfused": ("hearth (unfused, fuse=False)", "fp32", {"fuse": False}),
    "int8-dequantize": ("hearth (int8 dequantize-then-matmul)", "int8", {"use_kernel": False}),
}
OTHERS = ("no-kv-cache", "transformers-static", "transformers-dynamic", "llama-cpp")
DEFAULT_VARIANTS = {
    "smollm2": (*ENGINES, *OTHERS),
    "qwen2.5-coder-0.5b": (
        "fp32", "bf16", "int8", "int8-compile", "transformers-static", "transformers-dynamic",
        "llama-cpp",
    ),
}  # fmt: skip
MODEL_TITLES = {"smollm2": "SmolLM2-135M", "qwen2.5-coder-0.5b": "Qwen2.5-Coder-0.5B"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch / llama.cpp threads")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; best kept")
    parser.add_argument(
        "--fallback-tokens", type=int, default=16, help="tokens for int8 dequantize-then-matmul"
    )
    parser.add_argument("--no-llama-cpp", action="store_true")
    parser.add_argument("--prefill-tokens", type=int, default=512)
    parser.add_argument(
        "--model", default="smollm2", help="embedded model: smollm2 or qwen2.5-coder-0.5b"
    )
    parser.add_argument(
        "--variants",
        help="comma-separated, from: " + ", ".join([*ENGINES, *OTHERS]) + " (fp32 is always "
        "run; default: all for smollm2; fp32, bf16, int8, int8-compile, transformers and "
        "llama-cpp for qwen2.5-coder-0.5b)",
    )
    args = parser.parse_args()
    all_variants = (*ENGINES, *OTHERS)
    if args.variants:
        variants = ["fp32", *(v for v in args.variants.split(",") if v != "fp32")]
        unknown = [v for v in variants if v not in all_variants]
        if unknown:
            parser.error(f"--variants: unknown {unknown}; choose from {', '.join(all_variants)}")
    else:
        variants = list(DEFAULT_VARIANTS.get(args.model, all_variants))
    if args.no_llama_cpp and "llama-cpp" in variants:
        variants.remove("llama-cpp")
    if not any(v.startswith("transformers") for v in variants):
        parser.error("--variants: keep transformers-static or transformers-dynamic (the peer)")
    load_start = os.getloadavg()[0]
    # a fresh inductor cache: the compile time reported is a cold one
    inductor_cache = tempfile.mkdtemp(prefix="hearth-inductor-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = inductor_cache

    import torch
    from transformers import AutoModelForCausalLM

    from hearth.engine.model import LlamaModel
    from hearth.engine.perplexity import perplexity
    from hearth.engine.quant import decode_weight_bytes, quantize
    from hearth.engine.speculative import common_prefix
    from hearth.engine.tokenizer import load_tokenizer
    from hearth.llm import embedded_path

    torch.set_num_threads(args.threads)
    path = embedded_path(args.model)
    model_title = MODEL_TITLES.get(args.model, args.model)
    n = args.max_tokens
    runs: list[Run] = []
    models: dict[str, LlamaModel] = {}  # for perplexity
    compile_seconds = None
    for label, precision, kw in [ENGINES[v] for v in ENGINES if v in variants]:
        model = LlamaModel.from_pretrained(path, fuse=kw.get("fuse", True))
        quantize(
            model,
            precision,
            use_kernel=kw.get("use_kernel", True),
            compile=kw.get("compile", False),
        )
        compile_seconds = getattr(model, "compile_seconds", compile_seconds)
        tokens = args.fallback_tokens if "use_kernel" in kw else n
        runs.append(Run(label, precision, decode_weight_bytes(model), ours(model), tokens))
        if not kw:
            models[precision] = model
    fp32_model = models["fp32"]
    if "no-kv-cache" in variants:
        runs.append(
            Run("hearth (no KV cache)", "fp32", decode_weight_bytes(fp32_model),
                ours_uncached(fp32_model), n)
        )  # fmt: skip
    tok = load_tokenizer(path)
    eos = tok.eos_token_id
    hf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    hf.eval()
    hf_bytes = sum(p.numel() * p.element_size() for p in hf.parameters())  # tied: counted once
    for cache in ("static", None):
        if f"transformers-{cache or 'dynamic'}" not in variants:
            continue
        name = f"transformers generate ({cache or 'dynamic'} cache)"
        runs.append(Run(name, "fp32", hf_bytes, transformers_generate(hf, eos, cache), n))
    if "llama-cpp" in variants:
        from llama_cpp import Llama

        llm = Llama(
            model_path=str(path), n_ctx=512, n_threads=args.threads,
            n_threads_batch=args.threads, verbose=False,
        )  # fmt: skip
        runs.append(
            Run("llama-cpp-python", gguf_kind(path), gguf_bytes(path), llama_cpp_generate(llm), n)
        )

    prompts = [tok.encode(p) for p in PROMPTS]
    for run in runs:  # warm-up: first-call allocations, oneDNN primitive creation
        run.fn(prompts[0], 4)
    for _ in range(args.repeats):  # interleaved: drifting load hits every engine alike
        for i, ids in enumerate(prompts):
            for run in runs:
                run.measure(i, ids)
    probe = bandwidth_probe(args.threads)
    # held-out text for perplexity: a stdlib essay (heapq's "About heaps")
    held_out = tok.encode(heapq.__about__)
    ppl = {p: perplexity(m, held_out, window=512, stride=256).perplexity for p, m in models.items()}
    prefill = prefill_seconds(
        {f"hearth {p}": m for p, m in models.items()} | {"transformers forward": hf},
        held_out[: args.prefill_tokens],
    )
    load_end = os.getloadavg()[0]

    fp32 = runs[0]
    hf_runs = [r for r in runs if r.name.startswith("transformers")]
    peer = max(hf_runs, key=Run.decode_tok_s)
    identical_hf = all(r.outputs == fp32.outputs for r in hf_runs)
    main_runs = [r for r in runs if r.name == "hearth"]  # fp32 / bf16 / int8 (perplexity)
    rows, records = [], []
    for run in runs:
        tps = run.decode_tok_s()
        gbs = tps * run.bytes_per_token / 1e9
        agree = [
            common_prefix(run.outputs[i], fp32.outputs[i]) / len(run.outputs[i])
            for i in run.outputs
        ]
        record = {
            "engine": run.name,
            "precision": run.precision,
            "tokens_per_prompt": run.tokens,
            "weight_bytes_per_token": run.bytes_per_token,
            "decode_tok_s": tps,
            "end_to_end_tok_s": run.end_to_end_tok_s(),
            "vs_transformers": tps / peer.decode_tok_s(),
            "effective_gb_s": gbs,
            "share_of_read_bandwidth": gbs / probe["read_gb_s"],
            "bandwidth_ceiling_tok_s": probe["read_gb_s"] * 1e9 / run.bytes_per_token,
            "same_tokens_as_hearth_fp32": sum(agree) / len(agree),
            "perplexity": ppl.get(run.precision) if run in main_runs else None,
        }
        records.append(record)
        rows.append(
            [
                run.name,
                run.precision,
                run.bytes_per_token / 1e6,
                tps,
                record["end_to_end_tok_s"],
                record["vs_transformers"],
                gbs,
                f"{record['share_of_read_bandwidth']:.0%}",
                record["bandwidth_ceiling_tok_s"],
                f"{record['same_tokens_as_hearth_fp32']:.0%}",
            ]
        )
    best_ours = max(
        (r for r in records if r["engine"] in ("hearth", "hearth (compile=True)")),
        key=lambda r: r["decode_tok_s"],
    )
    ours_fp32 = records[0]
    llama = next((r for r in records if r["engine"] == "llama-cpp-python"), None)
    claims = {
        f"hearth {best_ours['precision']} decode >= 2x transformers fp32 "
        f"({best_ours['vs_transformers']:.2f}x)": best_ours["vs_transformers"] >= 2.0,
        f"hearth fp32 decode >= 2x transformers fp32 ({ours_fp32['vs_transformers']:.2f}x)": (
            ours_fp32["vs_transformers"] >= 2.0
        ),
        "hearth fp32 tokens identical to transformers greedy": identical_hf,
        **{
            f"{p} perplexity within 1% of fp32 ({v / ppl['fp32'] - 1:+.2%})": abs(
                v / ppl["fp32"] - 1
            )
            < 0.01
            for p, v in ppl.items()
            if p != "fp32"
        },
    }
    title = (
        f"Single-stream greedy decode, {model_title}, {n} new tokens x {len(prompts)} prompts, "
        f"{args.threads} thread(s), best of {args.repeats}; peer: {peer.name} "
        f"{peer.decode_tok_s():.1f} tok/s; memory read bandwidth probe "
        f"{probe['read_gb_s']:.1f} GB/s (copy {probe['copy_gb_s']:.1f}); load average "
        f"{load_start:.1f} -> {load_end:.1f}. Target >= 2x: "
        f"{verdict(best_ours['vs_transformers'] >= 2)}"
    )
    table = print_table(
        title,
        ["engine", "weights", "MB/token", "decode tok/s", "end-to-end tok/s", "vs HF",
         "effective GB/s", "of bandwidth", "ceiling tok/s", "same tokens as fp32"],
        rows,
    )  # fmt: skip
    print_table(
        f"Prefill of a {args.prefill_tokens}-token prompt (best of 2), seconds",
        ["model", "seconds", "vs hearth fp32"],
        [[k, v, v / prefill["hearth fp32"]] for k, v in prefill.items()],
    )
    for p, v in ppl.items():
        print(f"perplexity on heapq.__about__ ({len(held_out)} tokens), {p}: {v:.3f} "
              f"({v / ppl['fp32'] - 1:+.2%} vs fp32)")  # fmt: skip
    for claim, ok in claims.items():
        print(f"- {claim}: {'met' if ok else 'MISSED'}")
    path_out = write_result(
        "engine_decode" if args.model == "smollm2" else f"engine_decode_{args.model}",
        {
            "model": args.model,
            "model_file": path.name,
            "variants": variants,
            "max_tokens": n,
            "threads": args.threads,
            "repeats": args.repeats,
            "prompts": PROMPTS,
            "peer": peer.name,
            "int8_matvec_compile_seconds_cold_cache": compile_seconds,
            "bandwidth_probe": probe,
            "load_avg_start": load_start,
            "load_avg_end": load_end,
            "runs": records,
            "perplexity_held_out": {
                "text": "heapq.__about__ (Python stdlib), window 512, stride 256",
                "tokens": len(held_out),
                **{p: {"perplexity": v, "vs_fp32": v / ppl["fp32"] - 1} for p, v in ppl.items()},
            },
            "llama_cpp_vs_hearth_best": (
                llama["decode_tok_s"] / best_ours["decode_tok_s"] if llama else None
            ),
            "prefill_seconds": {"tokens": args.prefill_tokens, **prefill},
            "claims": claims,
            "table": table,
        },
    )
    print(f"wrote {path_out}")
    shutil.rmtree(inductor_cache, ignore_errors=True)


if __name__ == "__main__":
    main()
