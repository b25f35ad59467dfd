"""The WeChat channel's tables (migration 0010): which HealTrace session a WeChat user talks
in, and every message received, keyed so WeChat's retries are recognised."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from healtrace.storage.models import Base, utcnow

__all__ = ["WechatMessage", "WechatUser"]


class WechatUser(Base):
    """One HealTrace session per (tenant, openid)."""

    __tablename__ = "wechat_users"
    __table_args__ = (Index("ix_wechat_users_tenant_openid", "tenant_id", "openid", unique=True),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    #: The sender: an Official Account openid, or a WeCom userid.
    openid: Mapped[str] = mapped_column(String(128))
    session_id: Mapped[str] = mapped_column(ForeignKey("chat_sessions.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WechatMessage(Base):
    """A received message; ``(tenant_id, msg_key)`` is unique, so a retry cannot be claimed
    twice. ``msg_key`` is the MsgId, or sender + CreateTime for events (which have none)."""

    __tablename__ = "wechat_messages"
    __table_args__ = (Index("ix_wechat_messages_key", "tenant_id", "msg_key", unique=True),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    msg_key: Mapped[str] = mapped_column(String(192))
    openid: Mapped[str] = mapped_column(String(128))
    msg_type: Mapped[str] = mapped_column(String(32))
    #: ``answering`` → ``replied`` (answered in the callback) or ``pushed`` / ``failed``.
    status: Mapped[str] = mapped_column(String(16))
    #: The HealTrace turn that answered it, if one ran.
    turn_id: Mapped[str | None] = mapped_column(String(32), nullable=True, default=None)
    #: The answer as sent (a passive reply is repeated verbatim if WeChat retries).
    reply: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
