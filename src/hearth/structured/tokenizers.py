"""Tokenizers as llguidance sees them: the byte tokenizer `accepts` runs on, a llama.cpp
model's vocabulary, and any tokenizer given as its token pieces plus an encode function.

The byte tokenizer and piece tokenizers are cached here; a llama.cpp one is kept by its model.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import llguidance

_lock = threading.Lock()
_cache: dict[Any, llguidance.LLTokenizer] = {}

BYTE_EOS = 256


class _ByteVocabulary:
    """One token per byte, and an end token: a whole text is accepted byte by byte."""

    eos_token_id = BYTE_EOS
    bos_token_id = None
    tokens = [bytes([i]) for i in range(256)] + [b"\xff[END]"]
    special_token_ids = [BYTE_EOS]

    def __call__(self, text: bytes) -> list[int]:
        return list(text)


def byte_tokenizer() -> llguidance.LLTokenizer:
    return _cached("bytes", lambda: llguidance.LLTokenizer(
        llguidance.TokenizerWrapper(_ByteVocabulary())
    ))  # fmt: skip


def llama_tokenizer(vocab: Any) -> llguidance.LLTokenizer:
    """From a llama.cpp `llama_vocab *` (llguidance's own reader, about a second). Not cached
    here: the tokenizer calls into that vocabulary, so the model that owns it keeps it (see
    LlamaCppModel.structured_tokenizer) and both go together."""
    from llguidance.llamacpp import lltokenizer_from_vocab

    with warnings.catch_warnings():  # it calls a deprecated alias once per token
        warnings.simplefilter("ignore", DeprecationWarning)
        return lltokenizer_from_vocab(vocab)


class _PieceVocabulary:
    def __init__(self, pieces, eos, encode, special) -> None:
        self.tokens = list(pieces)
        self.eos_token_id = eos
        self.bos_token_id = None
        self.special_token_ids = list(special)
        self._encode = encode

    def __call__(self, text: bytes) -> list[int]:
        return list(self._encode(text))


def piece_tokenizer(
    key: Any,
    pieces: Sequence[bytes],
    eos: int,
    encode: Callable[[bytes], list[int]],
    special: Sequence[int] = (),
) -> llguidance.LLTokenizer:
    """From each token's bytes (special tokens marked with a leading 0xFF byte, as llguidance
    expects), the end-of-text token and a function that encodes bytes to token ids."""
    return _cached(
        ("pieces", key),
        lambda: llguidance.LLTokenizer(
            llguidance.TokenizerWrapper(_PieceVocabulary(pieces, eos, encode, special))
        ),
    )


def _cached(key: Any, build: Callable[[], llguidance.LLTokenizer]) -> llguidance.LLTokenizer:
    with _lock:
        found = _cache.get(key)
        if found is None:
            found = _cache[key] = build()
        return found
