"""The one interface every chat model backend implements.

A backend takes a :class:`ModelRequest` and yields :class:`ModelDelta` items: answer text,
reasoning text (kept apart from the answer), complete tool calls, and one final
:class:`Finish`. Backends translate their vendor errors at the boundary into
:class:`~healtrace.errors.BackendUnavailable` (worth retrying or falling back) or
:class:`~healtrace.errors.BackendResponseError` (the backend answered, but unusably).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A request from the model to run one tool. ``arguments`` is the raw JSON text."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    def to_openai(self) -> dict[str, Any]:
        """This message in the OpenAI chat-completions wire shape."""
        msg: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            msg["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in self.tool_calls
            ]
        if self.role == "tool":
            msg["tool_call_id"] = self.tool_call_id
            if self.name:
                msg["name"] = self.name
        return msg


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """What a model is told about a tool: its name, description and JSON schema."""

    name: str
    description: str
    parameters: dict[str, Any]

    def to_openai(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


@dataclass(frozen=True, slots=True)
class ModelRequest:
    messages: tuple[ChatMessage, ...]
    tools: tuple[ToolSpec, ...] = ()
    max_tokens: int | None = None
    temperature: float | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str
    type: Literal["text"] = "text"


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    text: str
    type: Literal["reasoning"] = "reasoning"


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """One complete tool call (backends assemble streamed fragments before yielding)."""

    call: ToolCall
    type: Literal["tool_call"] = "tool_call"


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Finish:
    reason: Literal["stop", "length", "tool_calls", "cancelled"] = "stop"
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    type: Literal["finish"] = "finish"


ModelDelta = TextDelta | ReasoningDelta | ToolCallDelta | Finish


@runtime_checkable
class ModelBackend(Protocol):
    """A chat model. ``stream`` must end with exactly one :class:`Finish`."""

    @property
    def name(self) -> str: ...

    @property
    def model_id(self) -> str:
        """What produced the answer (recorded with every message)."""
        ...

    @property
    def native_tools(self) -> bool:
        """True if the backend takes ``tools`` and returns structured tool calls."""
        ...

    def stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta]: ...

    async def aclose(self) -> None: ...
