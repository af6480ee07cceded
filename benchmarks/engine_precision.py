"""Which weight precision should `hearth generate` use by default? For each embedded model and
each precision (fp32, bf16, int8, and int8 with `compile=True`):

(a) perplexity relative to fp32 on a long held-out text (Python standard-library module
    docstrings, fixed list, several thousand tokens), with `hearth.engine.perplexity`;
(b) what a new user sees: `hearth generate PROMPT --max-tokens 32 --json --precision P
    [--model NAME]` run as a subprocess: the wall-clock of the whole command and the JSON's
    `tokens_per_second`, `seconds`, `warmup_seconds`, `tokens_per_second_with_warmup`; and the
    peer in the same run: a subprocess that loads transformers' AutoModelForCausalLM (fp32)
    from the same GGUF and runs greedy `generate` for the same prompt ids and token budget,
    its load and generation seconds reported the same way.

`hearth generate` has no flag for `compile=True`: that variant runs in a subprocess of this
script that does what the command does (Generator, load, quantize with compile=True, run).
Runs are interleaved (every variant once per round, the order rotating) and medians kept.
The recommendation per model is the fastest precision (median generation tokens/s) whose
perplexity stays within 0.5% of fp32.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BENCH_DIR, REPO_ROOT, RESULTS_DIR, cache_dir, print_table, write_result

MODELS = ("smollm2", "qwen2.5-coder-0.5b")
VARIANTS = ("fp32", "bf16", "int8", "int8-compile")  # engine variants; the peer is added
PEER = "transformers"
PROMPT = "The history of the printing press begins in"
# The held-out text: these modules' __doc__, in this order, joined by blank lines. Not used to
# choose anything in the engine; fixed so every run scores the same text (its sha256 is in the
# result; docstrings can change between Python versions).
HELD_OUT_MODULES = (
    "argparse", "heapq", "json", "csv", "textwrap", "pathlib", "logging", "re",
    "configparser", "statistics", "pdb", "shelve", "cmd", "sys", "timeit",
)  # fmt: skip
TOLERANCE = 0.005  # "within 0.5% of fp32"
SCHEME = "per-docstring sliding windows, summed"  # how the perplexity was computed


def held_out_docs() -> dict[str, str]:
    """Module name -> its docstring (stripped); modules without one are left out."""
    docs = {m: (importlib.import_module(m).__doc__ or "").strip() for m in HELD_OUT_MODULES}
    return {m: d for m, d in docs.items() if d}


# --------------------------------------------------------------------------- children


def child_transformers(path: str, prompt_ids: list[int], max_tokens: int, eos: int) -> dict:
    """The peer: what a transformers user runs on the same GGUF (fp32, greedy)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()  # after imports, as Hearth's warm-up starts after its imports
    p = Path(path)
    tok = AutoTokenizer.from_pretrained(p.parent, gguf_file=p.name)
    tokenizer_seconds = time.perf_counter() - start
    model = AutoModelForCausalLM.from_pretrained(p.parent, gguf_file=p.name, dtype=torch.float32)
    model.eval()
    warmup = time.perf_counter() - start
    own_ids = tok(PROMPT, add_special_tokens=True).input_ids
    t0 = time.perf_counter()
    with torch.inference_mode():
        x = torch.tensor([prompt_ids])
        out = model.generate(
            x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=max_tokens,
            eos_token_id=eos, pad_token_id=eos, num_beams=1,
        )  # fmt: skip
    new = out[0, len(prompt_ids) :].tolist()
    if new and new[-1] == eos:
        new = new[:-1]
    text = tok.decode(new)
    seconds = time.perf_counter() - t0
    return {
        "text": text,
        "token_ids": new,
        "seconds": seconds,
        "warmup_seconds": warmup,
        "tokenizer_seconds": tokenizer_seconds,
        "tokens_per_second": len(new) / seconds,
        "tokens_per_second_with_warmup": len(new) / (seconds + warmup),
        "own_prompt_ids_equal": own_ids == prompt_ids,
        "threads": torch.get_num_threads(),
    }


