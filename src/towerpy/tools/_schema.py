"""From a function's signature and docstring to a pydantic arguments model and a JSON Schema."""

from __future__ import annotations

import copy
import functools
import inspect
import re
from typing import TYPE_CHECKING, Any, final

from pydantic import BaseModel, ConfigDict, Field, PydanticUserError, ValidationError, create_model

from .._callables import callable_name
from .._validate import check_str
from ..errors import InvalidToolArguments

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ArgumentsSchema", "describe", "plain_text", "validate_tool_name"]

TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

# keywords whose value is a map of name -> schema, a schema, or a list of schemas
_SCHEMA_MAPS = ("properties", "$defs", "patternProperties", "dependentSchemas")
_SCHEMA_ONE = ("items", "additionalProperties", "not", "if", "then", "else", "contains")
_SCHEMA_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")
_ARGS_HEADERS = ("Args:", "Arguments:", "Parameters:", "Params:")
_SECTION = re.compile(r"^[A-Z][A-Za-z ]*:$")
_ARG_LINE = re.compile(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def validate_tool_name(name: object) -> str:
    """Returns ``name`` if providers accept it as a tool name.

    Raises:
        TypeError: The name is not a str.
        ValueError: The name is not 1-64 letters, digits, ``_`` or ``-``.
    """
    checked = check_str("name", name)
    if not TOOL_NAME.match(checked):
        raise ValueError(
            f"tool name {name!r} is not accepted by model providers: use 1 to 64 letters, "
            f"digits, '_' or '-' (pass name=... to @tool)"
        )
    return checked


def describe(fn: Callable[..., Any]) -> tuple[str, dict[str, str]]:
    """Reads a Google-style docstring.

    Returns:
        The first paragraph (lines joined by spaces), and the description of each parameter
        found in the ``Args:`` section.
    """
    while isinstance(fn, functools.partial):  # the partial type's own docstring is not theirs
        fn = fn.func
    doc = inspect.getdoc(fn) or ""
    lines = doc.splitlines()
    first: list[str] = []
    for line in lines:
        if not line.strip():
            if first:
                break
            continue
        if line.strip() in _ARGS_HEADERS:
            break
        first.append(line.strip())
    docs = {name: plain_text(text) for name, text in _parameter_docs(lines).items()}
    return plain_text(" ".join(first)), docs


# docstring markup a model has no use for: reST roles, literals and links, markdown emphasis
_ROLE = re.compile(r":(?:[a-zA-Z][\w.+-]*:)+`(?:~|!)?([^`<]*?)\s*(?:<[^`>]*>)?`")
_REST_LINK = re.compile(r"`([^`<]+?)\s*<([^`>]+)>`__?")
_LITERAL = re.compile(r"``(.+?)``")
_CODE = re.compile(r"(?<![`\w])`([^`\s][^`]*?)`_{0,2}(?![`\w])")
_MD_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_STRONG = re.compile(r"(?<![\w*])\*\*(?=\S)(.+?)(?<=\S)\*\*(?![\w*])")
_EMPHASIS = re.compile(r"(?<![\w*])\*(?=[^\s*])([^*]+?)(?<=[^\s*])\*(?![\w*])")


def _role_text(match: re.Match[str]) -> str:
    target = match.group(1)
    # :class:`~pkg.Name` shows only Name, as Sphinx does
    return target.rsplit(".", 1)[-1] if "`~" in match.group(0) else target


def plain_text(text: str) -> str:
    """Strips reST and markdown markup from docstring text, keeping the words.

    ``literal`` and `code` become literal and code, :class:`~pkg.Name` becomes Name, links
    become "text (target)", **strong** and *emphasis* lose their stars, and a closing ``::``
    becomes ``:``.
    """
    text = _ROLE.sub(_role_text, text)
    text = _REST_LINK.sub(r"\1 (\2)", text)
    text = _MD_LINK.sub(r"\1 (\2)", text)
    text = _LITERAL.sub(r"\1", text)
    text = _CODE.sub(r"\1", text)
    text = _STRONG.sub(r"\1", text)
    text = _EMPHASIS.sub(r"\1", text)
    if text.endswith("::"):
        text = text[:-1]
    return text


def _parameter_docs(lines: list[str]) -> dict[str, str]:
    docs: dict[str, str] = {}
    in_args = False
    indent: int | None = None
    current: str | None = None
    for line in lines:
        stripped = line.strip()
        if stripped in _ARGS_HEADERS:
            in_args, indent, current = True, None, None
            continue
        if not in_args:
            continue
        if not stripped:
            current = None
            continue
        depth = len(line) - len(line.lstrip())
        if depth == 0 and _SECTION.match(stripped):
            in_args = False  # the next section (Returns:, Raises:) begins
            continue
        if indent is None:
            indent = depth
        match = _ARG_LINE.match(stripped)
        if depth == indent and match:
            current = match.group(1).lstrip("*")
            docs[current] = match.group(2).strip()
        elif current is not None and depth > indent:
            docs[current] = f"{docs[current]} {stripped}".strip()
    return docs


@final
class ArgumentsSchema:
    """The validated arguments of one tool: a pydantic model and the JSON Schema models see.

    Fields are stored under internal names (``f0``, ``f1``…) with the parameter names as
    aliases, so a parameter may be called ``json``, ``schema`` or ``_private`` without clashing
    with pydantic's own attributes.

    Attributes:
        model: The pydantic model that validates an arguments object.
        schema: The JSON Schema of the arguments object (OpenAI ``function.parameters``,
            Anthropic ``input_schema``).
        positional: How many leading parameters are positional-only.
        parameter_names: The parameter names, in the signature's order.
    """

    __slots__ = ("_names", "_tool", "model", "parameter_names", "positional", "schema")

    def __init__(self, fn: Callable[..., Any], tool_name: str, docs: dict[str, str]) -> None:
        self._tool = tool_name
        signature = _signature(fn, tool_name)
        fields: dict[str, Any] = {}
        self._names: dict[str, str] = {}
        self.positional = 0
        for index, (name, param) in enumerate(signature.parameters.items()):
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise TypeError(
                    f"tool {tool_name!r}: parameter {param}: *args and **kwargs cannot be "
                    f"described to a model; list each parameter by name"
                )
            if param.kind is param.POSITIONAL_ONLY:
                self.positional += 1
            if param.annotation is param.empty:
                raise TypeError(
                    f"tool {tool_name!r}: parameter {name!r} has no type annotation; annotate "
                    f"it (e.g. {name}: str) so the model knows what to send"
                )
            if isinstance(param.annotation, str):  # a forward reference that is still text
                raise TypeError(_unresolved(tool_name, fn, f"{param.annotation!r} is not defined"))
            default = ... if param.default is param.empty else param.default
            described = {"description": docs[name]} if name in docs else {}
            field = Field(default, alias=name, **described)  # type: ignore[call-overload]
            fields[f"f{index}"] = (param.annotation, field)
            self._names[f"f{index}"] = name
        config = ConfigDict(extra="forbid", arbitrary_types_allowed=False)
        try:
            self.model: type[BaseModel] = create_model(
                f"{tool_name}_arguments", __config__=config, **fields
            )
            schema = self.model.model_json_schema(by_alias=True)
        except PydanticUserError as exc:
            raise self._inexpressible(fields, exc) from exc
        self.schema = _clean(schema)
        self.parameter_names = list(self._names.values())

    def _inexpressible(self, fields: dict[str, Any], exc: Exception) -> TypeError:
        for key, (annotation, field) in fields.items():
            try:
                create_model("probe", probe=(annotation, field)).model_json_schema()
            except PydanticUserError:
                return TypeError(
                    f"tool {self._tool!r}: parameter {self._names[key]!r} has the type "
                    f"{_type_name(annotation)}, which cannot be expressed as JSON Schema; use "
                    f"JSON types (str, int, float, bool, None, list, dict, Literal, Enum) or "
                    f"pydantic models, dataclasses and TypedDicts of them"
                )
        return TypeError(f"tool {self._tool!r}: its parameters cannot be expressed as JSON Schema")

    def validate(self, arguments: object) -> tuple[list[Any], dict[str, Any]]:
        """Validates an arguments object.

        Returns:
            The positional-only arguments, and the keyword arguments, for the function.

        Raises:
            InvalidToolArguments: The arguments are not an object, or do not fit the schema;
                the message names each field at fault.
        """
        if not isinstance(arguments, dict):
            raise InvalidToolArguments(
                f"arguments for tool {self._tool!r} must be a JSON object, "
                f"got {type(arguments).__name__}"
            )
        try:
            values = self.model.model_validate(arguments).__dict__
        except ValidationError as exc:
            raise InvalidToolArguments(self._explain(exc)) from exc
        names = self._names
        if self.positional:
            items = list(values.items())
            args = [value for _key, value in items[: self.positional]]
            kwargs = {names[key]: value for key, value in items[self.positional :]}
            return args, kwargs
        return [], {names[key]: value for key, value in values.items()}

    def _explain(self, exc: ValidationError) -> str:
        problems = []
        for error in exc.errors(include_url=False):
            field = ".".join(str(part) for part in error["loc"]) or "(arguments)"
            problems.append(f"{field}: {error['msg'].lower()}")
        return f"invalid arguments for tool {self._tool!r}: " + "; ".join(problems)


def _signature(fn: Callable[..., Any], tool_name: str) -> inspect.Signature:
    try:
        return inspect.signature(fn, eval_str=True)
    except (NameError, SyntaxError, AttributeError) as exc:
        raise TypeError(_unresolved(tool_name, fn, str(exc))) from exc
    except (TypeError, ValueError) as exc:
        raise TypeError(f"@tool cannot read the signature of {callable_name(fn)!r}") from exc


def _unresolved(tool_name: str, fn: Callable[..., Any], problem: str) -> str:
    return (
        f"tool {tool_name!r}: cannot resolve the type annotations of {callable_name(fn)!r} "
        f"({problem}); define the types they name at module level, and import them at run "
        f"time (not only under TYPE_CHECKING)"
    )


def _type_name(annotation: object) -> str:
    if isinstance(annotation, type):
        return f"{annotation.__module__}.{annotation.__qualname__}"
    return repr(annotation)


def _clean(schema: dict[str, Any]) -> dict[str, Any]:
    """Drops pydantic's generated titles and inlines every non-recursive ``$ref``."""
    defs: dict[str, Any] = schema.pop("$defs", {})
    recursive: set[str] = set()
    result: dict[str, Any] = _walk(schema, defs, (), recursive)
    if recursive:  # a recursive model cannot be inlined: keep its definitions, cleaned too
        kept: dict[str, Any] = {}
        pending = set(recursive)
        while pending:
            name = pending.pop()
            found: set[str] = set()
            kept[name] = _walk(copy.deepcopy(defs[name]), defs, (name,), found)
            pending |= found - kept.keys()
        result["$defs"] = kept
    result.setdefault("properties", {})
    return result


def _walk(node: Any, defs: dict[str, Any], stack: tuple[str, ...], rec: set[str]) -> Any:
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        name = ref.removeprefix("#/$defs/")
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        if name in stack or name not in defs:
            if name in defs:
                rec.add(name)
            return {"$ref": ref, **siblings}
        resolved = _walk(copy.deepcopy(defs[name]), defs, (*stack, name), rec)
        return {**resolved, **siblings}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" and not isinstance(value, dict):
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {k: _walk(v, defs, stack, rec) for k, v in value.items()}
        elif key in _SCHEMA_ONE and isinstance(value, dict):
            out[key] = _walk(value, defs, stack, rec)
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [_walk(v, defs, stack, rec) for v in value]
        else:
            out[key] = value
    return out
