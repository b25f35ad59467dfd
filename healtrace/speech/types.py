"""What the speech parts exchange: decoded audio, transcripts, and the engine interfaces.

Every engine sits behind a small protocol so the embedded defaults (faster-whisper, piper,
espeak-ng) and the production backends (OpenAI-compatible ``/v1/audio/*`` servers) are
interchangeable, and tests can use scripted fakes with the same shape.

Audio inside HealTrace is always :class:`Audio`: float32 mono samples in [-1, 1] with their
sample rate. Decoding (:mod:`healtrace.speech.audio`) produces 16 kHz for ASR and VAD; TTS
engines produce their native rate and :func:`healtrace.speech.audio.encode` converts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from healtrace.errors import HealTraceError, InputError

__all__ = [
    "ASR",
    "SAMPLE_RATE",
    "TTS",
    "Audio",
    "AudioFormat",
    "Segment",
    "SpeechError",
    "SpeechUnavailable",
    "Transcript",
]

#: What ASR and VAD work at.
SAMPLE_RATE = 16_000

#: Output formats for synthesised speech (the OpenAI ``response_format`` names).
AudioFormat = Literal["wav", "pcm", "mp3", "opus", "flac", "aac"]

Samples = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Audio:
    """Mono float32 samples in [-1, 1] at ``sample_rate`` Hz."""

    samples: Samples
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate if self.sample_rate else 0.0

    def pcm16(self) -> bytes:
        """Little-endian signed 16-bit PCM (what ``pcm`` output and WAV carry)."""
        clipped = np.clip(self.samples, -1.0, 1.0)
        return (clipped * 32767.0).astype("<i2").tobytes()

    @classmethod
    def from_pcm16(cls, data: bytes, sample_rate: int) -> Audio:
        pcm = np.frombuffer(data[: len(data) - len(data) % 2], dtype="<i2")
        return cls((pcm.astype(np.float32) / 32768.0), sample_rate)


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Transcript:
    text: str
    #: The language the text is in ("en", "zh"), as asked for or as detected.
    language: str
    duration_s: float
    #: Which engine and model produced it ("faster-whisper:base", "openai:whisper-1").
    model: str
    segments: tuple[Segment, ...] = field(default_factory=tuple)


class SpeechError(InputError):
    """Audio or text the speech parts cannot take; the code says which (see errors.MESSAGES)."""

    code = "audio_corrupt"


class SpeechUnavailable(HealTraceError):
    """An engine or a remote speech server is missing or down; retrying may help."""

    code = "speech_unavailable"


@runtime_checkable
class ASR(Protocol):
    """Speech to text."""

    #: "faster-whisper:base", "openai:whisper-1", "scripted".
    name: str

    async def transcribe(
        self, audio: Audio, *, language: str | None, prompt: str | None = None
    ) -> Transcript:
        """Transcribe 16 kHz mono ``audio``.

        ``language`` is a Whisper code ("en", "zh"); ``None`` asks the engine to detect it.
        ``prompt`` is vocabulary to bias towards (medical terms), never instructions.
        """
        ...


@runtime_checkable
class TTS(Protocol):
    """Text to speech, one sentence or short paragraph at a time."""

    #: "piper:en_US-joe-medium", "espeak-ng:cmn-latn-pinyin", "openai:tts-1".
    name: str

    def synthesize(
        self, text: str, *, language: str, voice: str | None = None, speed: float = 1.0
    ) -> AsyncIterator[Audio]:
        """Speech for ``text`` as it is produced: one or more chunks at the engine's rate.

        ``language`` is "en" or "zh"; ``voice`` an engine-specific voice name (``None``: the
        engine's default for the language).
        """
        ...