def child_compiled(path: str, max_tokens: int) -> dict:
    """What `hearth generate --precision int8` would do with compile=True (no CLI flag)."""
    from hearth.engine.generator import Generator
    from hearth.engine.quant import quantize
    from hearth.engine.sampling import SamplingParams

    params = SamplingParams(strategy="greedy", max_tokens=max_tokens, early_stopping=True)
    gen = Generator(path, precision="fp32").warm_up()  # loads fp32 (timed in warmup_seconds)
    start = time.perf_counter()
    quantize(gen.model, "int8", compile=True)
    gen.warmup_seconds += time.perf_counter() - start
    gen.precision = "int8"
    report = gen.run(PROMPT, params)
    import torch

    return {
        **report.as_json(),
        "compile_seconds": getattr(gen.model, "compile_seconds", None),
        "threads": torch.get_num_threads(),
    }


def run_child(argv: list[str]) -> None:
    kind = argv[0]
    if kind == PEER:
        path, ids, n, eos = argv[1], json.loads(argv[2]), int(argv[3]), int(argv[4])
        out = child_transformers(path, ids, n, eos)
    else:
        out = child_compiled(argv[1], int(argv[2]))
    print(json.dumps(out))


# --------------------------------------------------------------------------- timing


def one_run(cmd: list[str], env: dict[str, str]) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    out = json.loads(lines[-1])
    return {**out, "wall_seconds": wall, "tokens": len(out["token_ids"])}


def commands(name: str, path: Path, prompt_ids: list[int], eos: int, n: int) -> dict:
    hearth = str(Path(sys.executable).with_name("hearth"))
    model = [] if name == "smollm2" else ["--model", name]
    cli = [hearth, "generate", PROMPT, "--max-tokens", str(n), "--json", *model]
    me = [sys.executable, str(BENCH_DIR / "engine_precision.py"), "--child"]
    return {
        "fp32": [*cli, "--precision", "fp32"],
        "bf16": [*cli, "--precision", "bf16"],
        "int8": [*cli, "--precision", "int8"],
        "int8-compile": [*me, "compiled", str(path), str(n)],
        PEER: [*me, PEER, str(path), json.dumps(prompt_ids), str(n), str(eos)],
    }


def ppl_cell(p: dict) -> str:
    """'+0.44% [+0.20, +0.71]': the ratio to fp32 and its bootstrap interval (percent)."""
    ci = p.get("vs_fp32_bootstrap_95")
    if not ci or p["vs_fp32"] == 0:
        return f"{p['vs_fp32']:+.2%}"
    return f"{p['vs_fp32']:+.2%} [{ci[0] * 100:+.2f}, {ci[1] * 100:+.2f}]"


def paired(timing: dict[str, dict]) -> dict[str, float]:
    """Median over rounds of each variant's generation tok/s / fp32's in the same round (runs
    next to each other share the load of their moment, so this is steadier than a ratio of
    medians)."""
    fp32 = {r["round"]: r["tokens_per_second"] for r in timing["fp32"]["runs"]}
    return {
        v: statistics.median(r["tokens_per_second"] / fp32[r["round"]] for r in timing[v]["runs"])
        for v in (*VARIANTS[1:], PEER)
    }


def break_even(records: dict[str, dict]) -> dict[str, float | None]:
    """For each precision faster than fp32 at generating but slower to warm up: after how many
    generated tokens its extra warm-up is paid back (None: never, or nothing to pay back)."""
    fp32 = records["fp32"]
    out: dict[str, float | None] = {}
    for v in VARIANTS[1:]:
        r = records[v]
        extra = r["warmup_seconds"] - fp32["warmup_seconds"]
        saved = 1 / fp32["tokens_per_second"] - 1 / r["tokens_per_second"]  # s per token
        out[v] = extra / saved if saved > 0 and extra > 0 else None
    return out


def fastest(records: dict[str, dict], variants: list[str], key: str) -> str | None:
    """The variant with the highest `key` among `variants` (None if there are none)."""
    return max(variants, key=lambda v: records[v][key]) if variants else None


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


