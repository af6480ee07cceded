"""Remote model specs: presets, base URLs and keys from the environment, the errors for a
missing key or model, and what `hearth.llm.load` builds for each (no network involved)."""

from __future__ import annotations

import pytest

from hearth import llm
from hearth.errors import MissingKeyError, ModelNotFoundError
from hearth.llm.anthropic_api import AnthropicModel
from hearth.llm.openai_compat import OpenAICompatModel
from hearth.llm.presets import PLACEHOLDER_KEY, PRESETS, resolve, split_target
from hearth.llm.registry import prefixes

HOSTED = [p for p in PRESETS.values() if p.key_required]
SELF_HOSTED = [p for p in PRESETS.values() if not p.key_required]


@pytest.fixture(autouse=True)
def no_remote_env(monkeypatch):
    """Tests see only the variables they set, whatever the machine's environment holds."""
    for preset in PRESETS.values():
        for var in (preset.key_env, preset.base_url_env):
            if var:
                monkeypatch.delenv(var, raising=False)


def test_the_issues_services_all_have_a_preset():
    wanted = {"openai", "openrouter", "together", "groq", "hf", "vllm", "tgi", "llamacpp"}
    wanted |= {"lmstudio", "ollama", "gemini", "cohere", "anthropic"}
    assert wanted <= set(PRESETS)
    assert set(PRESETS) <= set(llm.REGISTRY)
    assert {"local", "engine"} <= set(prefixes())  # engine: through its entry point


@pytest.mark.parametrize("preset", HOSTED, ids=lambda p: p.prefix)
def test_a_hosted_api_without_its_key_names_the_variable(preset):
    with pytest.raises(MissingKeyError) as err:
        llm.load(f"{preset.prefix}:some-model")
    assert f"set {preset.key_env}=" in str(err.value)
    assert err.value.env_var == preset.key_env


@pytest.mark.parametrize("preset", HOSTED, ids=lambda p: p.prefix)
def test_a_hosted_api_with_its_key_builds_without_network(preset, monkeypatch):
    monkeypatch.setenv(preset.key_env, "sk-test")
    model = llm.load(f"{preset.prefix}:some-model")
    kind = AnthropicModel if preset.wire == "anthropic" else OpenAICompatModel
    assert isinstance(model, kind)
    assert model.base_url.startswith("https://")
    assert model.endpoint.api_key == "sk-test"
    assert model.context_size == preset.context_size
    assert model._client is None


@pytest.mark.parametrize("preset", SELF_HOSTED, ids=lambda p: p.prefix)
def test_self_hosted_servers_need_no_key_and_default_to_localhost(preset):
    model = llm.load(f"{preset.prefix}:some-model")
    assert model.endpoint.api_key == PLACEHOLDER_KEY
    assert model.base_url == preset.base_url
    assert model.base_url.startswith("http://localhost:")


def test_ollama_defaults_and_ollama_host():
    assert llm.load("ollama:llama3.2").base_url == "http://localhost:11434/v1"
    env = {"OLLAMA_HOST": "127.0.0.1:11500"}  # how ollama itself spells it: no scheme
    assert resolve("ollama", "llama3.2", env).base_url == "http://127.0.0.1:11500/v1"
    env = {"OLLAMA_HOST": "http://gpu-box:11434/"}
    assert resolve("ollama", "llama3.2", env).base_url == "http://gpu-box:11434/v1"


def test_a_url_in_the_spec_wins_over_the_variable_and_may_skip_the_key():
    env = {"OPENAI_BASE_URL": "http://from-env:1/v1"}
    endpoint = resolve("openai", "my-model@http://127.0.0.1:8000/v1", env)
    assert (endpoint.model, endpoint.base_url, endpoint.url_from) == (
        "my-model",
        "http://127.0.0.1:8000/v1",
        "spec",
    )
    assert endpoint.api_key == PLACEHOLDER_KEY  # a server you point at may need no key
    endpoint = resolve("openai", "my-model", env)
    assert (endpoint.base_url, endpoint.url_from) == ("http://from-env:1/v1", "$OPENAI_BASE_URL")
    assert resolve("vllm", "m@http://gpu:8000", {}).base_url == "http://gpu:8000/v1"
    gemini = resolve("gemini", "g@https://proxy.example", {"GEMINI_API_KEY": "k"})
    assert gemini.base_url == "https://proxy.example/v1beta/openai"


def test_model_names_may_contain_at_and_slashes():
    assert split_target("meta-llama/llama-3.1-8b-instruct") == (
        "meta-llama/llama-3.1-8b-instruct",
        None,
    )
    assert split_target("org/model@v2") == ("org/model@v2", None)
    assert split_target("org/model@v2@https://h:1/v1") == ("org/model@v2", "https://h:1/v1")
    model = llm.load("openrouter:meta-llama/llama-3.1-8b-instruct@http://127.0.0.1:9/api/v1")
    assert model.model == "meta-llama/llama-3.1-8b-instruct"
    assert model.base_url == "http://127.0.0.1:9/api/v1"


def test_openais_own_api_gets_max_completion_tokens_other_servers_max_tokens(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert llm.load("openai:gpt-4o-mini").max_tokens_field == "max_completion_tokens"
    assert llm.load("openai:m@http://127.0.0.1:9/v1").max_tokens_field == "max_tokens"
    assert (
        llm.load("groq:llama-3.1-8b-instant@http://127.0.0.1:9/v1").max_tokens_field == "max_tokens"
    )


def test_an_empty_model_name_is_an_error_except_for_single_model_servers():
    with pytest.raises(ModelNotFoundError, match=r"needs a model name, e.g. ollama:llama3.2"):
        llm.load("ollama:")
    assert llm.load("tgi:").model == "tgi"
    assert llm.load("llamacpp:").model == "default"


def test_aliases_and_context_sizes():
    assert llm.load("llama.cpp:").base_url == PRESETS["llamacpp"].base_url
    assert llm.load("huggingface:m@http://127.0.0.1:9/v1").endpoint.preset.prefix == "hf"
    assert llm.load("vllm:m").context_size == PRESETS["vllm"].context_size
    assert llm.load("vllm:m", context_size=32_768).context_size == 32_768
    assert llm.load("local:smollm2").context_size == 2048  # local default unchanged


def test_unknown_specs_list_every_prefix():
    with pytest.raises(ModelNotFoundError) as err:
        llm.load("gpt-4o")
    message = str(err.value)
    for prefix in prefixes():
        assert f"{prefix}:" in message
    assert "openai:MODEL@http://HOST:PORT/v1" in message and "local:smollm2" in message


def test_unknown_options_are_a_type_error():
    with pytest.raises(TypeError):
        llm.load("ollama:llama3.2", temperature_default=3)
    with pytest.raises(ValueError, match="timeout"):
        llm.load("ollama:llama3.2", timeout=0)
