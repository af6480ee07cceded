"""JSON (.json) and JSON Lines (.jsonl, .ndjson) as readable `key.path: value` lines.

Each leaf value becomes one line; a "json_paths" span table maps text back to JSONPaths
("$.a.b[0]"). Records (items of a top-level array, lines of a JSONL file) are separated by
blank lines so the splitter keeps them together.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from hearth.errors import LoadError
from hearth.ingest.encoding import decode_bytes
from hearth.ingest.loaders.base import Parsed, normalize_newlines

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_INLINE_LIST_CHARS = 200  # short lists of scalars stay on one line: `tags: ["a", "b"]`


def parse_json(path: Path, data: bytes) -> Parsed:
    text = decode_bytes(data, path)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LoadError(
            f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from exc
    writer = _Writer()
    if isinstance(value, list) and value and all(isinstance(v, dict | list) for v in value):
        for index, item in enumerate(value):
            writer.record(item, f"$[{index}]")
    else:
        writer.record(value, "$")
    return writer.parsed()


def parse_jsonl(path: Path, data: bytes) -> Parsed:
    text = normalize_newlines(decode_bytes(data, path))
    writer = _Writer()
    index = 0
    # split("\n"), not splitlines(): JSON strings may hold U+2028, which splitlines() cuts at.
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LoadError(
                f"{path}: malformed JSON on line {line_no}, column {exc.colno}: {exc.msg}"
            ) from exc
        writer.record(value, f"$[{index}]")
        index += 1
    return writer.parsed()


class _Writer:
    """Builds the text and the "json_paths" spans [[start, end, path], ...] together."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.spans: list[list[Any]] = []
        self.offset = 0

    def record(self, value: Any, path: str) -> None:
        if self.parts:
            self._write("\n")  # blank line between records (the previous one ended with \n)
        self._value(value, path, label_from=len(path))

    def parsed(self) -> Parsed:
        text = "".join(self.parts).rstrip("\n")
        return Parsed(text, {"json_paths": self.spans})

    def _value(self, value: Any, path: str, label_from: int) -> None:
        if isinstance(value, dict) and value:
            for key, item in value.items():
                self._value(item, _child(path, key), label_from)
        elif isinstance(value, list) and value and not _inline_list(value):
            for index, item in enumerate(value):
                self._value(item, f"{path}[{index}]", label_from)
        else:
            label = path[label_from:].removeprefix(".")
            rendered = _scalar(value)
            line = f"{label}: {rendered}" if label else rendered
            self.spans.append([self.offset, self.offset + len(line), path])
            self._write(line + "\n")

    def _write(self, text: str) -> None:
        self.parts.append(text)
        self.offset += len(text)


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if _IDENTIFIER.match(key) else f"{path}[{json.dumps(key)}]"


def _inline_list(value: list[Any]) -> bool:
    if any(isinstance(v, dict | list) for v in value):
        return False
    return len(json.dumps(value, ensure_ascii=False)) <= _INLINE_LIST_CHARS


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
