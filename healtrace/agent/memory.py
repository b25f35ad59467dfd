"""Conversation memory: sessions and messages in the database, and the model's context window.

A user message is committed before the model is called. The answer is written as it
streams (status ``streaming``) and finished as ``complete``, ``cancelled`` or ``error``;
rows left ``streaming`` by a killed process become ``interrupted`` at the next start.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.orm import Session

from healtrace.agent.models.base import ChatMessage, ToolCall
from healtrace.chain.evidence import EvidenceRecord
from healtrace.chain.outbox import add_evidence
from healtrace.errors import NotFoundError
from healtrace.storage import ApiKey, ChatSession, Database, Message
from healtrace.storage.models import utcnow

MessageStatus = Literal["complete", "streaming", "cancelled", "error", "interrupted"]
Role = Literal["user", "assistant", "tool", "clinician"]
KEY_PREFIX = "ht_"
KeyKind = Literal["secret", "publishable"]


def new_id() -> str:
    return uuid.uuid4().hex


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` as browsers send it in ``Origin`` (no path, no trailing slash)."""
    value = origin.strip().rstrip("/")
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not rest or "/" in rest:
        raise ValueError(f"not an origin (scheme://host[:port]): {origin!r}")
    return f"{scheme.lower()}://{rest.lower()}"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What the service needs to know about a presented API key."""

    id: str
    kind: KeyKind
    tenant_id: str
    #: A publishable key's origins (empty for secret keys).
    allowed_origins: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SessionInfo:
    id: str
    api_key_id: str
    title: str
    locale: str
    tenant_id: str
    created_at: datetime
    updated_at: datetime
    last_seq: int
    summary: str
    summary_until: int
    #: The patient the session acts for (opened with a patient key), if any.
    patient_id: str | None = None


_SESSION_FIELDS = fields(SessionInfo)


@dataclass(frozen=True, slots=True)
class MessageRecord:
    id: str
    session_id: str
    position: int
    turn_id: str
    role: Role
    content: str
    status: MessageStatus
    created_at: datetime
    reasoning: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    tool_name: str | None = None
    model: str = ""
    citations: tuple[dict[str, Any], ...] = ()
    safety: dict[str, Any] | None = None
    #: The clinician's name on a clinician message.
    author: str = ""
    #: Voice: how a spoken question was heard (duration, ASR model, language), or what of
    #: a spoken answer the patient heard before interrupting (``spoken_text``, ``interrupted``).
    voice: dict[str, Any] | None = None

    @property
    def is_tool_traffic(self) -> bool:
        """A tool result, or the assistant's turn that only asked for tools."""
        return self.role == "tool" or (self.role == "assistant" and bool(self.tool_calls))

    def to_chat(self) -> ChatMessage:
        if self.role == "clinician":
            # The model sees a clinician's words as part of the care team's side of the
            # conversation, labelled, so after a handback it knows what was said.
            return ChatMessage(role="assistant", content=f"[{self.author}] {self.content}")
        return ChatMessage(
            role=self.role,
            content=self.content,
            tool_calls=self.tool_calls,
            tool_call_id=self.tool_call_id,
            name=self.tool_name,
        )


def _session_info_from(values: Mapping[str, Any]) -> SessionInfo:
    """A session read as a Core row (its columns are named as the fields)."""
    return SessionInfo(**{f.name: values[f.name] for f in _SESSION_FIELDS})


def _session_info(row: ChatSession) -> SessionInfo:
    return SessionInfo(
        id=row.id,
        api_key_id=row.api_key_id,
        title=row.title,
        locale=row.locale,
        tenant_id=row.tenant_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_seq=row.last_seq,
        summary=row.summary,
        summary_until=row.summary_until,
        patient_id=row.patient_id,
    )


