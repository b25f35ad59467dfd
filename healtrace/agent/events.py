"""Typed events of one conversation, serialised in one place.

The orchestrator yields these without ``seq``; the session's event hub stamps each with a
per-session sequence number before any client sees it, so a client can resume after a
reconnect by asking for everything after the last ``seq`` it saw.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True)

    seq: int = 0
    session_id: str = ""

    def to_json(self) -> str:
        return self.model_dump_json()


class TurnStarted(_Event):
    type: Literal["turn_started"] = "turn_started"
    turn_id: str
    user_message_id: str
    locale: str
    #: Echo of the client's id for the message; the message is stored when this arrives.
    client_message_id: str | None = None
    #: The message as stored, so other viewers of the session (another tab, a clinician)
    #: see it too.
    text: str = ""


class TriageEvent(_Event):
    """Red-flag triage of the user's message, sent before anything else of the turn."""

    type: Literal["triage"] = "triage"
    turn_id: str
    level: Literal["emergency", "urgent", "routine", "self-care"]
    #: Each: category, code, level, evidence, source, message (in the session's language).
    reasons: list[dict[str, Any]] = []
    emergency_number: str
    #: What to tell the patient, in their language ("" for routine and self-care).
    advice: str = ""


class HandoffEvent(_Event):
    """The session's handoff to a person changed state."""

    type: Literal["handoff"] = "handoff"
    handoff_id: str
    status: Literal["waiting", "active", "closed"]
    reason: str
    clinician_name: str | None = None
    #: What to show the patient, in their language.
    message: str


class ClinicianMessage(_Event):
    """A clinician wrote into the conversation."""

    type: Literal["clinician_message"] = "clinician_message"
    message_id: str
    text: str
    clinician_name: str


class TurnHeld(_Event):
    """A turn that ends without an assistant answer: a clinician has the session, or the
    patient's message was a request for one."""

    type: Literal["turn_held"] = "turn_held"
    turn_id: str
    reason: Literal["clinician", "handoff_requested"]
    message: str = ""


class Token(_Event):
    type: Literal["token"] = "token"
    turn_id: str
    text: str


class Reasoning(_Event):
    """Model reasoning, kept apart from the answer; sent only when the setting allows it."""

    type: Literal["reasoning"] = "reasoning"
    turn_id: str
    text: str


class ToolCallEvent(_Event):
    type: Literal["tool_call"] = "tool_call"
    turn_id: str
    call_id: str
    name: str
    arguments: dict[str, Any] | str


class ApprovalRequired(_Event):
    """A tool call that runs only once the patient approves it; it was not run.

    To approve, send the next ``user_message`` with ``approvals: [approval_id]``; the call
    runs when the model makes it again with the same arguments."""

    type: Literal["approval_required"] = "approval_required"
    turn_id: str
    call_id: str
    name: str
    arguments: dict[str, Any] | str
    approval_id: str
    #: What to show the patient, in their language.
    message: str


class ToolResultEvent(_Event):
    type: Literal["tool_result"] = "tool_result"
    turn_id: str
    call_id: str
    name: str
    ok: bool
    content: str


class Citation(_Event):
    """A source the answer cites; ``marker`` n matches "[n]" in the answer text."""

    type: Literal["citation"] = "citation"
    turn_id: str
    marker: int
    chunk_id: str
    doc_id: str
    title: str
    section: str
    source_url: str
    source_title: str
    snippet: str


class AnswerDone(_Event):
    type: Literal["answer_done"] = "answer_done"
    turn_id: str
    message_id: str
    text: str
    finish_reason: Literal["stop", "length", "cancelled", "error"]
    model: str
    tool_calls: int = 0
    #: Output safety checks that changed the answer: each {code, rule, detail}.
    checks: list[dict[str, str]] = []
    #: keccak256 of the answer's evidence record (0x hex): its receipt is at
    #: ``/v1/evidence/{evidence_hash}`` once ``evidence_anchored`` arrives.
    evidence_hash: str | None = None


class EvidenceAnchored(_Event):
    """An answer's evidence record was anchored on chain; its receipt can now be fetched."""

    type: Literal["evidence_anchored"] = "evidence_anchored"
    message_id: str
    evidence_hash: str
    root: str
    tx_hash: str
    block_number: int
    chain_id: int
    contract: str
    #: Where the receipt is (relative to the service).
    receipt_url: str


class ErrorEvent(_Event):
    type: Literal["error"] = "error"
    code: str
    message: str
    turn_id: str | None = None
    retryable: bool = False


Event = Annotated[
    TurnStarted
    | TriageEvent
    | HandoffEvent
    | ClinicianMessage
    | TurnHeld
    | Token
    | Reasoning
    | ToolCallEvent
    | ApprovalRequired
    | ToolResultEvent
    | Citation
    | AnswerDone
    | EvidenceAnchored
    | ErrorEvent,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

TERMINAL_TYPES = frozenset({"answer_done", "turn_held"})


def parse_event(data: str | bytes) -> Event:
    """Parse one serialised event (used by clients and tests)."""
    return EVENT_ADAPTER.validate_json(data)
