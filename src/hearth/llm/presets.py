"""Named remote LLM services (OpenAI, OpenRouter, Ollama, vLLM, Anthropic...) and how a model
spec such as "ollama:llama3.2" or "openai:MODEL@http://host:8000/v1" becomes an endpoint.

Plain data and string handling only: no network, no SDK import, so `load()` stays cheap.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from hearth.errors import MissingKeyError, ModelNotFoundError

# Sent to servers that need no key: the openai SDK refuses an empty one.
PLACEHOLDER_KEY = "not-needed"


@dataclass(frozen=True)
class Preset:
    """One named service: where it listens, which variables configure it, what it can do."""

    prefix: str  # the part of the spec before ":", e.g. "ollama"
    title: str  # the service's name for people, e.g. "Ollama"
    base_url: str  # OpenAI-style base URL (ends in /v1 or the service's equivalent)
    key_env: str | None  # variable holding the API key
    key_required: bool  # True: a hosted API that refuses requests without a key
    base_url_env: str | None  # variable that overrides base_url
    context_size: int  # context window assumed when the caller gives none (see docs/models.md)
    example: str  # a working spec, for docs and error messages
    wire: str = "openai"  # "openai" (chat completions) or "anthropic" (Messages API)
    default_model: str | None = None  # single-model servers accept an empty model name
    # OpenAI's own API wants max_completion_tokens (its reasoning models refuse max_tokens);
    # every other server, and OpenAI-compatible servers reached through openai:, know max_tokens.
    max_tokens_field: str = "max_tokens"
    model_hint: str = "check the model name against the server's model list"


PRESETS: dict[str, Preset] = {
    p.prefix: p
    for p in (
        Preset(
            "openai",
            "OpenAI (or any OpenAI-compatible server)",
            "https://api.openai.com/v1",
            "OPENAI_API_KEY",
            True,
            "OPENAI_BASE_URL",
            128_000,
            "openai:gpt-4o-mini",
            max_tokens_field="max_completion_tokens",
            model_hint="see https://platform.openai.com/docs/models",
        ),
        Preset(
            "openrouter",
            "OpenRouter",
            "https://openrouter.ai/api/v1",
            "OPENROUTER_API_KEY",
            True,
            "OPENROUTER_BASE_URL",
            8192,
            "openrouter:meta-llama/llama-3.1-8b-instruct",
            model_hint="see https://openrouter.ai/models",
        ),
        Preset(
            "together",
            "Together AI",
            "https://api.together.xyz/v1",
            "TOGETHER_API_KEY",
            True,
            "TOGETHER_BASE_URL",
            8192,
            "together:meta-llama/Llama-3.3-70B-Instruct-Turbo",
            model_hint="see https://docs.together.ai/docs/serverless-models",
        ),
        Preset(
            "groq",
            "Groq",
            "https://api.groq.com/openai/v1",
            "GROQ_API_KEY",
            True,
            "GROQ_BASE_URL",
            8192,
            "groq:llama-3.1-8b-instant",
            model_hint="see https://console.groq.com/docs/models",
        ),
        Preset(
            "hf",
            "Hugging Face Inference Providers",
            "https://router.huggingface.co/v1",
            "HF_TOKEN",
            True,
            "HF_BASE_URL",
            8192,
            "hf:meta-llama/Llama-3.1-8B-Instruct",
            model_hint="see https://huggingface.co/models?inference_provider=all",
        ),
        Preset(
            "vllm",
            "vLLM",
            "http://localhost:8000/v1",
            "VLLM_API_KEY",
            False,
            "VLLM_BASE_URL",
            4096,
            "vllm:Qwen/Qwen2.5-1.5B-Instruct",
            model_hint="use the name given to `vllm serve` (GET /v1/models lists it)",
        ),
        Preset(
            "tgi",
            "Hugging Face Text Generation Inference",
            "http://localhost:8080/v1",
            "HF_TOKEN",
            False,
            "TGI_BASE_URL",
            4096,
            "tgi:",
            default_model="tgi",
            model_hint="TGI serves one model; leave the name empty (tgi:)",
        ),
        Preset(
            "llamacpp",
            "llama.cpp server (llama-server)",
            "http://localhost:8080/v1",
            "LLAMACPP_API_KEY",
            False,
            "LLAMACPP_BASE_URL",
            4096,
            "llamacpp:",
            default_model="default",
            model_hint="llama-server serves the model it was started with; leave the name empty",
        ),
        Preset(
            "lmstudio",
            "LM Studio",
            "http://localhost:1234/v1",
            "LMSTUDIO_API_KEY",
            False,
            "LMSTUDIO_BASE_URL",
            4096,
            "lmstudio:qwen2.5-7b-instruct",
            model_hint="load the model in LM Studio first (`lms ls` lists them)",
        ),
        Preset(
            "ollama",
            "Ollama",
            "http://localhost:11434/v1",
            "OLLAMA_API_KEY",
            False,
            "OLLAMA_HOST",
            4096,
            "ollama:llama3.2",
            model_hint="pull it first: ollama pull NAME (`ollama list` shows what is there)",
        ),
        Preset(
            "hearth",
            "Hearth's own server (hearth serve)",
            "http://localhost:8080/v1",
            "HEARTH_API_KEY",
            False,
            "HEARTH_BASE_URL",
            2048,
            "hearth:hearth-rag",
            model_hint="GET /v1/models lists what `hearth serve` serves (e.g. local:smollm2)",
        ),
        Preset(
            "gemini",
            "Google Gemini (OpenAI-compatible endpoint)",
            "https://generativelanguage.googleapis.com/v1beta/openai",
            "GEMINI_API_KEY",
            True,
            "GEMINI_BASE_URL",
            1_048_576,
            "gemini:gemini-2.0-flash",
            model_hint="see https://ai.google.dev/gemini-api/docs/models",
        ),
        Preset(
            "cohere",
            "Cohere (OpenAI-compatible endpoint)",
            "https://api.cohere.ai/compatibility/v1",
            "COHERE_API_KEY",
            True,
            "COHERE_BASE_URL",
            128_000,
            "cohere:command-r-plus",
            model_hint="see https://docs.cohere.com/docs/models",
        ),
        Preset(
            "anthropic",
            "Anthropic (Messages API)",
            "https://api.anthropic.com",
            "ANTHROPIC_API_KEY",
            True,
            "ANTHROPIC_BASE_URL",
            200_000,
            "anthropic:claude-3-5-haiku-latest",
            wire="anthropic",
            model_hint="see https://docs.anthropic.com/en/docs/about-claude/models",
        ),
    )
}

# Other spellings people reach for.
ALIASES = {"huggingface": "hf", "llama.cpp": "llamacpp", "llama-server": "llamacpp"}


@dataclass(frozen=True)
class Endpoint:
    """Everything a backend needs to reach one model: resolved, validated, no I/O done."""

    preset: Preset
    model: str  # the name sent to the server
    base_url: str
    api_key: str
    key_env: str | None  # named in errors about the key
    url_from: str  # where base_url came from: "spec", "$VAR" or "preset" (for error messages)

    @property
    def is_hosted_default(self) -> bool:
        return self.url_from == "preset"


def preset_for(prefix: str) -> Preset:
    return PRESETS[ALIASES.get(prefix, prefix)]


def split_target(target: str) -> tuple[str, str | None]:
    """ "MODEL@http://host:port/v1" -> ("MODEL", "http://host:port/v1"); no URL -> (MODEL, None).

    Only an "@" followed by http:// or https:// starts a URL, so model names may contain "@".
    """
    model, sep, url = target.rpartition("@")
    if sep and url.lower().startswith(("http://", "https://")):
        return model.strip(), url.strip()
    return target.strip(), None


def normalize_base_url(url: str, preset: Preset) -> str:
    """Add a missing scheme (OLLAMA_HOST is often "127.0.0.1:11434") and, when the URL has no
    path, the preset's own path ("/v1"), so "http://gpu-box:8000" works as well as ".../v1"."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    if urlsplit(url).path in ("", "/"):
        url += urlsplit(preset.base_url).path
    return url


