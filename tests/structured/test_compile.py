"""compile(): every kind of source, accepts() on whole texts (JSON whitespace as JSON allows),
schema keywords refused with their path, draft 7 and 2020-12, formats, recursion, the cache."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, Field

from hearth.errors import ConstraintError, StructuredOutputError
from hearth.structured import compile, gbnf, lark

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "age": {"type": "integer", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}


class Person(BaseModel):
    name: str = Field(min_length=1)
    age: int = Field(ge=0)


def test_json_schema_accepts_exactly_the_valid_documents():
    c = compile(PERSON)
    good = {"name": "Ada", "age": 36, "tags": ["math"]}
    assert c.accepts(json.dumps(good))  # ", " and ": " separators
    assert c.accepts(json.dumps(good, separators=(",", ":")))
    assert c.accepts(json.dumps(good, indent=2) + "\n")
    assert not c.accepts('{"name": "Ada"}')  # age missing
    assert not c.accepts('{"name": "Ada", "age": -1}')
    assert not c.accepts('{"name": "", "age": 1}')
    assert not c.accepts('{"name": "Ada", "age": 1, "x": 0}')
    assert not c.accepts('{"name": "Ada", "age": 1, "tags": ["a", "b", "c", "d"]}')
    assert not c.accepts('{"name": "Ada", "age": 1.5}')
    assert not c.accepts('{"name": "Ada", "age": 1')  # cut short
    # as JSON and JSON Schema allow: escapes, and 36.0 is the integer 36
    assert c.accepts('{"name": "\\u00c1da", "age": 36.0}')
    assert not c.accepts('{"name": "Ada", "age": 36.5}')


def test_a_pydantic_model_compiles_and_parses_to_an_instance():
    c = compile(Person)
    assert c.accepts('{"name": "Ada", "age": 36}')
    person = c.parse('{"name": "Ada", "age": 36}')
    assert isinstance(person, Person) and person.age == 36
    with pytest.raises(StructuredOutputError, match="Person"):
        c.parse('{"name": "Ada", "age": -3}')


def test_regex_choices_and_grammars():
    date = compile(r"\d{4}-\d{2}-\d{2}")
    assert date.accepts("2024-05-01") and not date.accepts("2024-5-1")
    assert not date.accepts("2024-05-01 ")  # the whole text must match
    label = compile(["positive", "negative", "neutral"])
    assert label.accepts("neutral") and not label.accepts("neutra") and not label.accepts("x")
    sums = compile(lark('start: NUM ("+" NUM)*\nNUM: /[0-9]+/'))
    assert sums.accepts("1+22+3") and not sums.accepts("1++2")
    yes_no = compile(gbnf('root ::= "yes" | "no"'))
    assert yes_no.accepts("yes") and not yes_no.accepts("maybe")


def test_refs_recursion_and_anyof():
    tree = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "value": {"type": "integer"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                },
                "required": ["value"],
            }
        },
        "$ref": "#/$defs/node",
    }
    c = compile(tree)
    assert c.accepts('{"value": 1, "children": [{"value": 2, "children": [{"value": 3}]}]}')
    assert not c.accepts('{"value": 1, "children": [{"children": []}]}')
    either = compile({"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 2}]})
    assert either.accepts("12") and either.accepts('"ab"') and not either.accepts('"abc"')


@pytest.mark.parametrize(
    ("schema", "keyword", "path"),
    [
        ({"type": "array", "uniqueItems": True}, "uniqueItems", "/uniqueItems"),
        (
            {"properties": {"a": {"properties": {"b": {"not": {"type": "integer"}}}}}},
            "not",
            "/properties/a/properties/b/not",
        ),
        ({"anyOf": [{}, {"contains": {"const": 1}}]}, "contains", "/anyOf/1/contains"),
        ({"$defs": {"x/y": {"if": {}, "then": {}}}}, "if", "/$defs/x~1y/if"),
    ],
)
def test_a_keyword_that_cannot_be_enforced_is_refused_with_its_path(schema, keyword, path):
    with pytest.raises(ConstraintError) as caught:
        compile(schema)
    assert caught.value.keyword == keyword and caught.value.path == path
    assert keyword in str(caught.value)


def test_keywords_rewritten_into_enforceable_ones_keep_their_meaning():
    def check(schema, good, bad):
        c = compile(schema)
        for text in good:
            assert c.accepts(text), (schema, text)
        for text in bad:
            assert not c.accepts(text), (schema, text)

    # "if a is there, b must be too"; draft 7's `dependencies` is the same thing
    needs = {"properties": {"b": {}, "a": {}}, "dependentRequired": {"a": ["b"]}}
    check(needs, ['{"b": 1, "a": 2}', '{"b": 1}', "{}"], ['{"a": 2}'])
    old = {"$schema": "http://json-schema.org/draft-07/schema#", **needs}
    old["dependencies"] = old.pop("dependentRequired")
    check(old, ['{"b": 1, "a": 2}'], ['{"a": 2}'])
    check({"properties": {"a": {}}, "dependentSchemas": {"a": {"maxProperties": 1}}},
          ['{"a": 1}', '{"x": 1, "y": 2}'], ['{"a": 1, "x": 2}'])  # fmt: skip
    # unevaluatedProperties with allOf children that only list properties
    both = {"allOf": [{"properties": {"x": {}}}], "properties": {"y": {}},
            "unevaluatedProperties": False}  # fmt: skip
    # (keys come in the order generation writes them: llguidance fixes one order per object)
    check(both, ['{"x": 2, "y": 1}', '{"y": 1}'], ['{"y": 1, "z": 2}'])
    check({"prefixItems": [{}], "allOf": [{"prefixItems": [{}, {}]}], "unevaluatedItems": False},
          ["[1, 2]"], ["[1, 2, 3]"])  # fmt: skip
    check({"propertyNames": False}, ["{}"], ['{"a": 1}'])
    check({"not": {"type": ["string", "number"]}}, ["null", "[]", "true"], ['"a"', "1", "1.5"])


def test_keywords_whose_meaning_depends_on_the_instance_stay_refused():
    with pytest.raises(ConstraintError) as caught:  # which branch evaluated `a` is not known
        compile({"anyOf": [{"properties": {"a": {}}}, {}], "unevaluatedProperties": False})
    assert caught.value.keyword == "unevaluatedProperties"
    with pytest.raises(ConstraintError):  # not 1 allows 1.5: not expressible without `not`
        compile({"not": {"type": "integer"}})


def test_no_op_keywords_pass():
    c = compile({"type": "array", "uniqueItems": False, "then": {"minItems": 9}})
    assert c.accepts("[1, 1]")


def test_draft_7_tuple_items_and_ref_siblings():
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "array",
        "items": [{"type": "integer"}, {"type": "string"}],
        "additionalItems": False,
    }
    c = compile(schema)
    assert c.accepts('[1, "a"]') and c.accepts("[1]") and not c.accepts('[1, "a", 2]')
    assert not c.accepts('["a"]')
    ref = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "definitions": {"n": {"type": "integer"}},
        "properties": {"x": {"$ref": "#/definitions/n", "maximum": 1}},
    }
    assert compile(ref).accepts('{"x": 5}')  # draft 7: $ref's siblings are ignored


def test_format_is_an_annotation_unless_asserted():
    schema = {"type": "string", "format": "date"}
    assert compile(schema).accepts('"not a date"')
    strict = compile(schema, assert_formats=True)
    assert strict.accepts('"2024-02-29"') and not strict.accepts('"not a date"')
    with pytest.raises(ConstraintError) as caught:
        compile({"properties": {"p": {"format": "json-pointer"}}}, assert_formats=True)
    assert (caught.value.keyword, caught.value.path) == ("format", "/properties/p/format")


def test_compiled_constraints_are_cached():
    assert compile(dict(PERSON)) is compile(json.loads(json.dumps(PERSON)))
    assert compile(["a", "b"]) is compile(("a", "b"))


def test_bad_sources_say_what_is_wrong():
    with pytest.raises(ConstraintError, match="regex"):
        compile("(unclosed")
    with pytest.raises(ConstraintError, match="choices"):
        compile([])
    with pytest.raises(ConstraintError, match="takes a JSON Schema"):
        compile(3.5)
    with pytest.raises(ConstraintError, match="/properties/a"):
        compile({"properties": {"a": 7}})


def test_parse_validates_with_jsonschema():
    c = compile(PERSON)
    assert c.parse('{"name": "Ada", "age": 3}') == {"name": "Ada", "age": 3}
    with pytest.raises(StructuredOutputError, match="not JSON"):
        c.parse("{name: Ada}")
    with pytest.raises(StructuredOutputError, match="/age"):
        c.parse('{"name": "Ada", "age": -2}')
