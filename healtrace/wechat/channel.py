"""What the WeChat channel does with a message: dedupe, the 5-second rule, sessions, turns.

A callback waits at most ``passive_timeout_s`` for the answer. Ready in time (and short
enough for one message), it goes back as the passive XML reply; otherwise the callback
answers ``success`` and the answer is pushed through the customer-service message API when
it is ready, split into messages of ``max_text_bytes``.

WeChat retries a callback it got no answer to within 5 s (three deliveries in all, same
MsgId). The first delivery claims the message (a unique row); a retry never starts a turn:
it waits for the same answer within its own window, or answers ``success`` when the answer
is being pushed.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from healtrace.agent.events import AnswerDone, ErrorEvent, TurnHeld
from healtrace.agent.orchestrator import UserTurn
from healtrace.errors import HealTraceError, InputError, localized
from healtrace.speech.audio import decode_audio, is_silent
from healtrace.vision.service import analyze_upload, image_question
from healtrace.wechat._split import split_text
from healtrace.wechat.api import WechatApi, WechatApiError
from healtrace.wechat.config import WechatConfig
from healtrace.wechat.store import WechatStore

if TYPE_CHECKING:
    from healtrace.api.services import Services

__all__ = ["Inbound", "WechatChannel"]

log = logging.getLogger(__name__)

#: Menu CLICK keys the channel explains (EventKey, case-insensitive).
MENU_HELP = {"consent": "wechat_consent_help", "rewards": "wechat_rewards_help"}


@dataclass(frozen=True)
class Inbound:
    """The fields of a received message or event the channel uses."""

    to_user: str
    from_user: str
    create_time: str
    msg_type: str
    msg_id: str = ""
    content: str = ""
    media_id: str = ""
    recognition: str = ""
    event: str = ""
    event_key: str = ""

    @classmethod
    def of(cls, fields: dict[str, str]) -> Inbound:
        return cls(
            to_user=fields.get("ToUserName", ""),
            from_user=fields.get("FromUserName", ""),
            create_time=fields.get("CreateTime", ""),
            msg_type=fields.get("MsgType", "").strip().lower(),
            msg_id=fields.get("MsgId", "").strip(),
            content=fields.get("Content", ""),
            media_id=fields.get("MediaId", "").strip(),
            recognition=fields.get("Recognition", ""),
            event=fields.get("Event", "").strip().lower(),
            event_key=fields.get("EventKey", "").strip(),
        )

    @property
    def key(self) -> str:
        """What identifies a delivery and its retries (events have no MsgId)."""
        return self.msg_id or f"{self.from_user}:{self.create_time}:{self.msg_type}:{self.event}"


class _Pending:
    """A message being answered in this process."""

    def __init__(self, task: asyncio.Task[_Answer]) -> None:
        self.task = task
        self.mode: Literal["waiting", "passive", "push"] = "waiting"


@dataclass(frozen=True)
class _Answer:
    text: str
    turn_id: str | None = None


class WechatChannel:
    def __init__(self, services: Services, api: WechatApi, config: WechatConfig) -> None:
        self.services = services
        self.api = api
        self.config = config
        self.store = WechatStore(services.store)
        self._pending: dict[str, _Pending] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        #: One turn at a time per user: a second message waits for the first answer instead
        #: of being refused (WeChat users send several short messages in a row).
        self._user_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    @property
    def locale(self) -> str:
        return self.config.locale

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self, timeout_s: float = 10.0) -> None:
        """Let pushes in flight finish (briefly), then cancel what is left."""
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.api.aclose()

    # --- the callback ------------------------------------------------------------------

    async def handle(self, msg: Inbound) -> str | None:
        """The passive reply's text, or None to answer ``success`` (nothing, or pushed)."""
        if msg.msg_type not in ("text", "voice", "image"):
            return self._without_turn(msg)
        tenant = self.config.tenant
        claim = await self.store.claim(tenant, msg.key, openid=msg.from_user, msg_type=msg.msg_type)
        if not claim.new:
            return await self._retry(msg, claim.status, claim.reply)
        pending = _Pending(self._spawn(self._answer(msg)))
        self._pending[msg.key] = pending
        try:
            await asyncio.wait({pending.task}, timeout=self.config.passive_timeout_s)
        except asyncio.CancelledError:
            # WeChat hung up: the answer still reaches the user, pushed.
            self._push_later(msg, pending)
            raise
        if pending.task.done():
            text = pending.task.result().text
            if text and self._fits(text):
                pending.mode = "passive"
                answer = pending.task.result()
                await self.store.finish(
                    tenant, msg.key, status="replied", reply=text, turn_id=answer.turn_id
                )
                self._pending.pop(msg.key, None)
                return text
        self._push_later(msg, pending)
        return None

    def _fits(self, text: str) -> bool:
        return len(text.encode("utf-8")) <= self.config.max_text_bytes

    async def _retry(self, msg: Inbound, status: str, reply: str) -> str | None:
        pending = self._pending.get(msg.key)
        if pending is None:
            # Answered already (or by another worker, or before a restart).
            return reply if status == "replied" and reply else None
        if pending.mode == "waiting":
            await asyncio.wait({pending.task}, timeout=self.config.passive_timeout_s)
        if pending.mode != "push" and pending.task.done():
            text = pending.task.result().text
            return text if text and self._fits(text) else None
        return None

    def _push_later(self, msg: Inbound, pending: _Pending) -> None:
        if pending.mode == "waiting":
            pending.mode = "push"
            self._spawn(self._push(msg, pending))

    async def _push(self, msg: Inbound, pending: _Pending) -> None:
        answer = await pending.task
        status = "pushed"
        try:
            for chunk in split_text(answer.text, self.config.max_text_bytes):
                await self._send_with_retries(msg, chunk)
        except WechatApiError as exc:
            log.warning("could not push the answer to %s: %s", msg.key, exc)
            status = "failed"
        finally:
            await self.store.finish(
                self.config.tenant,
                msg.key,
                status=status,
                reply=answer.text,
                turn_id=answer.turn_id,
            )
            self._pending.pop(msg.key, None)

    async def _send_with_retries(self, msg: Inbound, chunk: str) -> None:
        """Send one piece; a failure (WeChat busy, the network) is retried with backoff, and
        pieces already sent are not sent again."""
        for attempt in range(self.config.push_retries + 1):
            try:
                await self.api.send_text(msg.from_user, chunk)
                return
            except WechatApiError as exc:
                if attempt == self.config.push_retries:
                    raise
                delay = self.config.push_retry_base_s * 2**attempt
                log.info("push to %s failed (%s); retrying in %.1f s", msg.key, exc.code, delay)
                await asyncio.sleep(delay)

    def _without_turn(self, msg: Inbound) -> str | None:
        """Events and message types that need no model: a fixed reply or nothing."""
        if msg.msg_type == "event":
            if msg.event == "subscribe":
                return localized("wechat_welcome", self.locale)
            if msg.event == "click":
                code = MENU_HELP.get(msg.event_key.lower())
                return localized(code, self.locale) if code else None
            return None
        return localized("wechat_unsupported", self.locale, kind=msg.msg_type or "?")

    # --- the answer --------------------------------------------------------------------

    async def _answer(self, msg: Inbound) -> _Answer:
        """The text to send back, whatever happens (errors become their message)."""
        try:
            return await self._turn(msg)
        except HealTraceError as exc:
            return _Answer(exc.message(self.locale))
        except Exception:  # the user must still get an answer, not silence
            log.exception("answering WeChat message %s failed", msg.key)
            return _Answer(localized("internal_error", self.locale))

    async def _turn(self, msg: Inbound) -> _Answer:
        services = self.services
        locale = self.locale
        text = msg.content.strip()
        voice: dict[str, Any] | None = None
        image_ids: tuple[str, ...] = ()
        if msg.msg_type == "voice":
            text, voice = await self._hear(msg)
        elif msg.msg_type == "image":
            image_ids = (await self._look(msg),)
            text = image_question(locale)
        if not text:
            raise InputError("empty", code="empty_message")
        limit = services.settings.max_message_chars
        if len(text) > limit:
            raise InputError("long", code="message_too_long", length=len(text), limit=limit)
        lock = self._user_locks.get(msg.from_user)
        if lock is None:
            lock = self._user_locks[msg.from_user] = asyncio.Lock()
        async with lock:
            return await self._run_turn(msg, text, voice, image_ids)

    async def _run_turn(
        self,
        msg: Inbound,
        text: str,
        voice: dict[str, Any] | None,
        image_ids: tuple[str, ...],
    ) -> _Answer:
        services = self.services
        locale = self.locale
        session_id = await self.store.session_for(self.config.tenant, msg.from_user, locale=locale)
        session = await services.store.get_session(session_id)
        events = await services.hub.subscribe(session_id)
        turn = UserTurn(
            session_id=session_id,
            text=text,
            locale=locale,
            tenant_id=session.tenant_id,
            patient_id=session.patient_id,
            client_message_id=msg.msg_id or None,
            voice=voice,
            image_ids=image_ids,
        )
        try:
            services.runner.start(turn)
            async for event in events:
                if getattr(event, "turn_id", None) != turn.turn_id:
                    continue
                if isinstance(event, AnswerDone):
                    return _Answer(event.text, turn.turn_id)
                if isinstance(event, TurnHeld | ErrorEvent):
                    return _Answer(event.message, turn.turn_id)
        finally:
            await events.aclose()
        return _Answer(localized("internal_error", locale), turn.turn_id)

    async def _media(self, msg: Inbound) -> bytes:
        if not msg.media_id:
            raise InputError("no MediaId", code="wechat_media_failed")
        try:
            return await self.api.get_media(msg.media_id)
        except WechatApiError as exc:
            raise InputError(str(exc), code="wechat_media_failed") from exc

    async def _hear(self, msg: Inbound) -> tuple[str, dict[str, Any]]:
        """A voice message's words: WeChat's own recognition when it sent one, else ours."""
        language = "zh" if self.locale.startswith("zh") else "en"
        if msg.recognition.strip():
            return msg.recognition.strip(), {
                "input": "voice",
                "asr": "wechat:recognition",
                "language": language,
            }
        data = await self._media(msg)
        speech = self.services.settings.speech
        audio = await asyncio.to_thread(
            decode_audio,
            data,
            max_bytes=speech.max_audio_bytes,
            max_seconds=speech.max_audio_seconds,
        )
        if is_silent(audio):
            raise InputError("silence", code="wechat_voice_unheard")
        engines = self.services.speech
        result = await engines.asr.transcribe(
            audio, language=language, prompt=engines.prompt(language)
        )
        if not result.text.strip():
            raise InputError("nothing heard", code="wechat_voice_unheard")
        return result.text.strip(), {
            "input": "voice",
            "duration_ms": round(audio.duration_s * 1000),
            "asr": result.model,
            "language": result.language,
        }

    async def _look(self, msg: Inbound) -> str:
        """Fetch, store and analyse a photo; its image id for the turn."""
        data = await self._media(msg)
        out = await analyze_upload(
            data,
            settings=self.services.settings,
            tenant_id=self.config.tenant,
            locale=self.locale,
        )
        image_id: str = out["image"]["id"]
        return image_id
