"""Perplexity of an engine model over a text, with a sliding window: each window keeps
`window - stride` tokens of the previous one as context and scores only the tokens after them.

Hand-written (a dozen lines of torch) so bf16 / int8 models can be held to their fp32 original
on any text: the same windows, the same tokens scored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from hearth.engine.model import LlamaModel
    from hearth.engine.tokenizer import Tokenizer


@dataclass(frozen=True)
class Perplexity:
    """exp(mean negative log-likelihood) over `tokens` scored tokens, in `windows` forwards."""

    perplexity: float
    mean_nll: float
    tokens: int
    windows: int


def perplexity(
    model: LlamaModel,
    token_ids: Sequence[int] | torch.Tensor,
    window: int = 512,
    stride: int | None = None,
) -> Perplexity:
    """Slide a `window`-token view over `token_ids` in steps of `stride` (default window / 2).

    Every token but the first is scored exactly once when stride < window (the overlap is the
    context the new tokens see); with stride == window the first token of each window has no
    context and is not scored.
    """
    ids = torch.as_tensor(token_ids, dtype=torch.long).flatten()
    stride = stride or max(1, window // 2)
    if window < 2 or not 1 <= stride <= window:
        raise ValueError(f"need window >= 2 and 1 <= stride <= window, got {window}, {stride}")
    if ids.numel() < 2:
        raise ValueError("perplexity needs a text of at least 2 tokens")
    total, scored, windows, done = 0.0, 0, 0, 0  # done: targets before this index are scored
    with torch.inference_mode():
        for begin in range(0, ids.numel(), stride):
            end = min(begin + window, ids.numel())
            first = max(done, begin + 1)  # the first target this window scores
            if first < end:
                logits = model(ids[begin:end]).float()  # row j predicts ids[begin + j + 1]
                rows = logits[first - begin - 1 : end - begin - 1]
                total += F.cross_entropy(rows, ids[first:end], reduction="sum").item()
                scored += end - first
                windows += 1
            done = end
            if end == ids.numel():
                break
    mean = total / scored
    return Perplexity(math.exp(mean), mean, scored, windows)


def text_perplexity(
    model: LlamaModel,
    tokenizer: Tokenizer,
    text: str,
    window: int = 512,
    stride: int | None = None,
) -> Perplexity:
    """`perplexity` of `text` as the tokenizer encodes it (with its BOS token, if any)."""
    return perplexity(model, tokenizer.encode(text), window, stride)
