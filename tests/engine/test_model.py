"""The engine's model against transformers: same logits (1e-4, fp32), same greedy tokens, both
attention paths, incremental decoding through the KV cache, GGUF and safetensors loading."""

from __future__ import annotations

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from hearth.engine import kernels  # noqa: E402
from hearth.engine.config import ModelConfig, RopeScaling  # noqa: E402
from hearth.engine.model import LlamaModel, rope_inv_freq  # noqa: E402
from hearth.errors import ConfigError  # noqa: E402

PROMPTS = [
    "The capital of France is",
    'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n',
    "Photosynthesis turns sunlight, water and carbon dioxide into",
]
CHAT = [{"role": "user", "content": "Name three primary colors."}]
TOL = 1e-4


def _ids(tokenizer, text):
    return torch.tensor([tokenizer.encode(text)])


def _chat_ids(tokenizer):
    return torch.tensor([tokenizer.encode_chat(CHAT)])


def greedy(model, ids: list[int], n: int, eos: int | None) -> list[int]:
    """Argmax decoding with the KV cache: prefill once, then one token per step."""
    cache = model.new_cache(len(ids) + n)
    logits = model(torch.tensor(ids), kv_cache=cache, last_only=True)
    out: list[int] = []
    for _ in range(n):
        tok = int(logits[-1].argmax())
        out.append(tok)
        if tok == eos:
            break
        logits = model(torch.tensor([tok]), kv_cache=cache)
    return out


# ---- config ---------------------------------------------------------------------------------


def test_config_validates_heads():
    with pytest.raises(ConfigError, match="n_kv_heads"):
        _tiny_config(n_heads=4, n_kv_heads=3)


def test_config_reads_gguf(engine_model):
    c = engine_model.config
    assert (c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim) == (30, 9, 3, 64)
    assert c.tie_word_embeddings and c.n_rep == 3 and c.eos_token_id == 2


def test_config_from_hf_dict_reads_rope_scaling():
    d = {
        "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 1,
        "rope_scaling": {"rope_type": "ntk", "factor": 2.0},
    }  # fmt: skip
    c = ModelConfig.from_hf_dict(d)
    assert c.rope_scaling == RopeScaling("dynamic", 2.0) and c.head_dim == 4


def test_importing_engine_is_cheap():
    code = "import hearth.engine, sys; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- the real model against transformers ------------------------------------------------------


def test_logits_match_transformers(engine_model, hf_model, engine_tokenizer):
    """On transformers' own matmul kernel (MKL for every row count) the model's arithmetic
    matches to 1e-4. The default multi-row kernel (oneDNN) rounds differently; its accuracy
    is held to transformers' own in tests/engine/test_kernels.py."""
    inputs = [_ids(engine_tokenizer, p) for p in PROMPTS] + [_chat_ids(engine_tokenizer)]
    worst = 0.0
    kept = kernels.onednn_min_rows()
    kernels.set_onednn_min_rows(None)
    try:
        for ids in inputs:
            ours = engine_model(ids)
            ref = hf_model(ids).logits
            worst = max(worst, (ours - ref).abs().max().item())
    finally:
        kernels.set_onednn_min_rows(kept)
    print(f"max abs logits difference vs transformers: {worst:.2e}")
    assert worst < TOL


def test_attention_paths_agree(engine_model, engine_tokenizer):
    ids = _chat_ids(engine_tokenizer)
    sdpa = engine_model(ids)
    engine_model.attn_impl = "math"
    try:
        math_ = engine_model(ids)
    finally:
        engine_model.attn_impl = "sdpa"
    assert (sdpa - math_).abs().max().item() < TOL


@pytest.mark.parametrize("impl", ["sdpa", "math"])
def test_kv_cache_decoding_matches_full_forward(engine_model, engine_tokenizer, impl):
    ids = _ids(engine_tokenizer, PROMPTS[2])[0]
    full = engine_model(ids)
    engine_model.attn_impl = impl
    try:
        cache = engine_model.new_cache(len(ids))
        steps = [engine_model(ids[:5], kv_cache=cache)]  # prefill
        steps += [engine_model(ids[i : i + 1], kv_cache=cache) for i in range(5, len(ids))]
    finally:
        engine_model.attn_impl = "sdpa"
    assert cache.length == len(ids)
    assert (torch.cat(steps) - full).abs().max().item() < TOL