# --------------------------------------------------------------------------- perplexity


def perplexities(
    name: str, path: Path, docs: dict[str, list[int]], window: int, stride: int
) -> dict:
    """Perplexity of each precision over all the docstrings: each docstring scored on its own
    (`hearth.engine.perplexity`, sliding windows), their negative log-likelihoods summed, so
    the total is one perplexity over every scored token; the per-docstring numbers give the
    spread (and a bootstrap interval over docstrings for the ratio to fp32)."""
    import gc
    import math

    from hearth.engine.model import LlamaModel
    from hearth.engine.perplexity import perplexity
    from hearth.engine.quant import quantize

    out = {}
    for precision in ("fp32", "bf16", "int8"):
        t0 = time.perf_counter()
        model = LlamaModel.from_pretrained(path)
        quantize(model, precision)
        per_doc = {}
        for module, ids in docs.items():
            p = perplexity(model, ids, window=window, stride=stride)
            per_doc[module] = {"nll_sum": p.mean_nll * p.tokens, "tokens": p.tokens}
        nll = sum(d["nll_sum"] for d in per_doc.values())
        scored = sum(d["tokens"] for d in per_doc.values())
        out[precision] = {
            "perplexity": math.exp(nll / scored),
            "mean_nll": nll / scored,
            "tokens_scored": scored,
            "seconds": time.perf_counter() - t0,
            "per_docstring": per_doc,
        }
        print(f"  {name} {precision}: perplexity {out[precision]['perplexity']:.4f} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
        del model
        gc.collect()
    # compile=True only changes one-row matmuls (decode steps); the windows run many rows
    # through the same int8 kernel, so its perplexity here is int8's.
    out["int8-compile"] = {**out["int8"], "same_as": "int8"}
    base = out["fp32"]
    for v in out.values():
        v["vs_fp32"] = v["perplexity"] / base["perplexity"] - 1
        v["vs_fp32_bootstrap_95"] = bootstrap_ratio(v["per_docstring"], base["per_docstring"])
        v["vs_fp32_per_docstring"] = {
            m: math.exp((d["nll_sum"] - base["per_docstring"][m]["nll_sum"]) / d["tokens"]) - 1
            for m, d in v["per_docstring"].items()
        }
    return out


def bootstrap_ratio(docs: dict, base: dict, rounds: int = 2000) -> list[float]:
    """95% interval of perplexity / fp32's - 1, docstrings resampled with replacement."""
    import math

    import numpy as np

    names = list(docs)
    diff = np.array([docs[m]["nll_sum"] - base[m]["nll_sum"] for m in names])
    tokens = np.array([docs[m]["tokens"] for m in names], dtype=float)
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(names), size=(rounds, len(names)))
    ratios = np.exp(diff[picks].sum(1) / tokens[picks].sum(1)) - 1
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return [float(lo), float(hi)] if math.isfinite(lo) else []


# --------------------------------------------------------------------------- main


