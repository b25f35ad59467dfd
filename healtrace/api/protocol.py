"""Frames a WebSocket client sends, and the server's connection-level replies.

Agent events (``turn_started``, ``token``, …) are defined in ``healtrace.agent.events``;
this module holds only what belongs to the connection itself. See docs/protocol.md.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

PROTOCOL_VERSION = 1

# Close codes (4000-4999 are free for applications; RFC 6455 §7.4.2).
CLOSE_AUTH = 4401
CLOSE_ORIGIN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_HELLO_TIMEOUT = 4408
CLOSE_SHUTDOWN = 1001


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Hello(_Frame):
    type: Literal["hello"]
    api_key: str | None = Field(default=None, max_length=200)
    #: Continue this conversation; omit to start a new one.
    session_id: str | None = Field(default=None, max_length=64)
    locale: Literal["en", "zh-CN"] | None = None
    #: Replay every event after this sequence number before going live.
    resume_from_seq: int | None = Field(default=None, ge=0)


class UserMessage(_Frame):
    type: Literal["user_message"]
    text: str
    #: The client's own id for this message, echoed in ``turn_started``.
    client_message_id: str | None = Field(default=None, max_length=64)


class Cancel(_Frame):
    type: Literal["cancel"]


class Resume(_Frame):
    type: Literal["resume"]
    after_seq: int = Field(ge=0)


class Ping(_Frame):
    type: Literal["ping"]


class RequestHandoff(_Frame):
    """The patient asks for a person (the page's button; typed requests are recognised too)."""

    type: Literal["request_handoff"]


class CancelHandoff(_Frame):
    """The patient no longer wants to wait for a person."""

    type: Literal["cancel_handoff"]


ClientFrame = Annotated[
    Hello | UserMessage | Cancel | Resume | Ping | RequestHandoff | CancelHandoff,
    Field(discriminator="type"),
]
CLIENT_FRAME: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)
CLIENT_TYPES = (
    "hello",
    "user_message",
    "cancel",
    "resume",
    "ping",
    "request_handoff",
    "cancel_handoff",
)


class HelloOk(BaseModel):
    type: Literal["hello_ok"] = "hello_ok"
    protocol: int = PROTOCOL_VERSION
    session_id: str
    locale: str
    last_seq: int
    #: False when events asked for by ``resume_from_seq`` are gone: reload over REST.
    resumed: bool = True


class Pong(BaseModel):
    type: Literal["pong"] = "pong"
