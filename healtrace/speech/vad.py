"""Streaming voice activity detection: utterance endpointing and barge-in.

Both run on the Silero VAD v6 ONNX model that faster-whisper ships, so there is nothing
extra to install or download. Silero scores consecutive 512-sample (32 ms at 16 kHz) chunks;
to stream it (faster-whisper only runs it over a whole file) each :class:`SileroVAD` carries
the LSTM state ``h``/``c`` and the last 64 samples of the previous chunk (the model's
"context", which it expects in front of every chunk) from one call to the next. The ONNX
session is shared by all streams (``InferenceSession.run`` is thread-safe); the state is per
stream.

**Endpointing** (:class:`Endpointer`). Speech starts when the probability reaches
``threshold`` and stays above ``threshold - 0.15`` (Silero's recommended hysteresis) for
``min_speech_ms`` — clicks and coughs shorter than that never open an utterance. It ends
after ``end_of_speech_ms`` of probabilities below that lower threshold; values between the
two thresholds neither start nor end anything. The utterance audio starts ``pre_roll_ms``
before the detected start (Silero reacts a chunk or two late and soft onsets like /h/ and
/f/ fall below threshold) and stops ``post_roll_ms`` after the last speech, so Whisper gets
whole words without the trailing silence. An utterance longer than ``max_utterance_s`` is cut
there (``forced=True``) so one endless stream cannot grow without bound.

**Barge-in** (:class:`BargeInDetector`): is the user talking over the assistant? The hard
part is that the microphone also hears the assistant's own voice from the speaker (echo),
and Silero correctly says that is speech. The client marks the frames it captured while
playing audio (``during_playback``); the rule is:

* Frames *not* during playback: plain VAD; ``min_speech_ms`` of speech is a barge-in.
* Frames during playback: the detector tracks the **echo level**, an exponential moving
  average of the RMS level (dBFS) of playback frames that fast-rises and slowly falls, so it
  follows the loud syllables of the echo rather than its average. The first
  ``warmup_ms`` of playback only teach it that level. After that a frame counts as user
  speech only if Silero says speech **and** its level is at least ``echo_margin_db`` above
  the echo level: a person talking to the device is much louder at the microphone than the
  speaker's echo after the client's echo cancellation. Frames that count as user speech do
  not update the echo level, and neither do frames in the ``hold_ms`` after one (the user's
  own softer syllables must not raise the bar they have to clear).
* ``min_speech_ms`` of such frames within a window of twice that length (speech has dips:
  stops, short pauses) is a barge-in; :meth:`BargeInDetector.feed` returns ``True`` once, then
  stays quiet until :meth:`BargeInDetector.reset`.

Echo quieter than the margin never triggers; a user speaking more softly than echo plus the
margin is missed while the assistant talks (they can press stop), which is the safer error.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from healtrace.speech.types import SAMPLE_RATE, Audio, SpeechUnavailable

__all__ = [
    "CHUNK",
    "BargeInDetector",
    "Endpointer",
    "SileroVAD",
    "SpeechEnd",
    "SpeechStart",
    "VADEvent",
]

#: Samples Silero scores at a time at 16 kHz (32 ms).
CHUNK = 512
#: Samples of the previous chunk the model sees in front of each chunk.
CONTEXT = 64
CHUNK_S = CHUNK / SAMPLE_RATE
#: Silero's recommended gap between the start and the end threshold.
HYSTERESIS = 0.15
#: The level of digital silence, so log10 never sees 0.
FLOOR_DB = -100.0
#: Quieter than this is no echo at all (a muted speaker, the gap before the first word).
SILENT_DB = -70.0

Samples = npt.NDArray[np.float32]

_session_lock = threading.Lock()
_session: Any = None


def _shared_session() -> Any:
    """The Silero ONNX session, created once per process."""
    global _session
    with _session_lock:
        if _session is None:
            try:
                from faster_whisper.vad import get_vad_model  # type: ignore[import-untyped]
            except ImportError as exc:
                raise SpeechUnavailable(
                    "faster-whisper is not installed (pip install faster-whisper)"
                ) from exc
            _session = get_vad_model().session
        return _session


def rms_dbfs(samples: Samples) -> float:
    """RMS level in dB relative to full scale (a full-scale square wave is 0 dBFS)."""
    if len(samples) == 0:
        return FLOOR_DB
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return max(FLOOR_DB, 20.0 * math.log10(rms)) if rms > 0 else FLOOR_DB


class SileroVAD:
    """Speech probability for consecutive 512-sample chunks of one 16 kHz stream."""

    def __init__(self) -> None:
        self._session = _shared_session()
        self.reset()

    def reset(self) -> None:
        """Forget the stream: a new one starts from silence."""
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)

    def probability(self, chunk512: npt.NDArray[Any]) -> float:
        """Speech probability (0..1) of the next 512 samples of the stream."""
        chunk = np.asarray(chunk512, dtype=np.float32).reshape(-1)
        if chunk.shape[0] != CHUNK:
            raise ValueError(f"SileroVAD takes {CHUNK}-sample chunks, got {chunk.shape[0]}")
        model_input = np.concatenate([self._context, chunk])[np.newaxis, :]
        prob, self._h, self._c = self._session.run(
            None, {"input": model_input, "h": self._h, "c": self._c}
        )
        self._context = chunk[-CONTEXT:].copy()
        return float(np.asarray(prob).reshape(-1)[0])


class _Chunker:
    """Turns frames of any length into 512-sample chunks, keeping the remainder."""

    def __init__(self) -> None:
        self._pending = np.zeros(0, dtype=np.float32)

    def push(self, frame: npt.NDArray[Any]) -> list[Samples]:
        samples = np.asarray(frame, dtype=np.float32).reshape(-1)
        data = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        whole = len(data) - len(data) % CHUNK
        self._pending = data[whole:].copy()
        return [data[i : i + CHUNK] for i in range(0, whole, CHUNK)]

    def clear(self) -> None:
        self._pending = np.zeros(0, dtype=np.float32)


@dataclass(frozen=True)
class SpeechStart:
    """Speech began at stream time ``t`` (seconds since the first sample fed)."""

    t: float


@dataclass(frozen=True)
class SpeechEnd:
    """An utterance ended at stream time ``t`` (end of the last speech).

    ``audio`` holds the utterance with pre-roll and post-roll; it starts at stream time
    ``start``. ``forced`` is true when ``max_utterance_s`` (or :meth:`Endpointer.flush`) cut
    it rather than silence.
    """

    t: float
    audio: Audio
    start: float
    forced: bool = False


VADEvent = SpeechStart | SpeechEnd


class Endpointer:
    """Cuts a 16 kHz float32 stream into utterances; keeps its state across :meth:`feed`."""

    def __init__(
        self,
        vad: SileroVAD,
        *,
        threshold: float = 0.5,
        min_speech_ms: int = 160,
        end_of_speech_ms: int = 600,
        pre_roll_ms: int = 300,
        post_roll_ms: int = 200,
        max_utterance_s: float = 30.0,
    ) -> None:
        self.vad = vad
        self.threshold = threshold
        self.neg_threshold = max(0.01, threshold - HYSTERESIS)
        self._min_speech = max(1, math.ceil(min_speech_ms / 1000 / CHUNK_S))
        self._end_silence = max(1, math.ceil(end_of_speech_ms / 1000 / CHUNK_S))
        self._pre_roll = math.ceil(pre_roll_ms / 1000 / CHUNK_S)
        self._post_roll = math.ceil(post_roll_ms / 1000 / CHUNK_S)
        self._max_chunks = max(self._min_speech + 1, int(max_utterance_s / CHUNK_S))
        self._chunker = _Chunker()
        self.reset()

    def reset(self) -> None:
        """Start over (new stream): state, buffers and the VAD's own state."""
        self.vad.reset()
        self._chunker.clear()
        self._index = 0  # chunks scored so far
        self._history: deque[Samples] = deque(maxlen=self._pre_roll + self._min_speech + 1)
        self._candidate: int | None = None  # chunk index where possible speech began
        self._started: int | None = None  # chunk index of the confirmed start
        self._utterance: list[Samples] = []
        self._utterance_first = 0  # chunk index of _utterance[0]
        self._silence_from: int | None = None  # first chunk of the current silence

    @property
    def in_speech(self) -> bool:
        return self._started is not None

    @property
    def pausing(self) -> bool:
        """Inside an utterance, in silence that may yet end it (the user stopped talking)."""
        return self._started is not None and self._silence_from is not None

    def current_audio(self) -> Audio | None:
        """The utterance so far (for partial transcripts), or ``None`` outside speech."""
        if self._started is None:
            return None
        return Audio(np.concatenate(self._utterance), SAMPLE_RATE)

    def feed(self, samples: npt.NDArray[Any]) -> list[VADEvent]:
        """Take the next samples (any length) and return the events they completed."""
        events: list[VADEvent] = []
        for chunk in self._chunker.push(samples):
            prob = self.vad.probability(chunk)
            events.extend(self._step(chunk, prob))
            self._index += 1
        return events

    def flush(self) -> list[VADEvent]:
        """The stream ended: close an open utterance (``forced``), keep nothing pending."""
        self._chunker.clear()
        if self._started is None:
            self._candidate = None
            return []
        end = self._silence_from if self._silence_from is not None else self._index
        return [self._finish(end, forced=True)]

    def _step(self, chunk: Samples, prob: float) -> list[VADEvent]:
        i = self._index
        if self._started is None:
            self._history.append(chunk)
            if self._candidate is None:
                if prob >= self.threshold:
                    self._candidate = i
            elif prob < self.neg_threshold:
                self._candidate = None
            if self._candidate is not None and i - self._candidate + 1 >= self._min_speech:
                return [self._open()]
            return []

        self._utterance.append(chunk)
        if prob >= self.threshold:
            self._silence_from = None
        elif prob < self.neg_threshold and self._silence_from is None:
            self._silence_from = i
        if self._silence_from is not None and i - self._silence_from + 1 >= self._end_silence:
            return [self._finish(self._silence_from, forced=False)]
        if i + 1 - self._started >= self._max_chunks:
            return [self._finish(i + 1, forced=True)]
        return []

    def _open(self) -> SpeechStart:
        assert self._candidate is not None
        start = self._candidate
        first = max(start - self._pre_roll, self._index + 1 - len(self._history))
        keep = self._index + 1 - first
        self._utterance = list(self._history)[-keep:]
        self._utterance_first = first
        self._started = start
        self._candidate = None
        self._silence_from = None
        self._history.clear()
        return SpeechStart(t=start * CHUNK_S)

    def _finish(self, speech_end: int, *, forced: bool) -> SpeechEnd:
        """Close the utterance whose speech ended before chunk ``speech_end``."""
        stop = min(speech_end + self._post_roll, self._utterance_first + len(self._utterance))
        kept = self._utterance[: max(1, stop - self._utterance_first)]
        event = SpeechEnd(
            t=speech_end * CHUNK_S,
            audio=Audio(np.concatenate(kept), SAMPLE_RATE),
            start=self._utterance_first * CHUNK_S,
            forced=forced,
        )
        self._started = None
        self._candidate = None
        self._silence_from = None
        self._utterance = []
        self._history.clear()
        return event


