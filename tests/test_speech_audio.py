"""Decoding, resampling, loudness and encoding with the real codecs (PyAV's ffmpeg, SILK).

Every container is produced in the test with the same libraries a phone or browser would
use, so the tests need no fixture files and show what each path really decodes.
"""

from __future__ import annotations

import io
import math
import os
import wave
from collections.abc import Iterator
from typing import Any

import av
import numpy as np
import pysilk  # type: ignore[import-untyped]
import pytest

from healtrace.speech import audio as audio_module
from healtrace.speech.audio import (
    Resampler,
    content_type,
    decode_audio,
    encode,
    is_silent,
    pcm_to_audio,
    resample,
    rms_dbfs,
    sniff,
)
from healtrace.speech.types import SAMPLE_RATE, Audio, AudioFormat, SpeechError
from tests._speech import wav_with_codec_tag

BIG = 100 * 1024 * 1024


def tone(rate: int, seconds: float = 1.0, hz: float = 440.0, level: float = 0.5) -> Audio:
    n = np.arange(round(rate * seconds))
    return Audio((level * np.sin(2 * np.pi * hz * n / rate)).astype(np.float32), rate)


def peak_hz(audio: Audio) -> float:
    """Frequency of the strongest FFT bin (of the middle, away from codec edge effects)."""
    samples = audio.samples
    middle = samples[len(samples) // 8 : len(samples) * 7 // 8]
    spectrum = np.abs(np.fft.rfft(middle * np.hanning(len(middle))))
    return float(np.argmax(spectrum) * audio.sample_rate / len(middle))


def container(fmt: str, codec: str, rate: int, audio: Audio, bit_rate: int | None = None) -> bytes:
    """``audio`` encoded the way a client would, by PyAV directly (not the code under test)."""
    out = io.BytesIO()
    with av.open(out, mode="w", format=fmt) as box:
        stream = box.add_stream(codec, rate=rate, layout="mono")
        assert isinstance(stream, av.AudioStream)
        if bit_rate:
            stream.bit_rate = bit_rate
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=rate)
        source = av.AudioFrame.from_ndarray(
            (audio.samples * 32767).astype("<i2").reshape(1, -1), format="s16", layout="mono"
        )
        source.sample_rate = audio.sample_rate
        for frame in [*resampler.resample(source), *resampler.resample(None)]:
            for packet in stream.encode(frame):
                box.mux(packet)
        for packet in stream.encode(None):
            box.mux(packet)
    return out.getvalue()


CONTAINERS = {
    "wav": ("wav", "pcm_s16le", 16000, None, "wav"),
    "mp3": ("mp3", "libmp3lame", 44100, None, "mp3"),
    "ogg-opus": ("ogg", "libopus", 48000, None, "ogg"),
    "webm-opus": ("webm", "libopus", 48000, None, "webm"),
    "mp4-aac": ("mp4", "aac", 44100, None, "mp4"),
    "m4a-aac": ("ipod", "aac", 22050, None, "mp4"),
    "adts-aac": ("adts", "aac", 16000, None, "aac"),
    "flac": ("flac", "flac", 44100, None, "flac"),
    "amr-nb": ("amr", "libopencore_amrnb", 8000, 12200, "amr"),
}


@pytest.mark.parametrize("name", sorted(CONTAINERS))
def test_decodes_every_client_container(name: str) -> None:
    fmt, codec, rate, bit_rate, kind = CONTAINERS[name]
    data = container(fmt, codec, rate, tone(rate), bit_rate)
    assert sniff(data) == kind
    audio = decode_audio(data, max_bytes=BIG, max_seconds=60, content_type="audio/whatever")
    assert audio.sample_rate == SAMPLE_RATE
    assert audio.samples.dtype == np.float32
    assert audio.duration_s == pytest.approx(1.0, abs=0.1)
    assert peak_hz(audio) == pytest.approx(440, abs=5)
    assert not is_silent(audio)


@pytest.mark.parametrize("tencent", [True, False])
def test_decodes_wechat_and_plain_silk(tencent: bool) -> None:
    pcm = tone(24000, 1.0).pcm16()
    out = io.BytesIO()
    pysilk.encode(io.BytesIO(pcm), out, 24000, 24000, tencent=tencent)
    data = out.getvalue()
    assert data.startswith(b"\x02#!SILK_V3" if tencent else b"#!SILK_V3")
    assert sniff(data) == "silk"
    audio = decode_audio(data, max_bytes=BIG, max_seconds=60)
    assert audio.sample_rate == SAMPLE_RATE
    assert audio.duration_s == pytest.approx(1.0, abs=0.1)
    assert peak_hz(audio) == pytest.approx(440, abs=10)
    with pytest.raises(SpeechError) as caught:
        decode_audio(data, max_bytes=BIG, max_seconds=0.5)
    assert caught.value.code == "audio_too_long"


