"""Audio in and out: decode what clients upload, resample, measure loudness, encode replies.

Uploads come from browsers (WebM/Ogg Opus, MP4/AAC), phones (AMR, M4A), WeChat (SILK) and
scripts (WAV, MP3, FLAC). The container is recognised from its magic bytes only: file names
and ``Content-Type`` headers from clients are too often wrong (WeChat sends SILK as
``audio/amr``; Safari labels MP4 recordings ``audio/webm``) to route a decoder on.

Everything except SILK is decoded by PyAV, which bundles its own ffmpeg, so no system codec
packages are involved. Decoding is incremental and stops as soon as the recording passes the
length limit, so a 30-minute upload costs a fraction of a second to reject instead of
30 minutes of decoded samples in memory.

Replies are encoded one complete, self-contained file per call (a WAV, an Ogg Opus stream, an
MP3...) because browsers play voice-turn chunks with ``decodeAudioData``, which only accepts
whole files.
"""

from __future__ import annotations

import io
import logging
import math
import struct
import wave
from collections.abc import Iterator
from typing import Final

import av
import av.container
import numpy as np
import numpy.typing as npt

from healtrace.speech.types import SAMPLE_RATE, Audio, AudioFormat, SpeechError

__all__ = [
    "PCM_RATES",
    "Resampler",
    "content_type",
    "decode_audio",
    "encode",
    "is_silent",
    "pcm_to_audio",
    "resample",
    "rms_dbfs",
    "sniff",
]

_LOG = logging.getLogger(__name__)

#: Sample rates a WebSocket client may stream raw PCM at.
PCM_RATES: Final = frozenset({8000, 16000, 24000, 44100, 48000})

#: A decode error after at least this much audio keeps what was decoded (a recording cut off
#: by a dropped connection is still worth transcribing); before it the upload is corrupt.
_MIN_USABLE_S: Final = 0.1

#: Damaged packets skipped before a mostly-damaged stream counts as corrupt.
_MAX_BAD_PACKETS: Final = 8

#: SILK carries one 20 ms frame per packet.
_SILK_PACKET_S: Final = 0.02

_CONTENT_TYPES: Final[dict[str, str]] = {
    "wav": "audio/wav",
    "pcm": "audio/pcm",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "flac": "audio/flac",
    "aac": "audio/aac",
}

# fmt -> (container format, codec, sample rates the codec accepts or None for any).
_ENCODERS: Final[dict[str, tuple[str, str, tuple[int, ...] | None]]] = {
    "mp3": ("mp3", "libmp3lame", (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)),
    "opus": ("ogg", "libopus", (8000, 12000, 16000, 24000, 48000)),
    "flac": ("flac", "flac", None),
    "aac": ("adts", "aac", (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)),
}


# --------------------------------------------------------------------------- sniffing


def sniff(data: bytes) -> str | None:
    """The container ``data`` starts with ("wav", "ogg", "webm", "mp4", "mp3", "flac",
    "amr", "silk"), or ``None`` when it is nothing we decode."""
    head = data[:64]
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:6] == b"#!AMR\n" or head[:9] == b"#!AMR-WB\n":
        return "amr"
    if head[:9] == b"#!SILK_V3" or head[:10] == b"\x02#!SILK_V3":
        return "silk"
    if head[:3] == b"ID3":
        return "mp3"
    if len(head) >= 4 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        # MPEG audio frame sync; layer bits 00 are reserved and 0xFFF1/0xFFF9 is ADTS AAC.
        layer = (head[1] >> 1) & 0x3
        if layer == 0:
            return "aac"
        return "mp3"
    return None


def _describe(data: bytes) -> str:
    printable = "".join(chr(b) if 32 <= b < 127 else "." for b in data[:8])
    return f"unrecognised data starting {printable!r}"


# --------------------------------------------------------------------------- decoding