class BargeInDetector:
    """Decides whether the user talks over the assistant (see the module docstring)."""

    def __init__(
        self,
        vad: SileroVAD,
        *,
        threshold: float = 0.5,
        min_speech_ms: int = 240,
        echo_margin_db: float = 9.0,
        warmup_ms: int = 200,
        hold_ms: int = 500,
        attack: float = 0.3,
        release: float = 0.02,
    ) -> None:
        self.vad = vad
        self.threshold = threshold
        self.echo_margin_db = echo_margin_db
        self._needed = max(1, math.ceil(min_speech_ms / 1000 / CHUNK_S))
        self._warmup = math.ceil(warmup_ms / 1000 / CHUNK_S)
        # Speech has dips (stops, pauses between words): min_speech_ms of speech within a
        # window twice as long counts, rather than min_speech_ms without a break.
        self._window = 2 * self._needed
        self._hold_chunks = math.ceil(hold_ms / 1000 / CHUNK_S)
        self._attack = attack
        self._release = release
        self._chunker = _Chunker()
        self.reset()

    def reset(self) -> None:
        """Start listening afresh (e.g. when the assistant starts a new answer)."""
        self.vad.reset()
        self._chunker.clear()
        self._playback_flag = False
        self.echo_db: float | None = None
        self._playback_chunks = 0
        self._recent: deque[bool] = deque(maxlen=self._window)
        self._hold = 0
        self._fired = False

    def feed(self, frame: npt.NDArray[Any], during_playback: bool) -> bool:
        """Take a frame; ``True`` exactly once, on the frame where barge-in is detected."""
        # A chunk counts as playback if any of its frames was captured during playback.
        self._playback_flag = self._playback_flag or during_playback
        detected = False
        for chunk in self._chunker.push(frame):
            playback, self._playback_flag = self._playback_flag, during_playback
            if self._step(chunk, playback) and not self._fired:
                self._fired = True
                detected = True
        return detected

    def _step(self, chunk: Samples, playback: bool) -> bool:
        is_speech = self.vad.probability(chunk) >= self.threshold
        if playback:
            level = rms_dbfs(chunk)
            # Digital silence in the playback (before the first word) says nothing about the
            # echo; only audible chunks warm the level up.
            if level > SILENT_DB:
                self._playback_chunks += 1
            user = (
                self._playback_chunks > self._warmup
                and self.echo_db is not None
                and is_speech
                and level >= self.echo_db + self.echo_margin_db
            )
            if user:
                self._hold = self._hold_chunks
            elif self._hold:
                self._hold -= 1
            elif level > SILENT_DB:
                self._track_echo(level)
            is_speech = user
        self._recent.append(is_speech)
        return sum(self._recent) >= self._needed

    def _track_echo(self, level: float) -> None:
        if self.echo_db is None:
            self.echo_db = level
            return
        alpha = self._attack if level > self.echo_db else self._release
        self.echo_db += alpha * (level - self.echo_db)
