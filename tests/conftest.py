"""Session-wide fixtures: the real embedder and the real GGUF chat model, loaded once."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tests that only need some chat model use the small, fast SmolLM2 (the default `model` is
# Qwen2.5-Coder, chosen for answer quality); tests of the instruction model name it.
os.environ.setdefault("HEARTH_MODEL", "local:smollm2")


@pytest.fixture(scope="session")
def embedder():
    from hearth.index.embedder import load_embedder

    emb = load_embedder()
    emb.embed(["warm up"])
    return emb


@pytest.fixture(scope="session")
def chat_model():
    from hearth import llm

    return llm.load("local:smollm2", context_size=2048)
