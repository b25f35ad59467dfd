"""Speech over REST with OpenAI's shapes, exercised with the real ``openai`` SDK, and the
round trip text → TTS → audio → ASR with the real engines."""

from __future__ import annotations

import io
import json
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import av
import httpx
import numpy as np
import openai
import pytest

from healtrace.agent.memory import ChatStore
from healtrace.agent.models.testing import DemoModel
from healtrace.api.app import create_app
from healtrace.api.testing import LiveServer
from healtrace.config import Settings, SpeechConfig
from healtrace.speech.asr import WhisperASR
from healtrace.speech.audio import decode_audio, encode, resample
from healtrace.speech.engines import SpeechEngines
from healtrace.speech.tts import EspeakPinyinTTS, LocalTTS, PiperTTS
from healtrace.speech.types import Audio
from healtrace.speech.whisper_models import resolve_whisper_model
from healtrace.storage import Database
from tests._speech import cer, espeak, wav_with_codec_tag, words

EN = "The patient has a fever and a sore throat."
ZH = (
    "我发烧两天了，还有咳嗽，需要去医院吗？",
    "我头痛，还有点发烧。",
    "我的血压是一百四十，高吗？",
    "我发烧了，喉咙很痛。",
)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> WhisperASR:
    models = Settings().models_dir
    return WhisperASR(resolve_whisper_model("base", models), threads=2, name="whisper-base")


async def say(engine: PiperTTS | EspeakPinyinTTS, text: str, language: str) -> Audio:
    pieces = [p async for p in engine.synthesize(text, language=language)]
    return Audio(np.concatenate([p.samples for p in pieces]), pieces[0].sample_rate)


async def test_round_trip_english_is_exact(base: WhisperASR) -> None:
    speech = await say(PiperTTS(), EN, "en")
    wav = encode(speech, "wav")
    heard = decode_audio(wav, max_bytes=10_000_000, max_seconds=60)
    result = await base.transcribe(heard, language="en")
    assert words(result.text) == words(EN)


async def test_round_trip_chinese_character_error_rate(base: WhisperASR) -> None:
    engines = SpeechEngines(SpeechConfig(), Settings().models_dir, asr=base)
    rates = []
    for sentence in ZH:
        speech = await say(EspeakPinyinTTS(), sentence, "zh")
        heard = decode_audio(encode(speech, "wav"), max_bytes=10_000_000, max_seconds=60)
        result = await base.transcribe(heard, language="zh", prompt=engines.prompt("zh"))
        rates.append(cer(sentence, result.text))
        print(f"zh round trip: {sentence} -> {result.text}  CER {rates[-1]:.2f}")
    mean = sum(rates) / len(rates)
    print(f"zh round trip mean CER {mean:.2f}")
    # espeak-ng's pinyin voice is robotic and Whisper base small: the mean over these
    # sentences is reported in BENCHMARKS.md (benchmarks/speech.py runs the same round
    # trip). The bound fails when Chinese stops being recognised (English or noise gives
    # about 1.0), not on a single misheard word.
    assert mean <= 0.75


# --------------------------------------------------------------------------- REST


@pytest.fixture
async def live(settings: Settings, base: WhisperASR) -> AsyncIterator[tuple[LiveServer, str]]:
    settings = settings.model_copy(update={"speech": SpeechConfig(max_audio_seconds=120)})
    db = Database(settings.resolved_database_url)
    await db.migrate()
    key = (await ChatStore(db).create_api_key("speech"))[1]
    await db.dispose()
    engines = SpeechEngines(settings.speech, settings.models_dir, asr=base, tts=LocalTTS())
    app = create_app(settings, model=DemoModel(), speech=engines)
    async with LiveServer(app) as server:
        yield server, key


async def test_openai_sdk_speech_then_transcription(live: tuple[LiveServer, str]) -> None:
    server, key = live
    async with openai.AsyncOpenAI(
        base_url=f"{server.http}/v1", api_key=key, max_retries=0
    ) as client:
        await _speak_and_hear(client)


async def _speak_and_hear(client: openai.AsyncOpenAI) -> None:
    speech = await client.audio.speech.create(
        model="tts-1", voice="alloy", input=EN, response_format="mp3"
    )
    mp3 = speech.content
    assert mp3[:3] == b"ID3" or mp3[0] == 0xFF
    text = await client.audio.transcriptions.create(
        model="whisper-1", file=("q.mp3", mp3), language="en"
    )
    assert words(text.text) == words(EN)
    verbose = await client.audio.transcriptions.create(
        model="whisper-1", file=("q.mp3", mp3), response_format="verbose_json"
    )
    assert verbose.language == "en" and verbose.duration > 1
    srt = await client.audio.transcriptions.create(
        model="whisper-1", file=("q.mp3", mp3), response_format="srt"
    )
    assert "-->" in str(srt)
    pcm = await client.audio.speech.create(
        model="tts-1", voice="nova", input="你好", response_format="pcm"
    )
    assert len(pcm.content) > 24000  # OpenAI's pcm: 24 kHz s16le, here over half a second


