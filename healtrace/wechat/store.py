"""The channel's rows: the session of each WeChat user, and the claim on each message."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from healtrace.agent.memory import ChatStore, new_id
from healtrace.storage.models import ApiKey, ChatSession
from healtrace.wechat.models import WechatMessage, WechatUser

__all__ = ["Claim", "WechatStore"]

#: The API key (one per tenant, never shown) that owns the WeChat users' sessions.
KEY_NAME = "wechat"


@dataclass(frozen=True)
class Claim:
    #: True for the first delivery; False for a retry of a message already received.
    new: bool
    status: str
    reply: str


class WechatStore:
    def __init__(self, chat: ChatStore) -> None:
        self.chat = chat
        self.db = chat.db

    async def claim(self, tenant_id: str, msg_key: str, *, openid: str, msg_type: str) -> Claim:
        """Record the message as being answered, unless it was received before: the unique
        index makes this safe across workers."""

        def insert(s: Session) -> None:
            s.add(
                WechatMessage(
                    id=new_id(),
                    tenant_id=tenant_id,
                    msg_key=msg_key[:192],
                    openid=openid,
                    msg_type=msg_type[:32],
                    status="answering",
                    reply="",
                )
            )

        try:
            await self.db.run(insert)
            return Claim(new=True, status="answering", reply="")
        except IntegrityError:
            pass

        def find(s: Session) -> Claim:
            row = s.scalar(
                select(WechatMessage).where(
                    WechatMessage.tenant_id == tenant_id, WechatMessage.msg_key == msg_key[:192]
                )
            )
            if row is None:  # pragma: no cover - the row that clashed cannot disappear
                return Claim(new=False, status="answering", reply="")
            return Claim(new=False, status=row.status, reply=row.reply)

        return await self.db.run(find)

    async def finish(
        self, tenant_id: str, msg_key: str, *, status: str, reply: str, turn_id: str | None
    ) -> None:
        await self.db.run(
            lambda s: s.execute(
                update(WechatMessage)
                .where(WechatMessage.tenant_id == tenant_id, WechatMessage.msg_key == msg_key[:192])
                .values(status=status, reply=reply, turn_id=turn_id)
            )
        )

    async def _key(self, tenant_id: str) -> str:
        def find(s: Session) -> str | None:
            return s.scalar(
                select(ApiKey.id)
                .where(
                    ApiKey.name == KEY_NAME,
                    ApiKey.tenant_id == tenant_id,
                    ApiKey.revoked_at.is_(None),
                )
                .limit(1)
            )

        found = await self.db.run(find)
        if found is not None:
            return found
        key_id, _plaintext = await self.chat.create_api_key(KEY_NAME, tenant_id=tenant_id)
        return key_id

    async def session_for(self, tenant_id: str, openid: str, *, locale: str) -> str:
        """The HealTrace session of this WeChat user (created on their first message)."""

        def find(s: Session) -> str | None:
            return s.scalar(
                select(WechatUser.session_id)
                .join(ChatSession, ChatSession.id == WechatUser.session_id)
                .where(WechatUser.tenant_id == tenant_id, WechatUser.openid == openid)
            )

        found = await self.db.run(find)
        if found is not None:
            return found
        session = await self.chat.create_session(
            await self._key(tenant_id), locale=locale, title="WeChat"
        )

        def link(s: Session) -> None:
            s.add(
                WechatUser(id=new_id(), tenant_id=tenant_id, openid=openid, session_id=session.id)
            )

        try:
            await self.db.run(link)
        except IntegrityError:
            # The same user's other message won the race: use its session.
            found = await self.db.run(find)
            if found is not None:
                return found
            raise
        return session.id
