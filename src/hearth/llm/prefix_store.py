"""Prompt prefixes kept in host memory for the llama.cpp batcher: a slot's KV cells, saved as
llama.cpp sequence state when the slot is given up, restored when a later prompt begins the same.

Hand-written (a least-recently-used map from token tuples to state bytes within a byte budget);
the saving and restoring themselves are llama.cpp's (llama_state_seq_get_data / set_data).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the common beginning of two token sequences: halving with slice comparisons,
    which run in C (a list and a tuple never compare equal, so `b` takes `a`'s type)."""
    if type(a) is not type(b):
        b = list(b) if isinstance(a, list) else tuple(b)
        a = a if isinstance(a, list | tuple) else tuple(a)
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    same, differs = 0, n  # a[:same] == b[:same]; they differ before `differs`
    while differs - same > 16:
        mid = (same + differs) // 2
        if a[same:mid] == b[same:mid]:
            same = mid
        else:
            differs = mid
    while same < differs and a[same] == b[same]:
        same += 1
    return same


class PrefixStore:
    """Saved sequence states by the tokens they hold; the least recently used go first once the
    states together pass `budget` bytes. An entry that begins a newer one is dropped for it."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.bytes = 0
        self._entries: OrderedDict[tuple[int, ...], Any] = OrderedDict()  # tokens -> state

    def __len__(self) -> int:
        return len(self._entries)

    def longest(self, tokens: tuple[int, ...]) -> tuple[tuple[int, ...] | None, int]:
        """The entry sharing the longest beginning with `tokens`, and that length."""
        best, most = None, 0
        for key in self._entries:
            n = common_prefix(key, tokens)
            if n > most:
                best, most = key, n
        return best, most

    def put(self, tokens: tuple[int, ...], state: Any) -> None:
        """Keep `state` (a buffer with len()) for `tokens`, dropping what it subsumes and then
        the least recently used entries while over budget."""
        if len(state) > self.budget:
            return
        for key in [k for k in self._entries if tokens[: len(k)] == k]:
            self._drop(key)
        self._entries[tokens] = state
        self.bytes += len(state)
        while self.bytes > self.budget:
            self._drop(next(iter(self._entries)))

    def get(self, tokens: tuple[int, ...]) -> Any:
        self._entries.move_to_end(tokens)
        return self._entries[tokens]

    def _drop(self, key: tuple[int, ...]) -> None:
        self.bytes -= len(self._entries.pop(key))
