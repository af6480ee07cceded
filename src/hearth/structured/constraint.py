"""`compile(source)`: a JSON Schema, a pydantic model, a regex, a list of choices or a grammar
(Lark or GBNF) made into one Constraint that checks whole texts (`accepts`), masks tokens at
each generation step (`matcher`), and parses and validates results (`parse`).

The engine underneath is llguidance, chosen over XGrammar: no dependency beyond its own
wheel where XGrammar's pulls in torch and triton; broader JSON Schema coverage (`$ref`
recursion, `anyOf`, `patternProperties`, `minProperties`); masks in tens of microseconds with
no per-schema precompilation; a reader for llama.cpp vocabularies; Lark and GBNF grammars.
`accepts` runs the very grammar the masks come from, on a byte tokenizer, so it tells what
generation enforces. Hand-written: the dispatch, the cache and the draft handling (schema.py);
parsing and masking are llguidance's, final validation jsonschema's.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import llguidance
import numpy as np

from hearth.errors import ConstraintError, StructuredOutputError
from hearth.structured.schema import prepare
from hearth.structured.tokenizers import byte_tokenizer

log = logging.getLogger("hearth.structured")

CACHE_SIZE = 256
# JSON is generated with json.dumps's separators and no other whitespace (no runaway newlines);
# accepts() writes a text that way before checking it
JSON_SEPARATORS = (", ", ": ")
GENERATE_JSON = {
    "whitespace_flexible": False,
    "item_separator": JSON_SEPARATORS[0],
    "key_separator": JSON_SEPARATORS[1],
}


@dataclass(frozen=True)
class Grammar:
    """A context-free grammar: Lark syntax (llguidance's variant) or llama.cpp's GBNF."""

    text: str
    syntax: str = "lark"


def lark(text: str) -> Grammar:
    return Grammar(text, "lark")


def gbnf(text: str) -> Grammar:
    return Grammar(text, "gbnf")


class Matcher:
    """One generation's position in a constraint: which tokens may come next, and what came."""

    def __init__(self, inner: llguidance.LLMatcher, vocab_size: int) -> None:
        self._inner = inner
        self.vocab_size = vocab_size
        self._words = np.zeros((vocab_size + 31) // 32, dtype=np.int32)  # llguidance's bitmask

    def allowed(self) -> np.ndarray:
        """A bool per token id: may it come next (a new array each call). Runs once per token:
        the bitmask is written into this matcher's own buffer and unpacked as a view, with no
        copy beyond the unpacking."""
        self._inner.unsafe_compute_mask_ptr(self._words.ctypes.data, self._words.nbytes)
        bits = np.unpackbits(self._words.view(np.uint8), bitorder="little")
        return bits[: self.vocab_size].view(bool)

    def mask_logits(self, logits: np.ndarray) -> None:
        """Set the logits of every token that may not come next to -inf, in place (the last
        axis is the vocabulary; extra columns past the tokenizer's are masked too)."""
        allowed = self.allowed()
        logits[..., : self.vocab_size][..., ~allowed] = -np.inf
        logits[..., self.vocab_size :] = -np.inf

    def advance(self, token: int) -> bool:
        """Take `token`; False if the constraint forbids it (the matcher is then in error)."""
        return self._inner.consume_token(token)

    def advance_many(self, tokens: list[int]) -> int:
        """How many of `tokens`, in order, the constraint takes (it takes those)."""
        return self._inner.try_consume_tokens(tokens)

    def rollback(self, n: int) -> None:
        self._inner.rollback(n)

    def forced(self) -> list[int]:
        """Tokens the constraint allows no alternative to, from here."""
        return list(self._inner.compute_ff_tokens())

    def fork(self) -> Matcher:
        return Matcher(self._inner.deep_copy(), self.vocab_size)

    @property
    def done(self) -> bool:
        """The constraint is complete and nothing more may follow."""
        return self._inner.is_stopped()

    @property
    def accepting(self) -> bool:
        """What came so far is a complete value (more may still follow)."""
        return self._inner.is_accepting()

    @property
    def error(self) -> str | None:
        return self._inner.get_error() if self._inner.is_error() else None


class Constraint:
    """A compiled constraint. Build it with `compile`; cached, so compiling twice is free."""

    def __init__(self, kind: str, source: Any, grammar: str, schema=None, model=None):
        self.kind = kind  # "json", "regex", "choice" or "grammar"
        self.source = source
        self.schema = schema  # the JSON Schema, as given (JSON constraints)
        self.model = model  # the pydantic model, when compiled from one
        self.grammar = grammar  # llguidance's grammar: masks, and accepts() on bytes
        self._templates: dict[int, tuple[Any, llguidance.LLMatcher]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Constraint({self.kind}, {str(self.source)[:60]!r})"

    def accepts(self, text: str) -> bool:
        """Whether the whole of `text` satisfies the constraint. JSON is first written the one
        way generation writes it (json.dumps: any whitespace, escapes and `1.0` for an
        integral number are as good as their plain forms, as JSON and JSON Schema say), then
        run through the grammar."""
        if self.kind == "json":
            canonical = _canonical_json(text)
            if canonical is None:
                return False  # not JSON at all
            text = canonical
        data = list(text.encode("utf-8"))
        m = self.matcher(byte_tokenizer())
        return m.advance_many(data) == len(data) and m.accepting

    def matcher(self, tokenizer: llguidance.LLTokenizer) -> Matcher:
        """A fresh Matcher for one generation with `tokenizer` (see hearth.structured.
        tokenizers); the grammar is built for a tokenizer once, then copied."""
        with self._lock:
            held = self._templates.get(id(tokenizer))
            if held is None:
                template = llguidance.LLMatcher(tokenizer, self.grammar, log_level=0)
                if template.is_error():
                    raise ConstraintError(f"{self!r}: {template.get_error()}")
                held = self._templates[id(tokenizer)] = (tokenizer, template)
        return Matcher(held[1].deep_copy(), tokenizer.vocab_size)

    def parse(self, text: str) -> Any:
        """The value `text` stands for, checked: a JSON value validated by jsonschema (or a
        pydantic instance), else the text itself. StructuredOutputError when it fails."""
        if self.kind != "json":
            if not self.accepts(text):
                raise StructuredOutputError(
                    f"the output does not match {self.kind} {str(self.source)[:80]!r}",
                    output=text,
                )
            return text
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StructuredOutputError(f"the output is not JSON: {exc}", output=text) from None
        if self.model is not None:
            from pydantic import ValidationError

            try:
                return self.model.model_validate(value)
            except ValidationError as exc:
                raise StructuredOutputError(
                    f"the output does not fit {self.model.__name__}: {exc}", output=text
                ) from None
        problem = validation_error(self.schema, value)
        if problem:
            raise StructuredOutputError(f"the output does not fit the schema: {problem}",
                                        output=text)  # fmt: skip
        return value


def _canonical_json(text: str) -> str | None:
    """`text` as json.dumps writes it (numbers with no fraction as integers), or None when it
    is not one JSON value."""

    def number(literal: str) -> float | int:
        value = float(literal)
        return int(value) if value.is_integer() and abs(value) < 2**63 else value

    try:
        value = json.loads(text, parse_float=number)
    except (json.JSONDecodeError, RecursionError):
        return None
    return json.dumps(value, ensure_ascii=False, separators=JSON_SEPARATORS)


def validation_error(schema: Any, value: Any) -> str | None:
    """jsonschema's first complaint about `value`, with its path; None when it validates."""
    import jsonschema

    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    error = jsonschema.exceptions.best_match(cls(schema).iter_errors(value))
    if error is None:
        return None
    where = "/" + "/".join(str(p) for p in error.absolute_path)
    return f"{error.message} (at {where})"


_cache: OrderedDict[Any, Constraint] = OrderedDict()
_cache_lock = threading.Lock()


def compile(source: Any, *, assert_formats: bool = False) -> Constraint:  # noqa: A001
    """A Constraint from a JSON Schema (dict or bool), a pydantic model class, a regex (str),
    a list of choices (strings), or a Grammar (`lark(...)`, `gbnf(...)`). ConstraintError
    when it cannot be enforced, naming the keyword and its JSON path for schemas."""
    key = _key(source, assert_formats)
    with _cache_lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
            return found
    built = _build(source, assert_formats)
    with _cache_lock:
        _cache[key] = built
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return built


def as_constraint(source: Any) -> Constraint | None:
    """`source` compiled, unless it is a Constraint already (or None): what the generation
    parameters of every backend do with their `constraint`."""
    if source is None or isinstance(source, Constraint):
        return source
    return compile(source)


def _key(source: Any, assert_formats: bool) -> Any:
    if isinstance(source, dict | bool):
        return ("json", json.dumps(source, sort_keys=True), assert_formats)
    if isinstance(source, list | tuple):
        return ("choice", tuple(source))
    if isinstance(source, str | Grammar):
        return ("text", source)
    if isinstance(source, type):
        return ("model", source, assert_formats)
    raise ConstraintError(
        "compile() takes a JSON Schema (dict), a pydantic model class, a regex (str), a list "
        f"of choices or a Grammar, not {type(source).__name__}"
    )


def _build(source: Any, assert_formats: bool) -> Constraint:
    model = None
    if isinstance(source, type):
        from pydantic import BaseModel

        if not issubclass(source, BaseModel):
            raise ConstraintError(f"{source.__name__} is not a pydantic model")
        model, source = source, source.model_json_schema()
    if isinstance(source, dict | bool):
        ready = prepare(source, assert_formats=assert_formats)
        if ready is False:
            raise ConstraintError("the schema is `false`: no value satisfies it", path="")
        if ready is True:
            ready = {}  # any JSON value
        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(ready, overrides=GENERATE_JSON)
        except ValueError as exc:
            raise ConstraintError(f"cannot compile the schema: {exc}") from None
        return Constraint("json", source, _checked(grammar, source), source, model)
    if isinstance(source, list | tuple):
        if not source or not all(isinstance(c, str) and c for c in source):
            raise ConstraintError("choices must be a non-empty list of non-empty strings")
        text = "start: " + " | ".join(json.dumps(c) for c in source)
        grammar = _checked(llguidance.LLMatcher.grammar_from_lark(text), source)
        return Constraint("choice", list(source), grammar)
    if isinstance(source, Grammar):
        text = source.text
        if source.syntax == "gbnf":
            from llguidance.gbnf_to_lark import gbnf_to_lark

            try:
                text = gbnf_to_lark(source.text)
            except Exception as exc:
                raise ConstraintError(f"the GBNF grammar does not parse: {exc}") from None
        elif source.syntax != "lark":
            raise ConstraintError(f"grammar syntax {source.syntax!r}: use 'lark' or 'gbnf'")
        grammar = _checked(llguidance.LLMatcher.grammar_from_lark(text), source.text)
        return Constraint("grammar", source, grammar)
    try:
        re.compile(source)
    except re.error as exc:
        raise ConstraintError(f"the regex {source!r} does not compile: {exc}") from None
    grammar = _checked(llguidance.LLMatcher.grammar_from_regex(source), source)
    return Constraint("regex", source, grammar)


def _checked(grammar: str, source: Any) -> str:
    check = llguidance.LLMatcher.validate_grammar_with_warnings
    failed, messages = check(grammar, byte_tokenizer())
    if failed:
        raise ConstraintError(f"cannot enforce {str(source)[:80]!r}: {messages[0]}")
    for message in messages:
        log.warning("constraint %s: %s", str(source)[:60], message)
    return grammar
