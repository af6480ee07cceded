"""Sliding-window perplexity against plain cross-entropy computed independently, on a tiny
random model (fast) and on the real SmolLM2 over a text the engine never saw in tests."""

from __future__ import annotations

import heapq
import math

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from hearth.engine.config import ModelConfig  # noqa: E402
from hearth.engine.model import LlamaModel  # noqa: E402
from hearth.engine.perplexity import perplexity, text_perplexity  # noqa: E402

# Held out: a stdlib essay (heapq's "About heaps"), not a prompt anywhere else in the tests;
# its first ~2,000 characters keep the test quick.
HELD_OUT = heapq.__about__[: heapq.__about__.index("\n\n", 2000)]


@pytest.fixture(scope="module")
def tiny():
    config = ModelConfig(
        vocab_size=50, hidden_size=32, intermediate_size=64, n_layers=2, n_heads=4,
        n_kv_heads=2, head_dim=8, max_position_embeddings=256,
    )  # fmt: skip
    torch.manual_seed(0)
    return LlamaModel(config).eval()


def _reference_nll(model, ids: torch.Tensor) -> torch.Tensor:
    """Per-target NLL of ids[1:] given everything before them, one forward."""
    with torch.no_grad():
        return F.cross_entropy(model(ids)[:-1], ids[1:], reduction="none")


def test_one_window_is_plain_cross_entropy(tiny):
    ids = torch.randint(0, 50, (40,), generator=torch.Generator().manual_seed(1))
    result = perplexity(tiny, ids, window=64)
    ref = _reference_nll(tiny, ids)
    assert result.tokens == 39 and result.windows == 1
    assert math.isclose(result.perplexity, math.exp(ref.mean().item()), rel_tol=1e-5)


def test_disjoint_windows_score_each_chunk_alone(tiny):
    ids = torch.randint(0, 50, (50,), generator=torch.Generator().manual_seed(2))
    result = perplexity(tiny, ids, window=20, stride=20)
    chunks = [ids[i : i + 20] for i in range(0, 50, 20)]  # 20, 20, 10 tokens
    nll = torch.cat([_reference_nll(tiny, c) for c in chunks])
    assert result.tokens == 19 + 19 + 9 and result.windows == 3
    assert math.isclose(result.mean_nll, nll.mean().item(), rel_tol=1e-5)


def test_overlapping_windows_score_every_token_once_with_context(tiny):
    ids = torch.randint(0, 50, (50,), generator=torch.Generator().manual_seed(3))
    result = perplexity(tiny, ids, window=20, stride=10)
    # by hand: window [b, b+20) scores targets from the previous window's end on
    expected, done = [], 0
    for begin in range(0, 50, 10):
        end = min(begin + 20, 50)
        nll = _reference_nll(tiny, ids[begin:end])  # nll[j] is target begin + j + 1
        first = max(done, begin + 1)
        expected.append(nll[first - begin - 1 :])
        done = end
        if end == 50:
            break
    expected = torch.cat(expected)
    assert result.tokens == 49 == expected.numel()
    assert math.isclose(result.mean_nll, expected.mean().item(), rel_tol=1e-5)


def test_bad_arguments_say_what(tiny):
    with pytest.raises(ValueError, match="window"):
        perplexity(tiny, [1, 2, 3], window=1)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        perplexity(tiny, [1], window=8)


@pytest.mark.slow
def test_real_model_on_held_out_text(engine_model, engine_tokenizer):
    result = text_perplexity(engine_model, engine_tokenizer, HELD_OUT, window=256, stride=192)
    n = len(engine_tokenizer.encode(HELD_OUT))
    assert result.tokens == n - 1 and result.windows >= 2
    # a language model reads English prose far better than chance (vocab 49,152)
    assert 1.0 < result.perplexity < 100.0
