"""Prompt-lookup speculative decoding vs plain cached greedy, our engine, the same SmolLM2, on
RAG-style prompts whose answers copy the context: tokens/s, acceptance, identical output.

Target (issue 4): >= 1.8x greedy's tokens/s with token-for-token identical output.
"""

from __future__ import annotations

import argparse
import time

from common import print_table, verdict, write_result

PASSAGES = [
    (
        "The Hearth engine stores its vectors in an embedded SQLite database called hearth.db, "
        "located in the project's data folder. Backups run nightly at 2 a.m. and are kept for "
        "thirty days.",
        "Where does the Hearth engine store its vectors, and when do backups run?",
        "The Hearth engine stores its vectors in",
    ),
    (
        "To rotate an API key, open Settings, choose Security, click Rotate key, and confirm "
        "with your password. The old key stops working after fifteen minutes.",
        "How do I rotate an API key?",
        "To rotate an API key,",
    ),
    (
        "The Millbrook bridge was completed in 1887 by the engineer Ada Thornton. It spans the "
        "river Wend with three stone arches and carried horse-drawn traffic until 1952.",
        "Who built the Millbrook bridge and what does it span?",
        "The Millbrook bridge was",
    ),
]


def rag_prompt(passage: str, question: str, answer_start: str) -> str:
    return f"Context: {passage}\nQuestion: {question}\nAnswer: {answer_start}"


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--k", type=int, default=6, help="draft tokens per verify step")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per setup; best is kept")
    args = parser.parse_args()

    import torch

    from hearth.engine.model import LlamaModel
    from hearth.engine.sampling import SamplingParams
    from hearth.engine.speculative import PromptLookupDrafter, cached_greedy, speculative_generate
    from hearth.engine.tokenizer import load_tokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    model = LlamaModel.from_pretrained()
    tok = load_tokenizer(model.source)
    eos = [tok.eos_token_id]
    params = SamplingParams(max_tokens=args.max_tokens)
    rows, records = [], []
    total = {"greedy_s": 0.0, "spec_s": 0.0, "tokens": 0}
    for passage, question, start in PASSAGES:
        ids = tok.encode(rag_prompt(passage, question, start))
        greedy_s = spec_s = float("inf")
        for _ in range(args.repeats):  # interleaved: drifting load hits both alike
            ref, secs = timed(lambda ids=ids: cached_greedy(model, ids, args.max_tokens, eos))
            greedy_s = min(greedy_s, secs)
            out, secs = timed(
                lambda ids=ids: speculative_generate(
                    model, ids, PromptLookupDrafter(), params, k=args.k, eos_token_ids=eos
                )
            )
            spec_s = min(spec_s, secs)
        assert out.token_ids == ref, "speculative output differs from greedy"
        n = len(ref)
        total["greedy_s"] += greedy_s
        total["spec_s"] += spec_s
        total["tokens"] += n
        rows.append(
            [
                question[:40],
                n,
                n / greedy_s,
                n / spec_s,
                greedy_s / spec_s,
                out.acceptance_rate,
                out.tokens_per_forward,
                True,
            ]
        )
        records.append(
            {
                "question": question,
                "tokens": n,
                "greedy_tok_s": n / greedy_s,
                "speculative_tok_s": n / spec_s,
                "speedup": greedy_s / spec_s,
                "draft_tokens_proposed": out.draft_tokens_proposed,
                "draft_tokens_accepted": out.draft_tokens_accepted,
                "acceptance_rate": out.acceptance_rate,
                "target_forwards": out.target_forwards,
                "identical": True,
                "answer": tok.decode(ref),
            }
        )
    speedup = total["greedy_s"] / total["spec_s"]
    rows.append(
        [
            "all prompts",
            total["tokens"],
            total["tokens"] / total["greedy_s"],
            total["tokens"] / total["spec_s"],
            speedup,
            "",
            "",
            True,
        ]
    )
    table = print_table(
        f"Prompt-lookup speculative vs cached greedy (SmolLM2, fp32, k={args.k}, "
        f"{torch.get_num_threads()} thread(s)); target >= 1.8x: {verdict(speedup >= 1.8)}",
        [
            "question",
            "tokens",
            "greedy tok/s",
            "spec tok/s",
            "speedup",
            "accept",
            "tok/fwd",
            "identical",
        ],
        rows,
    )
    path = write_result(
        "engine_speculative",
        {
            "k": args.k,
            "max_tokens": args.max_tokens,
            "threads": torch.get_num_threads(),
            "speedup": speedup,
            "target_speedup": 1.8,
            "met": speedup >= 1.8,
            "claims": {
                "prompt-lookup speculative >= 1.8x greedy tokens/s, identical tokens": speedup
                >= 1.8
            },
            "prompts": records,
            "table": table,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