def _message_record(row: RowMapping | Mapping[str, Any]) -> MessageRecord:
    calls = tuple(
        ToolCall(id=c["id"], name=c["name"], arguments=c["arguments"])
        for c in row["tool_calls"] or ()
    )
    return MessageRecord(
        id=row["id"],
        session_id=row["session_id"],
        position=row["position"],
        turn_id=row["turn_id"],
        role=row["role"],
        content=row["content"],
        status=row["status"],
        created_at=row["created_at"],
        reasoning=row["reasoning"],
        tool_calls=calls,
        tool_call_id=row["tool_call_id"],
        tool_name=row["tool_name"],
        model=row["model"],
        citations=tuple(row["citations"] or ()),
        safety=row["safety"],
        author=row["author"],
        voice=row.get("voice"),
    )


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to append (see :meth:`ChatStore.add_messages`)."""

    turn_id: str
    role: Role
    content: str
    status: MessageStatus = "complete"
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    tool_name: str | None = None
    model: str = ""
    citations: tuple[dict[str, Any], ...] = ()
    reasoning: str = ""
    safety: dict[str, Any] | None = None
    author: str = ""
    voice: dict[str, Any] | None = None
    #: A caller-chosen id (so an evidence record can name the message in the same write).
    id: str | None = None


def _append(
    s: Session, session_id: str, items: Sequence[NewMessage], *, touch_session: bool = False
) -> list[MessageRecord]:
    # Core inserts, not ORM units of work: this runs on every turn's critical path.
    last = s.scalar(select(func.max(Message.position)).where(Message.session_id == session_id))
    now = utcnow()
    records = [
        MessageRecord(
            id=m.id or new_id(),
            session_id=session_id,
            position=(last or 0) + offset,
            turn_id=m.turn_id,
            role=m.role,
            content=m.content,
            status=m.status,
            created_at=now,
            tool_calls=m.tool_calls,
            tool_call_id=m.tool_call_id,
            tool_name=m.tool_name,
            model=m.model,
            citations=m.citations,
            reasoning=m.reasoning,
            safety=m.safety,
            author=m.author,
            voice=m.voice,
        )
        for offset, m in enumerate(items, start=1)
    ]
    s.execute(
        insert(Message),
        [
            {
                "id": r.id,
                "session_id": session_id,
                "position": r.position,
                "turn_id": r.turn_id,
                "role": r.role,
                "content": r.content,
                "reasoning": r.reasoning,
                "status": r.status,
                "tool_calls": [
                    {"id": c.id, "name": c.name, "arguments": c.arguments} for c in r.tool_calls
                ]
                or None,
                "tool_call_id": r.tool_call_id,
                "tool_name": r.tool_name,
                "model": r.model,
                "citations": list(r.citations) or None,
                "safety": r.safety,
                "author": r.author,
                "voice": r.voice,
                "created_at": now,
                "updated_at": now,
            }
            for r in records
        ],
    )
    if touch_session:
        s.execute(update(ChatSession).where(ChatSession.id == session_id).values(updated_at=now))
    return records


def _history(s: Session, session_id: str, after_position: int) -> list[MessageRecord]:
    table = Message.__table__
    rows = s.execute(
        select(table)
        .where(table.c.session_id == session_id, table.c.position > after_position)
        .order_by(table.c.position)
    ).mappings()
    return [_message_record(r) for r in rows]


@dataclass(frozen=True, slots=True)
class TurnStart:
    session: SessionInfo
    user_message: MessageRecord
    #: Messages after the summary, the new question last.
    history: list[MessageRecord]


class ChatStore:
    """Sessions, messages and API keys. Every method is one short transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- API keys -------------------------------------------------------------------------

    async def create_api_key(
        self,
        name: str,
        *,
        tenant_id: str = "default",
        patient_id: str | None = None,
        kind: KeyKind = "secret",
        allowed_origins: Sequence[str] | None = None,
    ) -> tuple[str, str]:
        """A new key; returns ``(key_id, plaintext)``. Only the hash is stored. A key with
        ``patient_id`` acts for that patient (their records, consent and rewards). A
        ``publishable`` key lives in web pages: it is accepted only from ``allowed_origins``
        (at least one, exact ``scheme://host[:port]``) and only for chatting."""
        origins: list[str] | None = None
        if kind == "publishable":
            origins = [normalize_origin(o) for o in allowed_origins or ()]
            if not origins:
                raise ValueError("a publishable key needs at least one allowed origin")
            if patient_id is not None:
                raise ValueError("a publishable key cannot act for a patient")
        elif allowed_origins:
            raise ValueError("only publishable keys are bound to origins")
        # "ht_pk_…" tells a reader at a glance that a key is meant to be public.
        marker = "pk_" if kind == "publishable" else ""
        plaintext = KEY_PREFIX + marker + secrets.token_urlsafe(32)
        key_id = new_id()
        row = ApiKey(
            id=key_id,
            name=name,
            prefix=plaintext[:10],
            key_hash=hash_key(plaintext),
            tenant_id=tenant_id,
            patient_id=patient_id,
            kind=kind,
            allowed_origins=origins,
        )
        await self.db.run(lambda s: s.add(row))
        return key_id, plaintext

    async def lookup_api_key(self, plaintext: str) -> KeyInfo | None:
        """The live key ``plaintext`` names, with its kind and origins, else None."""
        if not plaintext.startswith(KEY_PREFIX) or len(plaintext) > 200:
            return None
        digest = hash_key(plaintext)

        def lookup(s: Session) -> KeyInfo | None:
            row = s.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
            if row is None or row.revoked_at is not None:
                return None
            kind: KeyKind = "publishable" if row.kind == "publishable" else "secret"
            return KeyInfo(
                id=row.id,
                kind=kind,
                tenant_id=row.tenant_id,
                allowed_origins=tuple(row.allowed_origins or ()),
            )

        return await self.db.run(lookup)

    async def publishable_origins(self) -> frozenset[str]:
        """Every origin some live publishable key is bound to (widgets may connect from them)."""

        def query(s: Session) -> frozenset[str]:
            rows = s.scalars(
                select(ApiKey.allowed_origins).where(
                    ApiKey.kind == "publishable", ApiKey.revoked_at.is_(None)
                )
            )
            return frozenset(o for origins in rows for o in origins or ())

        return await self.db.run(query)

    async def verify_api_key(self, plaintext: str) -> str | None:
        """The key's id if ``plaintext`` is a live key, else None."""
        if not plaintext.startswith(KEY_PREFIX) or len(plaintext) > 200:
            return None
        digest = hash_key(plaintext)

        def lookup(s: Session) -> str | None:
            row = s.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
            return row.id if row is not None and row.revoked_at is None else None

        return await self.db.run(lookup)

    async def key_patient(self, key_id: str) -> str | None:
        """The patient a key acts for (None for tenant and server keys)."""
        return await self.db.run(
            lambda s: s.scalar(select(ApiKey.patient_id).where(ApiKey.id == key_id))
        )

    async def key_tenant(self, key_id: str) -> str:
        """The tenant an API key belongs to (what its uploads and sessions are filed under)."""

        def lookup(s: Session) -> str:
            return s.scalar(select(ApiKey.tenant_id).where(ApiKey.id == key_id)) or "default"

        return await self.db.run(lookup)

    async def ensure_named_key(self, name: str) -> str:
        """The id of a live key called ``name`` (created, never shown, if missing).

        In-process clients such as the terminal chat own sessions through it.
        """

        def find(s: Session) -> str | None:
            return s.scalar(
                select(ApiKey.id).where(ApiKey.name == name, ApiKey.revoked_at.is_(None)).limit(1)
            )

        found = await self.db.run(find)
        if found is not None:
            return found
        key_id, _plaintext = await self.create_api_key(name)
        return key_id

    async def count_api_keys(self) -> int:
        return await self.db.run(
            lambda s: int(s.scalar(select(func.count()).select_from(ApiKey)) or 0)
        )

    async def revoke_api_key(self, key_id: str) -> None:
        await self.db.run(
            lambda s: s.execute(
                update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=utcnow())
            )
        )

    # --- sessions -------------------------------------------------------------------------

    async def create_session(self, api_key_id: str, *, locale: str, title: str = "") -> SessionInfo:
        def create(s: Session) -> SessionInfo:
            key = s.execute(
                select(ApiKey.tenant_id, ApiKey.patient_id).where(ApiKey.id == api_key_id)
            ).first()
            row = ChatSession(
                id=new_id(),
                api_key_id=api_key_id,
                tenant_id=(key.tenant_id if key else None) or "default",
                patient_id=key.patient_id if key else None,
                locale=locale,
                title=title[:200],
                last_seq=0,
                summary="",
                summary_until=0,
            )
            s.add(row)
            s.flush()
            return _session_info(row)

        return await self.db.run(create)

    async def get_session(self, session_id: str, api_key_id: str | None = None) -> SessionInfo:
        """The session, if it exists and belongs to ``api_key_id`` (when given)."""
        row = await self.db.run(lambda s: s.get(ChatSession, session_id))
        if row is None or (api_key_id is not None and row.api_key_id != api_key_id):
            raise NotFoundError(f"session {session_id} not found", code="session_not_found")
        return _session_info(row)

    async def list_sessions(self, api_key_id: str, *, limit: int = 50) -> list[SessionInfo]:
        def query(s: Session) -> list[SessionInfo]:
            rows = s.scalars(
                select(ChatSession)
                .where(ChatSession.api_key_id == api_key_id)
                .order_by(ChatSession.updated_at.desc())
                .limit(limit)
            )
            return [_session_info(r) for r in rows]

        return await self.db.run(query)

    async def set_last_seq(self, session_id: str, seq: int) -> None:
        await self.db.run(
            lambda s: s.execute(
                update(ChatSession)
                .where(ChatSession.id == session_id, ChatSession.last_seq < seq)
                .values(last_seq=seq)
            )
        )

    async def save_summary(self, session_id: str, summary: str, until: int) -> None:
        await self.db.run(
            lambda s: s.execute(
                update(ChatSession)
                .where(ChatSession.id == session_id, ChatSession.summary_until < until)
                .values(summary=summary, summary_until=until)
            )
        )

    # --- messages -------------------------------------------------------------------------

    async def begin_turn(
        self,
        session_id: str,
        *,
        turn_id: str,
        text: str,
        safety: dict[str, Any] | None = None,
        voice: dict[str, Any] | None = None,
    ) -> TurnStart:
        """Store the user's message and read what the model needs, in one transaction."""

        def begin(s: Session) -> TurnStart:
            # Core statements, not the ORM (identity map, flush): this transaction is on
            # every turn's critical path, before the model is asked anything.
            table = ChatSession.__table__
            row = s.execute(select(table).where(table.c.id == session_id)).mappings().first()
            if row is None:
                raise NotFoundError(f"session {session_id} not found", code="session_not_found")
            (message,) = _append(
                s,
                session_id,
                [NewMessage(turn_id, "user", text, safety=safety, voice=voice)],
            )
            touched: dict[str, Any] = {"updated_at": message.created_at}
            if not row["title"]:
                touched["title"] = text[:80]
            s.execute(update(ChatSession).where(ChatSession.id == session_id).values(**touched))
            info = _session_info_from({**row, "title": touched.get("title", row["title"])})
            return TurnStart(info, message, _history(s, session_id, info.summary_until))

        return await self.db.run(begin)

    async def add_messages(
        self,
        session_id: str,
        items: Sequence[NewMessage],
        *,
        evidence: EvidenceRecord | None = None,
    ) -> list[MessageRecord]:
        """Append messages at the session's next positions, in one transaction (with the
        answer's evidence record, when given)."""

        def write(s: Session) -> list[MessageRecord]:
            records = _append(s, session_id, items)
            if evidence is not None:
                add_evidence(s, evidence)
            return records

        return await self.db.run(write)

    async def add_message(
        self,
        session_id: str,
        *,
        turn_id: str,
        role: Role,
        content: str,
        status: MessageStatus = "complete",
        tool_calls: Sequence[ToolCall] = (),
        tool_call_id: str | None = None,
        tool_name: str | None = None,
        model: str = "",
        citations: Sequence[dict[str, Any]] = (),
        reasoning: str = "",
        safety: dict[str, Any] | None = None,
        author: str = "",
        message_id: str | None = None,
        evidence: EvidenceRecord | None = None,
    ) -> MessageRecord:
        """Append one message and commit it (with its evidence record, when given)."""
        item = NewMessage(
            turn_id,
            role,
            content,
            status,
            tuple(tool_calls),
            tool_call_id,
            tool_name,
            model,
            tuple(citations),
            reasoning,
            safety,
            author,
            id=message_id,
        )
        return (await self.add_messages(session_id, [item], evidence=evidence))[0]

    async def update_message(
        self,
        message_id: str,
        *,
        content: str,
        status: MessageStatus,
        reasoning: str = "",
        model: str = "",
        citations: Sequence[dict[str, Any]] = (),
        safety: dict[str, Any] | None = None,
        evidence: EvidenceRecord | None = None,
    ) -> None:
        """Rewrite a streaming answer (and write its evidence record in the same
        transaction, when given)."""
        values: dict[str, Any] = {
            "content": content,
            "status": status,
            "reasoning": reasoning,
            "updated_at": utcnow(),
            "citations": list(citations) or None,
        }
        if model:
            values["model"] = model
        if safety is not None:
            values["safety"] = safety

        def write(s: Session) -> None:
            result = s.execute(update(Message).where(Message.id == message_id).values(**values))
            if not getattr(result, "rowcount", 1):
                raise NotFoundError(f"message {message_id} not found")
            if evidence is not None:
                add_evidence(s, evidence)

        await self.db.run(write)

    async def set_voice(self, message_id: str, voice: dict[str, Any]) -> None:
        """Record what of a spoken answer was heard (voice turns, barge-in)."""

        def write(s: Session) -> None:
            result = s.execute(update(Message).where(Message.id == message_id).values(voice=voice))
            if not getattr(result, "rowcount", 1):
                raise NotFoundError(f"message {message_id} not found")

        await self.db.run(write)

    async def messages(self, session_id: str, *, after_position: int = 0) -> list[MessageRecord]:
        return await self.db.run(lambda s: _history(s, session_id, after_position))

    async def mark_interrupted(self) -> int:
        """Answers a previous process left mid-stream: mark them so clients know they ended."""

        def mark(s: Session) -> int:
            result = s.execute(
                update(Message).where(Message.status == "streaming").values(status="interrupted")
            )
            return int(getattr(result, "rowcount", 0) or 0)

        return await self.db.run(mark)
