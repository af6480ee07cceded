"""The host-memory prefix store: longest shared beginning, least recently used out first within
the byte budget, an entry dropped for a newer one that extends it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hearth.llm.prefix_store import PrefixStore, common_prefix


@given(st.lists(st.integers(0, 3), max_size=80), st.lists(st.integers(0, 3), max_size=80))
def test_common_prefix_matches_a_plain_loop(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    assert common_prefix(a, b) == n
    assert common_prefix(tuple(a), tuple(b)) == n


def test_longest_match_budget_and_recency():
    store = PrefixStore(budget=30)
    store.put((1, 2, 3), b"x" * 10)
    store.put((1, 2, 9, 9), b"y" * 10)
    store.put((5, 6), b"z" * 10)
    assert store.longest((1, 2, 3, 4)) == ((1, 2, 3), 3)
    assert store.longest((7,)) == (None, 0)
    store.get((1, 2, 3))  # now the most recently used
    store.put((8,), b"w" * 10)  # over budget: (1, 2, 9, 9) is the least recently used
    assert store.longest((1, 2, 9, 9)) == ((1, 2, 3), 2)
    assert len(store) == 3 and store.bytes == 30
    store.put((1, 2, 3, 4, 5), b"v" * 5)  # extends (1, 2, 3): replaces it
    assert store.longest((1, 2, 3))[0] == (1, 2, 3, 4, 5) and store.bytes == 25
    store.put((9,), b"u" * 31)  # larger than the whole budget: not kept
    assert store.longest((9,)) == (None, 0)
