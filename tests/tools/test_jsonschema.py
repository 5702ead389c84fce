"""The JSON Schema validator behind Tool.from_schema: messages, refusals, and agreement with
the reference implementation (the ``jsonschema`` package, draft 2020-12) on generated cases."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from towerpy.tools._jsonschema import SchemaValidator, canonical


def errors(schema: Any, value: Any) -> list[str]:
    return SchemaValidator(schema, "tool 't'").errors(value)


def test_messages_name_the_location_and_the_problem() -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "minLength": 2},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
            "units": {"enum": ["c", "f"]},
            "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
            "where": {
                "type": "object",
                "properties": {"lat": {"type": "number"}},
                "required": ["lat"],
            },
        },
        "required": ["city"],
        "additionalProperties": False,
    }
    assert errors(schema, {"city": "Oslo", "days": 3}) == []
    assert errors(schema, {}) == ["city: field required"]
    assert errors(schema, {"city": "X"}) == ["city: must have at least 2 characters, got 1"]
    assert errors(schema, {"city": "Rome", "days": 9}) == ["days: must be <= 7, got 9"]
    assert errors(schema, {"city": "Rome", "days": True}) == [
        "days: expected integer, got boolean True"
    ]
    assert errors(schema, {"city": "Rome", "units": "k"}) == [
        "units: must be one of 'c', 'f', got 'k'"
    ]
    assert errors(schema, {"city": "Rome", "tags": ["a", 1]}) == [
        "tags.1: expected string, got integer 1"
    ]
    assert errors(schema, {"city": "Rome", "tags": ["a", "a"]}) == [
        "tags.1: items must be unique; this one repeats"
    ]
    assert errors(schema, {"city": "Rome", "where": {}}) == ["where.lat: field required"]
    assert errors(schema, {"city": "Rome", "extra": 1}) == ["extra: extra inputs are not permitted"]
    assert errors(schema, []) == ["(arguments): expected object, got array []"]


def test_json_equality_tells_booleans_from_numbers() -> None:
    assert canonical(1) == canonical(1.0)
    assert canonical(True) != canonical(1)
    assert canonical({"a": [1, 2.0]}) == canonical({"a": [1.0, 2]})
    assert errors({"enum": [1, "x"]}, True) == ["(arguments): must be one of 1, 'x', got True"]
    assert errors({"const": False}, 0) == ["(arguments): must be False, got 0"]
    assert errors({"type": "integer"}, 2.0) == []  # JSON Schema: an integral number


def test_local_references_definitions_and_anchors_resolve() -> None:
    tree = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
                "required": ["name"],
            },
            "name~/odd": {"$anchor": "odd", "type": "string"},
        },
        "$ref": "#/$defs/node",
        "properties": {"name": {"$ref": "#odd"}, "alias": {"$ref": "#/$defs/name~0~1odd"}},
    }
    assert errors(tree, {"name": "root", "children": [{"name": "leaf"}]}) == []
    assert errors(tree, {"name": "root", "children": [{}]}) == ["children.0.name: field required"]
    assert errors(tree, {"name": 1}) == ["name: expected string, got integer 1"]
    assert errors(tree, {"name": "a", "alias": 2}) == ["alias: expected string, got integer 2"]
    draft7 = {
        "definitions": {"n": {"type": "integer"}},
        "properties": {"n": {"$ref": "#/definitions/n"}},
    }
    assert errors(draft7, {"n": "x"}) == ["n: expected integer, got string 'x'"]


def test_draft_7_spellings_are_read() -> None:
    assert errors({"type": "number", "maximum": 5, "exclusiveMaximum": True}, 5) == [
        "(arguments): must be < 5, got 5"
    ]
    positional = {"items": [{"type": "string"}], "additionalItems": {"type": "integer"}}
    assert errors(positional, ["a", 1, 2]) == []
    assert errors(positional, ["a", "b"]) == ["1: expected integer, got string 'b'"]
    dependencies = {"dependencies": {"card": ["cvc"], "gift": {"required": ["to"]}}}
    assert errors(dependencies, {"card": 1}) == ["cvc: field required (when 'card' is given)"]
    assert errors(dependencies, {"gift": 1}) == ["to: field required"]


def test_format_is_an_annotation_and_unknown_keywords_are_ignored() -> None:
    assert errors({"type": "string", "format": "email", "x-ui": {"widget": 1}}, "nope") == []


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"unevaluatedProperties": False}, "'unevaluatedProperties' is not supported"),
        ({"items": {"$dynamicRef": "#x"}}, "'$dynamicRef' is not supported"),
        ({"$ref": "https://example.com/s.json"}, "points outside the schema"),
        ({"$ref": "#/$defs/missing"}, "points to nothing"),
        ({"$ref": "#nowhere"}, "no $anchor named 'nowhere'"),
        ({"pattern": "("}, "invalid pattern"),
        ({"properties": {"a": 3}}, "a schema must be an object or a boolean"),
        ({"enum": "abc"}, "'enum' must be a list"),
        ({"required": "a"}, "'required' must be a list of names"),
        ({"type": 3}, "'type' must be a name"),
    ],
)
def test_schemas_it_cannot_honour_are_refused_at_compile_time(
    schema: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValueError, match="tool 't': invalid parameters schema") as caught:
        SchemaValidator(schema, "tool 't'")
    assert problem in str(caught.value)


def test_a_reference_cycle_stops_instead_of_recursing_forever() -> None:
    loop = {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}
    assert errors(loop, 1) == ["(arguments): the value is nested too deeply for the schema"]


def test_float_multiples_allow_binary_rounding() -> None:
    assert errors({"multipleOf": 0.1}, 0.3) == []
    assert errors({"multipleOf": 0.1}, 0.35) == ["(arguments): must be a multiple of 0.1, got 0.35"]
    assert errors({"multipleOf": 3}, 9) == []
    assert errors({"multipleOf": 3}, 10) == ["(arguments): must be a multiple of 3, got 10"]


# agreement with the reference implementation, on schemas drawn from what tool schemas use

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.sampled_from([0.5, -1.5, 2.0, 3.0]),
    st.sampled_from(["", "a", "ab", "abc", "B1", "zz"]),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["a", "b", "c", "x1"]), inner, max_size=3),
    ),
    max_leaves=8,
)
_TYPES = st.sampled_from(["null", "boolean", "integer", "number", "string", "array", "object"])
_COUNT = st.integers(0, 3)


def _keywords(schema: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    names = st.sampled_from(["a", "b", "c"])
    options: dict[str, st.SearchStrategy[Any]] = {
        "type": st.one_of(_TYPES, st.lists(_TYPES, min_size=1, max_size=2, unique=True)),
        "enum": st.lists(_SCALARS, min_size=1, max_size=3),
        "const": _SCALARS,
        "minimum": st.integers(-3, 3),
        "maximum": st.integers(-3, 3),
        "exclusiveMinimum": st.integers(-3, 3),
        "exclusiveMaximum": st.integers(-3, 3),
        "multipleOf": st.integers(1, 3),
        "minLength": _COUNT,
        "maxLength": _COUNT,
        "pattern": st.sampled_from(["^a", "b$", "[0-9]", "^$"]),
        "minItems": _COUNT,
        "maxItems": _COUNT,
        "uniqueItems": st.booleans(),
        "items": schema,
        "prefixItems": st.lists(schema, max_size=2),
        "contains": schema,
        "minContains": _COUNT,
        "maxContains": _COUNT,
        "minProperties": _COUNT,
        "maxProperties": _COUNT,
        "required": st.lists(names, max_size=2, unique=True),
        "properties": st.dictionaries(names, schema, max_size=2),
        "patternProperties": st.dictionaries(st.sampled_from(["^a", "1$"]), schema, max_size=1),
        "additionalProperties": schema,
        "propertyNames": schema,
        "dependentRequired": st.dictionaries(names, st.lists(names, max_size=2, unique=True)),
        "dependentSchemas": st.dictionaries(names, schema, max_size=1),
        "allOf": st.lists(schema, min_size=1, max_size=2),
        "anyOf": st.lists(schema, min_size=1, max_size=2),
        "oneOf": st.lists(schema, min_size=1, max_size=2),
        "not": schema,
        "if": schema,
        "then": schema,
        "else": schema,
    }
    return st.lists(st.sampled_from(sorted(options)), max_size=3, unique=True).flatmap(
        lambda keys: st.fixed_dictionaries({key: options[key] for key in keys})
    )


_SCHEMAS: st.SearchStrategy[Any] = st.recursive(
    st.one_of(st.booleans(), st.just({})),
    _keywords,
    max_leaves=6,
)


@settings(deadline=None, max_examples=600)
@given(schema=_SCHEMAS, value=_VALUES)
def test_agrees_with_the_reference_implementation(schema: Any, value: Any) -> None:
    expected = Draft202012Validator(schema).is_valid(value)
    assert SchemaValidator(schema, "tool 't'").is_valid(value) is expected


@settings(deadline=None, max_examples=200)
@given(
    value=_VALUES, definitions=st.dictionaries(st.sampled_from(["p", "q"]), _SCHEMAS, min_size=1)
)
def test_references_agree_with_the_reference_implementation(
    value: Any, definitions: dict[str, Any]
) -> None:
    schema = {"$defs": definitions, "anyOf": [{"$ref": f"#/$defs/{name}"} for name in definitions]}
    expected = Draft202012Validator(schema).is_valid(value)
    assert SchemaValidator(schema, "tool 't'").is_valid(value) is expected


def test_bounds_combinators_and_conditionals() -> None:
    assert errors({"exclusiveMinimum": 2}, 2) == ["(arguments): must be > 2, got 2"]
    assert errors({"exclusiveMaximum": 2}, 2) == ["(arguments): must be < 2, got 2"]
    assert errors({"minimum": 2, "maximum": 2}, 2) == []
    assert errors({"oneOf": [{"type": "integer"}, {"minimum": 0}]}, 1) == [
        "(arguments): must match exactly one schema in oneOf, matches 2"
    ]
    assert errors({"anyOf": [{"type": "string"}, {"type": "null"}]}, 1) == [
        "(arguments): matches none of the schemas in anyOf, got 1"
    ]
    assert errors({"not": {"type": "string"}}, "a") == [
        "(arguments): must not match the schema in 'not', got 'a'"
    ]
    conditional = {
        "if": {"properties": {"kind": {"const": "card"}}},
        "then": {"required": ["number"]},
        "else": {"required": ["iban"]},
    }
    assert errors(conditional, {"kind": "card"}) == ["number: field required"]
    assert errors(conditional, {"kind": "bank"}) == ["iban: field required"]
    contains = {"contains": {"type": "integer"}, "minContains": 2, "maxContains": 3}
    assert errors(contains, [1, "a"]) == [
        "(arguments): must contain at least 2 matching items, got 1"
    ]
    assert errors(contains, [1, 2, 3, 4]) == [
        "(arguments): must contain at most 3 matching items, got 4"
    ]
    assert errors({"propertyNames": {"pattern": "^[a-z]+$"}}, {"Bad": 1}) == [
        "Bad: the property name 'Bad' is not allowed"
    ]
    assert errors(
        {"patternProperties": {"^n_": {"type": "number"}}, "additionalProperties": False},
        {"n_1": 1, "m": 2},
    ) == ["m: extra inputs are not permitted"]
