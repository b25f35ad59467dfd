"""WebSocket chat: ``/v1/ws/chat``. The protocol is documented in docs/protocol.md.

One connection follows one session. The first frame must be ``hello`` (with the API key,
unless the handshake carried ``Authorization: Bearer``). Frames that are not JSON, not a
known type, or too large get an ``error`` event and the connection stays open; a missing
or wrong key closes it with 4401, a foreign Origin is refused at the handshake.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ValidationError

from healtrace.agent.events import ErrorEvent
from healtrace.agent.orchestrator import UserTurn
from healtrace.agent.sessions import Subscription
from healtrace.api._http import (
    bearer_token,
    end_user_of,
    key_origin_ok,
    origin_allowed,
    pick_locale,
    same_origin,
)
from healtrace.api.protocol import (
    CLIENT_FRAME,
    CLIENT_TYPES,
    CLOSE_AUTH,
    CLOSE_HELLO_TIMEOUT,
    CLOSE_NOT_FOUND,
    CLOSE_ORIGIN,
    AudioEnd,
    AudioStart,
    AudioStop,
    Cancel,
    CancelHandoff,
    Hello,
    HelloOk,
    Ping,
    Playback,
    Pong,
    RequestHandoff,
    Resume,
    UserMessage,
)
from healtrace.api.ratelimit import limiter_of
from healtrace.api.services import Services
from healtrace.api.voice import VoiceSession
from healtrace.errors import ConflictError, HealTraceError, InputError, NotFoundError, localized
from healtrace.tenants import tenant_locale
from healtrace.vision.service import image_question

log = logging.getLogger(__name__)
router = APIRouter()


class AudioFrame:
    """One binary audio frame from the client (see ``AudioStart``)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def _error(code: str, locale: str, **params: Any) -> ErrorEvent:
    """A connection-level error (seq 0: not part of the session's numbered stream)."""
    return ErrorEvent(code=code, message=localized(code, locale, **params))


