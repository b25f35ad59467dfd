"""REST: sessions, messages, a non-streaming turn, health and readiness."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError

from healtrace import __version__
from healtrace.agent.events import (
    AnswerDone,
    ApprovalRequired,
    ErrorEvent,
    ToolCallEvent,
    TriageEvent,
    TurnHeld,
)
from healtrace.agent.memory import MessageRecord, SessionInfo
from healtrace.agent.orchestrator import UserTurn
from healtrace.api._http import (
    KEY_ERRORS,
    KeyId,
    error_response,
    error_responses,
    pick_locale,
    request_locale,
    services_of,
)
from healtrace.errors import InputError
from healtrace.handoff import HandoffInfo
from healtrace.tenants import tenant_locale
from healtrace.vision.service import image_question

router = APIRouter()


def _utc(at: datetime) -> datetime:
    # SQLite hands timezone-aware columns back naive; they are UTC. Without the offset the
    # value is not an RFC 3339 date-time and clients would read it as their local time.
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]


class SessionCreate(BaseModel):
    locale: Literal["en", "zh-CN"] | None = None
    title: str = Field(default="", max_length=200)


class HandoffOut(BaseModel):
    id: str
    status: Literal["waiting", "active", "closed"]
    reason: str
    clinician_name: str | None = None


class SessionOut(BaseModel):
    id: str
    title: str
    locale: str
    created_at: UtcDatetime
    updated_at: UtcDatetime
    last_seq: int
    #: The open handoff to a person, if any (a reloaded page shows where it stands).
    handoff: HandoffOut | None = None

    @classmethod
    def of(cls, s: SessionInfo, handoff: HandoffInfo | None = None) -> SessionOut:
        return cls(
            id=s.id,
            title=s.title,
            locale=s.locale,
            created_at=s.created_at,
            updated_at=s.updated_at,
            last_seq=s.last_seq,
            handoff=(
                HandoffOut(
                    id=handoff.id,
                    status=handoff.status,
                    reason=handoff.reason,
                    clinician_name=handoff.clinician_name,
                )
                if handoff
                else None
            ),
        )


class ToolCallOut(BaseModel):
    id: str
    name: str
    arguments: str


class MessageOut(BaseModel):
    id: str
    position: int
    turn_id: str
    role: Literal["user", "assistant", "tool", "clinician"]
    content: str
    status: str
    created_at: UtcDatetime
    model: str = ""
    tool_calls: list[ToolCallOut] = []
    tool_call_id: str | None = None
    tool_name: str | None = None
    citations: list[dict[str, Any]] = []
    #: Triage of a user message; output checks of an answer.
    safety: dict[str, Any] | None = None
    #: The clinician who wrote a clinician message.
    author: str = ""
    #: Voice turns: how a spoken question was heard; what of a spoken answer was heard.
    voice: dict[str, Any] | None = None

    @classmethod
    def of(cls, m: MessageRecord) -> MessageOut:
        return cls(
            id=m.id,
            position=m.position,
            turn_id=m.turn_id,
            role=m.role,
            content=m.content,
            status=m.status,
            created_at=m.created_at,
            model=m.model,
            tool_calls=[
                ToolCallOut(id=c.id, name=c.name, arguments=c.arguments) for c in m.tool_calls
            ],
            tool_call_id=m.tool_call_id,
            tool_name=m.tool_name,
            citations=list(m.citations),
            safety=m.safety,
            author=m.author,
            voice=m.voice,
        )


class MessageIn(BaseModel):
    text: str = ""
    locale: Literal["en", "zh-CN"] | None = None
    #: Images to look at with this message (ids from ``POST /v1/images``).
    image_ids: list[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = Field(
        default_factory=list, max_length=4
    )
    #: Tool calls the patient approves (``approval_id`` from an earlier answer's
    #: ``approvals_required``).
    approvals: list[Annotated[str, Field(pattern=r"^[0-9a-f]{24}$")]] = Field(
        default_factory=list, max_length=8
    )


class TurnOut(BaseModel):
    turn_id: str
    #: The answer's id ("" when the turn was held for a clinician).
    message_id: str
    text: str
    #: ``stop``, ``length``, ``cancelled``, or ``held`` (a clinician has the conversation).
    finish_reason: str
    model: str
    tool_calls: list[dict[str, Any]]
    #: Red-flag triage of the message: level, reasons, emergency number, advice.
    triage: dict[str, Any] | None = None
    #: Output safety checks that changed the answer.
    checks: list[dict[str, str]] = []
    #: The answer's evidence record hash; its receipt is at ``/v1/evidence/{hash}`` once
    #: anchored (null when evidence is off or the turn was held).
    evidence_hash: str | None = None
    #: Tool calls that were not run because they need the patient's approval: each
    #: ``approval_id``, ``name``, ``arguments``, ``message``. Send the ids back in
    #: ``approvals`` with the next message to approve.
    approvals_required: list[dict[str, Any]] = []


#: The errors of every route that reads one of the key's sessions.
ERRORS = error_responses(*KEY_ERRORS, 400, 404)


@router.get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    """Liveness: the process is up."""
    return {"status": "ok", "version": __version__}


@router.get("/readyz", tags=["health"], responses=error_responses(503))
async def readyz(request: Request) -> Any:
    """Readiness: the database answers and tools are loaded."""
    services = services_of(request)
    try:
        await services.db.ping()
    except (SQLAlchemyError, OSError):
        return error_response("internal_error", request_locale(request), status=503)
    return {
        "status": "ready",
        "model": services.model.name,
        "tools": sorted(t.name for t in services.tools),
        "tool_load_errors": len(services.tools.load_errors),
    }


@router.post(
    "/v1/sessions",
    status_code=201,
    tags=["sessions"],
    # 400: a body that is not UTF-8 JSON.
    responses=error_responses(*KEY_ERRORS, 400),
)
async def create_session(
    request: Request, key_id: KeyId, body: SessionCreate | None = None
) -> SessionOut:
    """Start a conversation."""
    services = services_of(request)
    locale = (body.locale if body else None) or request_locale(request)
    if not (body and body.locale) and services.settings.tenants:
        fallback = tenant_locale(services.settings, await services.store.key_tenant(key_id))
        locale = pick_locale(request.headers.get("accept-language"), fallback)
    info = await services.store.create_session(
        key_id, locale=locale, title=body.title if body else ""
    )
    return SessionOut.of(info)


@router.get("/v1/sessions", tags=["sessions"], responses=error_responses(*KEY_ERRORS))
async def list_sessions(request: Request, key_id: KeyId) -> list[SessionOut]:
    """This key's conversations, newest first."""
    return [SessionOut.of(s) for s in await services_of(request).store.list_sessions(key_id)]


