"""`hearth.llm.load`: specs, aliases, paths and the errors for what it cannot load."""

from __future__ import annotations

import pytest

from hearth import llm
from hearth.errors import ModelNotFoundError
from hearth.llm.llamacpp import LlamaCppModel


@pytest.mark.parametrize("spec", ["local:smollm2", "local:smollm2-135m-instruct", "local:default"])
def test_smollm2_and_its_aliases_name_the_bundled_gguf(spec):
    model = llm.load(spec, context_size=512)
    assert isinstance(model, LlamaCppModel)
    assert model.path == llm.smollm2_path()
    assert model.path.is_file()
    assert model.name == "local:smollm2"
    assert model.context_size == 512
    assert model._llama is None  # nothing loaded until first use


def test_a_bare_gguf_path_and_a_local_path_load_that_file(tmp_path):
    copy = tmp_path / "my-model.gguf"
    copy.symlink_to(llm.smollm2_path())
    for spec in (str(copy), f"local:{copy}"):
        model = llm.load(spec)
        assert model.path == copy.resolve()
        assert model.name == "local:SmolLM2-135M-Instruct.Q4_1.gguf"


def test_missing_file_error_names_the_path(tmp_path):
    missing = tmp_path / "nope" / "model.gguf"
    for spec in (str(missing), f"local:{missing}"):
        with pytest.raises(ModelNotFoundError, match="model file not found") as err:
            llm.load(spec)
        assert str(missing) in str(err.value)


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    fake = tmp_path / "notes.gguf"
    fake.write_text("hello")
    with pytest.raises(ModelNotFoundError, match="not a GGUF file"):
        llm.load(str(fake))


@pytest.mark.parametrize("spec", ["gpt-4o", "local:llama9000", "openai-ish:thing"])
def test_unknown_specs_say_what_is_accepted(spec):
    with pytest.raises(ModelNotFoundError) as err:
        llm.load(spec)
    message = str(err.value)
    assert repr(spec.partition(":")[2] or spec) in message or repr(spec) in message
    assert "local:smollm2" in message and ".gguf" in message


def test_registry_is_a_dict_plugins_can_extend():
    made = []

    def factory(target, context_size, **kw):
        made.append((target, context_size))
        return llm.load("local:smollm2", context_size)

    llm.register("test-plugin", factory)
    try:
        model = llm.load("test-plugin:anything", context_size=300)
    finally:
        del llm.REGISTRY["test-plugin"]
    assert made == [("anything", 300)]
    assert model.context_size == 300


def test_the_engine_registers_through_its_entry_point_without_llm_importing_it():
    """hearth.llm never imports hearth.engine; `engine:` arrives via `hearth.backends`."""
    import subprocess
    import sys

    code = (
        "import sys, hearth.llm as llm\n"
        "assert 'engine' not in llm.REGISTRY and 'hearth.engine' not in sys.modules\n"
        "m = llm.load('engine:smollm2', context_size=256)\n"
        "assert type(m).__module__ == 'hearth.engine.chat_model', type(m)\n"
        "assert m.name == 'engine:smollm2' and m.context_size == 256\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("spec", ["local:qwen2.5-coder-0.5b", "local:qwen", "engine:qwen"])
def test_the_instruction_model_loads_by_name(spec):
    from hearth.llm import catalog, fetch

    model = llm.load(spec)
    assert model.path == fetch.models_dir() / catalog.QWEN_CODER.file_name
    assert model.name.endswith(":qwen2.5-coder-0.5b") and model.supports_tools
