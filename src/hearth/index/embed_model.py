"""A sentence-transformers model folder on disk: its settings, weights and fast tokenizer.

Read from the folder's own config files so every backend embeds and counts tokens the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from hearth.errors import ModelNotFoundError

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TRANSFORMER_MODULE = "sentence_transformers.models.Transformer"
POOLING_MODULE = "sentence_transformers.models.Pooling"
NORMALIZE_MODULE = "sentence_transformers.models.Normalize"


@dataclass(frozen=True)
class ModelFolder:
    """Everything the backends need to know about one sentence-transformers folder."""

    name: str  # canonical name, stored in the index
    path: Path  # the sentence-transformers folder (has modules.json)
    transformer_path: Path  # folder of the Hugging Face model (config.json, weights, tokenizer)
    dim: int
    max_seq_length: int
    pooling: str  # "mean" or "cls"
    module_types: tuple[str, ...]  # modules.json types, in order

    @classmethod
    def read(cls, path: Path, name: str) -> ModelFolder:
        path = path.resolve()
        if not path.is_dir():
            raise ModelNotFoundError(f"embedding model folder {path} does not exist")
        modules = _read_json(path / "modules.json", default=None)
        if modules is None:  # a plain Hugging Face folder: treat it as Transformer + mean pooling
            modules = [{"type": TRANSFORMER_MODULE, "path": ""}]
        transformer = next((m for m in modules if m.get("type") == TRANSFORMER_MODULE), None)
        if transformer is None:
            raise ModelNotFoundError(
                f"{path / 'modules.json'} has no {TRANSFORMER_MODULE} module; Hearth embeds "
                "with sentence-transformers models built on a Hugging Face transformer"
            )
        transformer_path = path / transformer.get("path", "")
        config = _read_json(transformer_path / "config.json", default=None)
        if config is None:
            raise ModelNotFoundError(
                f"{transformer_path} has no config.json: it is not a sentence-transformers "
                "model folder (expected modules.json, config.json, tokenizer and weights)"
            )
        st_config = _read_json(transformer_path / "sentence_bert_config.json", default={})
        pooling_module = next((m for m in modules if m.get("type") == POOLING_MODULE), None)
        pooling_cfg = (
            _read_json(path / pooling_module["path"] / "config.json", default={})
            if pooling_module
            else {}
        )
        pooling = "cls" if pooling_cfg.get("pooling_mode_cls_token") else "mean"
        dim = int(pooling_cfg.get("word_embedding_dimension") or config["hidden_size"])
        max_len = st_config.get("max_seq_length") or config.get("max_position_embeddings", 512)
        return cls(
            name=name,
            path=path,
            transformer_path=transformer_path,
            dim=dim,
            max_seq_length=int(max_len),
            pooling=pooling,
            module_types=tuple(m.get("type", "") for m in modules),
        )

    @property
    def weights_file(self) -> Path:
        for filename in WEIGHT_FILES:
            if (self.transformer_path / filename).is_file():
                return self.transformer_path / filename
        raise ModelNotFoundError(
            f"no weights in {self.transformer_path} (expected one of {', '.join(WEIGHT_FILES)})"
        )

    @property
    def plain_transformer(self) -> bool:
        """True when the model is transformer + pooling (+ normalize) only, which is what the
        ONNX backend reproduces; extra modules (Dense, ...) need the torch backend."""
        allowed = {TRANSFORMER_MODULE, POOLING_MODULE, NORMALIZE_MODULE}
        return set(self.module_types) <= allowed


class ModelTokenizer:
    """The model's own fast tokenizer (the `tokenizers` library, no transformers import).

    Two configurations of it: one counting tokens (no special tokens, no truncation) and
    one producing model input (special tokens, truncated to max_seq_length, unpadded).
    """

    def __init__(self, model: ModelFolder):
        self.model = model

    @cached_property
    def _counter(self) -> Any:
        tok = self._load()
        tok.no_truncation()
        tok.no_padding()
        return tok

    @cached_property
    def _encoder(self) -> Any:
        tok = self._load()
        tok.no_padding()
        tok.enable_truncation(max_length=self.model.max_seq_length)
        return tok

    def count(self, text: str) -> int:
        return len(self._counter.encode(text, add_special_tokens=False).ids)

    def count_batch(self, texts: list[str]) -> list[int]:
        encodings = self._counter.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encodings]

    def encode_for_model(self, texts: list[str]) -> list[Any]:
        """Encodings with [CLS]/[SEP], stripped and truncated as sentence-transformers does."""
        return self._encoder.encode_batch([t.strip() for t in texts])

    def _load(self) -> Any:
        from tokenizers import Tokenizer

        path = self.model.transformer_path / "tokenizer.json"
        if path.is_file():
            return Tokenizer.from_file(str(path))
        # Older folders ship only vocab.txt: let transformers build the fast tokenizer once.
        from transformers import AutoTokenizer

        fast = AutoTokenizer.from_pretrained(
            str(self.model.transformer_path), use_fast=True, local_files_only=True
        )
        return Tokenizer.from_str(fast.backend_tokenizer.to_str())


def _read_json(path: Path, default: Any) -> Any:
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"cannot read {path}: {exc}") from None
