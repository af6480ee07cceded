"""The fast GGUF header reader against the `gguf` package's own reader, and its errors."""

from __future__ import annotations

import pytest

from hearth.errors import ModelNotFoundError
from hearth.llm import embedded_path
from hearth.llm.gguf_info import ArrayInfo, read_header, read_metadata, summary


def test_header_equals_ggufs_reader_on_the_bundled_model():
    gguf = pytest.importorskip("gguf")
    path = embedded_path("smollm2")
    theirs = gguf.GGUFReader(path)
    header = read_header(path)
    meta = dict(header.metadata)
    for key, fld in theirs.fields.items():
        if key.startswith("GGUF."):
            continue
        if isinstance(meta[key], ArrayInfo):
            assert meta[key].count == len(fld.data), key
        else:
            assert meta[key] == pytest.approx(fld.contents()), key
    assert [(t.name, t.dims, t.ggml_type, t.offset) for t in header.tensors] == [
        (t.name, tuple(int(d) for d in t.shape), int(t.tensor_type), t.data_offset)
        for t in theirs.tensors
    ]


def test_summary_of_both_embedded_models():
    small, qwen = summary(embedded_path("smollm2")), summary(embedded_path("qwen"))
    assert (small["architecture"], small["context_length"]) == ("llama", 8192)
    assert (qwen["architecture"], qwen["context_length"]) == ("qwen2", 32768)
    assert "<tool_call>" in qwen["chat_template"] and small["license"] == "apache-2.0"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"NOPE" + bytes(20), "no GGUF header"),
        (b"GGUF\x03\x00\x00\x00" + bytes(8) + (5).to_bytes(8, "little"), "cut short"),
    ],
)
def test_bad_files_are_clear_errors(tmp_path, data, message):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(data)
    with pytest.raises(ModelNotFoundError, match=message):
        read_metadata(bad)


def test_a_truncated_copy_of_a_real_header_is_caught(tmp_path):
    real = embedded_path("smollm2").read_bytes()[:50_000]  # inside the token table
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(real)
    with pytest.raises(ModelNotFoundError, match="cut short"):
        read_header(cut)
