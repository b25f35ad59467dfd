"""The handoff desk: queues sessions for a tenant's clinicians, lets one take a session
over, carries their messages into the patient's live session, and hands it back.

State lives in the ``handoffs`` table; every change is written with its audit entry in
one transaction, then published: to the session (the patient and any clinician watching
it see a ``handoff`` event) and to the tenant's queue feed (consoles update their lists).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from healtrace.agent.events import ClinicianMessage, HandoffEvent
from healtrace.agent.memory import ChatStore, MessageRecord, NewMessage, _append, new_id
from healtrace.agent.models.base import ChatMessage, ModelBackend, ModelRequest, TextDelta
from healtrace.agent.sessions import EventHub
from healtrace.audit import append_entry
from healtrace.errors import ConflictError, HealTraceError, InputError, NotFoundError, localized
from healtrace.handoff.accounts import ClinicianInfo
from healtrace.prompts import load_prompt
from healtrace.storage import ChatSession, Clinician, Handoff, Message
from healtrace.storage.models import iso_utc, utcnow

log = logging.getLogger(__name__)

Status = Literal["waiting", "active", "closed"]

#: What the patient sees when the handoff changes (en, zh).
PATIENT_TEXT: dict[str, tuple[str, str]] = {
    "waiting": (
        "You're in the queue for a member of the care team. The assistant can keep helping "
        "while you wait.",
        "已为您转接人工，正在排队等待医护人员。等待期间助手仍可继续为您解答。",
    ),
    "active": (
        "{name} from the care team has joined the conversation.",
        "医护人员{name}已加入对话。",
    ),
    "handed_back": (
        "{name} has handed the conversation back to the assistant.",
        "{name}已将对话交还给 AI 助手。",
    ),
    "cancelled": (
        "You left the queue. The assistant is here to help.",
        "您已取消转人工，AI 助手将继续为您服务。",
    ),
    "held": (
        "Your message has been passed to the care team.",
        "您的消息已转交医护人员。",
    ),
}


def patient_text(key: str, locale: str, **params: Any) -> str:
    return localized(key, locale, catalogue=PATIENT_TEXT, fallback="waiting", **params)


@dataclass(frozen=True, slots=True)
class HandoffInfo:
    id: str
    tenant_id: str
    session_id: str
    status: Status
    reason: str
    triage: dict[str, Any] | None
    requested_at: datetime
    taken_at: datetime | None
    closed_at: datetime | None
    clinician_id: str | None
    clinician_name: str | None
    locale: str = "en"
    preview: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "session_id": self.session_id,
            "status": self.status,
            "reason": self.reason,
            "triage": self.triage,
            "requested_at": iso_utc(self.requested_at),
            "taken_at": iso_utc(self.taken_at) if self.taken_at else None,
            "closed_at": iso_utc(self.closed_at) if self.closed_at else None,
            "clinician": (
                {"id": self.clinician_id, "display_name": self.clinician_name}
                if self.clinician_id
                else None
            ),
            "locale": self.locale,
            "preview": self.preview,
        }


def _info(s: Session, row: Handoff) -> HandoffInfo:
    name = None
    if row.clinician_id:
        name = s.scalar(select(Clinician.display_name).where(Clinician.id == row.clinician_id))
    session = s.get(ChatSession, row.session_id)
    preview = s.scalar(
        select(Message.content)
        .where(Message.session_id == row.session_id, Message.role == "user")
        .order_by(Message.position.desc())
        .limit(1)
    )
    return HandoffInfo(
        id=row.id,
        tenant_id=row.tenant_id,
        session_id=row.session_id,
        status=row.status,  # type: ignore[arg-type]
        reason=row.reason,
        triage=row.triage,
        requested_at=row.requested_at,
        taken_at=row.taken_at,
        closed_at=row.closed_at,
        clinician_id=row.clinician_id,
        clinician_name=name,
        locale=session.locale if session is not None else "en",
        preview=(preview or "")[:160],
    )


def _open(s: Session, session_id: str) -> Handoff | None:
    return s.scalar(
        select(Handoff)
        .where(Handoff.session_id == session_id, Handoff.status != "closed")
        .order_by(Handoff.requested_at.desc())
        .limit(1)
    )


class QueueFeed:
    """Per-tenant fan-out of queue changes to open consoles (in-process)."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[dict[str, Any] | None]]] = (
            collections.defaultdict(set)
        )

    def subscribe(self, tenant_id: str) -> asyncio.Queue[dict[str, Any] | None]:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=1000)
        self._subscribers[tenant_id].add(queue)
        return queue

    def unsubscribe(self, tenant_id: str, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._subscribers[tenant_id].discard(queue)

    def publish(self, handoff: HandoffInfo) -> None:
        payload = {"type": "queue_changed", "handoff": handoff.to_dict()}
        for queue in list(self._subscribers.get(handoff.tenant_id, ())):
            if queue.full():
                # A console that stopped reading: drop it; it reloads the queue on reconnect.
                self._subscribers[handoff.tenant_id].discard(queue)
                continue
            queue.put_nowait(payload)

    def close(self) -> None:
        for queues in self._subscribers.values():
            for queue in queues:
                if not queue.full():
                    queue.put_nowait(None)


@dataclass
class _Draft:
    session_id: str
    clinician_id: str
    text: str


class HandoffDesk:
    def __init__(
        self,
        *,
        store: ChatStore,
        hub: EventHub,
        model: ModelBackend | None = None,
        cancel_turn: Callable[[str], bool] | None = None,
        draft_timeout_s: float = 60.0,
    ) -> None:
        self.store = store
        self.db = store.db
        self.hub = hub
        self.model = model
        self.cancel_turn = cancel_turn or (lambda _session_id: False)
        self.draft_timeout_s = draft_timeout_s
        self.feed = QueueFeed()
        self._drafts: collections.OrderedDict[str, _Draft] = collections.OrderedDict()

    # --- reading --------------------------------------------------------------------------

    async def current(self, session_id: str) -> HandoffInfo | None:
        """The session's open (waiting or active) handoff."""

        def read(s: Session) -> HandoffInfo | None:
            row = _open(s, session_id)
            return _info(s, row) if row is not None else None

        return await self.db.run(read)

    async def get(self, handoff_id: str, tenant_id: str) -> HandoffInfo:
        def read(s: Session) -> HandoffInfo:
            row = s.get(Handoff, handoff_id)
            if row is None or row.tenant_id != tenant_id:
                raise NotFoundError("no such handoff", code="handoff_not_found")
            return _info(s, row)

        return await self.db.run(read)

    async def queue(self, tenant_id: str) -> list[HandoffInfo]:
        def read(s: Session) -> list[HandoffInfo]:
            rows = s.scalars(
                select(Handoff)
                .where(Handoff.tenant_id == tenant_id, Handoff.status != "closed")
                .order_by(Handoff.requested_at)
                .limit(500)
            )
            return [_info(s, r) for r in rows]

        return await self.db.run(read)

    # --- the patient's side ---------------------------------------------------------------

    async def request(
        self,
        session_id: str,
        *,
        reason: Literal["patient_request", "triage"],
        triage: dict[str, Any] | None = None,
    ) -> HandoffInfo:
        """Queue the session (or return its open handoff: asking twice changes nothing)."""

        def create(s: Session) -> tuple[HandoffInfo, bool]:
            existing = _open(s, session_id)
            if existing is not None:
                if triage is not None and existing.triage is None:
                    existing.triage = triage
                return _info(s, existing), False
            session = s.get(ChatSession, session_id)
            if session is None:
                raise NotFoundError(f"session {session_id} not found", code="session_not_found")
            row = Handoff(
                id=new_id(),
                tenant_id=session.tenant_id,
                session_id=session_id,
                status="waiting",
                reason=reason,
                triage=triage,
                outcome="",
                requested_at=utcnow(),
            )
            s.add(row)
            s.flush()
            append_entry(
                s,
                tenant_id=session.tenant_id,
                actor=f"patient:{session_id}" if reason == "patient_request" else "system",
                action="handoff_requested",
                session_id=session_id,
                details={
                    "handoff_id": row.id,
                    "reason": reason,
                    "level": (triage or {}).get("level"),
                },
            )
            return _info(s, row), True

        info, created = await self.db.run(create)
        if created:
            await self._announce(info, "waiting")
        else:
            # Asked again (a reloaded page, say): tell the session where it stands.
            await self._announce(info, info.status, session_only=True)
        return info

    async def cancel(self, session_id: str) -> HandoffInfo:
        """The patient leaves the queue (only while waiting)."""

        def close(s: Session) -> HandoffInfo:
            row = _open(s, session_id)
            if row is None or row.status != "waiting":
                raise ConflictError("not waiting", code="no_handoff_waiting")
            row.status, row.outcome, row.closed_at = "closed", "cancelled", utcnow()
            append_entry(
                s,
                tenant_id=row.tenant_id,
                actor=f"patient:{session_id}",
                action="handoff_cancelled",
                session_id=session_id,
                details={"handoff_id": row.id},
            )
            s.flush()
            return _info(s, row)

        info = await self.db.run(close)
        await self._announce(info, "cancelled")
        return info

    # --- the clinician's side -------------------------------------------------------------

    async def take(self, handoff_id: str, clinician: ClinicianInfo) -> HandoffInfo:
        def claim(s: Session) -> HandoffInfo:
            result = s.execute(
                update(Handoff)
                .where(
                    Handoff.id == handoff_id,
                    Handoff.tenant_id == clinician.tenant_id,
                    Handoff.status == "waiting",
                )
                .values(status="active", clinician_id=clinician.id, taken_at=utcnow())
            )
            row = s.get(Handoff, handoff_id)
            if row is None or row.tenant_id != clinician.tenant_id:
                raise NotFoundError("no such handoff", code="handoff_not_found")
            if not getattr(result, "rowcount", 0):
                raise ConflictError("already taken or closed", code="handoff_not_waiting")
            s.refresh(row)
            append_entry(
                s,
                tenant_id=row.tenant_id,
                actor=clinician.actor,
                action="handoff_taken",
                session_id=row.session_id,
                details={"handoff_id": row.id},
            )
            return _info(s, row)

        info = await self.db.run(claim)
        # The assistant pauses: an answer it is writing now stops where it is.
        self.cancel_turn(info.session_id)
        await self._announce(info, "active")
        return info

    @staticmethod
    def _owned_sync(s: Session, session_id: str, clinician: ClinicianInfo) -> Handoff:
        row = _open(s, session_id)
        if row is None or row.tenant_id != clinician.tenant_id:
            raise ConflictError("no open handoff", code="handoff_not_yours")
        if row.status != "active" or row.clinician_id != clinician.id:
            raise ConflictError("not the owner", code="handoff_not_yours")
        return row

    async def send(
        self,
        session_id: str,
        clinician: ClinicianInfo,
        text: str,
        *,
        draft_id: str | None = None,
        max_chars: int = 8000,
    ) -> MessageRecord:
        """A clinician's message into the live session."""
        text = text.strip()
        if not text:
            raise InputError("empty message", code="empty_message")
        if len(text) > max_chars:
            raise InputError(
                "message too long", code="message_too_long", length=len(text), limit=max_chars
            )
        draft = self._drafts.pop(draft_id, None) if draft_id else None
        details: dict[str, Any] = {}
        if draft_id:
            details["draft_id"] = draft_id
            details["draft_edited"] = None if draft is None else draft.text.strip() != text

        def write(s: Session) -> MessageRecord:
            row = self._owned_sync(s, session_id, clinician)
            (message,) = _append(
                s,
                session_id,
                [
                    NewMessage(
                        new_id(),
                        "clinician",
                        text,
                        author=clinician.display_name,
                    )
                ],
                touch_session=True,
            )
            append_entry(
                s,
                tenant_id=row.tenant_id,
                actor=clinician.actor,
                action="clinician_message",
                session_id=session_id,
                details={"handoff_id": row.id, "message_id": message.id, **details},
            )
            return message

        message = await self.db.run(write)
        await self.hub.publish(
            ClinicianMessage(
                session_id=session_id,
                message_id=message.id,
                text=message.content,
                clinician_name=clinician.display_name,
            )
        )
        return message

    async def handback(self, handoff_id: str, clinician: ClinicianInfo) -> HandoffInfo:
        def close(s: Session) -> HandoffInfo:
            row = s.get(Handoff, handoff_id)
            if row is None or row.tenant_id != clinician.tenant_id:
                raise NotFoundError("no such handoff", code="handoff_not_found")
            if row.status != "active" or row.clinician_id != clinician.id:
                raise ConflictError("not the owner", code="handoff_not_yours")
            row.status, row.outcome, row.closed_at = "closed", "handed_back", utcnow()
            append_entry(
                s,
                tenant_id=row.tenant_id,
                actor=clinician.actor,
                action="handback",
                session_id=row.session_id,
                details={"handoff_id": row.id},
            )
            s.flush()
            return _info(s, row)

        info = await self.db.run(close)
        await self._announce(info, "handed_back", name=clinician.display_name)
        return info

    async def draft(self, session_id: str, clinician: ClinicianInfo) -> tuple[str, str]:
        """The assistant's suggestion for the clinician's next reply (never sent by itself)."""
        if self.model is None:
            raise HealTraceError("no model", code="draft_failed")
        info = await self.current(session_id)
        if info is None or info.tenant_id != clinician.tenant_id:
            raise ConflictError("no open handoff", code="handoff_not_yours")
        history = [m for m in await self.store.messages(session_id) if m.role != "tool"]
        transcript = "\n".join(
            f"{_speaker(m)}: {m.content}" for m in history if m.content and not m.tool_calls
        )
        request = ModelRequest(
            messages=(
                ChatMessage(role="system", content=load_prompt("clinician_draft", info.locale)),
                ChatMessage(role="user", content=transcript[-12000:]),
            ),
            max_tokens=300,
        )
        parts: list[str] = []
        try:
            async with asyncio.timeout(self.draft_timeout_s):
                async for delta in self.model.stream(request):
                    if isinstance(delta, TextDelta):
                        parts.append(delta.text)
        except (HealTraceError, TimeoutError) as exc:
            log.warning("draft failed: %s", getattr(exc, "code", type(exc).__name__))
            raise HealTraceError("draft failed", code="draft_failed") from exc
        text = "".join(parts).strip()
        if not text:
            raise HealTraceError("empty draft", code="draft_failed")
        draft_id = secrets.token_hex(8)
        self._drafts[draft_id] = _Draft(session_id, clinician.id, text)
        while len(self._drafts) > 1000:
            self._drafts.popitem(last=False)
        await self.db.run(
            lambda s: append_entry(
                s,
                tenant_id=clinician.tenant_id,
                actor=clinician.actor,
                action="draft_created",
                session_id=session_id,
                details={"draft_id": draft_id, "model": self.model.model_id if self.model else ""},
            )
        )
        return draft_id, text

    # --- publishing -----------------------------------------------------------------------

    async def _announce(
        self,
        info: HandoffInfo,
        key: str,
        *,
        name: str | None = None,
        session_only: bool = False,
    ) -> None:
        who = name or info.clinician_name or ""
        await self.hub.publish(
            HandoffEvent(
                session_id=info.session_id,
                handoff_id=info.id,
                status=info.status,
                reason=info.reason,
                clinician_name=info.clinician_name,
                message=patient_text(key, info.locale, name=who),
            )
        )
        if not session_only:
            self.feed.publish(info)

    def close(self) -> None:
        self.feed.close()


def _speaker(m: MessageRecord) -> str:
    if m.role == "clinician":
        return f"Clinician ({m.author})"
    return {"user": "Patient", "assistant": "Assistant"}.get(m.role, m.role)
