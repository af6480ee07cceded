"""Tokenizers as llguidance sees them: the byte tokenizer `accepts` runs on, a llama.cpp
model's vocabulary, and a transformers fast tokenizer's (Hearth's own engine).

Hand-written glue over llguidance's readers. The byte tokenizer is cached here; the others are
kept by what owns the vocabulary (the llama.cpp model, the engine's Tokenizer).
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import llguidance

BYTE_EOS = 256


class _ByteVocabulary:
    """One token per byte, and an end token: a whole text is accepted byte by byte."""

    eos_token_id = BYTE_EOS
    bos_token_id = None
    tokens = [bytes([i]) for i in range(256)] + [b"\xff[END]"]
    special_token_ids = [BYTE_EOS]

    def __call__(self, text: bytes) -> list[int]:
        return list(text)


@functools.cache
def byte_tokenizer() -> llguidance.LLTokenizer:
    return llguidance.LLTokenizer(llguidance.TokenizerWrapper(_ByteVocabulary()))


def llama_tokenizer(vocab: Any) -> llguidance.LLTokenizer:
    """From a llama.cpp `llama_vocab *` (llguidance's own reader, about a second). Not cached
    here: the tokenizer calls into that vocabulary, so the model that owns it keeps it (see
    LlamaCppModel.structured_tokenizer) and both go together."""
    from llguidance.llamacpp import lltokenizer_from_vocab

    with warnings.catch_warnings():  # it calls a deprecated alias once per token
        warnings.simplefilter("ignore", DeprecationWarning)
        return lltokenizer_from_vocab(vocab)


def hf_tokenizer(
    hf: Any, n_vocab: int | None = None, eos_token_id: int | None = None
) -> llguidance.LLTokenizer:
    """From a transformers fast tokenizer (llguidance's own reader, about a second): `n_vocab`
    tokens (default: the tokenizer's own count), ending at `eos_token_id` (default: its EOS).
    Not cached here: the engine's Tokenizer keeps it (Tokenizer.structured), so a tokenizer and
    its vocabulary go together and a different model never meets a stale one."""
    from llguidance.hf import from_tokenizer

    return from_tokenizer(hf, n_vocab=n_vocab, eos_token=eos_token_id)
