"""Conversation memory: sessions and messages in the database, and the model's context window.

A user message is committed before the model is called. The answer is written as it
streams (status ``streaming``) and finished as ``complete``, ``cancelled`` or ``error``;
rows left ``streaming`` by a killed process become ``interrupted`` at the next start.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from healtrace.agent.models.base import ChatMessage, ToolCall
from healtrace.errors import NotFoundError
from healtrace.storage import ApiKey, ChatSession, Database, Message
from healtrace.storage.models import utcnow

MessageStatus = Literal["complete", "streaming", "cancelled", "error", "interrupted"]
KEY_PREFIX = "ht_"


def new_id() -> str:
    return uuid.uuid4().hex


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class SessionInfo:
    id: str
    api_key_id: str
    title: str
    locale: str
    created_at: datetime
    updated_at: datetime
    last_seq: int
    summary: str
    summary_until: int


@dataclass(frozen=True, slots=True)
class MessageRecord:
    id: str
    session_id: str
    position: int
    turn_id: str
    role: Literal["user", "assistant", "tool"]
    content: str
    status: MessageStatus
    created_at: datetime
    reasoning: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    tool_name: str | None = None
    model: str = ""

    def to_chat(self) -> ChatMessage:
        return ChatMessage(
            role=self.role,
            content=self.content,
            tool_calls=self.tool_calls,
            tool_call_id=self.tool_call_id,
            name=self.tool_name,
        )


def _session_info(row: ChatSession) -> SessionInfo:
    return SessionInfo(
        id=row.id,
        api_key_id=row.api_key_id,
        title=row.title,
        locale=row.locale,
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_seq=row.last_seq,
        summary=row.summary,
        summary_until=row.summary_until,
    )


def _message_record(row: Message) -> MessageRecord:
    calls = tuple(
        ToolCall(id=c["id"], name=c["name"], arguments=c["arguments"]) for c in row.tool_calls or ()
    )
    return MessageRecord(
        id=row.id,
        session_id=row.session_id,
        position=row.position,
        turn_id=row.turn_id,
        role=row.role,  # type: ignore[arg-type]
        content=row.content,
        status=row.status,  # type: ignore[arg-type]
        created_at=row.created_at,
        reasoning=row.reasoning,
        tool_calls=calls,
        tool_call_id=row.tool_call_id,
        tool_name=row.tool_name,
        model=row.model,
    )


class ChatStore:
    """Sessions, messages and API keys. Every method is one short transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- API keys -------------------------------------------------------------------------

    async def create_api_key(self, name: str) -> tuple[str, str]:
        """A new key; returns ``(key_id, plaintext)``. Only the hash is stored."""
        plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
        key_id = new_id()
        async with self.db.sessionmaker.begin() as s:
            s.add(ApiKey(id=key_id, name=name, prefix=plaintext[:10], key_hash=hash_key(plaintext)))
        return key_id, plaintext

    async def verify_api_key(self, plaintext: str) -> str | None:
        """The key's id if ``plaintext`` is a live key, else None."""
        if not plaintext.startswith(KEY_PREFIX) or len(plaintext) > 200:
            return None
        async with self.db.sessionmaker() as s:
            row = await s.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(plaintext)))
        if row is None or row.revoked_at is not None:
            return None
        return row.id

    async def ensure_named_key(self, name: str) -> str:
        """The id of a live key called ``name`` (created, never shown, if missing).

        In-process clients such as the terminal chat own sessions through it.
        """
        async with self.db.sessionmaker() as s:
            row = await s.scalar(
                select(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None)).limit(1)
            )
        if row is not None:
            return row.id
        key_id, _plaintext = await self.create_api_key(name)
        return key_id

    async def count_api_keys(self) -> int:
        async with self.db.sessionmaker() as s:
            return int(await s.scalar(select(func.count()).select_from(ApiKey)) or 0)

    async def revoke_api_key(self, key_id: str) -> None:
        async with self.db.sessionmaker.begin() as s:
            await s.execute(update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=utcnow()))

    # --- sessions -------------------------------------------------------------------------

    async def create_session(self, api_key_id: str, *, locale: str, title: str = "") -> SessionInfo:
        row = ChatSession(id=new_id(), api_key_id=api_key_id, locale=locale, title=title[:200])
        async with self.db.sessionmaker.begin() as s:
            s.add(row)
        return _session_info(row)

    async def get_session(self, session_id: str, api_key_id: str | None = None) -> SessionInfo:
        """The session, if it exists and belongs to ``api_key_id`` (when given)."""
        async with self.db.sessionmaker() as s:
            row = await s.get(ChatSession, session_id)
        if row is None or (api_key_id is not None and row.api_key_id != api_key_id):
            raise NotFoundError(f"session {session_id} not found", code="session_not_found")
        return _session_info(row)

    async def list_sessions(self, api_key_id: str, *, limit: int = 50) -> list[SessionInfo]:
        async with self.db.sessionmaker() as s:
            rows = await s.scalars(
                select(ChatSession)
                .where(ChatSession.api_key_id == api_key_id)
                .order_by(ChatSession.updated_at.desc())
                .limit(limit)
            )
            return [_session_info(r) for r in rows]

    async def set_last_seq(self, session_id: str, seq: int) -> None:
        async with self.db.sessionmaker.begin() as s:
            await s.execute(
                update(ChatSession)
                .where(ChatSession.id == session_id, ChatSession.last_seq < seq)
                .values(last_seq=seq)
            )

    async def save_summary(self, session_id: str, summary: str, until: int) -> None:
        async with self.db.sessionmaker.begin() as s:
            await s.execute(
                update(ChatSession)
                .where(ChatSession.id == session_id)
                .values(summary=summary, summary_until=until)
            )

    # --- messages -------------------------------------------------------------------------

    async def add_message(
        self,
        session_id: str,
        *,
        turn_id: str,
        role: Literal["user", "assistant", "tool"],
        content: str,
        status: MessageStatus = "complete",
        tool_calls: Sequence[ToolCall] = (),
        tool_call_id: str | None = None,
        tool_name: str | None = None,
        model: str = "",
        title_if_new: str | None = None,
    ) -> MessageRecord:
        """Append a message at the session's next position and commit it."""
        for _attempt in range(3):
            try:
                async with self.db.sessionmaker.begin() as s:
                    last = await s.scalar(
                        select(func.max(Message.position)).where(Message.session_id == session_id)
                    )
                    row = Message(
                        id=new_id(),
                        session_id=session_id,
                        position=(last or 0) + 1,
                        turn_id=turn_id,
                        role=role,
                        content=content,
                        status=status,
                        tool_calls=[
                            {"id": c.id, "name": c.name, "arguments": c.arguments}
                            for c in tool_calls
                        ]
                        or None,
                        tool_call_id=tool_call_id,
                        tool_name=tool_name,
                        model=model,
                    )
                    s.add(row)
                    values: dict[str, Any] = {"updated_at": utcnow()}
                    if title_if_new and last is None:
                        values["title"] = title_if_new[:80]
                    await s.execute(
                        update(ChatSession).where(ChatSession.id == session_id).values(**values)
                    )
                return _message_record(row)
            except IntegrityError:
                continue  # another writer took the position; take the next one
        raise RuntimeError(f"could not append a message to session {session_id}")

    async def update_message(
        self,
        message_id: str,
        *,
        content: str,
        status: MessageStatus,
        reasoning: str = "",
        model: str = "",
        last_seq: int | None = None,
    ) -> None:
        """Rewrite a streaming answer; optionally record the session's sequence number too."""
        async with self.db.sessionmaker.begin() as s:
            row = await s.get(Message, message_id)
            if row is None:
                raise NotFoundError(f"message {message_id} not found")
            row.content, row.status, row.reasoning = content, status, reasoning
            if model:
                row.model = model
            if last_seq is not None:
                await s.execute(
                    update(ChatSession)
                    .where(ChatSession.id == row.session_id, ChatSession.last_seq < last_seq)
                    .values(last_seq=last_seq)
                )

    async def messages(self, session_id: str, *, after_position: int = 0) -> list[MessageRecord]:
        async with self.db.sessionmaker() as s:
            rows = await s.scalars(
                select(Message)
                .where(Message.session_id == session_id, Message.position > after_position)
                .order_by(Message.position)
            )
            return [_message_record(r) for r in rows]

    async def mark_interrupted(self) -> int:
        """Answers a previous process left mid-stream: mark them so clients know they ended."""
        async with self.db.sessionmaker.begin() as s:
            result = await s.execute(
                update(Message).where(Message.status == "streaming").values(status="interrupted")
            )
            return int(getattr(result, "rowcount", 0) or 0)
