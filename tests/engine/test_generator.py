"""The KV-cached Generator against the uncached decoding loops: a tiny random model checks the
cache reordering logit by logit; the real SmolLM2 checks greedy and beam give the same tokens."""

from __future__ import annotations

import pytest
import torch

from hearth.engine.config import ModelConfig
from hearth.engine.decoding import generate
from hearth.engine.generator import CachedStep, Generator, uncached_step
from hearth.engine.model import LlamaModel
from hearth.engine.sampling import SamplingParams

PROMPTS = ["The capital of France is", "def fibonacci(n):\n    "]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, n_layers=2, n_heads=4,
        n_kv_heads=2, head_dim=8, rms_norm_eps=1e-6, rope_theta=10000.0,
        max_position_embeddings=128, tie_word_embeddings=True,
    )  # fmt: skip
    model = LlamaModel(config).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return model


@torch.no_grad()
def test_cached_step_reorders_rows_like_beam_search(tiny):
    step, plain = CachedStep(tiny, 32), uncached_step(tiny)
    ids = torch.tensor([[1, 5, 9, 30]] * 3)
    torch.testing.assert_close(step(ids), plain(ids))
    gen = torch.Generator().manual_seed(1)
    for _ in range(6):  # rows pick random parents (repeats allowed), then one new token each
        parents = torch.randint(0, 3, (3,), generator=gen)
        new = torch.randint(0, 64, (3, 1), generator=gen)
        ids = torch.cat([ids[parents], new], dim=1)
        torch.testing.assert_close(step(ids), plain(ids), atol=1e-5, rtol=1e-4)
    assert step.prefill_tokens == 4  # identical prompt rows share one prefill
    assert step.decode_steps == 6


@torch.no_grad()
def test_cached_step_prefills_again_for_an_unrelated_batch(tiny):
    step, plain = CachedStep(tiny, 32), uncached_step(tiny)
    step(torch.tensor([[1, 2, 3]]))
    other = torch.tensor([[4, 5, 6, 7], [8, 9, 10, 11]])
    torch.testing.assert_close(step(other), plain(other), atol=1e-5, rtol=1e-4)
    assert step.prefill_tokens == 3 + 8


@torch.no_grad()
def test_tiny_greedy_and_beam_match_uncached(tiny):
    prompt = [1, 7, 3, 22]
    for strategy in ("greedy", "beam"):
        params = SamplingParams(strategy=strategy, num_beams=3, max_tokens=12)
        cached = generate(CachedStep(tiny, 20), prompt, params, eos_token_ids=[2])
        plain = generate(uncached_step(tiny), prompt, params, eos_token_ids=[2])
        assert cached.token_ids == plain.token_ids


def test_generator_init_is_cheap_and_checks_dtype():
    g = Generator("/nowhere.gguf")
    assert g.model is None
    with pytest.raises(Exception, match="dtype"):
        Generator(dtype="int3")


@pytest.fixture(scope="module")
def real(engine_model, engine_tokenizer):
    cached = Generator(precision="fp32")  # the session fixture's fp32 model
    cached.model, cached.tokenizer = engine_model, engine_tokenizer
    plain = Generator(use_cache=False, precision="fp32")
    plain.model, plain.tokenizer = engine_model, engine_tokenizer
    return cached, plain


@pytest.mark.slow
@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_real_model_cached_equals_uncached(real, prompt, strategy):
    cached, plain = real
    params = SamplingParams(strategy=strategy, num_beams=4, max_tokens=32, early_stopping=True)
    fast, slow = cached.run(prompt, params), plain.run(prompt, params)
    assert fast.token_ids == slow.token_ids
    assert fast.text == slow.text
    assert len(fast.token_ids) >= 8
    assert fast.tokens_per_second > 0
    if strategy == "beam":
        assert fast.tree is not None and fast.tree.finished


@pytest.mark.slow
def test_real_model_sampling_is_seeded_and_chat_works(real):
    cached, plain = real
    params = SamplingParams(strategy="sample", temperature=0.8, top_p=0.9, seed=3, max_tokens=12)
    assert cached.run("Hello", params).token_ids == plain.run("Hello", params).token_ids
    report = cached.run("Say hi.", SamplingParams(max_tokens=8), chat=True)
    assert report.text.strip()
    out = report.as_json()
    assert set(out) == {
        "text", "token_ids", "tokens_per_second", "seconds", "warmup_seconds",
        "tokens_per_second_with_warmup", "precision", "strategy",
        "draft_tokens_accepted", "draft_tokens_proposed",
    }  # fmt: skip
    assert out["precision"] == "fp32" and out["seconds"] > 0
    assert out["tokens_per_second_with_warmup"] <= out["tokens_per_second"]