@router.get("/v1/sessions/{session_id}", tags=["sessions"], responses=ERRORS)
async def get_session(request: Request, key_id: KeyId, session_id: str) -> SessionOut:
    services = services_of(request)
    session = await services.store.get_session(session_id, key_id)
    return SessionOut.of(session, await services.handoffs.current(session_id))


@router.get("/v1/sessions/{session_id}/messages", tags=["sessions"], responses=ERRORS)
async def get_messages(
    request: Request, key_id: KeyId, session_id: str, include_tools: bool = False
) -> list[MessageOut]:
    """The conversation's messages in order (tool traffic only when asked for)."""
    store = services_of(request).store
    await store.get_session(session_id, key_id)
    return [
        MessageOut.of(m)
        for m in await store.messages(session_id)
        if include_tools or not m.is_tool_traffic
    ]


@router.post(
    "/v1/sessions/{session_id}/messages",
    tags=["sessions"],
    # 400 empty message; 409 a turn is already running; 413 too long; 502/503 the model
    # failed or is down; 500 only if the turn ended without any final event.
    responses=error_responses(*KEY_ERRORS, 400, 404, 409, 413, 500, 502, 503),
)
async def post_message(request: Request, key_id: KeyId, session_id: str, body: MessageIn) -> Any:
    """Send a message and wait for the whole answer (the WebSocket streams it instead)."""
    services = services_of(request)
    session = await services.store.get_session(session_id, key_id)
    locale = body.locale or session.locale
    limit = services.settings.max_message_chars
    if len(body.text) > limit:
        return error_response("message_too_long", locale, length=len(body.text), limit=limit)
    if not body.text.strip() and not body.image_ids:
        return error_response("empty_message", locale)
    events = await services.hub.subscribe(session_id)
    turn = UserTurn(
        session_id=session_id,
        text=body.text.strip() or image_question(locale),
        locale=locale,
        tenant_id=session.tenant_id,
        patient_id=session.patient_id,
        image_ids=tuple(body.image_ids),
        approvals=frozenset(body.approvals),
    )
    try:
        services.runner.start(turn)
    except InputError as exc:
        await events.aclose()
        return error_response(exc.code, locale)
    calls: list[dict[str, Any]] = []
    approvals: list[dict[str, Any]] = []
    triage: dict[str, Any] | None = None
    try:
        async for event in events:
            if getattr(event, "turn_id", None) != turn.turn_id:
                continue
            if isinstance(event, TriageEvent):
                triage = event.model_dump(
                    include={"level", "reasons", "emergency_number", "advice"}
                )
            elif isinstance(event, TurnHeld):
                return TurnOut(
                    turn_id=turn.turn_id,
                    message_id="",
                    text=event.message,
                    finish_reason="held",
                    model="",
                    tool_calls=calls,
                    triage=triage,
                )
            elif isinstance(event, ToolCallEvent):
                calls.append(
                    {"id": event.call_id, "name": event.name, "arguments": event.arguments}
                )
            elif isinstance(event, ApprovalRequired):
                approvals.append(
                    event.model_dump(include={"approval_id", "name", "arguments", "message"})
                )
            elif isinstance(event, AnswerDone):
                return TurnOut(
                    turn_id=turn.turn_id,
                    message_id=event.message_id,
                    text=event.text,
                    finish_reason=event.finish_reason,
                    model=event.model,
                    tool_calls=calls,
                    triage=triage,
                    checks=event.checks,
                    evidence_hash=event.evidence_hash,
                    approvals_required=approvals,
                )
            elif isinstance(event, ErrorEvent):
                response = error_response(event.code, locale)
                if triage is not None:
                    # The model failed, but the triage did not: a red flag still reaches
                    # the caller with the emergency number.
                    payload = json.loads(bytes(response.body))
                    payload["triage"] = triage
                    response = JSONResponse(payload, status_code=response.status_code)
                return response
    finally:
        await events.aclose()
    return error_response("internal_error", locale, status=500)