def decode_audio(
    data: bytes, *, max_bytes: int, max_seconds: float, content_type: str | None = None
) -> Audio:
    """Decode an uploaded recording to 16 kHz mono float32.

    ``content_type`` is only logged: the bytes decide the decoder. Raises :class:`SpeechError`
    with ``audio_empty``, ``audio_too_large``, ``audio_unsupported_format``, ``audio_corrupt``
    or ``audio_too_long``.
    """
    if not data:
        raise SpeechError("no audio data", code="audio_empty")
    if len(data) > max_bytes:
        raise SpeechError(
            f"{len(data)} bytes > {max_bytes}",
            code="audio_too_large",
            size=len(data),
            limit=max_bytes,
        )
    kind = sniff(data)
    if kind is None:
        detail = _describe(data)
        _LOG.info("rejected upload (%s, declared %s)", detail, content_type)
        raise SpeechError(detail, code="audio_unsupported_format")
    if kind == "silk":
        return _decode_silk(data, max_seconds)
    return _decode_av(data, kind, max_seconds)


def _too_long(seconds: float, limit: float) -> SpeechError:
    return SpeechError(
        f"{seconds:.0f} s > {limit:g} s",
        code="audio_too_long",
        seconds=math.ceil(seconds),
        limit=f"{limit:g}",
    )


def _corrupt(detail: str) -> SpeechError:
    return SpeechError(detail, code="audio_corrupt")


def _silk_packets(payload: bytes) -> int:
    """Count SILK packets (2-byte little-endian length + payload) without decoding them."""
    count = 0
    pos = 0
    while pos + 2 <= len(payload):
        (size,) = struct.unpack_from("<h", payload, pos)
        if size <= 0 or pos + 2 + size > len(payload):
            break
        pos += 2 + size
        count += 1
    return count


def _decode_silk(data: bytes, max_seconds: float) -> Audio:
    import pysilk  # type: ignore[import-untyped]

    body = data[1:] if data[:1] == b"\x02" else data
    packets = _silk_packets(body[len(b"#!SILK_V3") :])
    if packets == 0:
        raise _corrupt("SILK stream without packets")
    seconds = packets * _SILK_PACKET_S
    if seconds > max_seconds:
        raise _too_long(seconds, max_seconds)
    out = io.BytesIO()
    try:
        pysilk.decode(io.BytesIO(body), out, SAMPLE_RATE)
    except Exception as exc:  # pysilk raises bare Exception subclasses of its own
        raise _corrupt(f"SILK decode failed: {exc}") from exc
    pcm = out.getvalue()
    if len(pcm) < 2:
        raise _corrupt("SILK stream decoded to no audio")
    return Audio.from_pcm16(pcm, SAMPLE_RATE)


def _decode_av(data: bytes, kind: str, max_seconds: float) -> Audio:
    limit_samples = int(max_seconds * SAMPLE_RATE)
    chunks: list[npt.NDArray[np.int16]] = []
    total = 0
    try:
        container = av.open(
            io.BytesIO(data),
            mode="r",
            format="amr" if kind == "amr" else None,
            metadata_errors="ignore",
        )
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise _corrupt(f"cannot open {kind}: {exc}") from exc
    with container:
        if not container.streams.audio:
            raise SpeechError(f"{kind} file with no audio track", code="audio_unsupported_format")
        stream = container.streams.audio[0]
        if stream.codec_context is None or stream.codec_context.codec is None:
            raise SpeechError(
                f"{kind} audio in a codec that cannot be decoded", code="audio_unsupported_format"
            )
        # The container's own duration catches a long recording before any decoding.
        declared = _declared_seconds(container, stream)
        if declared is not None and declared > max_seconds:
            raise _too_long(declared, max_seconds)
        try:
            for frame in _frames(container, stream):
                samples = np.asarray(frame.to_ndarray(), dtype=np.int16).reshape(-1)
                chunks.append(samples)
                total += len(samples)
                if total > limit_samples:
                    raise _too_long(total / SAMPLE_RATE, max_seconds)
        except (av.FFmpegError, ValueError, OSError) as exc:
            if total < _MIN_USABLE_S * SAMPLE_RATE:
                raise _corrupt(f"{kind} decode failed: {exc}") from exc
            _LOG.warning("kept %.2f s of a damaged %s upload: %s", total / SAMPLE_RATE, kind, exc)
    if total == 0:
        raise _corrupt(f"{kind} contained no decodable audio")
    pcm = np.concatenate(chunks)
    return Audio(pcm.astype(np.float32) / 32768.0, SAMPLE_RATE)


