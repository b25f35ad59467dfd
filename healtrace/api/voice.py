"""Voice turns over the chat WebSocket: audio in, transcript, spoken answer out, barge-in.

One :class:`VoiceSession` lives on a connection between ``audio_start`` and ``audio_stop``.

In: binary frames (flags byte + s16le PCM) are resampled to 16 kHz and run through Silero
VAD. In ``hands_free`` mode the :class:`~healtrace.speech.vad.Endpointer` ends an utterance
after ``end_of_speech_ms`` of silence; in ``push_to_talk`` mode ``audio_end`` does. Partial
transcripts go out while the user speaks, the final one starts an ordinary turn (so triage,
tools, citations and evidence all apply), stored with how it was heard.

Out: the connection's event forwarder hands every event to :meth:`VoiceSession.observe`.
Tokens of the voice turn go through a sentence splitter; each finished sentence is
synthesised and sent as one ``audio`` event (a complete file) while the model is still
writing the next, so speech starts after the first sentence, not after the answer.

Barge-in: while the assistant is speaking, frames do not reach the endpointer (the client's
microphone hears the assistant too); they go to the
:class:`~healtrace.speech.vad.BargeInDetector`. Frames the client marks as captured during
playback only count as the user when they are ``echo_margin_db`` louder than the echo level
measured on playback frames so far — browsers' echo cancellation removes most of the echo,
the gate catches the rest. When the user does talk over the answer, the model stream is
cancelled, queued speech is dropped, a ``barge_in`` event says what had been heard, the
answer message records it (``voice.spoken_text``), and the user's words — with the last
half second before detection — become the next utterance.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel

from healtrace.agent.events import AnswerDone, ErrorEvent, Token, TurnHeld
from healtrace.agent.orchestrator import UserTurn
from healtrace.api.protocol import (
    AudioChunk,
    AudioDone,
    AudioStart,
    BargeIn,
    Playback,
    SpeechStarted,
    TranscriptEvent,
    VoiceReady,
)
from healtrace.api.services import Services
from healtrace.errors import HealTraceError, InputError, localized
from healtrace.speech.audio import PCM_RATES, Resampler, encode, is_silent
from healtrace.speech.sentences import SentenceSplitter
from healtrace.speech.types import SAMPLE_RATE, Audio
from healtrace.speech.vad import BargeInDetector, Endpointer, SileroVAD, SpeechEnd, SpeechStart

log = logging.getLogger(__name__)

#: Bit 0 of an audio frame's flags byte: captured while the client played our audio.
FLAG_PLAYBACK = 0x01
#: Audio kept while the assistant speaks, replayed into the endpointer on barge-in.
_BARGE_PREROLL_S = 0.6
#: After the last chunk's audio should have finished, stop treating input as echo.
_PLAYBACK_SLACK_S = 1.5


@dataclass
class _Spoken:
    """What was sent of one turn's speech, in order."""

    turn_id: str
    sentences: list[tuple[str, int]] = field(default_factory=list)  # (text, duration_ms)
    started_at: float | None = None
    done: bool = False
    message_id: str | None = None
    record: dict[str, Any] | None = None

    @property
    def total_ms(self) -> int:
        return sum(ms for _, ms in self.sentences)

    def heard(self, played_ms: int) -> tuple[str, str]:
        """Sentences heard in full by ``played_ms``, and the one playing then."""
        full: list[str] = []
        at = 0
        for text, ms in self.sentences:
            if at + ms <= played_ms:
                full.append(text)
                at += ms
                continue
            return " ".join(full), text if played_ms > at else ""
        return " ".join(full), ""


