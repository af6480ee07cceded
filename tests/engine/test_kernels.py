"""The multi-row kernel choice (hearth.engine.kernels): oneDNN's packed weights give F.linear's
numbers at every row count, follow in-place weight edits, step aside for autograd and when
switched off, and keep the real model as accurate as transformers against a float64 run."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from hearth.engine import kernels  # noqa: E402

pytestmark = pytest.mark.skipif(
    not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN"
)


@pytest.fixture
def onednn_from_2_rows():
    kept = kernels.onednn_min_rows()
    kernels.set_onednn_min_rows(2)  # the default on AVX512 CPUs
    yield
    kernels.set_onednn_min_rows(kept)


def _truth(x, w, b=None):
    y = x.double() @ w.double().t()
    return y if b is None else y + b.double()


@pytest.mark.parametrize(
    "inner", [576, 1536]
)  # 1536 > _MAX_INNER: summed in two pieces; 2 rows are padded to 3
@pytest.mark.parametrize("rows", [1, 2, 3, 7, 16, 33])
def test_linear_gives_f_linear_numbers(onednn_from_2_rows, rows, inner):
    torch.manual_seed(rows)
    w = torch.randn(320, inner)
    b = torch.randn(320)
    x = torch.randn(1, rows, inner)
    with torch.inference_mode():
        ours = kernels.linear(x, w, b)
        ref = F.linear(x, w, b)
    assert ours.shape == ref.shape == (1, rows, 320)
    assert torch.allclose(ours, ref, rtol=1e-5, atol=2e-4)
    # both are fp32 sums; oneDNN's single accumulation chain rounds worse, within 3x where
    # it is the default route (AVX512); on AVX2 it measured 2.4-4.5x and MKL stays the default
    err_ours = (ours.double() - _truth(x, w, b)).abs().max().item()
    err_ref = (ref.double() - _truth(x, w, b)).abs().max().item()
    assert err_ours <= (3 if kernels._default_min_rows() else 6) * err_ref + 1e-6
    if rows == 1:
        assert torch.equal(ours, ref)  # below the threshold it IS F.linear


def test_decode_layout_weight_and_3d_input(onednn_from_2_rows):
    w = torch.randn(1024, 256).t().contiguous().t()  # (in, out) storage, as fuse_weights lays it
    x = torch.randn(2, 5, 256)
    with torch.inference_mode():
        assert torch.allclose(kernels.linear(x, w), F.linear(x, w), atol=1e-4)


def test_in_place_edit_of_the_weight_repacks(onednn_from_2_rows):
    w = torch.randn(64, 96)
    x = torch.randn(8, 96)
    with torch.inference_mode():
        first = kernels.linear(x, w)
        w.mul_(2)
        second = kernels.linear(x, w)
    assert torch.allclose(second, 2 * first, atol=1e-4)


def test_switched_off_and_autograd_use_f_linear(onednn_from_2_rows):
    w = torch.randn(64, 96, requires_grad=True)
    x = torch.randn(8, 96)
    with torch.enable_grad():  # must stay differentiable
        kernels.linear(x, w).sum().backward()
    assert w.grad is not None and torch.allclose(w.grad, x.sum(0).expand(64, 96), atol=1e-4)
    kernels.set_onednn_min_rows(None)
    with torch.inference_mode():
        assert torch.equal(kernels.linear(x, w.detach()), F.linear(x, w.detach()))
    with pytest.raises(ValueError, match="rows must be >= 1"):
        kernels.set_onednn_min_rows(0)


def test_real_model_is_as_accurate_as_transformers(engine_model, hf_model, engine_tokenizer):
    """Default kernels (oneDNN from 2 rows) against a float64 run of the same weights: no
    further from it than 1.5x transformers' own fp32 error."""
    from hearth.engine.model import LlamaModel

    texts = ["The capital of France is", "Photosynthesis turns sunlight, water and carbon into"]
    inputs = [torch.tensor([engine_tokenizer.encode(t)]) for t in texts]
    exact = LlamaModel.from_pretrained(engine_model.source, dtype=torch.float64)
    ours = hf = 0.0
    with torch.inference_mode():
        for ids in inputs:
            truth = exact(ids)
            ours = max(ours, (engine_model(ids).double() - truth).abs().max().item())
            hf = max(hf, (hf_model(ids).logits.double() - truth).abs().max().item())
    print(f"max abs error vs float64: ours {ours:.2e}, transformers {hf:.2e}")
    assert kernels.onednn_min_rows() == kernels._default_min_rows()
    assert ours <= 1.5 * hf
