"""JSON Schema made ready to enforce: the draft read from `$schema` (2020-12 unless it names
draft 7 or older, whose forms are rewritten to 2020-12's), `format` kept only when asked to
assert it, keywords that constrain nothing dropped, and every keyword that token masks cannot
enforce refused at compile time with its JSON path.

Hand-written: the walk is small and specific to what llguidance enforces (its own error names
a keyword but not where it is; measured keyword by keyword in tests/structured).
"""

from __future__ import annotations

import copy
from typing import Any

from hearth.errors import ConstraintError

OLD_DRAFTS = ("draft-07", "draft-06", "draft-04")
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"

# Keywords masks cannot enforce (a token mask is decided left to right; these need the whole
# value, or a second look at it): refused with their path unless their value is a no-op.
UNENFORCEABLE = {
    "uniqueItems": "items that differ from each other",
    "contains": "an array item matching a schema somewhere",
    "minContains": "a count of matching items",
    "maxContains": "a count of matching items",
    "dependentRequired": "properties required by other properties",
    "dependentSchemas": "schemas applied when a property is present",
    "dependencies": "properties or schemas required by other properties",
    "propertyNames": "a schema for property names",
    "unevaluatedItems": "items no other keyword evaluated",
    "unevaluatedProperties": "properties no other keyword evaluated",
    "not": "a schema that must not match",
    "if": "conditional schemas",
    "$dynamicRef": "dynamic references",
    "$recursiveRef": "recursive references",
}

# formats llguidance enforces when asked to assert them (measured in tests/structured)
ASSERTED_FORMATS = {
    "date", "time", "date-time", "duration", "email", "hostname", "ipv4", "ipv6", "uri", "uuid",
}  # fmt: skip

COUNTS = (
    "minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties",
    "minContains", "maxContains",
)  # fmt: skip

# where subschemas sit: keyword -> "one" (a schema), "list" (schemas), "map" (name -> schema)
SUBSCHEMAS = {
    "properties": "map",
    "patternProperties": "map",
    "$defs": "map",
    "definitions": "map",
    "dependentSchemas": "map",
    "additionalProperties": "one",
    "items": "one",
    "additionalItems": "one",
    "contains": "one",
    "propertyNames": "one",
    "not": "one",
    "if": "one",
    "then": "one",
    "else": "one",
    "unevaluatedItems": "one",
    "unevaluatedProperties": "one",
    "contentSchema": "one",
    "allOf": "list",
    "anyOf": "list",
    "oneOf": "list",
    "prefixItems": "list",
}


def prepare(schema: Any, *, assert_formats: bool = False) -> dict[str, Any] | bool:
    """A copy of `schema` that the JSON compiler enforces exactly, or ConstraintError naming
    the first keyword it could not enforce and where (a JSON pointer)."""
    if isinstance(schema, bool):
        return schema
    if not isinstance(schema, dict):
        raise ConstraintError(
            f"a JSON Schema is an object or a boolean, not {type(schema).__name__}", path=""
        )
    old = any(d in str(schema.get("$schema", "")) for d in OLD_DRAFTS)
    ready = _walk(copy.deepcopy(schema), "", old=old, assert_formats=assert_formats)
    if old:  # now in 2020-12's terms (the compiler reads `$schema` too)
        ready["$schema"] = DRAFT_2020_12
    return ready


def _walk(node: Any, path: str, *, old: bool, assert_formats: bool) -> Any:
    if isinstance(node, bool):
        return node
    if not isinstance(node, dict):
        raise ConstraintError(
            f"expected a schema (an object or a boolean) at {path or '/'}, "
            f"found {type(node).__name__}",
            path=path,
        )
    if old:
        _from_old_draft(node)
    elif isinstance(node.get("items"), list):  # draft 7's tuple form in a 2020-12 schema
        _from_old_draft(node)
    if not assert_formats:
        node.pop("format", None)  # 2020-12: an annotation unless asked to assert
    elif "format" in node and node["format"] not in ASSERTED_FORMATS:
        raise ConstraintError(
            f"format {node['format']!r} at {path or '/'} cannot be asserted (known: "
            f"{', '.join(sorted(ASSERTED_FORMATS))}); compile without assert_formats to treat "
            "it as an annotation",
            keyword="format",
            path=f"{path}/format",
        )
    _drop_no_ops(node)
    for keyword in COUNTS:  # 2.0 is the integer 2 in JSON Schema
        if isinstance(node.get(keyword), float) and node[keyword].is_integer():
            node[keyword] = int(node[keyword])
    for keyword in node:
        if keyword in UNENFORCEABLE:
            raise ConstraintError(
                f"JSON Schema keyword {keyword!r} at {path or '/'} cannot be enforced while "
                f"generating ({UNENFORCEABLE[keyword]}); remove it or check it after generation",
                keyword=keyword,
                path=f"{path}/{keyword}",
            )
    for keyword, shape in SUBSCHEMAS.items():
        if keyword not in node:
            continue
        value, here = node[keyword], f"{path}/{keyword}"
        if shape == "one":
            node[keyword] = _walk(value, here, old=old, assert_formats=assert_formats)
        elif shape == "list":
            if not isinstance(value, list):
                raise ConstraintError(f"{here} must be a list of schemas", path=here)
            node[keyword] = [
                _walk(v, f"{here}/{i}", old=old, assert_formats=assert_formats)
                for i, v in enumerate(value)
            ]
        else:
            if not isinstance(value, dict):
                raise ConstraintError(f"{here} must map names to schemas", path=here)
            node[keyword] = {
                k: _walk(v, f"{here}/{_pointer(k)}", old=old, assert_formats=assert_formats)
                for k, v in value.items()
            }
    return node


def _from_old_draft(node: dict[str, Any]) -> None:
    """Draft 7 forms in 2020-12 terms: tuple `items` + `additionalItems` become `prefixItems`
    + `items`, and `$ref` hides its siblings (but not the definitions it may point into)."""
    if "$ref" in node:
        for key in [k for k in node if k not in ("$ref", "$defs", "definitions", "$schema")]:
            del node[key]
        return
    items = node.get("items")
    if isinstance(items, list):
        node["prefixItems"] = items
        if "additionalItems" in node:
            node["items"] = node.pop("additionalItems")
        else:
            del node["items"]
    else:
        node.pop("additionalItems", None)  # ignored beside a single `items` schema


def _drop_no_ops(node: dict[str, Any]) -> None:
    """Keywords whose value constrains nothing, or that the spec ignores where they stand."""
    if node.get("uniqueItems") is False:
        del node["uniqueItems"]
    for key in ("unevaluatedItems", "unevaluatedProperties", "propertyNames"):
        if node.get(key) in (True, {}):
            del node[key]
    for key in ("dependentRequired", "dependentSchemas", "dependencies"):
        if node.get(key) == {}:
            del node[key]
    if "contains" not in node:  # min/maxContains alone are ignored
        node.pop("minContains", None)
        node.pop("maxContains", None)
    if "if" not in node:  # then/else without if are ignored
        node.pop("then", None)
        node.pop("else", None)
    elif "then" not in node and "else" not in node:
        del node["if"]  # an `if` with no branch constrains nothing


def _pointer(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")
