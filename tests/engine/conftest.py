"""Session fixtures for the engine tests: our model and transformers' reference, both from the
embedded SmolLM2 GGUF, loaded once (fp32, CPU); the same three for the embedded Qwen2.5-Coder
(test_qwen.py)."""

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


# ---- Qwen2.5-Coder-0.5B-Instruct (qwen2 architecture), for tests/engine/test_qwen.py -----------

QWEN = "qwen2.5-coder-0.5b"


@pytest.fixture(scope="session")
def qwen_path():
    """The embedded Qwen GGUF, verified by hash. Missing is a failure, not a skip: `make
    install` puts it in place, and the engine's second architecture must stay tested."""
    from hearth.errors import ModelNotFoundError
    from hearth.llm import embedded_path

    try:
        return embedded_path(QWEN)
    except ModelNotFoundError as e:
        problem = str(e)  # it says how to put the file in place
    pytest.fail(f"the Qwen engine tests need the embedded {QWEN} GGUF: {problem}", pytrace=False)


@pytest.fixture(scope="session")
def qwen_model(qwen_path):
    import torch

    from hearth.engine.model import LlamaModel

    torch.set_grad_enabled(False)
    return LlamaModel.from_pretrained(qwen_path, dtype=torch.float32)


@pytest.fixture(scope="session")
def qwen_tokenizer(qwen_path):
    pytest.importorskip("transformers")
    from hearth.engine.tokenizer import load_tokenizer

    return load_tokenizer(qwen_path)


@pytest.fixture(scope="session")
def qwen_hf(qwen_path):
    """transformers' Qwen2ForCausalLM from the same GGUF: the reference we must match."""
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        qwen_path.parent, gguf_file=qwen_path.name, dtype=torch.float32
    )
    return model.eval()
