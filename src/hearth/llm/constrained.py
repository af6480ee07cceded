"""Constrained generation on llama-cpp-python's own loop (LlamaCppModel, one request at a time):
a logits processor that masks what the constraint forbids, and a stopping criterion that ends
the text once the constraint is complete. The batcher masks its rows itself.

Hand-written glue; the masks are hearth.structured's (llguidance).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hearth.structured import Matcher


class LogitsMask:
    """Both hooks over one Matcher: it catches up with the tokens sampled since its last call
    (they are the tail of `input_ids`, after the prompt), then masks or says whether to stop."""

    def __init__(self, matcher: Matcher, prompt_tokens: int) -> None:
        self.matcher = matcher
        self._seen = prompt_tokens

    def _catch_up(self, input_ids: Any) -> None:
        for token in input_ids[self._seen :]:
            self.matcher.advance(int(token))
        self._seen = len(input_ids)

    def __call__(self, input_ids: Any, scores: np.ndarray) -> np.ndarray:
        self._catch_up(input_ids)
        self.matcher.mask_logits(scores)
        return scores

    def stop(self, input_ids: Any, logits: Any) -> bool:
        self._catch_up(input_ids)
        return self.matcher.done
