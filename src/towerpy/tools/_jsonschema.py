"""A JSON Schema validator for tool arguments (draft 2020-12), with no dependency.

`Tool.from_schema` validates a model's arguments against a schema that no Python signature
describes (an MCP server's ``inputSchema``, a hand-written schema). The core of towerpy depends
only on anyio, pydantic and typing-extensions, so this module implements the assertions of
draft 2020-12 that tool schemas use: ``type``, ``enum``, ``const``, the numeric, string, array
and object keywords, ``allOf``/``anyOf``/``oneOf``/``not``, ``if``/``then``/``else``, and local
``$ref`` (``#``, ``#/$defs/...``, ``#/definitions/...``, ``#anchor``). Draft 7 spellings that
tool schemas still carry are read too (``definitions``, ``dependencies``, ``items`` as a list
with ``additionalItems``, a boolean ``exclusiveMinimum``/``exclusiveMaximum``).

As the specification says, ``format`` is an annotation (not asserted) and unknown keywords are
ignored. Keywords whose meaning needs more than this (``unevaluatedProperties``,
``unevaluatedItems``, ``$dynamicRef``, ``$recursiveRef``, a ``$ref`` to another document) are
refused when the schema is compiled, so a tool never validates less than its schema says.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final, TypeGuard, final
from urllib.parse import unquote

from ..errors import InvalidToolArguments

__all__ = ["SchemaArguments", "SchemaValidator", "canonical"]

_UNSUPPORTED: Final = ("unevaluatedProperties", "unevaluatedItems", "$dynamicRef", "$recursiveRef")
# keywords whose value is a map of name -> schema, one schema, or a list of schemas
_MAPS: Final = ("properties", "patternProperties", "dependentSchemas", "$defs", "definitions")
_ONE: Final = (
    "additionalProperties",
    "propertyNames",
    "items",
    "additionalItems",
    "contains",
    "not",
    "if",
    "then",
    "else",
)
_LISTS: Final = ("allOf", "anyOf", "oneOf", "prefixItems", "items")
_MAX_DEPTH: Final = 256  # nested schemas a value may go through (a $ref cycle stops here)
_ERRORS_SHOWN: Final = 10


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _has_type(value: object, name: str) -> bool:
    if name == "integer":
        if isinstance(value, float):
            return value.is_integer()
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return _is_number(value)
    return _json_type(value) == name


def canonical(value: object) -> object:
    """A hashable key equal for two values exactly when JSON says they are equal.

    ``1`` and ``1.0`` are equal in JSON, ``true`` and ``1`` are not, and object key order does
    not matter.
    """
    if isinstance(value, bool) or value is None:
        return ("b", value)
    if isinstance(value, int):
        return ("n", value)
    if isinstance(value, float):
        return ("n", int(value)) if value.is_integer() else ("n", value)
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, list | tuple):
        return ("a", tuple(canonical(item) for item in value))
    if isinstance(value, dict):
        return ("o", frozenset((key, canonical(item)) for key, item in value.items()))
    return ("?", repr(value))


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _location(path: tuple[str | int, ...]) -> str:
    return ".".join(str(part) for part in path) or "(arguments)"


@final
class SchemaValidator:
    """Validates JSON values against one schema, compiled once.

    Args:
        schema: The JSON Schema (a dict, or a boolean schema).
        owner: Who the schema belongs to, for error messages (``"tool 'search'"``).

    Raises:
        ValueError: The schema is not a JSON Schema this validator can honour: a keyword it
            does not implement, a ``$ref`` it cannot resolve, an invalid ``pattern``, or a
            keyword whose value has the wrong type.
    """

    __slots__ = ("_anchors", "_canon", "_patterns", "_root", "owner")

    def __init__(self, schema: object, owner: str) -> None:
        self.owner = owner
        self._root = schema
        self._patterns: dict[str, re.Pattern[str]] = {}
        self._anchors: dict[str, object] = {}
        self._canon: dict[int, frozenset[object]] = {}  # id(enum list) -> canonical values
        self._compile(schema, "#")

    # compile: check every subschema once, so that validating never meets a bad schema

    def _fail(self, where: str, problem: str) -> ValueError:
        return ValueError(f"{self.owner}: invalid parameters schema at {where}: {problem}")

    def _compile(self, schema: object, where: str) -> None:
        if isinstance(schema, bool):
            return
        if not isinstance(schema, dict):
            raise self._fail(where, f"a schema must be an object or a boolean, got {_show(schema)}")
        for keyword in _UNSUPPORTED:
            if keyword in schema:
                raise self._fail(
                    where,
                    f"{keyword!r} is not supported; rewrite the schema without it, or pass "
                    f"validate=False to let the tool's function check its arguments",
                )
        ref = schema.get("$ref")
        if ref is not None and (not isinstance(ref, str) or not ref.startswith("#")):
            raise self._fail(
                where,
                f"$ref {_show(ref)} points outside the schema; only local references "
                f"('#/$defs/...') are supported",
            )
        anchor = schema.get("$anchor")
        if isinstance(anchor, str):
            self._anchors[anchor] = schema
        pattern = schema.get("pattern")
        if pattern is not None:
            self._pattern(pattern, f"{where}/pattern")
        for keyword in ("enum",):
            if keyword in schema:
                values = schema[keyword]
                if not isinstance(values, list):
                    raise self._fail(where, f"'enum' must be a list, got {_show(values)}")
                self._canon[id(values)] = frozenset(canonical(value) for value in values)
        for keyword in ("required",):
            value = schema.get(keyword)
            if value is not None and not (
                isinstance(value, list) and all(isinstance(item, str) for item in value)
            ):
                raise self._fail(where, f"'required' must be a list of names, got {_show(value)}")
        for keyword in ("type",):
            value = schema.get(keyword)
            names = [value] if isinstance(value, str) else value
            if value is not None and not (
                isinstance(names, list) and all(isinstance(name, str) for name in names)
            ):
                raise self._fail(where, f"'type' must be a name or a list of names, got {value!r}")
        for keyword, value in schema.items():
            at = f"{where}/{keyword}"
            if keyword in _MAPS and isinstance(value, dict):
                for name, sub in value.items():
                    if keyword == "patternProperties":
                        self._pattern(name, at)
                    self._compile(sub, f"{at}/{name}")
            elif keyword in _LISTS and isinstance(value, list):
                for index, sub in enumerate(value):
                    self._compile(sub, f"{at}/{index}")
            elif keyword in _ONE:
                self._compile(value, at)
            elif keyword == "dependencies" and isinstance(value, dict):
                for name, sub in value.items():
                    if not isinstance(sub, list):
                        self._compile(sub, f"{at}/{name}")
        if ref is not None:
            self._resolve(ref, where)

    def _pattern(self, pattern: object, where: str) -> None:
        if not isinstance(pattern, str):
            raise self._fail(where, f"a pattern must be a string, got {_show(pattern)}")
        if pattern not in self._patterns:
            try:
                self._patterns[pattern] = re.compile(pattern)
            except re.error as exc:
                raise self._fail(where, f"invalid pattern {pattern!r}: {exc}") from exc

    def _resolve(self, ref: str, where: str) -> object:
        fragment = unquote(ref[1:])
        if fragment and not fragment.startswith("/"):
            if fragment in self._anchors:
                return self._anchors[fragment]
            self._collect_anchors(self._root)
            if fragment in self._anchors:
                return self._anchors[fragment]
            raise self._fail(where, f"$ref {ref!r}: no $anchor named {fragment!r}")
        node: object = self._root
        for raw in fragment.split("/")[1:]:
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise self._fail(where, f"$ref {ref!r} points to nothing in the schema")
        return node

    def _collect_anchors(self, node: object) -> None:
        if isinstance(node, dict):
            anchor = node.get("$anchor")
            if isinstance(anchor, str):
                self._anchors.setdefault(anchor, node)
            for value in node.values():
                self._collect_anchors(value)
        elif isinstance(node, list):
            for value in node:
                self._collect_anchors(value)

    # validate

    def errors(self, value: object) -> list[str]:
        """Returns what is wrong with ``value``, one ``"location: problem"`` text each."""
        found: list[tuple[tuple[str | int, ...], str]] = []
        self._check(self._root, value, (), found, 0)
        return [f"{_location(path)}: {problem}" for path, problem in found[:_ERRORS_SHOWN]]

    def is_valid(self, value: object) -> bool:
        """Whether ``value`` fits the schema."""
        found: list[tuple[tuple[str | int, ...], str]] = []
        self._check(self._root, value, (), found, 0)
        return not found

    def _ok(self, schema: object, value: object, depth: int) -> bool:
        found: list[tuple[tuple[str | int, ...], str]] = []
        self._check(schema, value, (), found, depth)
        return not found

    def _check(
        self,
        schema: object,
        value: object,
        path: tuple[str | int, ...],
        out: list[tuple[tuple[str | int, ...], str]],
        depth: int,
    ) -> None:
        if schema is True:
            return
        if schema is False:
            out.append((path, "no value is allowed here"))
            return
        assert isinstance(schema, dict)  # compiled: every subschema is a dict or a bool
        if depth > _MAX_DEPTH:
            out.append((path, "the value is nested too deeply for the schema"))
            return
        depth += 1
        ref = schema.get("$ref")
        if ref is not None:
            self._check(self._resolve(ref, "#"), value, path, out, depth)
        expected = schema.get("type")
        if expected is not None:
            names = [expected] if isinstance(expected, str) else expected
            if not any(_has_type(value, name) for name in names):
                wanted = " or ".join(names)
                out.append((path, f"expected {wanted}, got {_json_type(value)} {_show(value)}"))
                return  # what follows would only repeat the type error
        if "enum" in schema:
            values = schema["enum"]
            allowed = self._canon.get(id(values))
            if allowed is None:  # pragma: no cover - every enum is compiled
                allowed = frozenset(canonical(item) for item in values)
            if canonical(value) not in allowed:
                shown = ", ".join(_show(item) for item in values[:10])
                out.append((path, f"must be one of {shown}, got {_show(value)}"))
        if "const" in schema and canonical(value) != canonical(schema["const"]):
            out.append((path, f"must be {_show(schema['const'])}, got {_show(value)}"))
        if _is_number(value):
            self._number(schema, value, path, out)
        elif isinstance(value, str):
            self._string(schema, value, path, out)
        elif isinstance(value, list):
            self._array(schema, value, path, out, depth)
        elif isinstance(value, dict):
            self._object(schema, value, path, out, depth)
        self._combinators(schema, value, path, out, depth)

    def _number(
        self,
        schema: dict[str, Any],
        value: float,
        path: tuple[str | int, ...],
        out: list[tuple[tuple[str | int, ...], str]],
    ) -> None:
        minimum, maximum = schema.get("minimum"), schema.get("maximum")
        low, high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        if low is True and _is_number(minimum):  # draft 4: a flag on minimum
            low, minimum = minimum, None
        if high is True and _is_number(maximum):
            high, maximum = maximum, None
        if _is_number(minimum) and value < minimum:
            out.append((path, f"must be >= {minimum}, got {value}"))
        if _is_number(maximum) and value > maximum:
            out.append((path, f"must be <= {maximum}, got {value}"))
        if _is_number(low) and value <= low:
            out.append((path, f"must be > {low}, got {value}"))
        if _is_number(high) and value >= high:
            out.append((path, f"must be < {high}, got {value}"))
        step = schema.get("multipleOf")
        if _is_number(step) and step > 0 and not _multiple(value, step):
            out.append((path, f"must be a multiple of {step}, got {value}"))

    def _string(
        self,
        schema: dict[str, Any],
        value: str,
        path: tuple[str | int, ...],
        out: list[tuple[tuple[str | int, ...], str]],
    ) -> None:
        shortest, longest = schema.get("minLength"), schema.get("maxLength")
        if _is_number(shortest) and len(value) < shortest:
            out.append((path, f"must have at least {shortest} characters, got {len(value)}"))
        if _is_number(longest) and len(value) > longest:
            out.append((path, f"must have at most {longest} characters, got {len(value)}"))
        pattern = schema.get("pattern")
        if pattern is not None and not self._patterns[pattern].search(value):
            out.append((path, f"must match the pattern {pattern!r}, got {_show(value)}"))

    def _array(
        self,
        schema: dict[str, Any],
        value: list[Any],
        path: tuple[str | int, ...],
        out: list[tuple[tuple[str | int, ...], str]],
        depth: int,
    ) -> None:
        fewest, most = schema.get("minItems"), schema.get("maxItems")
        if _is_number(fewest) and len(value) < fewest:
            out.append((path, f"must have at least {fewest} items, got {len(value)}"))
        if _is_number(most) and len(value) > most:
            out.append((path, f"must have at most {most} items, got {len(value)}"))
        if schema.get("uniqueItems") is True:
            seen: set[object] = set()
            for index, item in enumerate(value):
                key = canonical(item)
                if key in seen:
                    out.append(((*path, index), "items must be unique; this one repeats"))
                    break
                seen.add(key)
        items = schema.get("items")
        prefix = schema.get("prefixItems")
        rest: object = items
        if isinstance(items, list):  # draft 7: a list of positional schemas
            prefix, rest = items, schema.get("additionalItems")
        start = 0
        if isinstance(prefix, list):
            for index, (sub, item) in enumerate(zip(prefix, value, strict=False)):
                self._check(sub, item, (*path, index), out, depth)
            start = len(prefix)
        if rest is not None and not isinstance(rest, list):
            for index in range(start, len(value)):
                self._check(rest, value[index], (*path, index), out, depth)
        if "contains" in schema:
            matches = sum(self._ok(schema["contains"], item, depth) for item in value)
            least = schema.get("minContains", 1)
            if _is_number(least) and matches < least:
                out.append((path, f"must contain at least {least} matching items, got {matches}"))
            at_most = schema.get("maxContains")
            if _is_number(at_most) and matches > at_most:
                out.append((path, f"must contain at most {at_most} matching items, got {matches}"))

    def _object(
        self,
        schema: dict[str, Any],
        value: dict[str, Any],
        path: tuple[str | int, ...],
        out: list[tuple[tuple[str | int, ...], str]],
        depth: int,
    ) -> None:
        fewest, most = schema.get("minProperties"), schema.get("maxProperties")
        if _is_number(fewest) and len(value) < fewest:
            out.append((path, f"must have at least {fewest} properties, got {len(value)}"))
        if _is_number(most) and len(value) > most:
            out.append((path, f"must have at most {most} properties, got {len(value)}"))
        out.extend(
            ((*path, name), "field required")
            for name in schema.get("required", ())
            if name not in value
        )
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        patterns = schema.get("patternProperties")
        patterns = patterns if isinstance(patterns, dict) else {}
        extra = schema.get("additionalProperties")
        names = schema.get("propertyNames")
        for name, item in value.items():
            where = (*path, name)
            matched = name in properties
            if matched:
                self._check(properties[name], item, where, out, depth)
            for pattern, sub in patterns.items():
                if self._patterns[pattern].search(name):
                    matched = True
                    self._check(sub, item, where, out, depth)
            if not matched and extra is not None:
                if extra is False:
                    out.append((where, "extra inputs are not permitted"))
                else:
                    self._check(extra, item, where, out, depth)
            if names is not None and not self._ok(names, name, depth):
                out.append((where, f"the property name {name!r} is not allowed"))
        required_if = dict(schema.get("dependentRequired") or {})
        schemas_if = dict(schema.get("dependentSchemas") or {})
        for name, dependency in (schema.get("dependencies") or {}).items():  # draft 7
            (required_if if isinstance(dependency, list) else schemas_if)[name] = dependency
        for name, needed in required_if.items():
            if name in value:
                out.extend(
                    ((*path, other), f"field required (when {name!r} is given)")
                    for other in needed
                    if other not in value
                )
        for name, sub in schemas_if.items():
            if name in value:
                self._check(sub, value, path, out, depth)

    def _combinators(
        self,
        schema: dict[str, Any],
        value: object,
        path: tuple[str | int, ...],
        out: list[tuple[tuple[str | int, ...], str]],
        depth: int,
    ) -> None:
        for sub in schema.get("allOf", ()):
            self._check(sub, value, path, out, depth)
        if "anyOf" in schema and not any(self._ok(sub, value, depth) for sub in schema["anyOf"]):
            out.append((path, f"matches none of the schemas in anyOf, got {_show(value)}"))
        if "oneOf" in schema:
            matches = sum(self._ok(sub, value, depth) for sub in schema["oneOf"])
            if matches != 1:
                out.append((path, f"must match exactly one schema in oneOf, matches {matches}"))
        if "not" in schema and self._ok(schema["not"], value, depth):
            out.append((path, f"must not match the schema in 'not', got {_show(value)}"))
        if "if" in schema:
            branch = "then" if self._ok(schema["if"], value, depth) else "else"
            if branch in schema:
                self._check(schema[branch], value, path, out, depth)


def _multiple(value: float, step: float) -> bool:
    if isinstance(value, int) and isinstance(step, int):
        return value % step == 0
    quotient = value / step
    if math.isinf(quotient):
        return False
    # a float step (0.01) rarely divides exactly in binary: allow the rounding of the division
    return abs(quotient - round(quotient)) <= 1e-9 * max(1.0, abs(quotient))


@final
class SchemaArguments:
    """The arguments of a tool made from a JSON Schema: validated, then passed as one dict.

    Attributes:
        schema: The schema models see: the one given, with ``"type": "object"`` and
            ``"properties"`` added when missing (providers require both).
        validator: Checks arguments against the schema, or None (``validate=False``).
    """

    __slots__ = ("_tool", "schema", "validator")

    def __init__(self, schema: object, tool_name: str, *, validate: bool) -> None:
        self._tool = tool_name
        if not isinstance(schema, dict):
            raise TypeError(
                f"tool {tool_name!r}: parameters must be a JSON Schema object (a dict), "
                f"got {type(schema).__name__}"
            )
        if "type" in schema and schema["type"] != "object":
            raise ValueError(
                f'tool {tool_name!r}: parameters must describe an object ("type": "object"), '
                f'got "type": {schema["type"]!r}; a model sends its arguments as one object'
            )
        try:
            copied: dict[str, Any] = json.loads(json.dumps(schema))
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"tool {tool_name!r}: parameters must hold only JSON values ({exc})"
            ) from exc
        self.schema = {"type": "object", "properties": {}, **copied}
        self.validator = SchemaValidator(self.schema, f"tool {tool_name!r}") if validate else None

    def validate(self, arguments: object) -> tuple[list[Any], dict[str, Any]]:
        """Validates an arguments object.

        Returns:
            One positional argument, a copy of the arguments dict, and no keyword arguments.

        Raises:
            InvalidToolArguments: The arguments are not an object, or do not fit the schema;
                the message names each location at fault.
        """
        if not isinstance(arguments, dict):
            raise InvalidToolArguments(
                f"arguments for tool {self._tool!r} must be a JSON object, "
                f"got {type(arguments).__name__}"
            )
        if self.validator is not None:
            problems = self.validator.errors(arguments)
            if problems:
                raise InvalidToolArguments(
                    f"invalid arguments for tool {self._tool!r}: " + "; ".join(problems)
                )
        return [dict(arguments)], {}
