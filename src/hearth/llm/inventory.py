"""What chat models Hearth can run here, with the facts a user checks before trusting one:
its file, size, sha256 and whether it was verified, context length, chat template, what it
supports and its license. `hearth models` prints this; the embedder's row comes from index/.

Capabilities are read off the model objects themselves (`hearth.llm.load(spec)`, which loads
no weights), so the list cannot drift from what the backends really do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hearth.llm import catalog, fetch, gguf_info
from hearth.llm.capabilities import capabilities

BACKENDS = {"local": "llama.cpp", "engine": "hearth engine (PyTorch)"}


@dataclass
class ModelInfo:
    spec: str
    kind: str  # "chat" | "embedding"
    backend: str
    title: str
    file: str | None = None
    size: int | None = None
    sha256: str | None = None
    verified: bool = False  # the file's sha256 equals a hash someone vouches for
    hash_source: str | None = None
    context_length: int | None = None  # what the model was trained for
    context_size: int | None = None  # what Hearth gives it unless told otherwise
    chat_template: bool | None = None
    supports: dict[str, bool] = field(default_factory=dict)
    precision: str | None = None  # the engine's default weight precision for it (engine rows)
    license: str | None = None
    aliases: list[str] = field(default_factory=list)
    problem: str | None = None  # why it cannot run now, and the command that repairs it

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def embedded(rehash: bool = False, progress: fetch.Progress | None = None) -> list[ModelInfo]:
    """A row per embedded model and backend (`local:NAME`, `engine:NAME`)."""
    rows = []
    for model in catalog.CATALOG.values():
        st = fetch.status(model, rehash=rehash, progress=progress)
        facts = dict(st.extra)
        if st.verified and st.path is not None and "context_length" not in facts:
            info = gguf_info.summary(st.path)
            facts = {
                "context_length": info["context_length"],
                "chat_template": bool(info["chat_template"]),
                "architecture": info["architecture"],
            }
            fetch.remember(model, facts)
        for prefix, backend in BACKENDS.items():
            spec = f"{prefix}:{model.name}"
            row = ModelInfo(
                spec=spec,
                kind="chat",
                backend=backend,
                title=model.title,
                file=str(st.path) if st.path else None,
                size=st.size,
                sha256=st.sha256,
                verified=st.verified,
                hash_source=model.hash_source,
                context_length=facts.get("context_length"),
                chat_template=facts.get("chat_template"),
                license=model.license,
                precision=model.engine_precision if prefix == "engine" else None,
                aliases=[f"{prefix}:{a}" for a in model.aliases],
                problem=st.problem,
            )
            if st.verified:
                _fill_capabilities(row)
            rows.append(row)
    return rows


def for_spec(spec: str, progress: fetch.Progress | None = None) -> ModelInfo:
    """A row for a model named in the settings that is not an embedded one: a GGUF path (its
    file described and hashed, not verified: nobody vouches for it) or a remote model."""
    from hearth.llm import load

    prefix, sep, target = spec.partition(":")
    path = Path(target if sep and prefix in BACKENDS else spec).expanduser()
    backend = BACKENDS.get(prefix, "llama.cpp") if path.suffix == ".gguf" else prefix or "?"
    row = ModelInfo(spec=spec, kind="chat", backend=backend, title=path.name or spec)
    if path.suffix == ".gguf":
        if not path.is_file():
            row.problem = f"model file not found: {path}"
            return row
        info = gguf_info.summary(path)
        row.file, row.size = str(path.resolve()), path.stat().st_size
        row.sha256 = fetch.hash_file(path, progress, f"hashing {path.name}")
        row.hash_source = "none: a file you chose (no published hash to check it against)"
        row.context_length = info["context_length"]
        row.chat_template = bool(info["chat_template"])
        row.license = info["license"]
        row.title = info["name"] or path.name
    try:
        load(spec)
    except Exception as exc:  # noqa: BLE001 - shown in the row, not raised
        row.problem = str(exc)
        return row
    _fill_capabilities(row)
    return row


def _fill_capabilities(row: ModelInfo) -> None:
    from hearth.llm import load

    try:
        model = load(row.spec)
    except Exception as exc:  # noqa: BLE001 - shown in the row, not raised
        row.problem = str(exc)
        return
    caps = capabilities(model)
    row.context_size = caps.context_size
    row.supports = {
        "stream": caps.stream,
        "tools": caps.tools,
        "json_schema": caps.json_schema,
        "embeddings": False,
    }
