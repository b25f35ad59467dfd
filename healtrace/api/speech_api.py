"""REST speech with OpenAI's shapes: ``POST /v1/audio/transcriptions`` and ``/v1/audio/speech``.

Existing OpenAI clients point their ``base_url`` at HealTrace and use its speech as is:
multipart upload in, ``{"text": …}`` out (``json``, ``text``, ``verbose_json``, ``srt``,
``vtt``); JSON in, audio bytes out (``mp3``, ``opus``, ``aac``, ``flac``, ``wav``, ``pcm``).
The ``model`` field is accepted and ignored: the configured engines answer. Errors are
HealTrace's error shape with specific codes (``audio_corrupt``, ``audio_too_long`` …).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal, get_args

import numpy as np
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field

from healtrace.api._http import KEY_ERRORS, KeyId, error_responses, request_locale, services_of
from healtrace.errors import InputError
from healtrace.speech.audio import content_type, decode_audio, encode, is_silent
from healtrace.speech.tts import check_text
from healtrace.speech.types import Audio, AudioFormat, Transcript

router = APIRouter(tags=["speech"])

_READ_CHUNK = 1 << 20


async def _read_limited(upload: UploadFile, limit: int) -> bytes:
    """The upload's bytes, refusing as soon as it passes ``limit`` (no unbounded buffer)."""
    parts: list[bytes] = []
    size = 0
    while chunk := await upload.read(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise InputError("too large", code="audio_too_large", size=size, limit=limit)
        parts.append(chunk)
    return b"".join(parts)


def _language(value: str | None, locale: str) -> str | None:
    if value:
        v = value.strip().lower()
        return "zh" if v.startswith("zh") else v[:8]
    return "zh" if locale.lower().startswith("zh") else "en"


def _timestamp(seconds: float, sep: str) -> str:
    ms = round(seconds * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _subtitles(t: Transcript, kind: Literal["srt", "vtt"]) -> str:
    sep = "," if kind == "srt" else "."
    segments = t.segments or ()
    lines: list[str] = ["WEBVTT", ""] if kind == "vtt" else []
    for i, seg in enumerate(segments, start=1):
        if kind == "srt":
            lines.append(str(i))
        lines.append(f"{_timestamp(seg.start, sep)} --> {_timestamp(seg.end, sep)}")
        lines.extend([seg.text.strip(), ""])
    return "\n".join(lines)


@router.post(
    "/v1/audio/transcriptions",
    response_model=None,
    responses=error_responses(*KEY_ERRORS, 400, 413, 415, 503),
)
async def transcriptions(
    request: Request,
    _key: KeyId,
    file: Annotated[UploadFile, File(description="Audio: wav, mp3, ogg/webm opus, m4a, amr, silk")],
    model: Annotated[str, Form()] = "whisper-1",
    language: Annotated[str | None, Form(max_length=16)] = None,
    prompt: Annotated[str | None, Form(max_length=1000)] = None,
    response_format: Annotated[
        Literal["json", "text", "verbose_json", "srt", "vtt"], Form()
    ] = "json",
    temperature: Annotated[float, Form(ge=0, le=1)] = 0.0,
) -> Any:
    """Speech to text. Without ``language`` the request's locale decides (zh or en);
    ``language=auto`` asks Whisper to detect it."""
    services = services_of(request)
    config = services.settings.speech
    locale = request_locale(request)
    data = await _read_limited(file, config.max_audio_bytes)
    audio: Audio = await _decode(data, config.max_audio_bytes, config.max_audio_seconds)
    if is_silent(audio):
        raise InputError("silence", code="audio_silent")
    lang = None if (language or "").lower() == "auto" else _language(language, locale)
    engines = services.speech
    result = await engines.asr.transcribe(
        audio, language=lang, prompt=prompt if prompt is not None else engines.prompt(lang)
    )
    if response_format == "text":
        return PlainTextResponse(result.text)
    if response_format in ("srt", "vtt"):
        media = "application/x-subrip" if response_format == "srt" else "text/vtt"
        return PlainTextResponse(_subtitles(result, response_format), media_type=media)
    if response_format == "verbose_json":
        return {
            "task": "transcribe",
            "language": result.language,
            "duration": round(result.duration_s, 3),
            "text": result.text,
            "segments": [
                {"id": i, "start": s.start, "end": s.end, "text": s.text}
                for i, s in enumerate(result.segments)
            ],
            "model": result.model,
        }
    return {"text": result.text}


async def _decode(data: bytes, max_bytes: int, max_seconds: float) -> Audio:
    return await asyncio.to_thread(decode_audio, data, max_bytes=max_bytes, max_seconds=max_seconds)


class SpeechIn(BaseModel):
    model: str = "tts-1"
    input: str = Field(max_length=100_000)
    #: An engine voice name; OpenAI's names (alloy, nova …) fall back to the default voice.
    voice: str = "default"
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    #: ``zh`` or ``en``; default: detected from the text (any CJK character → zh).
    language: Literal["zh", "en"] | None = None


_OPENAI_VOICES = {
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "fable",
    "onyx",
    "nova",
    "sage",
    "shimmer",
    "verse",
    "default",
}


@router.post(
    "/v1/audio/speech",
    response_model=None,
    responses={
        200: {
            "description": "The speech, in the asked-for format",
            "content": {
                t: {"schema": {"type": "string", "format": "binary"}}
                for t in sorted({content_type(f) for f in get_args(AudioFormat)})
            },
        },
        **error_responses(*KEY_ERRORS, 400, 413, 503),
    },
)
async def speech(request: Request, _key: KeyId, body: SpeechIn) -> Response:
    """Text to speech; the whole file in the asked-for format."""
    services = services_of(request)
    check_text(body.input, services.settings.speech.max_speech_chars)
    lang = body.language or ("zh" if any("\u3400" <= c <= "\u9fff" for c in body.input) else "en")
    voice = None if body.voice.lower() in _OPENAI_VOICES else body.voice
    tts = services.speech.tts
    pieces = [
        chunk
        async for chunk in tts.synthesize(body.input, language=lang, voice=voice, speed=body.speed)
    ]
    if not pieces:
        raise InputError("nothing spoken", code="speech_text_empty")
    rate = pieces[0].sample_rate
    audio = Audio(np.concatenate([p.samples for p in pieces]).astype(np.float32), rate)
    fmt = body.response_format
    # OpenAI's ``pcm`` is 24 kHz s16le mono; keep that so clients that assume it work.
    data = await asyncio.to_thread(encode, audio, fmt, sample_rate=24000 if fmt == "pcm" else None)
    return Response(
        data,
        media_type=content_type(fmt),
        headers={
            "X-HealTrace-TTS": tts.name,
            "X-Sample-Rate": str(24000 if fmt == "pcm" else rate),
        },
    )
