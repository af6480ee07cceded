"""Decoding strategies on the real embedded SmolLM2 through our engine, against transformers'
`generate` on the same GGUF: greedy and beam search must give exactly the same tokens."""

from __future__ import annotations

import pytest
import torch

from hearth.engine.decoding import generate
from hearth.engine.sampling import SamplingParams

PROMPTS = ["The capital of France is", "def fibonacci(n):\n    "]


@pytest.fixture(scope="module")
def step(engine_model):
    def last_logits(ids: torch.Tensor) -> torch.Tensor:
        return engine_model(ids, last_only=True)[:, -1]

    return last_logits


def reference(hf_model, prompt_ids: list[int], eos: int, **kwargs) -> list[int]:
    with torch.no_grad():
        out = hf_model.generate(
            torch.tensor([prompt_ids]),
            eos_token_id=eos,
            pad_token_id=eos,
            do_sample=False,
            max_new_tokens=32,
            **kwargs,
        )
    new = out[0, len(prompt_ids) :].tolist()
    return new[: new.index(eos) + 1] if eos in new else new


def with_eos(result, eos: int) -> list[int]:
    return result.token_ids + ([eos] if result.finish_reason == "eos" else [])


@pytest.mark.slow
@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_real_model_matches_transformers(step, engine_tokenizer, hf_model, prompt, strategy):
    ids = engine_tokenizer.encode(prompt)
    eos = engine_tokenizer.eos_token_id
    params = SamplingParams(strategy=strategy, num_beams=4, max_tokens=32, early_stopping=True)
    ours = generate(step, ids, params, eos_token_ids=[eos])
    extra = {"num_beams": 4, "early_stopping": True} if strategy == "beam" else {}
    assert with_eos(ours, eos) == reference(hf_model, ids, eos, **extra)
    assert len(ours.token_ids) >= 8  # a real continuation, not an immediate stop