def _wav(seconds: float, rate: int = 8000, width: int = 2) -> bytes:
    """Silence; 8-bit samples keep 30 minutes (14 MB) under the 25 MB upload limit."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes((b"\x80" if width == 1 else b"\x00\x00") * int(seconds * rate))
    return buf.getvalue()


def _amr(tmp: Path) -> bytes:
    """A WeChat-style AMR-NB voice note of espeak speech (PyAV can encode AMR-NB)."""
    audio = espeak(EN, "en-us", tmp)
    out = io.BytesIO()
    with av.open(out, "w", format="amr") as container:
        stream = container.add_stream("libopencore_amrnb", rate=8000)
        stream.bit_rate = 12200
        stream.layout = "mono"
        narrow = resample(audio, 8000)
        pcm = (np.clip(narrow.samples, -1, 1) * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


async def test_transcribes_a_wechat_amr_voice_note(
    live: tuple[LiveServer, str], tmp_path: Path
) -> None:
    server, key = live
    async with httpx.AsyncClient(timeout=60) as client:
        r = await client.post(
            f"{server.http}/v1/audio/transcriptions",
            headers={"Authorization": f"Bearer {key}"},
            files={"file": ("voice.amr", _amr(tmp_path), "audio/amr")},
            data={"language": "en"},
        )
    assert r.status_code == 200, r.text
    assert "sore throat" in r.json()["text"].lower()  # 8 kHz AMR-NB: narrowband but intelligible


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b"", 400, "audio_empty"),
        (b"\x89PNG\r\n\x1a\n" + bytes(200), 415, "audio_unsupported_format"),
        (_wav(3.0)[:60], 400, "audio_corrupt"),
        (_wav(2.0), 422, "audio_silent"),
        (_wav(30 * 60.0, width=1), 413, "audio_too_long"),
        (wav_with_codec_tag(0x5A5A), 415, "audio_unsupported_format"),
    ],
    ids=["empty", "png", "truncated", "silence", "thirty-minutes", "unknown-codec"],
)
async def test_bad_audio_gets_specific_errors(
    live: tuple[LiveServer, str], payload: bytes, status: int, code: str
) -> None:
    server, key = live
    async with httpx.AsyncClient(timeout=60) as client:
        for lang in ("en", "zh-CN"):
            r = await client.post(
                f"{server.http}/v1/audio/transcriptions",
                headers={"Authorization": f"Bearer {key}", "Accept-Language": lang},
                files={"file": ("x.wav", payload, "audio/wav")},
            )
            assert r.status_code == status, r.text
            error = r.json()["error"]
            assert error["code"] == code
            assert (any("\u4e00" <= c <= "\u9fff" for c in error["message"])) == (lang != "en")
        # The server keeps serving.
        assert (await client.get(f"{server.http}/healthz")).status_code == 200


async def test_a_language_whisper_does_not_know_is_refused_by_name(
    live: tuple[LiveServer, str],
) -> None:
    server, key = live
    wav = encode(await say(PiperTTS(), EN, "en"), "wav")
    async with httpx.AsyncClient(timeout=60) as client:
        for lang, words in (("en", "'xx'"), ("zh-CN", "“xx”")):
            r = await client.post(
                f"{server.http}/v1/audio/transcriptions",
                headers={"Authorization": f"Bearer {key}", "Accept-Language": lang},
                files={"file": ("q.wav", wav, "audio/wav")},
                data={"language": "xx"},
            )
            assert r.status_code == 400, r.text
            error = r.json()["error"]
            assert error["code"] == "speech_language_unsupported" and words in error["message"]


async def test_oversized_upload_is_refused_before_it_is_read(
    live: tuple[LiveServer, str],
) -> None:
    server, key = live
    big = bytes(26 * 1024 * 1024)
    async with httpx.AsyncClient(timeout=60) as client:
        r = await client.post(
            f"{server.http}/v1/audio/transcriptions",
            headers={"Authorization": f"Bearer {key}"},
            files={"file": ("big.wav", big, "audio/wav")},
        )
    assert r.status_code == 413 and r.json()["error"]["code"] == "audio_too_large"


async def test_speech_input_errors(live: tuple[LiveServer, str]) -> None:
    server, key = live
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(timeout=60) as client:
        r = await client.post(
            f"{server.http}/v1/audio/speech", headers=headers, json={"input": "   "}
        )
        assert (r.status_code, r.json()["error"]["code"]) == (400, "speech_text_empty")
        r = await client.post(
            f"{server.http}/v1/audio/speech", headers=headers, json={"input": "a" * 5000}
        )
        assert (r.status_code, r.json()["error"]["code"]) == (413, "speech_text_too_long")
        r = await client.post(
            f"{server.http}/v1/audio/speech",
            headers=headers,
            json={"input": "hi", "response_format": "ogg"},
        )
        assert r.status_code == 422
        r = await client.post(f"{server.http}/v1/audio/speech", json={"input": "hi"})
        assert r.status_code == 401


# --------------------------------------------------------------------------- CLI


def test_cli_say_then_transcribe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from healtrace.cli import app

    monkeypatch.setenv("HEALTRACE_SPEECH__ASR_MODEL", "tiny.en")
    runner = CliRunner()
    out = tmp_path / "advice.wav"
    said = runner.invoke(app, ["speech", "say", EN, "-o", str(out)])
    assert said.exit_code == 0, said.output
    assert "piper" in said.output and out.stat().st_size > 20_000
    heard = runner.invoke(app, ["speech", "transcribe", str(out), "--language", "en", "--json"])
    assert heard.exit_code == 0, heard.output
    result = json.loads(heard.output)
    assert words(result["text"]) == words(EN) and result["segments"]
    zh = tmp_path / "zh.mp3"
    said = runner.invoke(app, ["speech", "say", "多喝水，注意休息。", "-o", str(zh)])
    assert said.exit_code == 0 and "espeak-ng" in said.output
    # Bad input: a clear message and exit code 2, no traceback.
    junk = tmp_path / "junk.m4a"
    junk.write_bytes(b"not audio at all" * 10)
    failed = runner.invoke(app, ["speech", "transcribe", str(junk)])
    assert failed.exit_code == 2 and "not supported" in failed.output
    empty = runner.invoke(app, ["speech", "say", "  ", "-o", str(tmp_path / "x.wav")])
    assert empty.exit_code == 2
