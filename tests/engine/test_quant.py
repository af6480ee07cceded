"""Lower precision and the fused decode layout: int8 / bf16 layers against their fp32 maths,
the real SmolLM2's perplexity on a held-out text within 1% of fp32, fused weights giving the
unfused model's logits, and the --precision option end to end."""

from __future__ import annotations

import heapq
import json
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from hearth.engine.config import ModelConfig  # noqa: E402
from hearth.engine.generator import Generator  # noqa: E402
from hearth.engine.model import LlamaModel  # noqa: E402
from hearth.engine.perplexity import text_perplexity  # noqa: E402
from hearth.engine.quant import (  # noqa: E402
    Int8Linear,
    PackedLinear,
    decode_weight_bytes,
    quantize,
    quantize_int8,
)
from hearth.errors import ConfigError  # noqa: E402

# a stdlib essay no other engine test reads (its first ~2,000 characters: a quick test)
HELD_OUT = heapq.__about__[: heapq.__about__.index("\n\n", 2000)]


def _tiny(**kw) -> LlamaModel:
    base = dict(
        vocab_size=64, hidden_size=32, intermediate_size=64, n_layers=2, n_heads=4,
        n_kv_heads=2, head_dim=8, max_position_embeddings=64, tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    return LlamaModel(ModelConfig(**{**base, **kw})).eval()


# ---- the int8 format and layers ---------------------------------------------------------------


def test_int8_round_trip_error_is_half_a_step():
    w = torch.randn(48, 40) + torch.linspace(-1, 3, 48)[:, None]  # rows off-centre
    q, scale, offset = quantize_int8(w)
    assert q.dtype == torch.int8 and q.shape == w.shape and scale.shape == (48,)
    back = q.float() * scale[:, None] + offset[:, None]
    assert ((back - w).abs() <= scale[:, None] * 0.5 + 1e-6).all()
    # every row uses its full range: both ends of the int8 scale are reached
    assert (q.amin(dim=1) == -128).all() and (q.amax(dim=1) == 127).all()


@pytest.mark.parametrize("bias", [False, True])
def test_int8_linear_kernel_and_fallback_match_fp32_maths(bias):
    torch.manual_seed(1)
    linear = nn.Linear(64, 96, bias=bias)
    layer = Int8Linear.from_linears([linear])
    x = torch.randn(3, 5, 64)
    ref = F.linear(x, layer.dequantized().float(), None if linear.bias is None else linear.bias)
    layer.use_kernel = False
    fallback = layer(x)
    layer.use_kernel = True
    kernel = layer(x)
    assert kernel.shape == (3, 5, 96) and kernel.dtype == x.dtype
    scale = ref.abs().max()
    assert (kernel - ref).abs().max() / scale < 0.02  # bf16 activations
    assert (fallback - ref).abs().max() / scale < 0.02
    # and both stay close to the unquantized layer
    assert (kernel - linear(x)).abs().max() / scale < 0.05


def test_packed_bf16_linear_matches_bf16_maths():
    torch.manual_seed(2)
    parts = [nn.Linear(32, 16), nn.Linear(32, 8)]
    layer = PackedLinear.from_linears(parts)
    x = torch.randn(2, 32)
    w = torch.cat([p.weight for p in parts]).bfloat16().float()
    b = torch.cat([p.bias for p in parts]).bfloat16().float()
    ref = F.linear(x.bfloat16().float(), w, b)
    assert (layer(x) - ref).abs().max() / ref.abs().max() < 0.02


# ---- quantize() on a tiny model ---------------------------------------------------------------


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_quantize_replaces_every_linear(precision):
    model = _tiny()
    ids = torch.randint(0, 64, (1, 12))
    with torch.no_grad():
        ref = model(ids)
        quantize(model, precision)
        out = model(ids)
    assert model.quantized == precision and model.dtype == torch.float32  # weight-only
    assert not any(type(m) is nn.Linear for m in model.modules())
    attn = model.layers[0].self_attn
    assert attn.q_proj is None and attn.qkv_proj is not None
    assert model.lm_head is not None  # tied: the head gets its own low-precision copy
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert (out - ref).abs().max() / ref.abs().max() < 0.1
    cache = model.new_cache(16)
    assert cache.k.dtype == torch.float32
    with torch.no_grad():
        steps = [model(ids[:, :6], kv_cache=cache)]
        steps += [model(ids[:, i : i + 1], kv_cache=cache) for i in range(6, 12)]
    assert (torch.cat(steps, dim=1) - out).abs().max() < 0.05


def test_quantize_refuses_what_it_cannot_do():
    model = _tiny()
    with pytest.raises(ConfigError, match="use one of fp32, bf16, int8"):
        quantize(model, "int4")
    quantize(model, "int8")
    with pytest.raises(ConfigError, match="already int8"):
        quantize(model, "bf16")


def test_decode_weight_bytes_counts_what_a_step_reads():
    model = _tiny()
    params = sum(p.numel() for p in model.parameters())
    assert decode_weight_bytes(model) == params * 4  # tied embedding = the head: all of it
    quantize(model, "int8")
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, Int8Linear))
    # int8 layers + their scale/offset rows + fp32 norms + one embedding row
    assert linear < decode_weight_bytes(model) < linear * 1.5


