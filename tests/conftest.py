"""Session-wide fixtures: the real embedder and the real GGUF chat model, loaded once."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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
