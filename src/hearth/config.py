"""Effective configuration: defaults < hearth.toml < HEARTH_* env vars < command-line flags.

Uses pydantic-settings so every value is validated when the settings are built.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from hearth.errors import ConfigError

CONFIG_FILE_ENV = "HEARTH_CONFIG"


class Settings(BaseSettings):
    """Every knob Hearth reads. `hearth status` prints the effective values."""

    model_config = SettingsConfigDict(env_prefix="HEARTH_", extra="forbid")

    index: Path = Field(Path(".hearth"), description="folder holding the index")
    embedder: str = Field("all-MiniLM-L6-v2", description="embedding model name")
    embed_backend: Literal["auto", "torch", "onnx", "onnx-int8"] = "auto"
    embed_batch_size: int = Field(64, ge=1, le=4096)
    model: str = Field(
        "local:qwen2.5-coder-0.5b",
        description="chat model for ask, chat and serve: local:qwen2.5-coder-0.5b (chosen by "
        "measured answer quality; README), local:smollm2 (faster, weaker), a .gguf path, "
        "ollama:NAME, openai:NAME, ... (docs/models.md)",
    )
    instruct_model: str = Field(
        "local:qwen2.5-coder-0.5b",
        description="chat model for commands that need instructions followed and tool calls "
        "(extract, sql, agent, graph, judge); any spec `model` takes",
    )
    context_size: int | None = Field(
        None,
        ge=256,
        description="tokens of context for the chat model (unset: 2048 for local models, the "
        "preset's window for remote ones)",
    )
    max_tokens: int = Field(256, ge=1, description="most tokens an answer may have")
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    chunk_tokens: int = Field(200, ge=16, le=512, description="chunk budget in embedder tokens")
    chunk_overlap: int = Field(32, ge=0, description="overlap between chunks, in tokens")
    contextual_headers: bool = Field(
        True,
        description="embed each chunk with its document's title and heading path in front "
        "(new indexes only; an index keeps what it was built with)",
    )
    top_k: int = Field(5, ge=1, le=100)
    retriever: Literal["hybrid", "bm25", "dense"] = "hybrid"
    strategy: str = Field(
        "standard",
        description="query strategy before retrieval: standard (no model call), multi-query, "
        "hyde, rag-fusion, step-back, decompose, or auto (a router picks; docs/retrieval.md)",
    )
    rerank: str = Field(
        "none",
        description="reranking after fusion: none, late-interaction, llm-pointwise, "
        "llm-listwise (docs/retrieval.md)",
    )
    mmr: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="MMR diversity: lambda in [0, 1] (1 = relevance only); unset = off",
    )
    compress: bool = Field(
        False, description="keep only the sentences of each passage that bear on the question"
    )
    store: str | None = Field(
        None,
        description="where chunks and vectors live: unset = the SQLite file in the index folder; "
        "postgresql://user:pass@host/db (pgvector) to share one store between machines",
    )
    max_file_mb: float = Field(256, gt=0, description="larger files are skipped and reported")
    min_relevance: float = Field(
        0.25, description="best dense cosine below this means 'nothing relevant found'"
    )

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap_below_budget(cls, v: int, info) -> int:
        budget = info.data.get("chunk_tokens", 200)
        if v >= budget:
            raise ValueError(f"chunk_overlap ({v}) must be smaller than chunk_tokens ({budget})")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get(CONFIG_FILE_ENV, "hearth.toml"))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)

    @property
    def db_path(self) -> Path:
        return self.index / "index.sqlite3"


def load_settings(**overrides: object) -> Settings:
    """Build settings; flags given as keyword overrides win (None means 'not given')."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(
            f"invalid configuration ({problems}). Check hearth.toml, HEARTH_* variables "
            "and the command-line flags."
        ) from None
