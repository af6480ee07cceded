"""Model shape for Llama-family checkpoints: one self-validating dataclass, built from GGUF
metadata or a Hugging Face config.json, so the engine never guesses a dimension.

No torch here: reading a config must stay cheap (`hearth --help`, `hearth models`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hearth.errors import ConfigError

# Weight precisions the engine runs (hearth.engine.quant). fp32 is the one that equals
# transformers token for token.
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8")
DEFAULT_PRECISION = "fp32"  # for a model Hearth has not measured


def default_precision(path: str | Path | None = None) -> str:
    """The precision the engine runs `path` in unless told otherwise: for an embedded model, the
    fastest whose perplexity stayed within 0.5% of fp32 (its catalog entry, measured by
    benchmarks/engine_precision.py); fp32 for any other file. None means the default model."""
    from hearth.llm import catalog

    name = Path(path).name if path is not None else catalog.SMOLLM2.file_name
    model = next((m for m in catalog.CATALOG.values() if m.file_name == name), None)
    return model.engine_precision if model is not None else DEFAULT_PRECISION


RopeKind = Literal["linear", "llama3", "dynamic"]
_ROPE_ALIASES = {"linear": "linear", "llama3": "llama3", "dynamic": "dynamic", "ntk": "dynamic"}
# GGUF architectures whose rotary layout is the same as Llama's (and whose keys we read).
GGUF_ARCHITECTURES = ("llama", "mistral", "qwen2")


@dataclass(frozen=True)
class RopeScaling:
    """How rotary frequencies stretch past the trained context.

    linear: positions divided by `factor` (all frequencies / factor).
    llama3: low frequencies / factor, high ones kept, a smooth ramp between (Llama 3.1).
    dynamic (alias "ntk"): the base grows with the sequence once it passes
    `max_position_embeddings` (NTK-aware scaling).
    """

    kind: RopeKind
    factor: float
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("linear", "llama3", "dynamic"):
            raise ConfigError(f"rope_scaling kind {self.kind!r}: use linear, llama3 or dynamic")
        if self.factor <= 0:
            raise ConfigError(f"rope_scaling factor must be positive, got {self.factor}")
        if self.kind == "llama3":
            if self.high_freq_factor <= self.low_freq_factor:
                raise ConfigError("rope_scaling llama3 needs high_freq_factor > low_freq_factor")
            if not self.original_max_position_embeddings:
                raise ConfigError("rope_scaling llama3 needs original_max_position_embeddings")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> RopeScaling | None:
        """Read HF's `rope_scaling` / `rope_parameters` dict; None or "default" means no scaling."""
        if not d:
            return None
        raw = d.get("rope_type") or d.get("type") or "default"
        if raw == "default":
            return None
        kind = _ROPE_ALIASES.get(raw)
        if kind is None:
            raise ConfigError(
                f"rope scaling {raw!r} is not supported: use linear, llama3 or dynamic"
            )
        orig = d.get("original_max_position_embeddings")
        return cls(
            kind=kind,  # type: ignore[arg-type]
            factor=float(d.get("factor", 1.0)),
            low_freq_factor=float(d.get("low_freq_factor", 1.0)),
            high_freq_factor=float(d.get("high_freq_factor", 4.0)),
            original_max_position_embeddings=int(orig) if orig else None,
        )