class VoiceSession:
    def __init__(
        self,
        services: Services,
        frame: AudioStart,
        *,
        session_id: str,
        tenant_id: str | None,
        locale: str,
        send: Callable[[BaseModel], Awaitable[None]],
        patient_id: str | None = None,
        allow_turn: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.services = services
        self.config = services.settings.speech
        self.engines = services.speech
        self.frame = frame
        self.session_id = session_id
        self.tenant_id = tenant_id
        self.patient_id = patient_id
        #: Asked before each spoken turn starts (rate limits); False: the turn is skipped.
        self.allow_turn = allow_turn
        self.locale = locale
        self._send = send
        self.language: str | None = None if frame.detect_language else _whisper_lang(locale)
        self.reply_format = frame.reply_format or self.config.voice_format
        self.resampler = Resampler(frame.sample_rate, SAMPLE_RATE)
        cfg = self.config
        self.endpointer = Endpointer(
            SileroVAD(),
            threshold=cfg.vad_threshold,
            end_of_speech_ms=cfg.end_of_speech_ms,
            max_utterance_s=cfg.max_audio_seconds,
        )
        self.barge = BargeInDetector(
            SileroVAD(),
            threshold=cfg.vad_threshold,
            min_speech_ms=cfg.barge_in_ms,
            echo_margin_db=cfg.echo_margin_db,
        )
        self._ring: collections.deque[np.ndarray] = collections.deque()
        self._ring_samples = 0
        self._ptt: list[np.ndarray] = []
        self._ptt_samples = 0
        self._utterance: str | None = None
        self._partial_samples = 0
        self._partial_due = 0
        self._partial_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._turn_id: str | None = None
        self._splitter = SentenceSplitter()
        self._queue: asyncio.Queue[tuple[str, str, str | None]] = asyncio.Queue()
        self._spoken: dict[str, _Spoken] = {}
        self._speaking: _Spoken | None = None
        self._interrupted: set[str] = set()
        self._worker: asyncio.Task[None] | None = None
        self._closed = False

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        if self.frame.sample_rate not in PCM_RATES:
            raise InputError(
                "unsupported rate",
                code="audio_sample_rate_unsupported",
                rate=self.frame.sample_rate,
            )
        asr = self.engines.asr
        tts = self.engines.tts if self.frame.speak else None
        self._spawn(asyncio.to_thread(self._warm))
        if self.frame.speak:
            self._worker = asyncio.get_running_loop().create_task(self._speak_loop())
        await self._send(
            VoiceReady(
                mode=self.frame.mode,
                sample_rate=self.frame.sample_rate,
                reply_format=self.reply_format if self.frame.speak else None,
                language=self.language,
                asr=asr.name,
                tts=tts.name if tts is not None else None,
            )
        )

    async def close(self) -> None:
        self._closed = True
        tasks = [t for t in (self._worker, self._partial_task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- audio in ---------------------------------------------------------------------------

    async def on_audio(self, data: bytes) -> None:
        flags, pcm = data[0], data[1:]
        if len(pcm) % 2:
            raise InputError(
                "an audio frame must hold whole 16-bit samples (an even number of bytes)",
                code="audio_frame_invalid",
            )
        if not pcm:
            return
        samples = self.resampler.feed(Audio.from_pcm16(pcm, self.frame.sample_rate)).samples
        if samples.size == 0:
            return
        during_playback = bool(flags & FLAG_PLAYBACK)
        self._expire_playback()
        if self._speaking is not None:
            if self.frame.mode == "push_to_talk" or self.barge.feed(samples, during_playback):
                await self._barge_in()
                if self.frame.mode == "push_to_talk":
                    self._collect_ptt(samples)
                    return
                for held in list(self._ring):
                    await self._endpoint(held)
                self._ring.clear()
                self._ring_samples = 0
                return
            self._ring.append(samples)
            self._ring_samples += samples.size
            while self._ring_samples > _BARGE_PREROLL_S * SAMPLE_RATE and len(self._ring) > 1:
                self._ring_samples -= self._ring.popleft().size
            return
        if self.frame.mode == "push_to_talk":
            self._collect_ptt(samples)
        else:
            await self._endpoint(samples)

    def _collect_ptt(self, samples: np.ndarray) -> None:
        if self._ptt_samples > self.config.max_audio_seconds * SAMPLE_RATE:
            return  # reported at audio_end; nothing more is kept
        self._ptt.append(samples)
        self._ptt_samples += samples.size

    async def on_end(self) -> None:
        """Push-to-talk released (or a hands-free client ends its utterance early)."""
        if self.frame.mode == "hands_free":
            for event in self.endpointer.flush():
                await self._on_vad_event(event)
            return
        # The resampler keeps a few milliseconds back; they are not worth ending its stream.
        chunks, self._ptt, self._ptt_samples = self._ptt, [], 0
        if not chunks:
            raise InputError("no audio", code="audio_empty")
        audio = Audio(np.concatenate(chunks).astype(np.float32), SAMPLE_RATE)
        limit = self.config.max_audio_seconds
        if audio.duration_s > limit:
            raise InputError(
                "too long", code="audio_too_long", seconds=int(audio.duration_s), limit=int(limit)
            )
        if is_silent(audio):
            raise InputError("silence", code="audio_silent")
        utterance = uuid.uuid4().hex
        await self._send(SpeechStarted(utterance_id=utterance))
        self._spawn(self._final(utterance, audio, report_silence=True))

    async def _endpoint(self, samples: np.ndarray) -> None:
        for event in self.endpointer.feed(samples):
            await self._on_vad_event(event)
        if self._utterance is not None:
            self._partial_samples += samples.size
            await self._maybe_partial()

    async def _on_vad_event(self, event: SpeechStart | SpeechEnd) -> None:
        if isinstance(event, SpeechStart):
            self._utterance = uuid.uuid4().hex
            self._partial_samples = 0
            self._partial_due = self.config.partial_interval_ms * SAMPLE_RATE // 1000
            await self._send(SpeechStarted(utterance_id=self._utterance))
            return
        utterance = self._utterance or uuid.uuid4().hex
        self._utterance = None
        self._partial_samples = 0
        if self._partial_task is not None:
            self._partial_task.cancel()
            self._partial_task = None
        self._spawn(self._final(utterance, event.audio, report_silence=False))

    async def _maybe_partial(self) -> None:
        interval = self.config.partial_interval_ms
        if interval <= 0 or self._utterance is None or self._partial_samples < self._partial_due:
            return
        if self._partial_task is not None and not self._partial_task.done():
            return
        if self.endpointer.pausing:
            # The user has stopped, maybe for good: a partial now would say nothing new and,
            # one decode at a time, make the final transcript wait for it.
            return
        self._partial_due = self._partial_samples + interval * SAMPLE_RATE // 1000
        audio = self.endpointer.current_audio()
        if audio is None:
            return
        utterance = self._utterance
        self._partial_task = asyncio.get_running_loop().create_task(
            self._partial_transcript(utterance, audio)
        )

    async def _partial_transcript(self, utterance: str, audio: Audio) -> None:
        began = time.perf_counter()
        try:
            result = await self.engines.asr.transcribe(
                audio, language=self.language, prompt=self.engines.prompt(self.language)
            )
        except HealTraceError:
            return  # the final transcript reports failures
        if result.text and self._utterance == utterance:
            await self._send(
                TranscriptEvent(
                    utterance_id=utterance,
                    text=result.text,
                    final=False,
                    language=result.language,
                    duration_ms=int(audio.duration_s * 1000),
                    model=result.model,
                    asr_ms=int((time.perf_counter() - began) * 1000),
                )
            )

    async def _final(self, utterance: str, audio: Audio, *, report_silence: bool) -> None:
        began = time.perf_counter()
        try:
            result = await self.engines.asr.transcribe(
                audio, language=self.language, prompt=self.engines.prompt(self.language)
            )
        except HealTraceError as exc:
            await self._error(exc.code, **exc.params, detail=exc.detail)
            return
        text = result.text.strip()
        if not text:
            if report_silence:
                await self._error("audio_silent")
            return
        duration_ms = int(audio.duration_s * 1000)
        await self._send(
            TranscriptEvent(
                utterance_id=utterance,
                text=text,
                final=True,
                language=result.language,
                duration_ms=duration_ms,
                model=result.model,
                asr_ms=int((time.perf_counter() - began) * 1000),
            )
        )
        if self.allow_turn is not None and not await self.allow_turn():
            return
        limit = self.services.settings.max_message_chars
        turn = UserTurn(
            session_id=self.session_id,
            text=text[:limit],
            locale=self.locale,
            tenant_id=self.tenant_id,
            patient_id=self.patient_id,
            client_message_id=utterance,
            voice={
                "input": "voice",
                "duration_ms": duration_ms,
                "asr": result.model,
                "language": result.language,
            },
        )
        runner = self.services.runner
        # The user spoke while an answer was still being written (before any speech):
        # that answer is stale; stop it and wait for it to record its end.
        if runner.is_running(self.session_id):
            runner.cancel(self.session_id)
            for _ in range(200):
                if not runner.is_running(self.session_id):
                    break
                await asyncio.sleep(0.025)
        self._turn_id = turn.turn_id
        self._splitter = SentenceSplitter()
        if self.frame.speak:
            self._spoken[turn.turn_id] = _Spoken(turn.turn_id)
        try:
            runner.start(turn)
        except InputError as exc:
            await self._error(exc.code)

    # --- answer out -------------------------------------------------------------------------

    async def observe(self, event: BaseModel) -> None:
        """Every event the connection forwards; the voice turn's tokens become speech."""
        turn_id = getattr(event, "turn_id", None)
        if turn_id is None or turn_id not in self._spoken:
            return
        if isinstance(event, Token) and turn_id == self._turn_id:
            for sentence in self._splitter.feed(event.text):
                self._queue.put_nowait(("say", turn_id, sentence))
        elif isinstance(event, AnswerDone):
            spoken = self._spoken[turn_id]
            spoken.message_id = event.message_id
            if turn_id == self._turn_id and turn_id not in self._interrupted:
                for sentence in self._splitter.flush():
                    self._queue.put_nowait(("say", turn_id, sentence))
            self._queue.put_nowait(("end", turn_id, event.message_id))
        elif isinstance(event, ErrorEvent | TurnHeld):
            self._queue.put_nowait(("end", turn_id, None))

    async def _speak_loop(self) -> None:
        tts = self.engines.tts
        lang = "zh" if self.locale.lower().startswith("zh") else "en"
        while True:
            kind, turn_id, value = await self._queue.get()
            spoken = self._spoken.get(turn_id)
            if spoken is None:
                continue
            if kind == "end":
                spoken.done = True
                spoken.message_id = value or spoken.message_id
                if turn_id not in self._interrupted:
                    await self._send(
                        AudioDone(
                            turn_id=turn_id,
                            chunks=len(spoken.sentences),
                            duration_ms=spoken.total_ms,
                        )
                    )
                    spoken.record = {
                        "output": "voice",
                        "spoken_text": " ".join(t for t, _ in spoken.sentences),
                        "interrupted": False,
                        "audio_ms": spoken.total_ms,
                        "tts": tts.name,
                        "format": self.reply_format,
                    }
                await self._write_record(spoken)
                continue
            if turn_id in self._interrupted or value is None:
                continue
            began = time.perf_counter()
            try:
                pieces = [chunk async for chunk in tts.synthesize(value, language=lang)]
            except HealTraceError as exc:
                log.warning("speech synthesis failed: %s", exc.code)
                await self._error(exc.code, **exc.params, detail=exc.detail)
                continue
            if turn_id in self._interrupted or not pieces:
                continue
            rate = pieces[0].sample_rate
            audio = Audio(np.concatenate([p.samples for p in pieces]).astype(np.float32), rate)
            data = await asyncio.to_thread(encode, audio, self.reply_format)
            if turn_id in self._interrupted:
                continue
            duration_ms = int(audio.duration_s * 1000)
            if spoken.started_at is None:
                spoken.started_at = time.monotonic()
                self._speaking = spoken
                self.barge.reset()
            spoken.sentences.append((value, duration_ms))
            await self._send(
                AudioChunk(
                    turn_id=turn_id,
                    index=len(spoken.sentences) - 1,
                    format=self.reply_format,
                    sample_rate=rate,
                    duration_ms=duration_ms,
                    text=value,
                    data=base64.b64encode(data).decode("ascii"),
                    synth_ms=int((time.perf_counter() - began) * 1000),
                )
            )

    def on_playback(self, frame: Playback) -> None:
        spoken = self._spoken.get(frame.turn_id)
        if spoken is None:
            return
        if frame.state == "started" and frame.played_ms is None:
            spoken.started_at = time.monotonic()
        elif frame.played_ms is not None:
            spoken.started_at = time.monotonic() - frame.played_ms / 1000
        if frame.state == "ended" and self._speaking is spoken:
            self._speaking = None

    def _expire_playback(self) -> None:
        spoken = self._speaking
        if spoken is None or not spoken.done or spoken.started_at is None:
            return
        if time.monotonic() > spoken.started_at + spoken.total_ms / 1000 + _PLAYBACK_SLACK_S:
            self._speaking = None

    async def _barge_in(self) -> None:
        spoken = self._speaking
        self._speaking = None
        if spoken is None:
            return
        turn_id = spoken.turn_id
        self._interrupted.add(turn_id)
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item[0] == "end":
                # Keep the end marker: it carries the answer's message id.
                spoken.done = True
                spoken.message_id = item[2] or spoken.message_id
        self.services.runner.cancel(self.session_id)
        started = spoken.started_at or time.monotonic()
        played_ms = min(int((time.monotonic() - started) * 1000), spoken.total_ms)
        heard, cut = spoken.heard(played_ms)
        spoken.record = {
            "output": "voice",
            "spoken_text": heard,
            "cut_text": cut,
            "interrupted": True,
            "played_ms": played_ms,
            "audio_ms": spoken.total_ms,
            "tts": self.engines.tts.name,
            "format": self.reply_format,
        }
        await self._send(
            BargeIn(turn_id=turn_id, spoken_text=heard, cut_text=cut, played_ms=played_ms)
        )
        # Without a message id yet, the cancelled turn's answer_done brings it (``observe``
        # queues its end marker) and the record is written then.
        await self._write_record(spoken)

    async def _write_record(self, spoken: _Spoken) -> None:
        if spoken.message_id is None or spoken.record is None:
            return
        record, spoken.record = spoken.record, None
        try:
            await self.services.store.set_voice(spoken.message_id, record)
        except HealTraceError:
            log.exception("could not record what was spoken of message %s", spoken.message_id)

    # --- helpers ----------------------------------------------------------------------------

    def _warm(self) -> None:
        try:
            self.engines.warm()
        except HealTraceError as exc:
            # The first utterance reports it with the user's language.
            log.warning("speech engines did not load: %s", exc.code)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _error(self, code: str, **params: Any) -> None:
        await self._send(ErrorEvent(code=code, message=localized(code, self.locale, **params)))


def _whisper_lang(locale: str) -> str:
    return "zh" if locale.lower().startswith("zh") else "en"