def resolve(prefix: str, target: str, env: dict[str, str] | None = None) -> Endpoint:
    """Turn "PREFIX:TARGET" into an Endpoint, reading keys and URLs from `env` (os.environ).

    Raises ModelNotFoundError for an empty model name and MissingKeyError, naming the variable
    to set, when a hosted API's key is missing.
    """
    env = os.environ if env is None else env
    preset = preset_for(prefix)
    model, spec_url = split_target(target)
    if not model:
        if preset.default_model is None:
            raise ModelNotFoundError(
                f"{prefix}: needs a model name, e.g. {preset.example} ({preset.model_hint})"
            )
        model = preset.default_model
    if spec_url:
        base_url, url_from = normalize_base_url(spec_url, preset), "spec"
    elif preset.base_url_env and env.get(preset.base_url_env, "").strip():
        base_url = normalize_base_url(env[preset.base_url_env], preset)
        url_from = f"${preset.base_url_env}"
    else:
        base_url, url_from = preset.base_url, "preset"
    key = env.get(preset.key_env, "").strip() if preset.key_env else ""
    # A hosted API always wants a key; a server you point at yourself may not (a local vLLM).
    if not key and preset.key_required and url_from == "preset":
        raise MissingKeyError(
            f"{prefix}:{model} needs an API key for {preset.title}: set {preset.key_env}=... "
            f"(e.g. export {preset.key_env}=sk-...), or point at another server with "
            f"{prefix}:{model}@http://HOST:PORT/v1"
            + (f" or {preset.base_url_env}" if preset.base_url_env else ""),
            env_var=preset.key_env or "",
        )
    return Endpoint(preset, model, base_url, key or PLACEHOLDER_KEY, preset.key_env, url_from)


def accepted_specs() -> str:
    """The remote specs in one line, for error messages: an example per preset and its key."""
    parts = []
    for p in PRESETS.values():
        key = p.key_env if p.key_required else f"no key needed; {p.base_url_env}"
        parts.append(f"{p.example} [{key}]")
    return (
        ", ".join(parts)
        + "; any OpenAI-compatible server: openai:MODEL@http://HOST:PORT/v1 (see docs/models.md)"
    )