def test_empty_large_and_unknown_uploads_are_rejected_before_decoding() -> None:
    with pytest.raises(SpeechError) as caught:
        decode_audio(b"", max_bytes=BIG, max_seconds=60)
    assert caught.value.code == "audio_empty"
    with pytest.raises(SpeechError) as caught:
        decode_audio(b"RIFF" + bytes(2000), max_bytes=1000, max_seconds=60)
    assert caught.value.code == "audio_too_large"
    assert caught.value.params == {"size": 2004, "limit": 1000}
    with pytest.raises(SpeechError) as caught:
        decode_audio(os.urandom(4096).replace(b"\xff", b"\x00"), max_bytes=BIG, max_seconds=60)
    assert caught.value.code == "audio_unsupported_format"
    assert "unrecognised" in caught.value.message("en")
    with pytest.raises(SpeechError) as caught:
        decode_audio(b"<html>not audio</html>", max_bytes=BIG, max_seconds=60)
    assert caught.value.code == "audio_unsupported_format"


@pytest.mark.parametrize("name", ["wav", "mp4-aac", "flac", "ogg-opus"])
def test_truncated_uploads_without_usable_audio_are_corrupt(name: str) -> None:
    fmt, codec, rate, bit_rate, _ = CONTAINERS[name]
    data = container(fmt, codec, rate, tone(rate), bit_rate)
    # WAV: header only; FLAC: metadata only; MP4: the moov atom is at the end; Ogg: cut
    # mid-stream before its last page.
    cut = {"wav": 44, "flac": 100}.get(name, len(data) // 2)
    with pytest.raises(SpeechError) as caught:
        decode_audio(data[:cut], max_bytes=BIG, max_seconds=60)
    assert caught.value.code == "audio_corrupt"


def test_an_upload_cut_off_mid_stream_keeps_what_was_recorded() -> None:
    data = container("mp3", "libmp3lame", 44100, tone(44100, 2.0))
    audio = decode_audio(data[: len(data) // 2], max_bytes=BIG, max_seconds=60)
    assert 0.5 < audio.duration_s < 1.5


def test_a_thirty_minute_recording_is_rejected_before_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(bytes(8000 * 2 * 1800))
    data = out.getvalue()
    decoded: list[int] = []
    real_frames = audio_module._frames

    def counting(*args: Any) -> Iterator[av.AudioFrame]:
        for frame in real_frames(*args):
            decoded.append(frame.samples)
            yield frame

    monkeypatch.setattr(audio_module, "_frames", counting)
    with pytest.raises(SpeechError) as caught:
        decode_audio(data, max_bytes=BIG, max_seconds=600)
    assert caught.value.code == "audio_too_long"
    assert caught.value.params["seconds"] == 1800
    # Refused on the container's declared duration: not one sample was decoded.
    assert decoded == []
    assert "1800" in caught.value.message("en") and "600" in caught.value.message("zh-CN")


def test_decoding_stops_once_the_limit_is_passed_without_a_declared_duration() -> None:
    # A streaming WAV writer's placeholder sizes: the length is only known by decoding.
    header = bytearray(encode(tone(16000, 0.01), "wav")[:44])
    header[4:8] = header[40:44] = (0xFFFFFFFF).to_bytes(4, "little")
    data = bytes(header) + tone(16000, 3.0).pcm16()
    assert decode_audio(data, max_bytes=BIG, max_seconds=5).duration_s == pytest.approx(3.0)
    with pytest.raises(SpeechError) as caught:
        decode_audio(data, max_bytes=BIG, max_seconds=2)
    assert caught.value.code == "audio_too_long"


def test_raw_pcm_frames_are_checked() -> None:
    audio = pcm_to_audio(tone(48000, 0.1).pcm16(), 48000)
    assert audio.sample_rate == 48000
    assert len(audio.samples) == 4800
    with pytest.raises(SpeechError) as caught:
        pcm_to_audio(b"\x00\x01\x02", 16000)
    assert caught.value.code == "audio_frame_invalid"
    with pytest.raises(SpeechError) as caught:
        pcm_to_audio(b"\x00\x01", 22050)
    assert caught.value.code == "audio_sample_rate_unsupported"
    assert "22050" in caught.value.message("en")


@pytest.mark.parametrize("rate", [8000, 24000, 44100, 48000])
def test_resampling_keeps_frequency_and_duration(rate: int) -> None:
    converted = resample(tone(rate, 2.0, hz=1000), SAMPLE_RATE)
    assert converted.sample_rate == SAMPLE_RATE
    assert len(converted.samples) == pytest.approx(2 * SAMPLE_RATE, abs=2)
    assert peak_hz(converted) == pytest.approx(1000, abs=2)
    assert rms_dbfs(converted.samples[1000:-1000]) == pytest.approx(
        rms_dbfs(tone(rate).samples), abs=0.2
    )


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_streaming_resampler_matches_one_shot(rate: int) -> None:
    source = tone(rate, 1.0, hz=700)
    whole = resample(source, SAMPLE_RATE).samples
    resampler = Resampler(rate)
    pieces = []
    position = 0
    for size in [7, 320, 1000, 4096, 33, 960] * 50:
        chunk = source.samples[position : position + size]
        position += size
        pieces.append(resampler.feed(Audio(chunk, rate)).samples)
        if position >= len(source.samples):
            break
    pieces.append(resampler.flush().samples)
    streamed = np.concatenate(pieces)
    assert len(streamed) == len(whole)
    assert np.max(np.abs(streamed - whole)) < 1e-4
    # No clicks: past the filter's start-up the step between samples never exceeds a clean
    # 700 Hz sine's.
    assert np.max(np.abs(np.diff(streamed[64:-64]))) < 0.5 * 2 * math.pi * 700 / SAMPLE_RATE * 1.1


def test_loudness() -> None:
    assert rms_dbfs(tone(16000, level=1.0).samples) == pytest.approx(-3.01, abs=0.01)
    assert rms_dbfs(np.zeros(100, dtype=np.float32)) == -math.inf
    assert rms_dbfs(np.full(100, 16384, dtype=np.int16)) == pytest.approx(-6.02, abs=0.01)
    assert is_silent(Audio(np.zeros(16000, dtype=np.float32), 16000))
    assert is_silent(tone(16000, level=0.001))
    assert not is_silent(tone(16000, level=0.001), threshold_dbfs=-70)
    assert not is_silent(tone(16000))


FORMATS: list[AudioFormat] = ["wav", "pcm", "mp3", "opus", "flac", "aac"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("rate", [22050, 16000])
def test_encode_round_trips(fmt: AudioFormat, rate: int) -> None:
    source = tone(rate, 1.5, hz=440)
    data = encode(source, fmt)
    if fmt == "pcm":
        # Raw PCM keeps the audio's own rate unless one is asked for.
        decoded = resample(Audio.from_pcm16(data, rate), SAMPLE_RATE)
    else:
        decoded = decode_audio(data, max_bytes=BIG, max_seconds=60)
    # ADTS has no edit list, so AAC's encoder delay and padding (~2048 samples) stay in.
    assert decoded.duration_s == pytest.approx(1.5, abs=0.15 if fmt == "aac" else 0.1)
    assert peak_hz(decoded) == pytest.approx(440, abs=5)
    assert rms_dbfs(decoded.samples) == pytest.approx(rms_dbfs(source.samples), abs=1.0)
    assert content_type(fmt).startswith("audio/")


def test_encode_picks_rates_the_codec_supports() -> None:
    opus = encode(tone(22050), "opus")
    with av.open(io.BytesIO(opus)) as box:
        assert box.streams.audio[0].codec_context.name in ("opus", "libopus")
        assert box.format.name == "ogg"
    pcm = encode(tone(22050, 1.0), "pcm", sample_rate=24000)
    assert len(pcm) == pytest.approx(2 * 24000, abs=4)
    wav = encode(tone(22050, 1.0), "wav", sample_rate=48000)
    with wave.open(io.BytesIO(wav)) as reader:
        assert reader.getframerate() == 48000
        assert reader.getnframes() == pytest.approx(48000, abs=2)
    assert content_type("pcm") == "audio/pcm"
    assert content_type("mp3") == "audio/mpeg"
    assert content_type("opus") == "audio/ogg"
    empty = encode(Audio(np.zeros(0, dtype=np.float32), 16000), "mp3")
    assert decode_audio(empty, max_bytes=BIG, max_seconds=1).duration_s < 0.2


def test_damaged_uploads_only_ever_raise_speech_errors() -> None:
    rng = np.random.default_rng(7)
    seeds = [encode(tone(16000), fmt) for fmt in ("wav", "mp3", "opus", "flac", "aac")]
    for _ in range(300):
        data = bytearray(seeds[rng.integers(len(seeds))])
        for position in rng.integers(len(data), size=rng.integers(1, 20)):
            data[position] = rng.integers(256)
        cut = bytes(data[: rng.integers(1, len(data) + 1)])
        try:
            audio = decode_audio(cut, max_bytes=BIG, max_seconds=30)
        except SpeechError as exc:
            assert exc.code in {"audio_corrupt", "audio_too_long", "audio_unsupported_format"}
        else:
            assert audio.sample_rate == SAMPLE_RATE and len(audio.samples) > 0


def test_a_container_without_audio_is_an_unsupported_format() -> None:
    """A video-only WebM (a screen recording sent as a voice note) is refused by name."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="webm") as container:
        stream = container.add_stream("libvpx", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for _ in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with pytest.raises(SpeechError) as err:
        decode_audio(buf.getvalue(), max_bytes=10_000_000, max_seconds=60)
    assert err.value.code == "audio_unsupported_format"
    assert "no audio track" in err.value.message("en")


def test_a_known_container_with_an_unknown_codec_is_an_unsupported_format() -> None:
    assert decode_audio(wav_with_codec_tag(0x0001), max_bytes=BIG, max_seconds=60).duration_s == (
        pytest.approx(1.0)
    )
    with pytest.raises(SpeechError) as err:
        decode_audio(wav_with_codec_tag(0x5A5A), max_bytes=BIG, max_seconds=60)
    assert err.value.code == "audio_unsupported_format"
    assert "codec" in err.value.message("en") and "不支持" in err.value.message("zh-CN")
