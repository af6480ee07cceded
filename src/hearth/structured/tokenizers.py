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


def llama_tokenizer(
    vocab: Any, text_tokens: frozenset[bytes] = frozenset()
) -> llguidance.LLTokenizer:
    """From a llama.cpp `llama_vocab *` (about a second). Not cached here: the tokenizer calls
    into that vocabulary, so the model that owns it keeps it (LlamaCppModel.
    structured_tokenizer) and both go together.

    The steps follow llguidance's own reader (llguidance.llamacpp.lltokenizer_from_vocab, MIT
    licence), which marks control tokens and every user-defined token that looks like `<...>`
    as special, so a grammar cannot produce them as text; `text_tokens` are kept as text
    instead. Qwen2.5's `<tool_call>` is such a single user-defined token, the one llama.cpp
    makes of that text: marked special, a grammar's "<tool_call>" could only be spelt out in
    pieces, and the model wrote a bare JSON call instead of its trained tag."""
    import ctypes

    import llama_cpp

    size = 16 * 1024
    buffer = ctypes.create_string_buffer(size + 1)
    pieces: list[bytes] = []
    with warnings.catch_warnings():  # deprecated aliases, called once per token
        warnings.simplefilter("ignore", DeprecationWarning)
        for token in range(llama_cpp.llama_vocab_n_tokens(vocab)):
            n = llama_cpp.llama_token_to_piece(vocab, token, buffer, size, 0, True)
            if n < 0:
                raise ValueError(f"token {token} does not fit {size} bytes")
            piece = bytes(buffer[:n])
            attr = llama_cpp.llama_token_get_attr(vocab, token)
            control = attr & llama_cpp.LLAMA_TOKEN_ATTR_CONTROL
            tag_like = attr & llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED and piece[:1] == b"<"
            if control or (tag_like and piece[-1:] == b">" and piece not in text_tokens):
                piece = b"\xff" + piece  # how llguidance marks a special token
            pieces.append(piece)
        tokenize = ctypes.cast(llama_cpp.llama_cpp._lib.llama_tokenize, ctypes.c_void_p).value
        return llguidance.LLTokenizer.from_llamacpp(
            tokens=pieces,
            vocab_ptr=vocab,
            tokenize_fptr=tokenize,
            eos_token=llama_cpp.llama_vocab_eos(vocab),
            slices=None,
        )


def hf_tokenizer(
    hf: Any, n_vocab: int | None = None, eos_token_id: int | None = None
) -> llguidance.LLTokenizer:
    """From a transformers fast tokenizer (llguidance's own reader, about a second): `n_vocab`
    tokens (default: the tokenizer's own count), ending at `eos_token_id` (default: its EOS).
    Not cached here: the engine's Tokenizer keeps it (Tokenizer.structured), so a tokenizer and
    its vocabulary go together and a different model never meets a stale one."""
    from llguidance.hf import from_tokenizer

    return from_tokenizer(hf, n_vocab=n_vocab, eos_token=eos_token_id)
