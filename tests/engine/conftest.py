"""Session fixtures for the engine tests: our model and transformers' reference, both from the
embedded SmolLM2 GGUF, loaded once (fp32, CPU)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def gguf_path():
    from hearth.engine.weights import default_model_path

    return default_model_path()


@pytest.fixture(scope="session")
def engine_model(gguf_path):
    import torch

    from hearth.engine.model import LlamaModel

    torch.set_grad_enabled(False)
    return LlamaModel.from_pretrained(gguf_path, dtype=torch.float32)


@pytest.fixture(scope="session")
def engine_tokenizer(gguf_path):
    pytest.importorskip("transformers")
    from hearth.engine.tokenizer import load_tokenizer

    return load_tokenizer(gguf_path)


@pytest.fixture(scope="session")
def hf_model(gguf_path):
    """transformers' LlamaForCausalLM from the same GGUF: the reference we must match."""
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    return model.eval()
