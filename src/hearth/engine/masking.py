"""Constrained decoding on torch logits: what a hearth.structured Matcher allows next, as a mask
over rows of logits, for every decoding strategy, speculative decoding and the batching engine.

Hand-written: a few lines of glue, kept cheap because they run once per token (one bitmask from
llguidance, unpacked by numpy; on CPU the masked copy is made by numpy too, about 5x faster
than torch's masked_fill on one row); the grammar itself is llguidance's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from hearth.structured import Matcher

NEG_INF = float("-inf")


def matcher_for(params: Any, tokenizer: Any) -> Matcher | None:
    """A fresh Matcher for one generation under `params.constraint` with the engine's
    `tokenizer` (hearth.engine.tokenizer.Tokenizer); None without a constraint."""
    constraint = getattr(params, "constraint", None)
    if constraint is None:
        return None
    if tokenizer is None:
        from hearth.errors import ConfigError

        raise ConfigError("a constraint needs the model's tokenizer to mask its tokens")
    return constraint.matcher(tokenizer.structured())


def apply_allowed(logits: torch.Tensor, allowed: np.ndarray) -> torch.Tensor:
    """A copy of `logits` (..., width) with -inf wherever `allowed` (bools over the tokenizer's
    vocabulary, broadcast over the leading axes) is False. Columns past the vocabulary (models
    pad their output layer) are never allowed."""
    width = logits.shape[-1]
    if allowed.shape[-1] != width:
        n = min(allowed.shape[-1], width)
        padded = np.zeros((*allowed.shape[:-1], width), dtype=bool)
        padded[..., :n] = allowed[..., :n]
        allowed = padded
    if logits.device.type == "cpu" and logits.dtype == torch.float32:
        out = np.full(logits.shape, NEG_INF, dtype=np.float32)
        np.copyto(out, logits.detach().numpy(), where=allowed)
        return torch.from_numpy(out)
    banned = torch.from_numpy(~allowed).to(logits.device, non_blocking=True)
    return logits.masked_fill(banned, NEG_INF)


def mask_logits(logits: torch.Tensor, matcher: Matcher | None) -> torch.Tensor:
    """`logits` (..., vocab) with every token the matcher forbids next at -inf (a copy; the
    same tensor without a matcher). Every row gets the same mask."""
    if matcher is None:
        return logits
    return apply_allowed(logits, matcher.allowed())


def mask_rows(
    logits: torch.Tensor, matchers: Sequence[Matcher | None], dead: Sequence[bool] = ()
) -> torch.Tensor:
    """`logits` (batch x vocab) with each row masked by its own matcher; rows whose matcher is
    None stay as they are, rows marked `dead` are masked whole."""
    if all(m is None for m in matchers) and not any(dead):
        return logits
    allowed = np.ones(logits.shape, dtype=bool)
    for i, m in enumerate(matchers):
        if m is not None:
            row = m.allowed()
            n = min(len(row), logits.shape[-1])
            allowed[i, :n] = row[:n]
            allowed[i, n:] = False
    for i, d in enumerate(dead):
        if d:
            allowed[i] = False
    return apply_allowed(logits, allowed)