@dataclass(frozen=True)
class ModelConfig:
    """Every dimension the Llama-family model needs; checked on creation."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    n_layers: int
    n_heads: int
    n_kv_heads: int  # < n_heads: grouped-query attention; 1: multi-query attention
    head_dim: int
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # Qwen2 has biases on q/k/v
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    # llama.cpp stores Llama 3.1 scaling as per-frequency divisors (tensor rope_freqs.weight).
    rope_freq_factors: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "intermediate_size", "n_layers", "n_heads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model config: {name} must be at least 1")
        if not 1 <= self.n_kv_heads <= self.n_heads or self.n_heads % self.n_kv_heads:
            raise ConfigError(
                f"model config: n_kv_heads={self.n_kv_heads} must divide n_heads={self.n_heads}"
            )
        if self.head_dim < 2 or self.head_dim % 2:
            raise ConfigError(f"model config: head_dim must be even, got {self.head_dim}")
        if self.rms_norm_eps <= 0 or self.rope_theta <= 0:
            raise ConfigError("model config: rms_norm_eps and rope_theta must be positive")
        if self.rope_freq_factors is not None and len(self.rope_freq_factors) != self.head_dim // 2:
            raise ConfigError("model config: rope_freq_factors needs head_dim / 2 values")

    @property
    def n_rep(self) -> int:
        """Query heads that share one key/value head."""
        return self.n_heads // self.n_kv_heads

    # ---- builders -------------------------------------------------------------------------

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Build from a Hugging Face config.json dict (Llama / Mistral / Qwen2 configs)."""
        try:
            n_heads = int(d["num_attention_heads"])
            hidden = int(d["hidden_size"])
            rope = d.get("rope_parameters") or d.get("rope_scaling")
            theta = d.get("rope_theta") or (rope or {}).get("rope_theta") or 10000.0
            eos = d.get("eos_token_id")
            return cls(
                vocab_size=int(d["vocab_size"]),
                hidden_size=hidden,
                intermediate_size=int(d["intermediate_size"]),
                n_layers=int(d["num_hidden_layers"]),
                n_heads=n_heads,
                n_kv_heads=int(d.get("num_key_value_heads") or n_heads),
                head_dim=int(d.get("head_dim") or hidden // n_heads),
                rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)),
                rope_theta=float(theta),
                rope_scaling=RopeScaling.from_dict(rope),
                max_position_embeddings=int(d.get("max_position_embeddings", 2048)),
                tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
                attention_bias=bool(d.get("attention_bias", d.get("model_type") == "qwen2")),
                bos_token_id=d.get("bos_token_id"),
                eos_token_id=eos[0] if isinstance(eos, list) else eos,
            )
        except KeyError as e:
            raise ConfigError(
                f"config.json lacks {e.args[0]!r}: is this a Llama-family model?"
            ) from e

    @classmethod
    def from_hf_file(cls, path: str | Path) -> ModelConfig:
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise ConfigError(f"{path}: no config.json; point at a Hugging Face model folder")
        return cls.from_hf_dict(json.loads(path.read_text(encoding="utf-8")))

    @classmethod
    def from_gguf_metadata(
        cls,
        meta: dict[str, Any],
        *,
        tie_word_embeddings: bool,
        attention_bias: bool = False,
        rope_freq_factors: tuple[float, ...] | None = None,
    ) -> ModelConfig:
        """Build from GGUF key/values (`llama.*`, `tokenizer.ggml.*`); tensor-derived facts
        (is there an output.weight? q/k biases?) come in as arguments."""
        arch = meta.get("general.architecture", "llama")
        if arch not in GGUF_ARCHITECTURES:
            raise ConfigError(
                f"GGUF architecture {arch!r} is not a Llama-family model "
                f"(supported: {', '.join(GGUF_ARCHITECTURES)})"
            )

        def key(name: str, default: Any = None) -> Any:
            return meta.get(f"{arch}.{name}", default)

        try:
            hidden = int(key("embedding_length"))
            n_heads = int(key("attention.head_count"))
            vocab = key("vocab_size") or meta.get("tokenizer.ggml.n_tokens")
            scaling = None
            if key("rope.scaling.type") not in (None, "none"):
                orig = key("rope.scaling.original_context_length")
                scaling = RopeScaling.from_dict(
                    {
                        "rope_type": key("rope.scaling.type"),
                        "factor": key("rope.scaling.factor", 1.0),
                        "original_max_position_embeddings": orig,
                    }
                )
            return cls(
                vocab_size=int(vocab),
                hidden_size=hidden,
                intermediate_size=int(key("feed_forward_length")),
                n_layers=int(key("block_count")),
                n_heads=n_heads,
                n_kv_heads=int(key("attention.head_count_kv") or n_heads),
                head_dim=int(key("attention.key_length") or key("rope.dimension_count") or 0)
                or hidden // n_heads,
                rms_norm_eps=float(key("attention.layer_norm_rms_epsilon", 1e-5)),
                rope_theta=float(key("rope.freq_base", 10000.0)),
                rope_scaling=scaling,
                max_position_embeddings=int(key("context_length", 2048)),
                tie_word_embeddings=tie_word_embeddings,
                attention_bias=attention_bias,
                bos_token_id=meta.get("tokenizer.ggml.bos_token_id"),
                eos_token_id=meta.get("tokenizer.ggml.eos_token_id"),
                rope_freq_factors=rope_freq_factors,
            )
        except TypeError as e:  # int(None): a required key is missing
            raise ConfigError(f"GGUF metadata lacks a required {arch}.* key ({e})") from e
