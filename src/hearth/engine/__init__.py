"""Hearth's own PyTorch inference engine for Llama-family models: model, weight loading
(GGUF / safetensors), KV cache, paged blocks and continuous batching, bf16/int8 weights,
tokenizer, decoding strategies; hand-written to show what each optimization and strategy buys.

Importing this package is cheap: torch, gguf and transformers load only when a name below
is first used (`from hearth.engine import LlamaModel`).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ModelConfig": "hearth.engine.config",
    "RopeScaling": "hearth.engine.config",
    "Checkpoint": "hearth.engine.weights",
    "default_model_path": "hearth.engine.weights",
    "load_checkpoint": "hearth.engine.weights",
    "LlamaModel": "hearth.engine.model",
    "KVCache": "hearth.engine.kv_cache",
    "Tokenizer": "hearth.engine.tokenizer",
    "load_tokenizer": "hearth.engine.tokenizer",
    "SamplingParams": "hearth.engine.sampling",
    "sample_next": "hearth.engine.sampling",
    "generate": "hearth.engine.decoding",
    "stream": "hearth.engine.decoding",
    "beam_search": "hearth.engine.decoding",
    "Generator": "hearth.engine.generator",
    "speculative_generate": "hearth.engine.speculative",
    "PromptLookupDrafter": "hearth.engine.speculative",
    "ModelDrafter": "hearth.engine.speculative",
    "truncated_draft": "hearth.engine.speculative",
    "LLMEngine": "hearth.engine.llm_engine",
    "EngineConfig": "hearth.engine.llm_engine",
    "EngineChatModel": "hearth.engine.chat_model",
    "quantize": "hearth.engine.quant",
    "perplexity": "hearth.engine.perplexity",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hearth.engine' has no attribute {name!r}")