def _declared_seconds(
    container: av.container.InputContainer, stream: av.AudioStream
) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _frames(
    container: av.container.InputContainer, stream: av.AudioStream
) -> Iterator[av.AudioFrame]:
    """Decoded audio as 16 kHz mono s16 frames.

    A damaged packet is skipped, as players do, unless most packets are damaged. A stream
    whose layout or rate changes midway (spliced or corrupt AAC) gets a new resampler
    instead of an error.
    """
    resampler: av.AudioResampler | None = None
    shape: tuple[str, str, int] | None = None
    packets = errors = 0
    for packet in container.demux(stream):
        packets += 1
        try:
            decoded = packet.decode()
        except av.FFmpegError:
            errors += 1
            if errors > _MAX_BAD_PACKETS and errors * 2 > packets:
                raise
            continue
        for frame in decoded:
            key = (frame.format.name, frame.layout.name, frame.sample_rate)
            if resampler is None or key != shape:
                if resampler is not None:
                    yield from resampler.resample(None)
                resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
                shape = key
            yield from resampler.resample(frame)
    if resampler is not None:
        yield from resampler.resample(None)


# --------------------------------------------------------------------------- raw PCM, resampling


def pcm_to_audio(data: bytes, sample_rate: int) -> Audio:
    """Raw s16le mono PCM from a WebSocket client, at its own rate (not resampled).

    Feed the result to a :class:`Resampler` to get 16 kHz for VAD and ASR.
    """
    if sample_rate not in PCM_RATES:
        raise SpeechError(
            f"{sample_rate} Hz", code="audio_sample_rate_unsupported", rate=sample_rate
        )
    if len(data) % 2:
        detail = f"{len(data)} bytes is not a whole number of 16-bit samples"
        raise SpeechError(detail, code="audio_frame_invalid")
    return Audio.from_pcm16(data, sample_rate)


def _float_frame(samples: npt.NDArray[np.float32], rate: int, pts: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1), format="flt", layout="mono"
    )
    frame.sample_rate = rate
    frame.pts = pts
    return frame


class Resampler:
    """Streaming sample-rate conversion: feed chunks at ``from_rate``, get ``to_rate`` chunks.

    One libswresample context carries its filter state across chunks, so the output equals
    converting the whole recording at once: no clicks or lost samples at chunk boundaries
    (resampling each chunk separately would restart the filter every chunk). A few
    milliseconds stay buffered until the next chunk or :meth:`flush`.
    """

    def __init__(self, from_rate: int, to_rate: int = SAMPLE_RATE) -> None:
        self.from_rate = from_rate
        self.to_rate = to_rate
        self._pts = 0
        self._passthrough = from_rate == to_rate
        self._resampler = (
            None
            if self._passthrough
            else av.AudioResampler(format="flt", layout="mono", rate=to_rate)
        )

    def _collect(self, frames: list[av.AudioFrame]) -> Audio:
        if not frames:
            return Audio(np.zeros(0, dtype=np.float32), self.to_rate)
        parts = [f.to_ndarray().reshape(-1).astype(np.float32, copy=False) for f in frames]
        return Audio(np.concatenate(parts), self.to_rate)

    def feed(self, audio: Audio) -> Audio:
        """Convert the next chunk; may return fewer samples than expected (the rest is held)."""
        if audio.sample_rate != self.from_rate:
            raise ValueError(f"Resampler expects {self.from_rate} Hz, got {audio.sample_rate} Hz")
        if self._resampler is None:
            return Audio(audio.samples.astype(np.float32, copy=False), self.to_rate)
        if len(audio.samples) == 0:
            return Audio(np.zeros(0, dtype=np.float32), self.to_rate)
        frame = _float_frame(audio.samples, self.from_rate, self._pts)
        self._pts += len(audio.samples)
        return self._collect(self._resampler.resample(frame))

    def flush(self) -> Audio:
        """What is still buffered; the resampler cannot be fed afterwards."""
        if self._resampler is None:
            return Audio(np.zeros(0, dtype=np.float32), self.to_rate)
        return self._collect(self._resampler.resample(None))