@pytest.mark.slow
def test_greedy_tokens_match_transformers_generate(engine_model, hf_model, engine_tokenizer):
    eos = engine_tokenizer.eos_token_id
    poem = [{"role": "user", "content": "Write a short poem about the sea."}]
    inputs = [
        _ids(engine_tokenizer, PROMPTS[1]),
        _ids(engine_tokenizer, "Once upon a time, in a small village by the sea,"),
        torch.tensor([engine_tokenizer.encode_chat(poem)]),
    ]
    for ids in inputs:
        ref = hf_model.generate(
            ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=32,
            pad_token_id=eos,
        )[0, ids.shape[1] :].tolist()  # fmt: skip
        ours = greedy(engine_model, ids[0].tolist(), 32, eos)
        assert ours == ref
        assert len(ours) == 32  # these prompts run past 32 tokens: no early stop


# ---- tokenizer ----------------------------------------------------------------------------------


def test_chat_template_matches_transformers(engine_tokenizer):
    msgs = [{"role": "system", "content": "Be brief."}, *CHAT]
    for m in (CHAT, msgs):
        ref = engine_tokenizer.hf.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
        assert engine_tokenizer.render_chat(m) == ref
    text = engine_tokenizer.render_chat(CHAT)
    assert text.endswith("<|im_start|>assistant\n")
    assert engine_tokenizer.decode(engine_tokenizer.encode_chat(CHAT)) == text


# ---- small random models: GQA/MQA, rope scaling, safetensors ------------------------------


def _tiny_config(**kw):
    base = dict(
        vocab_size=64, hidden_size=32, intermediate_size=64, n_layers=2, n_heads=4,
        n_kv_heads=2, head_dim=8, max_position_embeddings=16,
    )  # fmt: skip
    return ModelConfig(**{**base, **kw})


@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])  # MHA, GQA, MQA
def test_tiny_attention_paths_and_cache_agree(n_kv_heads):
    torch.manual_seed(0)
    model = LlamaModel(_tiny_config(n_kv_heads=n_kv_heads)).eval()
    ids = torch.randint(0, 64, (2, 12))
    full = model(ids)
    model.attn_impl = "math"
    assert (model(ids) - full).abs().max().item() < 1e-5
    cache = model.new_cache(12, batch_size=2)
    steps = [model(ids[:, :4], kv_cache=cache)] + [
        model(ids[:, i : i + 1], kv_cache=cache) for i in range(4, 12)
    ]
    assert (torch.cat(steps, dim=1) - full).abs().max().item() < 1e-5


ROPE_CASES = [
    None,
    {"rope_type": "linear", "factor": 4.0},
    {"rope_type": "dynamic", "factor": 2.0},
    {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
     "original_max_position_embeddings": 8},
]  # fmt: skip


@pytest.mark.parametrize("rope", ROPE_CASES, ids=lambda r: r["rope_type"] if r else "default")
def test_safetensors_folder_matches_transformers(tmp_path, rope):
    """A tiny random LlamaForCausalLM saved as safetensors: same logits, every rope scaling
    (24 tokens > max_position_embeddings=16, so dynamic NTK scaling is active)."""
    transformers = pytest.importorskip("transformers")
    hf_cfg = transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16,
        rope_theta=10000.0, rope_scaling=rope, tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(0)
    ref = transformers.LlamaForCausalLM(hf_cfg).eval()
    ref.save_pretrained(tmp_path)
    model = LlamaModel.from_pretrained(tmp_path)
    assert (model.config.rope_scaling.kind if model.config.rope_scaling else None) == (
        {"linear": "linear", "dynamic": "dynamic", "llama3": "llama3"}[rope["rope_type"]]
        if rope
        else None
    )
    ids = torch.randint(0, 64, (1, 24))
    assert (model(ids) - ref(ids).logits).abs().max().item() < 1e-5


def test_llama3_rope_keeps_high_frequencies():
    sc = RopeScaling("llama3", 8.0, 1.0, 4.0, original_max_position_embeddings=8192)
    plain = rope_inv_freq(_tiny_config(head_dim=64, rope_theta=500000.0))
    scaled = rope_inv_freq(_tiny_config(head_dim=64, rope_theta=500000.0, rope_scaling=sc))
    assert torch.equal(scaled[:4], plain[:4])  # short wavelengths untouched
    assert torch.allclose(scaled[-1], plain[-1] / 8.0)  # long ones divided by factor