class _Connection:
    def __init__(self, ws: WebSocket, services: Services) -> None:
        self.ws = ws
        self.services = services
        self.settings = services.settings
        self.locale = pick_locale(ws.headers.get("accept-language"), self.settings.default_locale)
        self.key_id: str | None = None
        #: A publishable key's visitor (rate limits); None for secret keys, which are not limited.
        self.end_user: str | None = None
        self.publishable = False
        self.session_id: str | None = None
        self.tenant_id: str | None = None
        self.patient_id: str | None = None
        self.forwarder: asyncio.Task[None] | None = None
        self.voice: VoiceSession | None = None
        self._send_lock = asyncio.Lock()

    async def send(self, payload: BaseModel) -> None:
        async with self._send_lock:
            await self.ws.send_text(payload.model_dump_json())

    async def receive_frame(self) -> tuple[str | None, Any]:
        """The next frame, parsed: ``(None, frame)`` or ``(error_code, params)``."""
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        raw: str | bytes | None = message.get("text")
        if raw is None:
            raw = message.get("bytes") or b""
        size = len(raw.encode("utf-8") if isinstance(raw, str) else raw)
        if size > self.settings.max_frame_bytes:
            return "frame_too_large", {"size": size, "limit": self.settings.max_frame_bytes}
        if isinstance(raw, bytes) and raw[:1] in (b"\x00", b"\x01"):
            # Binary audio: a flags byte (0 or 1) then PCM; JSON never starts so.
            return None, AudioFrame(raw)
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return "invalid_json", {}
        if not isinstance(data, dict):
            return "invalid_json", {}
        kind = data.get("type")
        if kind not in CLIENT_TYPES:
            return "unknown_event_type", {"event_type": str(kind)[:40]}
        try:
            return None, CLIENT_FRAME.validate_python(data)
        except ValidationError as exc:
            detail = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'][1:]) or 'frame'}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
            return "invalid_event", {"detail": detail[:300]}

    # --- hello ----------------------------------------------------------------------------

    async def handshake(self) -> bool:
        header_key = bearer_token(self.ws.headers.get("authorization"), None)
        while True:
            try:
                async with asyncio.timeout(self.settings.hello_timeout_s):
                    code, frame = await self.receive_frame()
            except TimeoutError:
                await self.send(_error("hello_required", self.locale))
                await self.ws.close(CLOSE_HELLO_TIMEOUT)
                return False
            if code is not None:
                await self.send(_error(code, self.locale, **frame))
                continue
            if not isinstance(frame, Hello):
                await self.send(_error("hello_required", self.locale))
                continue
            break
        if frame.locale:
            self.locale = frame.locale
        token = frame.api_key or header_key
        if not token:
            await self.send(_error("auth_required", self.locale))
            await self.ws.close(CLOSE_AUTH)
            return False
        key = await self.services.store.lookup_api_key(token)
        if key is None:
            await self.send(_error("auth_invalid", self.locale))
            await self.ws.close(CLOSE_AUTH)
            return False
        headers = self.ws.headers
        if not key_origin_ok(
            key, headers.get("origin"), headers.get("host"), self.settings.resolved_origins
        ):
            await self.send(_error("key_origin_forbidden", self.locale))
            await self.ws.close(CLOSE_ORIGIN)
            return False
        self.key_id = key.id
        if key.kind == "publishable":
            self.publishable = True
            client = self.ws.client.host if self.ws.client else None
            self.end_user = end_user_of(frame.end_user, client)
        store = self.services.store
        if frame.session_id:
            try:
                session = await store.get_session(frame.session_id, self.key_id)
            except NotFoundError:
                await self.send(_error("session_not_found", self.locale))
                await self.ws.close(CLOSE_NOT_FOUND)
                return False
            if not frame.locale:
                self.locale = session.locale
        else:
            if not frame.locale and self.settings.tenants:
                fallback = tenant_locale(self.settings, key.tenant_id)
                self.locale = pick_locale(headers.get("accept-language"), fallback)
            session = await store.create_session(self.key_id, locale=self.locale)
        self.session_id = session.id
        self.tenant_id = session.tenant_id
        self.patient_id = session.patient_id
        stream = await self.services.hub.subscribe(session.id, after_seq=frame.resume_from_seq)
        complete = stream.complete
        await self.send(
            HelloOk(
                session_id=session.id,
                locale=self.locale,
                last_seq=await self.services.hub.last_seq(session.id),
                resumed=complete,
            )
        )
        if not complete:
            await self.send(_error("resume_gap", self.locale))
        self._follow(stream)
        return True

    def _follow(self, stream: Subscription) -> None:
        if self.forwarder is not None:
            self.forwarder.cancel()
        self.forwarder = asyncio.get_running_loop().create_task(self._forward(stream))

    async def _forward(self, stream: Subscription) -> None:
        try:
            async for event in stream:
                if event.type == "reasoning" and not self.settings.stream_reasoning:
                    continue
                await self.send(event)
                if self.voice is not None:
                    await self.voice.observe(event)
        finally:
            await stream.aclose()

    # --- the conversation -----------------------------------------------------------------

    async def serve(self) -> None:
        assert self.session_id is not None
        while True:
            code, frame = await self.receive_frame()
            if code is not None:
                await self.send(_error(code, self.locale, **frame))
            elif isinstance(frame, AudioFrame | AudioStart | AudioEnd | AudioStop | Playback):
                await self.on_voice(frame)
            elif isinstance(frame, UserMessage):
                await self.on_user_message(frame)
            elif isinstance(frame, Cancel):
                if not self.services.runner.cancel(self.session_id):
                    await self.send(_error("no_turn_running", self.locale))
            elif isinstance(frame, Resume):
                stream = await self.services.hub.subscribe(
                    self.session_id, after_seq=frame.after_seq
                )
                if not stream.complete:
                    await self.send(_error("resume_gap", self.locale))
                self._follow(stream)
            elif isinstance(frame, Ping):
                await self.send(Pong())
            elif isinstance(frame, RequestHandoff):
                # The answer is the ``handoff`` event on the session stream.
                await self.services.handoffs.request(self.session_id, reason="patient_request")
            elif isinstance(frame, CancelHandoff):
                try:
                    await self.services.handoffs.cancel(self.session_id)
                except ConflictError as exc:
                    await self.send(_error(exc.code, self.locale))
            elif isinstance(frame, Hello):
                await self.send(_error("invalid_event", self.locale, detail="hello sent twice"))

    async def _allow_turn(self) -> bool:
        """A publishable key's visitor within their rate limit (typed and spoken turns
        alike); otherwise tell them how long to wait."""
        if not self.publishable:
            return True
        assert self.key_id is not None
        wait = limiter_of(self.ws.app).check(self.key_id, self.end_user)
        if not wait:
            return True
        await self.send(
            _error("rate_limited", self.locale, retry_after=wait).model_copy(
                update={"retryable": True}
            )
        )
        return False

    async def on_user_message(self, frame: UserMessage) -> None:
        assert self.session_id is not None
        text = frame.text
        limit = self.settings.max_message_chars
        if len(text) > limit:
            await self.send(_error("message_too_long", self.locale, length=len(text), limit=limit))
            return
        if not text.strip() and not frame.image_ids:
            await self.send(_error("empty_message", self.locale))
            return
        if not await self._allow_turn():
            return
        turn = UserTurn(
            session_id=self.session_id,
            text=text.strip() or image_question(self.locale),
            locale=self.locale,
            client_message_id=frame.client_message_id,
            tenant_id=self.tenant_id,
            patient_id=self.patient_id,
            image_ids=tuple(frame.image_ids),
            approvals=frozenset(frame.approvals),
        )
        try:
            self.services.runner.start(turn)
        except InputError as exc:
            await self.send(_error(exc.code, self.locale))
            return

    async def on_voice(
        self, frame: AudioFrame | AudioStart | AudioEnd | AudioStop | Playback
    ) -> None:
        assert self.session_id is not None
        try:
            if isinstance(frame, AudioStart):
                if self.voice is not None:
                    await self.voice.close()
                    self.voice = None
                voice = VoiceSession(
                    self.services,
                    frame,
                    session_id=self.session_id,
                    tenant_id=self.tenant_id,
                    patient_id=self.patient_id,
                    locale=self.locale,
                    send=self.send,
                    allow_turn=self._allow_turn,
                )
                await voice.start()
                self.voice = voice
            elif self.voice is None:
                if not isinstance(frame, AudioStop | Playback):
                    await self.send(_error("voice_not_started", self.locale))
            elif isinstance(frame, AudioFrame):
                await self.voice.on_audio(frame.data)
            elif isinstance(frame, AudioEnd):
                await self.voice.on_end()
            elif isinstance(frame, Playback):
                self.voice.on_playback(frame)
            else:
                await self.voice.close()
                self.voice = None
        except HealTraceError as exc:
            await self.send(_error(exc.code, self.locale, **{"detail": exc.detail, **exc.params}))

    async def close(self) -> None:
        if self.voice is not None:
            await self.voice.close()
        if self.forwarder is not None:
            self.forwarder.cancel()
            await asyncio.gather(self.forwarder, return_exceptions=True)


@router.websocket("/v1/ws/chat")
async def chat_socket(ws: WebSocket) -> None:
    services: Services = ws.app.state.services
    origin = ws.headers.get("origin")
    if not (
        origin_allowed(origin, services.settings.resolved_origins)
        or same_origin(origin, ws.headers.get("host"))
        # A site embedding the widget needs no global setting: its key names it (the key
        # itself is checked against the origin at hello).
        or origin in await services.store.publishable_origins()
    ):
        # Closing before accept makes the server answer the handshake with HTTP 403.
        await ws.close(CLOSE_ORIGIN)
        return
    await ws.accept()
    conn = _Connection(ws, services)
    try:
        if await conn.handshake():
            await conn.serve()
    except WebSocketDisconnect:
        pass
    finally:
        await conn.close()