def resample(audio: Audio, rate: int) -> Audio:
    """``audio`` converted to ``rate`` Hz (libswresample's polyphase filter via PyAV)."""
    if audio.sample_rate == rate or len(audio.samples) == 0:
        return Audio(audio.samples.astype(np.float32, copy=False), rate)
    resampler = Resampler(audio.sample_rate, rate)
    head = resampler.feed(audio)
    tail = resampler.flush()
    return Audio(np.concatenate([head.samples, tail.samples]), rate)


# --------------------------------------------------------------------------- loudness


def rms_dbfs(samples: npt.NDArray[np.floating] | npt.NDArray[np.integer]) -> float:
    """RMS level in dBFS (0 for a full-scale square wave, ``-inf`` for digital silence).

    Integer arrays are taken as 16-bit PCM.
    """
    arr = np.asarray(samples)
    if arr.size == 0:
        return -math.inf
    values = arr.astype(np.float64)
    if np.issubdtype(arr.dtype, np.integer):
        values /= 32768.0
    rms = math.sqrt(float(np.mean(values * values)))
    return 20.0 * math.log10(rms) if rms > 0 else -math.inf


def is_silent(audio: Audio, *, threshold_dbfs: float = -50.0) -> bool:
    """Whether the whole recording stays below ``threshold_dbfs`` RMS (nothing to transcribe)."""
    return rms_dbfs(audio.samples) < threshold_dbfs


# --------------------------------------------------------------------------- encoding


def content_type(fmt: AudioFormat) -> str:
    """The MIME type a reply in ``fmt`` is served with."""
    return _CONTENT_TYPES[fmt]


def _nearest_rate(rate: int, allowed: tuple[int, ...] | None) -> int:
    if allowed is None or rate in allowed:
        return rate
    higher = [r for r in allowed if r >= rate]
    return min(higher) if higher else max(allowed)


def encode(audio: Audio, fmt: AudioFormat, *, sample_rate: int | None = None) -> bytes:
    """One complete file in ``fmt`` holding ``audio``.

    ``sample_rate`` asks for a rate (``pcm`` clients need to know theirs: OpenAI's is 24 kHz);
    by default the audio's own rate is kept where the codec allows, else the next rate it
    supports (Opus: 8/12/16/24/48 kHz) is used.
    """
    target = sample_rate or audio.sample_rate
    if fmt in ("wav", "pcm"):
        pcm = resample(audio, target).pcm16()
        if fmt == "pcm":
            return pcm
        out = io.BytesIO()
        with wave.open(out, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(target)
            wav.writeframes(pcm)
        return out.getvalue()
    if fmt not in _ENCODERS:
        raise ValueError(f"unknown audio format {fmt!r}")
    container_format, codec, rates = _ENCODERS[fmt]
    rate = _nearest_rate(target, rates)
    converted = resample(audio, rate)
    if len(converted.samples) == 0:
        # An encoder given nothing writes nothing, which no player accepts as a file.
        converted = Audio(np.zeros(rate // 50, dtype=np.float32), rate)
    out = io.BytesIO()
    with av.open(out, mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        assert isinstance(stream, av.AudioStream)
        if fmt in ("mp3", "aac"):
            stream.bit_rate = 64_000
        frame = _float_frame(np.clip(converted.samples, -1.0, 1.0), rate, 0)
        # The encoder's own converter takes the float frame to its sample format and splits
        # it into codec-sized frames.
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()
