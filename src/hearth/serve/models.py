"""The models a server answers for: chat models by spec, `hearth-rag`, and the index's embedder.

Chat models are built at startup with `hearth.llm.load` (cheap: a bad spec fails before the
server listens) and load their weights on first use or in the background warm-up. llama.cpp
models are served through continuous batching (hearth.llm.llamacpp_batch) when they get more
than one slot; Hearth's engine batches by itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from hearth import llm
from hearth.llm.llamacpp import LlamaCppModel
from hearth.llm.llamacpp_batch import BatchedLlamaCpp
from hearth.serve.config import AGENT_MODEL_ID, GRAPH_MODEL_ID, RAG_MODEL_ID
from hearth.types import ChatModel

log = logging.getLogger("hearth.serve")

Kind = Literal["chat", "rag", "agent", "embedding"]


class ServedModels:
    """Model id -> what serves it. Ids are the specs as given ("local:smollm2"), `hearth-rag`
    and `hearth-graph` (answers from the index, the second with knowledge-graph neighbours,
    with the default chat model), `hearth-agent` (the tool-using agent, on the instruction
    model when it is served) and the embedder's name."""

    def __init__(
        self,
        chat_specs: list[str],
        embedder: Any,
        context_size: int | None = None,
        batching: Callable[[str], Any] | None = None,
        agent_spec: str | None = None,
    ) -> None:
        """`batching(spec)`: the BatchConfig a llama.cpp model is served with (None: one
        generation at a time, as `hearth ask` runs it). `agent_spec`: the chat model
        `hearth-agent` runs on when it is one of `chat_specs` (else the default)."""
        specs = list(dict.fromkeys(s.strip() for s in chat_specs if s.strip()))
        if not specs:
            raise ValueError("a server needs at least one chat model spec")
        self.default_chat = specs[0]
        self.agent_chat = agent_spec if agent_spec in specs else specs[0]
        self._chat: dict[str, ChatModel] = {}
        for spec in specs:
            model = llm.load(spec, context_size=context_size)
            config = batching(spec) if batching is not None else None
            if config is not None and isinstance(model, LlamaCppModel):
                model = BatchedLlamaCpp(model, config)
            self._chat[spec] = model
        self._embedder = embedder  # cheap until warm_up(): name and dim only
        if hasattr(embedder, "allow_spinning"):
            embedder.allow_spinning = False  # keep the cores for the event loop between requests
        self.embedder_id: str = embedder.name
        self.embedder_dim: int = embedder.dim
        self._embedder_ready = False
        self._embedder_lock = threading.Lock()
        self.created = int(time.time())
        self._kinds: dict[str, Kind] = {spec: "chat" for spec in specs}
        self._kinds[RAG_MODEL_ID] = "rag"
        self._kinds[GRAPH_MODEL_ID] = "rag"
        self._kinds[AGENT_MODEL_ID] = "agent"
        self._kinds[self.embedder_id] = "embedding"
        self.ready = threading.Event()

    def chat_specs(self) -> list[str]:
        """The chat models' specs, the default one first."""
        return list(self._chat)

    def ids(self) -> list[str]:
        return list(self._kinds)

    def cards(self) -> list[dict[str, Any]]:
        return [
            {
                "id": model_id,
                "object": "model",
                "created": self.created,
                "owned_by": "hearth",
                "kind": kind,
            }
            for model_id, kind in self._kinds.items()
        ]

    def kind(self, model_id: str) -> Kind | None:
        return self._kinds.get(model_id)

    def chat(self, model_id: str) -> ChatModel:
        """The ChatModel behind a chat id, the default one for `hearth-rag` and `hearth-graph`,
        the agent's for `hearth-agent`."""
        return self._chat[self.spec_of(model_id)]

    def spec_of(self, model_id: str) -> str:
        """The chat model spec a served id runs on."""
        if model_id in (RAG_MODEL_ID, GRAPH_MODEL_ID):
            return self.default_chat
        if model_id == AGENT_MODEL_ID:
            return self.agent_chat
        return model_id

    def batch_stats(self) -> dict[str, dict[str, Any]]:
        """Each batching chat model's running/waiting sequences, KV use and cache hits."""
        out = {}
        for spec, model in self._chat.items():
            stats = getattr(model, "batch_stats", None)
            numbers = stats() if stats is not None else None
            if numbers is not None:
                out[spec] = numbers
        return out

    def close(self) -> None:
        """Stop the batching threads (their pending requests fail)."""
        for model in self._chat.values():
            close = getattr(model, "close", None)
            if close is not None:
                close()

    def embedder(self) -> Any:
        """The embedder, loaded once (first callers wait for the load instead of racing it)."""
        if not self._embedder_ready:
            with self._embedder_lock:
                if not self._embedder_ready:
                    self._embedder.warm_up()
                    self._embedder_ready = True
        return self._embedder

    def warm_up(self) -> None:
        """Load the embedder and the default chat model (run in a background thread)."""
        started = time.perf_counter()
        try:
            self.embedder()
            model = self._chat[self.default_chat]
            warm = getattr(model, "warm_up", None)
            if warm is not None:
                warm()
            log.info("models ready in %.1f s", time.perf_counter() - started)
        except Exception:
            log.exception("warm-up failed; the first request will try to load the models again")
        finally:
            self.ready.set()