def run_timing(names, paths, toks, n: int, repeats: int, threads: int) -> dict[str, dict]:
    """Every variant of every model once per round, the order rotating; medians per variant."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if threads:
        env |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    # a fresh inductor cache: the first compile=True run compiles cold, later ones warm
    inductor = tempfile.mkdtemp(prefix="hearth-inductor-")
    env["TORCHINDUCTOR_CACHE_DIR"] = inductor
    cmds = {
        name: commands(name, paths[name], toks[name].encode(PROMPT), toks[name].eos_token_id, n)
        for name in names
    }
    runs: dict[str, dict[str, list[dict]]] = {name: {v: [] for v in cmds[name]} for name in names}
    for r in range(repeats):
        for name in names:
            order = list(cmds[name])
            order = order[r % len(order) :] + order[: r % len(order)]  # rotate per round
            for variant in order:
                res = one_run(cmds[name][variant], env)
                res["round"] = r
                res["load_1m"] = os.getloadavg()[0]
                runs[name][variant].append(res)
                print(
                    f"  round {r + 1} {name} {variant}: {res['tokens_per_second']:.1f} tok/s, "
                    f"{res['seconds']:.2f} s + warm-up {res['warmup_seconds']:.1f} s, command "
                    f"{res['wall_seconds']:.1f} s (load {res['load_1m']:.2f})",
                    flush=True,
                )
    shutil.rmtree(inductor, ignore_errors=True)
    keys = ("tokens_per_second", "seconds", "warmup_seconds", "tokens_per_second_with_warmup",
            "wall_seconds")  # fmt: skip
    timing: dict[str, dict] = {}
    for name in names:
        peer_ids = runs[name][PEER][0]["token_ids"]
        timing[name] = {}
        for variant, rs in runs[name].items():
            timing[name][variant] = {
                "tokens": [x["tokens"] for x in rs],
                **{k: median_of(rs, k) for k in keys},
                "same_tokens_as_transformers": all(x["token_ids"] == peer_ids for x in rs),
                "runs": rs,
            }
            if variant == "int8-compile":
                timing[name][variant]["compile_seconds_cold_then_warm"] = [
                    x["compile_seconds"] for x in rs
                ]
    return timing


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        run_child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; medians")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="OMP_NUM_THREADS for every timed subprocess (0: torch's default, all cores)",
    )  # fmt: skip
    parser.add_argument(
        "--ppl-threads", type=int, default=0, help="torch threads for perplexity (0: default)"
    )
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--stride", type=int, default=768)
    parser.add_argument(
        "--parts", default="timing,perplexity",
        help="timing, perplexity, both (timing runs first) or none; a part left out is taken "
        "from the existing results/engine_precision.json where it has it (same models; for "
        "perplexity the same text, window and stride)",
    )  # fmt: skip
    args = parser.parse_args()
    parts = set(args.parts.split(",")) - {"none"}
    if not parts <= {"timing", "perplexity"}:
        parser.error("--parts: timing, perplexity, both, or none (rebuild the table)")
    names = args.models.split(",")
    n = args.max_tokens

    from hearth.engine import config
    from hearth.engine.tokenizer import load_tokenizer
    from hearth.llm import embedded_path

    docs = held_out_docs()
    text = "\n\n".join(docs.values())
    text_sha = hashlib.sha256(text.encode()).hexdigest()
    old_path = RESULTS_DIR / "engine_precision.json"
    previous = json.loads(old_path.read_text()) if old_path.is_file() else {}
    paths = {name: embedded_path(name) for name in names}
    toks = {name: load_tokenizer(paths[name]) for name in names}
    doc_ids = {name: {m: toks[name].encode(d) for m, d in docs.items()} for name in names}
    text_tokens = {name: sum(map(len, doc_ids[name].values())) for name in names}
    started = time.time()
    load = {"start": os.getloadavg()}

    # ---- (b) what a user sees, first: it wants the quietest cores
    if "timing" in parts:
        t0 = time.time()
        timing = run_timing(names, paths, toks, n, args.repeats, args.threads)
        timing_info = {
            "seconds": time.time() - t0,
            "load_avg_start": load["start"],
            "load_avg_end": os.getloadavg(),
            "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
            "repeats": args.repeats,
            "threads": args.threads or "default",
            "max_tokens": n,
            "command": " ".join(["python", *sys.argv]),
        }
        load["after_timing"] = os.getloadavg()
        backup = cache_dir() / "engine_precision_timing.json"  # in case what follows fails
        backup.write_text(json.dumps({"timing": timing, "timing_info": timing_info}))
    else:
        old = previous.get("timing", {})
        timing = {name: old[name] for name in names if name in old}
        timing_info = previous.get("timing_info", {})
        print(f"timing: kept from {old_path.name} ({timing_info.get('measured_at')})")

    # ---- (a) perplexity
    if "perplexity" in parts:
        import torch

        if args.ppl_threads:
            torch.set_num_threads(args.ppl_threads)
        print(f"perplexity on {len(docs)} docstrings, window {args.window}, "
              f"stride {args.stride}, {torch.get_num_threads()} thread(s)", flush=True)  # fmt: skip
        t0 = time.time()
        ppl = {
            name: perplexities(name, paths[name], doc_ids[name], args.window, args.stride)
            for name in names
        }
        ppl_info = {
            "text": "the __doc__ of these stdlib modules, each scored on its own and summed "
            "(sha256 of them joined by blank lines below): " + ", ".join(docs),
            "text_chars": len(text),
            "text_sha256": text_sha,
            "python": sys.version.split()[0],
            "window": args.window,
            "stride": args.stride,
            "threads": torch.get_num_threads(),
            "tokens": text_tokens,
            "seconds": time.time() - t0,
            "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(["python", *sys.argv]),
            "scheme": SCHEME,
            "note": "int8-compile's perplexity is int8's: compile=True only changes one-row "
            "matmuls; the windows run many rows through the same int8 kernel",
        }
        load["after_perplexity"] = os.getloadavg()
    else:
        old = previous.get("perplexity", {})
        key = ("text_sha256", "window", "stride", "scheme")
        same = tuple(old.get(k) for k in key) == (text_sha, args.window, args.stride, SCHEME)
        ppl = {k: v for k, v in old.get("models", {}).items() if same and k in names}
        ppl_info = {k: v for k, v in old.items() if k != "models"} if same else {}
        print(f"perplexity: kept from {old_path.name} ({ppl_info.get('measured_at')})")
    load["end"] = os.getloadavg()

    # ---- tables and the recommendation
    rows, recommend, table_records = [], {}, {}
    for name in names:
        if name not in timing or name not in ppl:
            print(f"{name}: no {'timing' if name not in timing else 'perplexity'} yet; run "
                  "the missing part")  # fmt: skip
            continue
        peer = timing[name][PEER]
        recs = {}
        for variant in (*VARIANTS, PEER):
            t = timing[name][variant]
            p = ppl[name].get(variant)
            rec = {
                "tokens": t["tokens"],
                "tokens_per_second": t["tokens_per_second"],
                "vs_transformers": t["tokens_per_second"] / peer["tokens_per_second"],
                "warmup_seconds": t["warmup_seconds"],
                "tokens_per_second_with_warmup": t["tokens_per_second_with_warmup"],
                "with_warmup_vs_transformers": t["tokens_per_second_with_warmup"]
                / peer["tokens_per_second_with_warmup"],
                "command_seconds": t["wall_seconds"],
                "command_vs_transformers": peer["wall_seconds"] / t["wall_seconds"],
                "perplexity_vs_fp32": None if p is None else p["vs_fp32"],
                "perplexity_vs_fp32_bootstrap_95": None
                if p is None
                else p.get("vs_fp32_bootstrap_95"),
                "same_tokens_as_transformers": t["same_tokens_as_transformers"],
            }
            recs[variant] = rec
            rows.append(
                [
                    name,
                    "transformers fp32" if variant == PEER else f"hearth {variant}",
                    "-" if p is None else ppl_cell(p),
                    rec["tokens_per_second"],
                    f"{rec['vs_transformers']:.2f}x",
                    rec["warmup_seconds"],
                    rec["tokens_per_second_with_warmup"],
                    f"{rec['with_warmup_vs_transformers']:.2f}x",
                    rec["command_seconds"],
                    f"{rec['command_vs_transformers']:.2f}x",
                    "yes" if rec["same_tokens_as_transformers"] else "no",
                ]
            )
        table_records[name] = recs
        ok = [v for v in VARIANTS if abs(recs[v]["perplexity_vs_fp32"]) <= TOLERANCE]
        cli_ok = [v for v in ok if v != "int8-compile"]
        recommend[name] = {
            "generation_vs_fp32_median_of_rounds": paired(timing[name]),
            "break_even_tokens_vs_fp32": break_even(recs),
            "within_tolerance": ok,
            "fastest_generation": fastest(recs, cli_ok, "tokens_per_second"),
            "fastest_with_warmup": fastest(recs, cli_ok, "tokens_per_second_with_warmup"),
            "fastest_command": fastest(recs, cli_ok, "command_vs_transformers"),
            "fastest_generation_incl_compile": fastest(recs, ok, "tokens_per_second"),
            "fastest_with_warmup_incl_compile": fastest(recs, ok, "tokens_per_second_with_warmup"),
        }

    title = (
        f"`hearth generate` ({n} new tokens, greedy, prompt {PROMPT!r}) vs transformers "
        f"`generate` fp32 on the same GGUF, medians of {timing_info.get('repeats')} interleaved "
        f"runs, OMP_NUM_THREADS={timing_info.get('threads')}, load average "
        f"{fmt_load(timing_info.get('load_avg_start'))} -> "
        f"{fmt_load(timing_info.get('load_avg_end'))}; perplexity on {len(docs)} stdlib "
        f"docstrings ({', '.join(f'{k}: {v} tokens' for k, v in text_tokens.items())}), window "
        f"{args.window}, stride {args.stride}, 95% bootstrap interval over docstrings. tok/s: "
        "request to last token, prompt included; with warm-up: loading (+ quantizing / "
        "compiling) added; command: the whole subprocess, imports included."
    )
    table = print_table(
        title,
        ["model", "engine", "perplexity vs fp32 [95% CI]", "tok/s", "vs HF", "warm-up s",
         "tok/s with warm-up", "vs HF", "command s", "vs HF", "same tokens as HF"],
        rows,
    )  # fmt: skip
    for name, rec in recommend.items():
        paid = ", ".join(
            f"{v} after {t:.0f} tokens" for v, t in rec["break_even_tokens_vs_fp32"].items() if t
        )
        print(f"{name}: extra warm-up over fp32 paid back: {paid or 'none'}")
        rounds = rec["generation_vs_fp32_median_of_rounds"]
        print(f"{name}: generation tok/s vs fp32, median of same-round ratios: "
              + ", ".join(f"{v} {x:.2f}x" for v, x in rounds.items()))  # fmt: skip
        print(f"{name}: within 0.5% of fp32: {', '.join(rec['within_tolerance'])}; fastest "
              f"(generation tok/s, CLI precisions): {rec['fastest_generation']}; with warm-up: "
              f"{rec['fastest_with_warmup']}; whole command: {rec['fastest_command']}; "
              f"counting compile=True: {rec['fastest_generation_incl_compile']} "
              f"(with warm-up {rec['fastest_with_warmup_incl_compile']})")  # fmt: skip
    defaults = {name: config.default_precision(paths[name]) for name in names}
    print(f"hearth's default precision now: {defaults}")
    claims = {
        f"{name}: the default precision ({defaults[name]}) is the fastest within 0.5% of fp32 "
        f"perplexity by generation tok/s ({rec['fastest_generation']})": rec["fastest_generation"]
        == defaults[name]
        for name, rec in recommend.items()
    }
    for claim, ok in claims.items():
        print(f"- {claim}: {'met' if ok else 'MISSED'}")
    out = write_result(
        "engine_precision",
        {
            "models": names,
            "prompt": PROMPT,
            "max_tokens": n,
            "statistic": "median of interleaved runs (order rotated per round)",
            "default_precision": defaults,
            "tolerance": TOLERANCE,
            "parts_run": sorted(parts),
            "load_avg": load,
            "run_seconds": time.time() - started,
            "timing_info": timing_info,
            "perplexity": {**ppl_info, "models": ppl},
            "timing": timing,
            "table_records": table_records,
            "recommendation": recommend,
            "compile_note": "hearth generate has no compile=True flag: int8-compile runs in a "
            "subprocess of this script that does what the command does (Generator, load, "
            "quantize(compile=True), run), with a fresh inductor cache per benchmark run",
            "claims": claims,
            "table": table,
        },
    )
    print(f"wrote {out}")


def fmt_load(avg) -> str:
    return "?" if not avg else f"{avg[0]:.2f}"


if __name__ == "__main__":
    main()
