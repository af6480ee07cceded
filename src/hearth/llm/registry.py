"""The one registry of model loaders: a spec's prefix ("local", "engine", "openai"...) names a
factory that builds a ChatModel. llm/ registers its own backends here; a backend that lives
elsewhere (Hearth's engine, a plugin package) is found through the `hearth.backends`
entry-point group the first time its prefix is asked for, so nothing here imports it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from hearth.types import ChatModel

log = logging.getLogger("hearth.llm")

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
ENTRY_POINT_GROUP = "hearth.backends"
_plugins_loaded = False


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


def load_plugins() -> None:
    """Run every `hearth.backends` entry point once (each calls `register`). A plugin that
    fails to import is logged and skipped: one broken package must not take the rest down."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()()
        except Exception:  # noqa: BLE001 - reported, and the other backends still work
            log.exception("model backend plugin %r (%s) failed to load", ep.name, ep.value)


def lookup(prefix: str) -> Factory | None:
    """The factory registered for `prefix`, loading plugins if it is not known yet."""
    if prefix not in REGISTRY:
        load_plugins()
    return REGISTRY.get(prefix)


def prefixes() -> list[str]:
    load_plugins()
    return list(REGISTRY)


def default_context(prefix: str) -> int:
    return DEFAULT_CONTEXT.get(prefix, DEFAULT_CONTEXT_SIZE)


def default_concurrency_for(prefix: str) -> int:
    return DEFAULT_CONCURRENCY.get(prefix, BATCHING_CONCURRENCY)


def build(prefix: str, target: str, context_size: int | None, **kw: Any) -> ChatModel | None:
    """Build `prefix:target` with its factory, or None when no backend has that prefix."""
    factory = lookup(prefix)
    if factory is None:
        return None
    size = default_context(prefix) if context_size is None else context_size
    return factory(target, size, **kw)
