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
    _unevaluated_properties(node)  # before no-ops go: an `if` alone still evaluates
    _unevaluated_items(node)
    _drop_no_ops(node)
    _rewrite(node)
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
    dependencies = node.pop("dependencies", None)
    if isinstance(dependencies, dict):  # draft 7's one keyword is two in 2020-12
        for name, need in dependencies.items():
            keyword = "dependentRequired" if isinstance(need, list) else "dependentSchemas"
            node.setdefault(keyword, {})[name] = need
    elif dependencies is not None:
        node["dependencies"] = dependencies


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


# keywords that apply other schemas to the same instance ("in place"): properties or items they
# evaluate are invisible to a plain rewrite of unevaluatedProperties / unevaluatedItems
IN_PLACE = ("allOf", "anyOf", "oneOf", "not", "if", "then", "else", "$ref", "$dynamicRef",
            "$recursiveRef", "dependentSchemas", "dependentRequired", "dependencies",
            "unevaluatedItems", "unevaluatedProperties")  # fmt: skip
ALL_TYPES = ("null", "boolean", "object", "array", "string", "number")
MAX_DEPENDENCIES = 4  # each is a two-way choice in the grammar


def _rewrite(node: dict[str, Any]) -> None:
    """Unenforceable keywords rewritten into enforceable ones where that is exactly
    equivalent; whatever is left is refused by the caller."""
    _dependencies(node)
    _property_names(node)
    _not(node)


def _plain_children(node: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The allOf children when they are the only in-place applicator and have none of their
    own (then what they evaluate is known without the instance), else None."""
    if any(k in node for k in IN_PLACE if not k.startswith(("allOf", "unevaluated"))):
        return None
    children = node.get("allOf", [])
    if not all(isinstance(c, dict) and not any(k in c for k in IN_PLACE) for c in children):
        return None
    return children


def _unevaluated_properties(node: dict[str, Any]) -> None:
    if "unevaluatedProperties" not in node:
        return
    # additionalProperties evaluates every property the others did not
    if node["unevaluatedProperties"] in (True, {}) or "additionalProperties" in node:
        del node["unevaluatedProperties"]
        return
    children = _plain_children(node)
    if children is None or any("additionalProperties" in c or "patternProperties" in c
                               for c in children):  # fmt: skip
        return
    properties = node.setdefault("properties", {})
    for child in children:
        for name in child.get("properties", {}):
            properties.setdefault(name, True)
    node["additionalProperties"] = node.pop("unevaluatedProperties")


def _unevaluated_items(node: dict[str, Any]) -> None:
    if "unevaluatedItems" not in node:
        return
    children = _plain_children(node)
    if (
        node["unevaluatedItems"] in (True, {})
        or "items" in node
        or (children and any("items" in c for c in children))
    ):
        del node["unevaluatedItems"]  # `items` evaluates every item past prefixItems
        return
    if children is None:
        return
    longest = max(len(s.get("prefixItems", [])) for s in [node, *children])
    prefix = node.get("prefixItems", [])
    if longest:
        node["prefixItems"] = prefix + [True] * (longest - len(prefix))
    node["items"] = node.pop("unevaluatedItems")


def _dependencies(node: dict[str, Any]) -> None:
    """ "If property a is present, b must be too" (or schema S must hold) as a choice: a is
    absent, or it is there with its dependents (or S)."""
    required = node.get("dependentRequired", {})
    schemas = node.get("dependentSchemas", {})
    if not isinstance(required, dict) or not isinstance(schemas, dict):
        return
    if not required and not schemas or len(required) + len(schemas) > MAX_DEPENDENCIES:
        return
    clauses = []
    for name, needs in required.items():
        if not isinstance(needs, list):
            return
        present = {"required": [*needs, name]}  # llguidance writes them in this order
        clauses.append({"anyOf": [{"properties": {name: False}}, present]})
    for name, schema in schemas.items():
        present = {"allOf": [{"required": [name]}, schema]}
        clauses.append({"anyOf": [{"properties": {name: False}}, present]})
    node.pop("dependentRequired", None)
    node.pop("dependentSchemas", None)
    node["allOf"] = [*node.get("allOf", []), *clauses]


def _property_names(node: dict[str, Any]) -> None:
    names = node.get("propertyNames")
    if names is False:  # no name is allowed: only the empty object
        del node["propertyNames"]
        node["maxProperties"] = 0


def _not(node: dict[str, Any]) -> None:
    """`not` of a bare type list is the other types (not of "integer" alone is not: 1.5)."""
    negated = node.get("not")
    if negated is False:
        del node["not"]
        return
    if not isinstance(negated, dict) or set(negated) != {"type"}:
        return
    types = negated["type"] if isinstance(negated["type"], list) else [negated["type"]]
    if "integer" in types and "number" not in types:
        return
    left = [t for t in ALL_TYPES if t not in types]  # "number" left: integers too
    if "type" in node:
        given = node["type"] if isinstance(node["type"], list) else [node["type"]]
        left = [t for t in given if t in left or (t == "integer" and "number" in left)]
    if not left:
        return  # nothing satisfies it: left to be refused
    del node["not"]
    node["type"] = left


def _pointer(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")
