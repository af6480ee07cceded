"""Tokenizer and chat template for an engine model, read from the same GGUF file or
Hugging Face folder as its weights, so prompts are tokenized exactly as the model was trained.

Token ids come from transformers' fast tokenizer (it rebuilds one from GGUF metadata); the
chat template is the model's own Jinja string, rendered here the way transformers renders it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from hearth.errors import ConfigError, ModelNotFoundError
from hearth.types import Message


@dataclass
class Tokenizer:
    """Text <-> token ids, plus the model's chat template."""

    hf: Any  # transformers.PreTrainedTokenizerFast
    chat_template: str | None
    eos_token_id: int | None
    bos_token_id: int | None
    # this vocabulary as hearth.structured masks it, built on first use (see structured())
    _structured: Any = field(default=None, init=False, repr=False, compare=False)
    _structured_lock: Any = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def structured(self) -> Any:
        """This vocabulary as hearth.structured's constraints mask it (an llguidance
        LLTokenizer, for `Constraint.matcher`): built once (about a second), then kept here,
        with the tokenizer it reads."""
        if self._structured is None:
            from hearth.structured.tokenizers import hf_tokenizer

            with self._structured_lock:
                if self._structured is None:
                    self._structured = hf_tokenizer(self.hf, len(self.hf), self.eos_token_id)
        return self._structured

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.hf.encode(text, add_special_tokens=add_special_tokens)

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def render_chat(
        self,
        messages: list[Message] | list[dict[str, Any]],
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
    ) -> str:
        """The prompt string the chat template makes of `messages` (and `tools`, OpenAI
        function definitions, for templates that take them)."""
        if self._template is None:
            raise ConfigError("this model has no chat template: pass a plain prompt instead")
        from hearth.llm.tool_calls import template_messages

        msgs = [template_messages([m])[0] if isinstance(m, Message) else dict(m) for m in messages]
        return self._template.render(
            messages=msgs,
            tools=tools,
            add_generation_prompt=add_generation_prompt,
            bos_token=self.hf.bos_token or "",
            eos_token=self.hf.eos_token or "",
        )

    def encode_chat(
        self,
        messages: list[Message] | list[dict[str, Any]],
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
    ) -> list[int]:
        """Token ids of the templated prompt (the template already holds the special tokens)."""
        return self.encode(self.render_chat(messages, add_generation_prompt, tools), False)

    @property
    def supports_tools(self) -> bool:
        from hearth.llm.tool_calls import template_supports_tools

        return template_supports_tools(self.chat_template)

    @cached_property
    def _template(self) -> Any:
        return compile_chat_template(self.chat_template) if self.chat_template else None


def compile_chat_template(source: str) -> Any:
    """A sandboxed Jinja template with the globals HF chat templates expect."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, **kw: Any) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, **kw)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)


def load_tokenizer(path: str | Path | None = None) -> Tokenizer:
    """Tokenizer of a .gguf file (default: the embedded SmolLM2) or a Hugging Face folder."""
    from transformers import AutoTokenizer

    from hearth.engine.weights import default_model_path

    p = Path(path) if path is not None else default_model_path()
    if p.is_file() and p.suffix == ".gguf":
        from hearth.llm.gguf_info import read_metadata

        meta = read_metadata(p)
        hf = _gguf_tokenizer(p)
        template = meta.get("tokenizer.chat_template")
        eos, bos = meta.get("tokenizer.ggml.eos_token_id"), meta.get("tokenizer.ggml.bos_token_id")
    elif p.is_dir():
        hf = AutoTokenizer.from_pretrained(p)
        template = hf.chat_template if isinstance(hf.chat_template, str) else None
        eos, bos = hf.eos_token_id, hf.bos_token_id
    else:
        raise ModelNotFoundError(f"{p}: expected a .gguf file or a Hugging Face model folder")
    return Tokenizer(hf=hf, chat_template=template, eos_token_id=eos, bos_token_id=bos)


def _gguf_tokenizer(path: Path) -> Any:
    """transformers' fast tokenizer for a GGUF, rebuilt from the file once and then read from
    a cache beside the embedded models (Qwen2.5's took 23 s to rebuild and 1 s to read back).
    The cache key is the file's path, size and modification time: a changed file rebuilds."""
    import hashlib

    from transformers import AutoTokenizer

    from hearth.llm.fetch import models_dir

    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
    cached = models_dir() / "tokenizers" / key[:32]
    if (cached / "tokenizer.json").is_file():
        try:
            return AutoTokenizer.from_pretrained(cached)
        except (OSError, ValueError):
            pass  # unreadable: rebuild it below
    hf = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=cached.parent, prefix=".building-"))
        hf.save_pretrained(tmp)
        try:
            os.rename(tmp, cached)  # atomic: readers never see half a folder
        except OSError:  # another process got there first
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError:
        pass  # a read-only cache only costs the rebuild next time
    return hf
