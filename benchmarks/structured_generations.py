"""100 generations against 20 varied JSON Schemas on the embedded models: every result
validates, or ends in the clear error (StructuredOutputError); nothing else.

Each schema is written here and exercises something different (nested objects, arrays with
min/maxItems, enums, anyOf, recursion through $ref, patterns, bounded numbers, optional fields,
string lengths, a date format, const, oneOf, additionalProperties, nullable fields, prefixItems,
integer multiples, pydantic-like $defs...). Five prompts per schema; each goes through
`hearth.generate(model, prompt, schema=...)` at temperature 0 with its default retries, on
`local:smollm2` and, where its GGUF is present, `local:qwen2.5-coder-0.5b`. An answer counts as
valid only when jsonschema (not hearth) validates it again here.

    python benchmarks/structured_generations.py                       # both models
    python benchmarks/structured_generations.py --models smollm2 --prompts 1   # 20, quick

Claim (from the structured-outputs issue): every one of the generations validates or raises
StructuredOutputError (other outcomes: 0).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import Any

from common import markdown_table, verdict, write_result

NAME = {"type": "string", "minLength": 1, "maxLength": 40}

SCHEMAS: list[tuple[str, dict]] = [
    ("flat object, required and optional",
     {"type": "object", "properties": {"name": NAME, "age": {"type": "integer"},
                                       "nickname": {"type": "string"}},
      "required": ["name", "age"]}),
    ("nested objects",
     {"type": "object", "properties": {
         "company": NAME,
         "address": {"type": "object", "properties": {
             "street": {"type": "string"}, "city": NAME,
             "geo": {"type": "object", "properties": {"lat": {"type": "number"},
                                                      "lon": {"type": "number"}},
                     "required": ["lat", "lon"]}},
                     "required": ["street", "city", "geo"]}},
      "required": ["company", "address"]}),
    ("array with minItems / maxItems",
     {"type": "object", "properties": {"tags": {"type": "array", "items": NAME,
                                                "minItems": 2, "maxItems": 4}},
      "required": ["tags"]}),
    ("enum", {"type": "object", "properties": {
        "sentiment": {"enum": ["positive", "negative", "neutral"]},
        "confidence": {"enum": ["low", "medium", "high"]}},
        "required": ["sentiment", "confidence"]}),
    ("anyOf", {"type": "object", "properties": {
        "id": {"anyOf": [{"type": "integer"},
                         {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{3}$"}]},
        "label": NAME}, "required": ["id", "label"]}),
    ("recursive $ref (a tree)",
     {"$defs": {"node": {"type": "object", "properties": {
         "name": NAME,
         "children": {"type": "array", "maxItems": 3, "items": {"$ref": "#/$defs/node"}}},
         "required": ["name", "children"]}},
      "$ref": "#/$defs/node"}),
    ("pattern", {"type": "object", "properties": {
        "sku": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{4}$"},
        "phone": {"type": "string", "pattern": "^\\+[0-9]{7,12}$"}},
        "required": ["sku", "phone"]}),
    ("numbers with bounds", {"type": "object", "properties": {
        "temperature_c": {"type": "number", "minimum": -50, "maximum": 60},
        "humidity": {"type": "integer", "minimum": 0, "maximum": 100},
        "wind": {"type": "number", "exclusiveMinimum": 0, "maximum": 200}},
        "required": ["temperature_c", "humidity", "wind"]}),
    ("only optional fields", {"type": "object", "properties": {
        "title": {"type": "string"}, "year": {"type": "integer"}, "rating": {"type": "number"}},
        "additionalProperties": False}),
    ("strings with length", {"type": "object", "properties": {
        "code": {"type": "string", "minLength": 4, "maxLength": 4},
        "headline": {"type": "string", "minLength": 10, "maxLength": 60}},
        "required": ["code", "headline"]}),
    ("date format", {"type": "object", "properties": {
        "event": NAME, "date": {"type": "string", "format": "date"}},
        "required": ["event", "date"]}),
    ("const and boolean", {"type": "object", "properties": {
        "version": {"const": 2}, "enabled": {"type": "boolean"}, "name": NAME},
        "required": ["version", "enabled", "name"]}),
    ("oneOf of tagged objects", {"oneOf": [
        {"type": "object", "properties": {"kind": {"const": "circle"},
                                          "radius": {"type": "number", "minimum": 0}},
         "required": ["kind", "radius"], "additionalProperties": False},
        {"type": "object", "properties": {"kind": {"const": "rect"},
                                          "w": {"type": "number", "minimum": 0},
                                          "h": {"type": "number", "minimum": 0}},
         "required": ["kind", "w", "h"], "additionalProperties": False}]}),
    ("map with additionalProperties", {"type": "object", "properties": {
        "scores": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0,
                                                              "maximum": 100},
                   "maxProperties": 5}},
        "required": ["scores"]}),
    ("nullable field", {"type": "object", "properties": {
        "name": NAME, "middle_name": {"type": ["string", "null"]},
        "email": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
        "required": ["name", "middle_name", "email"]}),
    ("prefixItems tuple", {"type": "object", "properties": {
        "point": {"type": "array", "prefixItems": [{"type": "number"}, {"type": "number"},
                                                   {"type": "string"}],
                  "items": False}},
        "required": ["point"]}),
    ("array of objects", {"type": "object", "properties": {
        "items": {"type": "array", "minItems": 1, "maxItems": 5, "items": {
            "type": "object", "properties": {"product": NAME,
                                             "qty": {"type": "integer", "minimum": 1},
                                             "price": {"type": "number", "minimum": 0}},
            "required": ["product", "qty", "price"]}}},
        "required": ["items"]}),
    ("integer multipleOf", {"type": "object", "properties": {
        "minutes": {"type": "integer", "multipleOf": 15, "minimum": 0, "maximum": 240},
        "room": {"type": "integer", "minimum": 100, "maximum": 999}},
        "required": ["minutes", "room"]}),
    ("pydantic-like $defs", {
        "$defs": {"Address": {"type": "object", "properties": {"city": NAME, "zip": {
            "type": "string", "pattern": "^[0-9]{5}$"}}, "required": ["city", "zip"]},
                  "Role": {"enum": ["admin", "editor", "viewer"]}},
        "type": "object", "properties": {"user": NAME, "role": {"$ref": "#/$defs/Role"},
                                         "home": {"$ref": "#/$defs/Address"},
                                         "work": {"anyOf": [{"$ref": "#/$defs/Address"},
                                                            {"type": "null"}]}},
        "required": ["user", "role", "home", "work"]}),
    ("top-level array of enums", {"type": "array", "minItems": 1, "maxItems": 3,
                                  "items": {"enum": ["red", "green", "blue", "yellow"]}}),
]  # fmt: skip

# five prompts per schema: same request worded differently, with different subjects
PROMPTS = [
    "Fill in the fields for this: {topic}.",
    "Produce an example for {topic}.",
    "Here is a request: {topic}. Reply in the required format.",
    "I need structured data about {topic}.",
    "Give me one record for {topic}, nothing else.",
]
TOPICS = [
    "a new employee", "a software company in Berlin", "a blog post about gardening",
    "a customer review of a blender", "an inventory item", "a family tree of three people",
    "a product and its support phone number", "today's weather in Oslo", "a movie",
    "a news headline about science", "a concert next spring", "a feature flag",
    "a drawing shape", "exam results of three students", "a contact person",
    "a GPS point with a label", "a grocery order", "a meeting booking", "a user account",
    "my favourite colours",
]  # fmt: skip


def run_model(spec: str, prompts: int, max_tokens: int) -> dict:
    import jsonschema

    from hearth import generate, llm
    from hearth.errors import StructuredOutputError
    from hearth.structured import compile as compile_constraint

    model = llm.load(spec)
    counts: Counter = Counter()
    per_schema: dict[str, Counter] = {}
    others, errors, seconds = [], [], []
    for (title, schema), topic in zip(SCHEMAS, TOPICS, strict=True):
        per_schema[title] = Counter()
        # formats are asserted (generation and the check here): "a date" must be a date
        constraint = compile_constraint(schema, assert_formats=True)
        checker = jsonschema.Draft202012Validator(
            schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )
        for template in PROMPTS[:prompts]:
            prompt = template.format(topic=topic)
            started = time.perf_counter()
            try:
                value = generate(model, prompt, schema=constraint, max_tokens=max_tokens)
                found = jsonschema.exceptions.best_match(checker.iter_errors(value))
                problem = None if found is None else found.message
                outcome = "valid" if problem is None else "returned invalid"
                if problem:
                    others.append({"schema": title, "prompt": prompt, "problem": problem})
            except StructuredOutputError as exc:
                outcome = "StructuredOutputError"
                errors.append({"schema": title, "prompt": prompt, "error": str(exc)[:200]})
            except Exception as exc:  # must not happen: counted and shown
                outcome = "other exception"
                others.append({"schema": title, "prompt": prompt,
                               "error": f"{type(exc).__name__}: {str(exc)[:200]}"})  # fmt: skip
            seconds.append(time.perf_counter() - started)
            counts[outcome] += 1
            per_schema[title][outcome] += 1
            print(f"  {spec} | {title} | {outcome} ({seconds[-1]:.1f} s)", flush=True)
    return {
        "generations": sum(counts.values()),
        "counts": dict(counts),
        "per_schema": {k: dict(v) for k, v in per_schema.items()},
        "errors": errors,
        "others": others,
        "seconds_median": sorted(seconds)[len(seconds) // 2],
        "seconds_total": sum(seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        default="smollm2,qwen2.5-coder-0.5b",
        help="embedded model names (local:...), comma-separated; NAME:N asks "
        "N prompts per schema of that model",
    )
    parser.add_argument("--prompts", type=int, default=5, help="prompts per schema (1-5)")
    parser.add_argument("--max-tokens", type=int, default=256)
    args = parser.parse_args()  # fmt: skip

    from hearth import llm
    from hearth.structured import compile as compile_constraint

    for _title, schema in SCHEMAS:  # every schema must compile: they are the test, not a probe
        compile_constraint(schema)
    started = time.perf_counter()
    results: dict[str, Any] = {}
    for entry in args.models.split(","):
        name, _, count = entry.partition(":")
        try:
            llm.embedded_path(name)
        except Exception as exc:
            results[name] = {"skipped": f"{type(exc).__name__}: {str(exc)[:160]}"}
            print(f"{name}: skipped ({exc})")
            continue
        results[name] = run_model(f"local:{name}", int(count or args.prompts), args.max_tokens)

    rows, claims = [], {}
    for name, r in results.items():
        if "skipped" in r:
            rows.append([name, 0, "-", "-", "-", r["skipped"][:60]])
            continue
        c = r["counts"]
        other = c.get("other exception", 0) + c.get("returned invalid", 0)
        rows.append([name, r["generations"], c.get("valid", 0), c.get("StructuredOutputError", 0),
                     other, f"{r['seconds_median']:.1f} s median"])  # fmt: skip
        claims[f"{name}: every generation validates or raises StructuredOutputError"] = other == 0
    table = markdown_table(
        ["model", "generations", "valid", "StructuredOutputError", "anything else", "time"], rows
    )
    print(table)
    for claim, ok in claims.items():
        print(f"{claim}: {verdict(ok)}")
    path = write_result(
        "structured_generations",
        {"settings": vars(args), "schemas": [t for t, _ in SCHEMAS], "results": results,
         "table": table, "claims": claims, "seconds": time.perf_counter() - started},
    )  # fmt: skip
    print(f"wrote {path} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
