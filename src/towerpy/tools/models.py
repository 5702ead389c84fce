"""What flows through a tool router: invocations in, outputs out, and the specs models see."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = ["ToolInvocation", "ToolOutput", "ToolSpec"]


class ToolInvocation(BaseModel, frozen=True):
    """One call of one tool, as a model asked for it.

    Attributes:
        id: The model's id for this call; the output carries it back.
        name: The tool's name.
        arguments: The arguments, parsed from the model's JSON.
        raw_arguments: The model's argument text, kept when it was not a JSON object (then
            ``arguments`` is empty): the router rejects such a call with `InvalidToolArguments`,
            and the conversation can still be replayed to the provider verbatim.
        depends_on: The ids of invocations of the same batch that must finish before this one
            starts. An argument value ``{"$output": "<id>"}`` (anywhere in ``arguments``) is
            replaced by that invocation's output ``content`` when this one starts; the id must
            be listed here. See `ToolGraph`.
    """

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    raw_arguments: str | None = None
    depends_on: tuple[str, ...] = ()


class ToolOutput(BaseModel, frozen=True):
    """The result of one `ToolInvocation`.

    Attributes:
        id: The invocation's id.
        name: The tool's name.
        content: What the tool returned; for a failure, a short message for the model.
        is_error: True when the tool failed and ``content`` describes the failure.
    """

    id: str
    name: str
    content: Any
    is_error: bool = False


class ToolSpec(BaseModel, frozen=True):
    """What a model is told about a tool.

    Attributes:
        name: The tool's name.
        description: What the tool does, for the model.
        parameters: JSON Schema of the arguments object, in the shape OpenAI's
            ``function.parameters`` and Anthropic's ``input_schema`` accept.
    """

    name: str
    description: str
    parameters: dict[str, Any]
