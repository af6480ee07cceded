"""Continuous batching and prefix caching in our engine, the same SmolLM2 and prompts, one run:
aggregate decode tokens/s at 1, 4 and 16 concurrent sequences against our single-stream cached
greedy (the Generator's KV-cache loop), and time to first token of a second request sharing a
~1k-token prefix against the first's.

Targets (issue 4): 16 sequences >= 6x single-stream decode tokens/s (measured for fp32 and
bf16 weights, each against its own single stream and against the fastest one); the second
request's TTFT <= 20% of the first's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import Counter

from common import REPO_ROOT, print_table, verdict, write_result

TOPICS = [
    "a robot who learns to paint", "a lighthouse keeper", "the last tree on Mars",
    "a cat that opens doors", "a baker in Lisbon", "an old violin", "a lost key",
    "two rival chess clubs", "a river that runs uphill", "a library at night",
    "a clockmaker's apprentice", "the first snow of winter", "a map with no roads",
    "a quiet volcano", "a postman on a bicycle", "a garden on a rooftop",
]  # fmt: skip


def story_prompt(i: int) -> str:
    return f"Write a short story about {TOPICS[i % len(TOPICS)]}. Story:"


class SingleStream:
    """Our single-stream peer: the KV-cache greedy loop the Generator runs (one token a step)."""

    def __init__(self, model, ids: list[int], n: int) -> None:
        import torch

        self.model = model
        self.cache = model.new_cache(len(ids) + n + 1)
        with torch.inference_mode():
            self.logits = model(torch.tensor([ids]), kv_cache=self.cache, last_only=True)[0, -1]

    def step(self) -> int:
        import torch

        with torch.inference_mode():
            token = self.logits.argmax().view(1, 1)
            self.logits = self.model(token, kv_cache=self.cache, last_only=True)[0, -1]
        return 1


class Batch:
    """`len(prompts)` sequences in one LLMEngine, prefilled; each step decodes all of them."""

    def __init__(self, engine, prompts: list[list[int]], n: int) -> None:
        from hearth.engine.sampling import SamplingParams

        self.engine = engine
        for ids in prompts:  # no EOS: every sequence decodes exactly n tokens
            engine.add_request(ids, SamplingParams(max_tokens=n), eos_token_ids=())
        start = time.perf_counter()
        outs = engine.step()
        self.prefill_s = time.perf_counter() - start
        assert len(outs) == len(prompts), "all sequences should be prefilled in one step"

    def step(self) -> int:
        return len(self.engine.step())


def interleaved_decode(setups: dict, steps: int) -> dict[str, dict[str, float]]:
    """Time one decode step of each setup in turn, `steps` rounds: load from other processes
    drifts over minutes, and this way it hits every setup alike. tok/s from the median step
    (robust to a neighbour's burst) and from the total."""
    times: dict[str, list[float]] = {name: [] for name in setups}
    tokens: dict[str, int] = {name: 0 for name in setups}
    for _ in range(steps):
        for name, setup in setups.items():
            start = time.perf_counter()
            made = setup.step()
            times[name].append(time.perf_counter() - start)
            tokens[name] += made
    out = {}
    for name, ts in times.items():
        per_step = tokens[name] / len(ts)
        out[name] = {
            "tok_s_median_step": per_step / statistics.median(ts),
            "tok_s_total": tokens[name] / sum(ts),
            "tokens": tokens[name],
        }
    return out


def prefix_text(tok, n_tokens: int) -> str:
    """A real ~n-token context (the project's own docs), cut at a token boundary."""
    text = "\n".join((REPO_ROOT / f).read_text() for f in ("README.md", "docs/models.md"))
    ids = tok.encode(text, add_special_tokens=False)
    while len(ids) < n_tokens:
        ids = ids + ids
    return tok.decode(ids[:n_tokens])


def ttft(engine, ids: list[int]) -> float:
    from hearth.engine.sampling import SamplingParams

    start = time.perf_counter()
    seq_id = engine.add_request(ids, SamplingParams(max_tokens=8))
    while not any(o.seq_id == seq_id for o in engine.step()):
        pass
    seconds = time.perf_counter() - start
    while engine.has_unfinished():
        engine.step()
    return seconds


def profile_decode(engine, prompts: list[list[int]], steps: int) -> dict[str, float]:
    """Share of decode-step time by kind of op: matmuls, the paged gather/scatter, attention."""
    from torch.profiler import ProfilerActivity, profile

    from hearth.engine.sampling import SamplingParams

    for ids in prompts:
        engine.add_request(ids, SamplingParams(max_tokens=steps + 1), eos_token_ids=())
    engine.step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        while engine.has_unfinished():
            engine.step()
        wall = time.perf_counter() - start
    kinds = {
        "matmul (linear, lm_head)": ("aten::addmm", "aten::mm", "aten::bmm", "aten::linear"),
        "paged gather/scatter": ("aten::index_select", "aten::index_copy_", "aten::index_copy"),
        "attention (sdpa)": ("aten::_scaled_dot_product_flash_attention_for_cpu",),
    }
    seen: Counter[str] = Counter()
    for ev in prof.key_averages():
        for kind, names in kinds.items():
            if ev.key in names:
                seen[kind] += ev.self_cpu_time_total / 1e6
    share = {k: seen[k] / wall for k in kinds}
    share["everything else (norms, rope, python, sampling)"] = 1 - sum(share.values())
    return share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-tokens", type=int, default=64, help="decode tokens per sequence")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--prefix-tokens", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2, help="TTFT runs; the best is kept")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    parser.add_argument(
        "--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "int8"],
        help="weights (hearth.engine.quant); each gets its own single-stream peer",
    )  # fmt: skip
    parser.add_argument("--profile", action="store_true", help="break a 16-way decode down")
    parser.add_argument("--quick", action="store_true", help="fewer tokens, one TTFT run")
    args = parser.parse_args()
    if args.quick:
        args.max_tokens, args.repeats = 24, 1

    import torch

    from hearth.engine.llm_engine import EngineConfig, LLMEngine, load_model
    from hearth.engine.tokenizer import load_tokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    load_before = os.getloadavg()[0]
    models = {p: load_model(None, p) for p in args.precisions}  # the embedded SmolLM2
    first_model = models[args.precisions[0]]
    tok = load_tokenizer(first_model.source)
    n, top = args.max_tokens, max(args.batch_sizes)
    prompts = [tok.encode(story_prompt(i)) for i in range(top)]

    def fresh(model=first_model, **kw) -> LLMEngine:
        kw.setdefault("kv_cache_mb", 512)
        return LLMEngine(model, tok, EngineConfig(**kw))

    # ---- aggregate decode throughput: every setup of every precision, step by step ---------
    setups: dict = {}
    for p, model in models.items():
        setups[f"{p} single"] = SingleStream(model, prompts[0], n)
        for b in args.batch_sizes:
            setups[f"{p} engine {b}"] = Batch(fresh(model, kv_cache_mb=128), prompts[:b], n)
    decode = interleaved_decode(setups, n - 1)
    for name, setup in setups.items():
        if isinstance(setup, Batch):
            decode[name]["prefill_s"] = setup.prefill_s
    best_single = max(decode[f"{p} single"]["tok_s_median_step"] for p in models)
    rows, ratios = [], {}
    for p in models:
        single = decode[f"{p} single"]["tok_s_median_step"]
        rows.append([f"{p} single stream (KV-cache greedy)", 1, single, 1.0, single / best_single])
        for b in args.batch_sizes:
            tok_s = decode[f"{p} engine {b}"]["tok_s_median_step"]
            rows.append(
                [f"{p} engine, {b} sequences", b, tok_s, tok_s / single, tok_s / best_single]
            )
        ratios[p] = decode[f"{p} engine {top}"]["tok_s_median_step"] / single
    best_batched = max(decode[f"{p} engine {top}"]["tok_s_median_step"] for p in models)
    table = print_table(
        f"Aggregate decode tokens/s, SmolLM2, {n} tokens per sequence, "
        f"{torch.get_num_threads()} thread(s), all setups' steps interleaved",
        ["setup", "sequences", "decode tok/s", "x its single", "x best single"],
        rows,
    )
    for p, r in ratios.items():
        print(f"{p}: {top} sequences = {r:.2f}x its single stream: {verdict(r >= 6)}")
    best_ratio = best_batched / best_single
    print(f"best {top}-sequence engine vs best single stream: {best_ratio:.2f}x")

    # ---- prefix caching: time to first token ----------------------------------------------
    context = prefix_text(tok, args.prefix_tokens)
    questions = [
        "Question: What does Hearth do?\nAnswer:",
        "Question: Which model is the default?\nAnswer:",
    ]
    first_ids, second_ids = (tok.encode(f"{context}\n{q}") for q in questions)
    shared = next(i for i, (a, b) in enumerate(zip(first_ids, second_ids, strict=False)) if a != b)
    firsts, seconds, uncached = [], [], []
    for _ in range(args.repeats):
        engine = fresh()
        firsts.append(ttft(engine, first_ids))
        seconds.append(ttft(engine, second_ids))
        uncached.append(ttft(fresh(enable_prefix_caching=False), second_ids))
    first_s, second_s, uncached_s = min(firsts), min(seconds), min(uncached)
    ttft_ratio = second_s / first_s
    prefix_table = print_table(
        f"Time to first token ({args.precisions[0]}) with a shared {shared}-token prefix; "
        f"second <= 20% of first: {verdict(ttft_ratio <= 0.2)}",
        ["request", "prompt tokens", "TTFT s", "x first"],
        [
            ["first (cold cache)", len(first_ids), first_s, 1.0],
            ["second, same prefix (prefix cache)", len(second_ids), second_s, ttft_ratio],
            ["second, prefix caching off", len(second_ids), uncached_s, uncached_s / first_s],
        ],
    )

    breakdown = {}
    if args.profile:
        breakdown = profile_decode(fresh(), prompts[:top], min(n, 24))
        print_table(
            f"Where a {top}-sequence {args.precisions[0]} decode step's time goes",
            ["kind", "share of wall time"],
            [[k, f"{v:.0%}"] for k, v in breakdown.items()],
        )
    load_after = os.getloadavg()[0]
    print(f"load average (1 min): {load_before:.2f} before, {load_after:.2f} after")
    claims = {
        f"{p}: {top} sequences >= 6x {p} single-stream decode tok/s": r >= 6
        for p, r in ratios.items()
    }
    claims[f"best {top}-sequence engine >= 6x best single stream"] = best_ratio >= 6
    claims["prefix-cached second request TTFT <= 20% of the first"] = ttft_ratio <= 0.2
    path = write_result(
        "engine_batching",
        {
            "precisions": args.precisions,
            "threads": torch.get_num_threads(),
            "max_tokens": n,
            "decode": decode,
            "ratio_at_max_batch": ratios,
            "best_ratio": best_ratio,
            "prefix_tokens_shared": shared,
            "ttft_first_s": first_s,
            "ttft_second_s": second_s,
            "ttft_second_uncached_s": uncached_s,
            "ttft_ratio": ttft_ratio,
            "profile_share": breakdown,
            "load_avg_before": load_before,
            "load_avg_after": load_after,
            "claims": claims,
            "table": table + "\n\n" + prefix_table,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
