"""What every embedding backend shares: lazy loading, input checks, token counting, threads.

Backends only implement `_load()` and `_encode(texts)`; the rest lives here once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import numpy as np

from hearth.index.embed_model import ModelFolder, ModelTokenizer


class BaseEmbedder:
    """An Embedder (see hearth.types) with a cheap __init__ and weights loaded on first use."""

    backend: ClassVar[str] = ""

    def __init__(self, model: ModelFolder, batch_size: int = 64):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model = model
        self.name = model.name
        self.dim = model.dim
        self.max_tokens = model.max_seq_length
        self.batch_size = batch_size
        self.tokenizer = ModelTokenizer(model)
        self._ready = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, backend={self.backend!r})"

    def warm_up(self) -> BaseEmbedder:
        """Load the weights now instead of on the first `embed` call."""
        if not self._ready:
            self._load()
            self._ready = True
        return self

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32, rows L2-normalised, in the order of `texts`."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of strings, not one string: embed([text])")
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"embed() texts[{i}] is {type(text).__name__}, not str")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.warm_up()
        return np.ascontiguousarray(self._encode(texts), dtype=np.float32)

    def count_tokens(self, text: str) -> int:
        """Tokens the model's tokenizer makes of `text`, without [CLS]/[SEP] and untruncated."""
        return self.tokenizer.count(text)

    def count_tokens_batch(self, texts: list[str]) -> list[int]:
        return self.tokenizer.count_batch(texts)

    def _load(self) -> None:
        raise NotImplementedError

    def _encode(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def available_cores() -> int:
    """Physical cores this process may run on (hyper-threads share one core's math units)."""
    try:
        logical = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        logical = os.cpu_count() or 1
    physical = _physical_cores()
    return max(1, min(logical, physical) if physical else logical)


def _physical_cores() -> int | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    cores: set[tuple[str, str]] = set()
    package = core = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            package = value.strip()
        elif key == "core id":
            core = value.strip()
            cores.add((package, core))
    return len(cores) or None


def set_torch_threads() -> None:
    """Give torch one thread per available core (its default may count hyper-threads)."""
    import torch

    cores = available_cores()
    if torch.get_num_threads() != cores:
        torch.set_num_threads(cores)


@contextmanager
def no_load_progress_bars() -> Iterator[None]:
    """Hide transformers' "Loading weights" bar while a model loads; restore it afterwards."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
