"""fp32 linear layers at 1 to 64 rows: torch's default kernel (MKL, what transformers runs) against
hearth.engine.kernels (oneDNN on weights packed once, from 3 rows), on SmolLM2's own matrices.

Each shape runs over all 30 layers' weights in turn, so the weights stream from memory as in a
real forward instead of sitting in cache. Rows: 1-2 are decode steps, 7 a speculative
verification (k = 6), 16 a continuous batch, 64 a prefill chunk. Also reports each kernel's
largest error against a float64 product of the same numbers.
"""

from __future__ import annotations

import argparse
import time

from common import print_table, write_result

ROWS = (1, 2, 3, 7, 16, 64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    parser.add_argument("--repeats", type=int, default=5, help="passes over the layers; best kept")
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F

    from hearth.engine import kernels
    from hearth.engine.model import LlamaModel

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    model = LlamaModel.from_pretrained()
    shapes = {
        "qkv (fused)": [layer.self_attn.shared.weight for layer in model.layers],
        "o_proj": [layer.self_attn.o_proj.weight for layer in model.layers],
        "gate+up (fused)": [layer.mlp.shared.weight for layer in model.layers],
        "down_proj": [layer.mlp.down_proj.weight for layer in model.layers],
        "lm_head": [model.embed_tokens.weight],
    }

    def best_ms(fn, weights, x) -> float:
        fn(x, weights[0])  # packs on first use (kernels), warms the allocator
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            for w in weights:
                fn(x, w)
            best = min(best, time.perf_counter() - start)
        return 1000 * best

    rows_out, records = [], []
    totals = {r: [0.0, 0.0] for r in ROWS}
    for name, weights in shapes.items():
        inner = weights[0].shape[1]
        for rows in ROWS:
            x = torch.randn(1, rows, inner)
            mkl = best_ms(lambda x, w: F.linear(x, w), weights, x)
            ours = best_ms(lambda x, w: kernels.linear(x, w), weights, x)
            w = weights[0]
            exact = x.double() @ w.double().t()
            err_mkl = (F.linear(x, w).double() - exact).abs().max().item()
            err_ours = (kernels.linear(x, w).double() - exact).abs().max().item()
            totals[rows][0] += mkl
            totals[rows][1] += ours
            rows_out.append(
                [name, rows, mkl, ours, mkl / ours, f"{err_mkl:.1e}", f"{err_ours:.1e}"]
            )
            records.append(
                {
                    "matrix": name,
                    "shape": list(w.shape),
                    "layers": len(weights),
                    "rows": rows,
                    "mkl_ms": mkl,
                    "hearth_ms": ours,
                    "speedup": mkl / ours,
                    "max_err_mkl": err_mkl,
                    "max_err_hearth": err_ours,
                }
            )
    for rows, (mkl, ours) in totals.items():
        rows_out.append(["all linears of a forward", rows, mkl, ours, mkl / ours, "", ""])
    table = print_table(
        f"fp32 linears, SmolLM2, {torch.get_num_threads()} thread(s): ms per forward's worth "
        f"(all layers); hearth uses oneDNN from {kernels.onednn_min_rows()} rows",
        ["matrix", "rows", "MKL ms", "hearth ms", "speedup", "MKL max err", "hearth max err"],
        rows_out,
    )
    path = write_result(
        "engine_kernels",
        {
            "threads": torch.get_num_threads(),
            "onednn_min_rows": kernels.onednn_min_rows(),
            "per_forward": {
                str(r): {"mkl_ms": m, "hearth_ms": o, "speedup": m / o}
                for r, (m, o) in totals.items()
            },
            "matrices": records,
            "table": table,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