# ---- fused weights ------------------------------------------------------------------------------


def test_fused_model_gives_the_unfused_logits_and_notices_replaced_weights():
    plain, fused = _tiny(), _tiny()
    fused.fuse_weights()
    attn = fused.layers[0].self_attn
    assert attn.shared is not None and attn.shared.valid()
    assert attn.q_proj.weight.data_ptr() == attn.shared.weight.data_ptr()  # stored once
    ids = torch.randint(0, 64, (2, 10))
    with torch.no_grad():
        assert (fused(ids) - plain(ids)).abs().max() < 1e-5
        new = torch.randn_like(plain.layers[0].self_attn.k_proj.weight)
        for m in (plain, fused):
            m.layers[0].self_attn.k_proj.weight = nn.Parameter(new.clone())
        assert not attn.shared.valid()  # falls back to the parts
        assert (fused(ids) - plain(ids)).abs().max() < 1e-5
        fused.layers[1].mlp.up_proj.weight.mul_(2)  # in place: reaches the fused weight
        plain.layers[1].mlp.up_proj.weight.mul_(2)
        assert fused.layers[1].mlp.shared.valid()
        assert (fused(ids) - plain(ids)).abs().max() < 1e-5


def test_casting_a_fused_model_fuses_again():
    model = _tiny().fuse_weights().to(torch.bfloat16)
    attn = model.layers[0].self_attn
    assert attn.shared.valid() and attn.shared.weight.dtype == torch.bfloat16


# ---- the real model -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fp32_perplexity(engine_model, engine_tokenizer):
    return text_perplexity(engine_model, engine_tokenizer, HELD_OUT, window=256, stride=192)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_real_model_perplexity_within_one_percent(
    gguf_path, engine_tokenizer, fp32_perplexity, precision
):
    model = quantize(LlamaModel.from_pretrained(gguf_path), precision)
    low = text_perplexity(model, engine_tokenizer, HELD_OUT, window=256, stride=192)
    change = low.perplexity / fp32_perplexity.perplexity - 1
    print(f"{precision}: perplexity {low.perplexity:.3f} vs fp32 "
          f"{fp32_perplexity.perplexity:.3f} ({change:+.2%})")  # fmt: skip
    assert low.tokens == fp32_perplexity.tokens
    assert abs(change) < 0.01


@pytest.mark.slow
def test_generator_and_cli_take_a_precision(gguf_path):
    with pytest.raises(ConfigError, match="precision"):
        Generator(gguf_path, precision="fp8")
    cmd = [sys.executable, "-m", "hearth", "generate", "The capital of France is",
           "--precision", "int8", "--max-tokens", "4", "--json"]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr + run.stdout
    report = json.loads(run.stdout[run.stdout.index("{") :])
    assert len(report["token_ids"]) == 4 and report["text"].strip()


@pytest.mark.slow
def test_compiled_int8_matvec_matches_the_dequantized_maths():
    from hearth.engine.quant import compile_int8_matvec

    torch.manual_seed(3)
    layer = Int8Linear.from_linears([nn.Linear(64, 96)])
    try:
        seconds = compile_int8_matvec([layer])
    except Exception as e:  # noqa: BLE001 - no C++ compiler: the kernel path stays in use
        pytest.skip(f"torch.compile cannot build here ({type(e).__name__}); kernel path only")
    assert seconds > 0 and layer.matvec is not None
    x = torch.randn(1, 64)
    ref = F.linear(x, layer.dequantized(), layer.bias)
    with torch.no_grad():
        assert (layer(x) - ref).abs().max() < 1e-4  # fp32 inside: tighter than the kernel
        assert layer(torch.randn(3, 64)).shape == (3, 96)  # several rows: the kernel
