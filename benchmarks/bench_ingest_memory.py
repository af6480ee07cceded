"""Peak memory (RSS) of a real Indexer ingest of 10k versus 100k short synthetic chunks.

Each ingest runs in its own subprocess (so each peak is its own), sampled by a psutil thread
and cross-checked with getrusage maxrss. Bounded memory: the 100k peak is nowhere near 10x the
10k peak. Peer: the 10k run itself (same code, same embedder, a tenth of the data).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import SentenceMaker, print_table, verdict, vocabulary, write_result

PARAGRAPHS_PER_FILE = 10


def write_files(folder: Path, n_files: int, seed: int) -> None:
    """Short .txt files of PARAGRAPHS_PER_FILE paragraphs, each one short chunk."""
    folder.mkdir(parents=True, exist_ok=True)
    maker = SentenceMaker(vocabulary(), seed=seed)
    for i in range(n_files):
        paras = [maker.sentence(10, 18) for _ in range(PARAGRAPHS_PER_FILE)]
        (folder / f"f{i // 1000:03d}").mkdir(exist_ok=True)
        (folder / f"f{i // 1000:03d}" / f"note{i:06d}.txt").write_text("\n\n".join(paras) + "\n")


def chunks_per_file(sample_dir: Path, backend: str, chunk_tokens: int, overlap: int) -> float:
    """Calibrate: how many chunks the real splitter makes of one generated file."""
    from hearth.index.embedder import load_embedder
    from hearth.ingest.loaders import load_document
    from hearth.ingest.splitter import Splitter

    emb = load_embedder(backend=backend)
    splitter = Splitter(emb.count_tokens, chunk_tokens=chunk_tokens, overlap_tokens=overlap)
    files = sorted(sample_dir.rglob("*.txt"))
    return sum(len(splitter.split(load_document(f))) for f in files) / len(files)


def worker(args: argparse.Namespace) -> None:
    """Runs in the subprocess: load the model, then ingest while sampling RSS."""
    import psutil

    from hearth.index.embedder import load_embedder
    from hearth.index.indexer import Indexer
    from hearth.index.store import SQLiteStore
    from hearth.ingest.splitter import Splitter

    proc = psutil.Process()
    emb = load_embedder(backend=args.backend, batch_size=args.batch_size)
    emb.embed(["load the model before measuring"])
    baseline = proc.memory_info().rss
    peak = [baseline]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            stop.wait(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    with SQLiteStore(Path(args.db)) as store:
        splitter = Splitter(
            emb.count_tokens, chunk_tokens=args.chunk_tokens, overlap_tokens=args.overlap
        )
        report = Indexer(store, emb, splitter).ingest([args.worker], progress=False)
    seconds = time.perf_counter() - t0
    stop.set()
    thread.join()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(
        json.dumps(
            {
                "chunks": report.chunks,
                "documents": report.documents,
                "seconds": seconds,
                "rss_after_model_load": baseline,
                "peak_rss_sampled": peak[0],
                "peak_rss_maxrss": maxrss,
                "skipped": len(report.skipped),
            }
        )
    )


def run_size(n_chunks: int, per_file: float, args, tmp: Path) -> dict:
    n_files = math.ceil(n_chunks / per_file)
    folder = tmp / f"files_{n_chunks}"
    t0 = time.perf_counter()
    write_files(folder, n_files, seed=n_chunks)
    print(
        f"{n_files:,} files written for ~{n_chunks:,} chunks in "
        f"{time.perf_counter() - t0:.1f} s; ingesting...",
        flush=True,
    )
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        str(folder),
        "--db",
        str(tmp / f"{n_chunks}.db"),
        "--backend",
        args.backend,
        "--chunk-tokens",
        str(args.chunk_tokens),
        "--overlap",
        str(args.overlap),
        "--batch-size",
        str(args.batch_size),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if out.returncode != 0:
        raise SystemExit(f"worker for {n_chunks} chunks failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["files"] = n_files
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000", help="chunk counts, comma-separated")
    parser.add_argument("--backend", default="auto", help="embedder backend (fast by default)")
    parser.add_argument("--chunk-tokens", type=int, default=32)
    parser.add_argument("--overlap", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="hearth-bench-mem-") as tmp_name:
        tmp = Path(tmp_name)
        write_files(tmp / "sample", 20, seed=1)
        per_file = chunks_per_file(tmp / "sample", args.backend, args.chunk_tokens, args.overlap)
        print(f"calibration: {per_file:.1f} chunks per generated file")
        results = {n: run_size(n, per_file, args, tmp) for n in sizes}

    mib = 2**20
    rows = []
    for n, r in results.items():
        peak = max(r["peak_rss_sampled"], r["peak_rss_maxrss"])
        r["peak_rss"] = peak
        r["growth"] = peak - r["rss_after_model_load"]
        rows.append(
            [
                f"{n:,}",
                r["chunks"],
                r["files"],
                r["seconds"],
                r["chunks"] / r["seconds"],
                r["rss_after_model_load"] / mib,
                peak / mib,
                r["growth"] / mib,
            ]
        )
    small, large = results[sizes[0]], results[sizes[-1]]
    scale = large["chunks"] / small["chunks"]
    peak_ratio = large["peak_rss"] / small["peak_rss"]
    growth_ratio = large["growth"] / max(small["growth"], 1)
    table = print_table(
        f"Ingest peak RSS, {args.backend} embedder, chunks of <= {args.chunk_tokens} tokens, "
        "one subprocess per size",
        [
            "target",
            "chunks",
            "files",
            "seconds",
            "chunks/s",
            "RSS after load MiB",
            "peak RSS MiB",
            "growth MiB",
        ],
        rows,
    )
    bounded = peak_ratio <= 2.0
    print(
        f"{scale:.1f}x the chunks -> {peak_ratio:.2f}x the peak RSS, {growth_ratio:.2f}x the "
        f"growth over the loaded model (bounded, peak ratio <= 2: {verdict(bounded)})"
    )
    path = write_result(
        "bench_ingest_memory",
        {
            "backend": args.backend,
            "chunk_tokens": args.chunk_tokens,
            "batch_size": args.batch_size,
            "runs": {str(n): r for n, r in results.items()},
            "data_ratio": scale,
            "peak_ratio": peak_ratio,
            "growth_ratio": growth_ratio,
            "claims": {"peak ratio <= 2 for 10x the chunks": bounded},
            "table": table,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
