"""Speech out: sentence splitting of streamed answers, the real piper and espeak-ng engines,
an OpenAI-compatible server over real HTTP, and the scripted fake."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import numpy as np
import pytest

from healtrace.config import SpeechConfig
from healtrace.speech.audio import encode, rms_dbfs
from healtrace.speech.sentences import SentenceSplitter, speakable
from healtrace.speech.tts import (
    EspeakPinyinTTS,
    LocalTTS,
    OpenAITTS,
    PiperTTS,
    ScriptedTTS,
    build_tts,
    check_text,
    chinese_numbers,
    to_pinyin,
)
from healtrace.speech.types import TTS, Audio, SpeechError, SpeechUnavailable

# --------------------------------------------------------------------------- sentences


def stream(text: str, step: int = 3) -> list[tuple[int, str]]:
    """Feed ``text`` in ``step``-character deltas; (characters fed when emitted, sentence)."""
    splitter = SentenceSplitter()
    out: list[tuple[int, str]] = []
    for start in range(0, len(text), step):
        out += [(start + step, s) for s in splitter.feed(text[start : start + step])]
    out += [(len(text), s) for s in splitter.flush()]
    return out


def sentences(text: str, step: int = 3) -> list[str]:
    return [s for _, s in stream(text, step)]


def test_english_sentences_end_at_terminal_punctuation_only() -> None:
    text = (
        "Your temperature of 38.5 °C is a mild fever. Drink fluids, e.g. water or tea! "
        "Dr. Smith says glucose above 7.0 mmol/L (126 mg/dL) needs review. Is it high? Yes"
    )
    assert sentences(text) == [
        "Your temperature of 38.5 °C is a mild fever.",
        "Drink fluids, e.g. water or tea!",
        "Dr. Smith says glucose above 7.0 mmol/L (126 mg/dL) needs review.",
        "Is it high?",
        "Yes",
    ]


def test_a_sentence_is_emitted_as_soon_as_the_next_character_shows_it_ended() -> None:
    text = "First sentence. Second one is longer and still going"
    emitted = stream(text, step=1)
    assert emitted[0] == (len("First sentence. "), "First sentence.")


def test_chinese_sentences_end_at_once() -> None:
    text = "您的体温是38.5℃，属于低热。请多喝水！如果持续三天以上；请就医？\n好的"
    emitted = stream(text, step=2)
    assert [s for _, s in emitted] == [
        "您的体温是38.5℃，属于低热。",
        "请多喝水！",
        "如果持续三天以上；",
        "请就医？",
        "好的",
    ]
    assert emitted[0][0] <= text.index("。") + 2


def test_markdown_lists_and_citations_are_not_read_out() -> None:
    text = (
        "## What to do\n"
        "1. **Rest** and drink `fluids` [1].\n"
        "2. See [the guideline](https://example.org/g.pdf) at https://who.int/x.\n"
        "- Take paracetamol 500 mg.[2][3]\n"
        "```\ncode = 1.\n```\n"
        "> Quoted advice.\n"
        "---\n"
        "所以**血糖**偏高【1】。"
    )
    assert sentences(text, step=5) == [
        "What to do",
        "Rest and drink fluids.",
        "See the guideline at.",
        "Take paracetamol 500 mg.",
        "Quoted advice.",
        "所以血糖偏高。",
    ]
    assert speakable("**bold** and __strong__ and *it*") == "bold and strong and it"


def test_long_sentences_are_cut_at_a_comma() -> None:
    clause = "the reading was within the usual range for adults of your age"
    text = ", ".join([clause] * 8) + "."
    parts = sentences(text, step=7)
    assert len(parts) >= 3
    assert all(len(p) <= 200 for p in parts)
    assert parts[0].endswith(",")
    assert " ".join(parts).replace("  ", " ") == text
    zh = "，".join(["这个指标在正常范围之内没有问题"] * 20) + "。"
    zh_parts = sentences(zh, step=4)
    assert all(len(p) <= 200 for p in zh_parts) and "".join(zh_parts) == zh


# --------------------------------------------------------------------------- text checks


def test_check_text() -> None:
    assert check_text("  hi  ", 10) == "hi"
    with pytest.raises(SpeechError) as caught:
        check_text(" \n ", 10)
    assert caught.value.code == "speech_text_empty"
    with pytest.raises(SpeechError) as caught:
        check_text("x" * 11, 10)
    assert caught.value.code == "speech_text_too_long"
    assert caught.value.params == {"length": 11, "limit": 10}


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("38.5", "三十八点五"),
        ("10", "十"),
        ("15岁", "十五岁"),
        ("101", "一百零一"),
        ("1005", "一千零五"),
        ("120000", "十二万"),
        ("1,200", "一千二百"),
        ("50%", "百分之五十"),
        ("0.5", "零点五"),
        ("2024年", "二零二四年"),
        ("13800138000", "一三八零零一三八零零零"),
        ("3.5-5.3 mmol/L", "三点五到五点三 毫摩尔每升"),
        ("血压120/80 mmHg", "血压一百二十/八十 毫米汞柱"),
        ("HbA1c 6.5%", "HbA1c 百分之六点五"),
        ("分别是3,4次", "分别是三,四次"),
    ],
)
def test_chinese_numbers(text: str, spoken: str) -> None:
    assert chinese_numbers(text) == spoken


def test_pinyin_has_tone_numbers_and_neutral_five() -> None:
    assert to_pinyin("你好，体温38.5度。") == "ni3 hao3, ti3 wen1 san1 shi2 ba1 dian3 wu3 du4."
    assert to_pinyin("我们的") == "wo3 men5 de5"


# --------------------------------------------------------------------------- real engines


async def collect(tts: TTS, text: str, language: str, **kwargs: Any) -> tuple[Audio, int]:
    """All audio for ``text`` joined, and how many chunks it came in.

    How fast the first chunk comes is measured in benchmarks/speech.py, not asserted here.
    """
    chunks: list[Audio] = []
    async for chunk in tts.synthesize(text, language=language, **kwargs):
        chunks.append(chunk)
    assert chunks
    assert len({c.sample_rate for c in chunks}) == 1
    return Audio(np.concatenate([c.samples for c in chunks]), chunks[0].sample_rate), len(chunks)


@pytest.fixture(scope="module")
def piper() -> PiperTTS:
    engine = PiperTTS()
    engine.load()
    return engine


async def test_piper_speaks_english(piper: PiperTTS) -> None:
    assert piper.name == "piper:en_US-joe-medium"
    assert isinstance(piper, TTS)
    text = "Please drink plenty of water and rest for two days."
    audio, _ = await collect(piper, text, "en")
    assert audio.sample_rate == 22050
    assert 1.5 < audio.duration_s < 6.0
    assert rms_dbfs(audio.samples) > -30
    faster, _ = await collect(piper, text, "en", speed=1.5)
    assert faster.duration_s < audio.duration_s * 0.85


async def test_piper_yields_each_sentence_as_it_is_made(piper: PiperTTS) -> None:
    chunks = [c async for c in piper.synthesize("Hello there. How are you today?", language="en")]
    assert len(chunks) == 2


async def test_espeak_speaks_pinyin_with_numbers() -> None:
    engine = EspeakPinyinTTS()
    assert engine.name == "espeak-ng:cmn-latn-pinyin"
    short, _ = await collect(engine, "您的体温是三十八度。", "zh")
    audio, chunks = await collect(engine, "您的体温是38.5度，请多喝水。", "zh")
    assert rms_dbfs(audio.samples) > -35
    # espeak-ng's WAV is read from its stdout as it is written, not after it exits.
    assert chunks > 1
    # The number is spoken, so the sentence with "38.5" is clearly longer than without.
    assert audio.duration_s > short.duration_s + 0.5
    assert 1.5 < audio.duration_s < 12.0


async def test_espeak_missing_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SpeechUnavailable) as caught:
        await collect(EspeakPinyinTTS(), "你好", "zh")
    assert "espeak-ng" in caught.value.message("en")
    assert "apt" in caught.value.detail


async def test_local_tts_routes_by_language(piper: PiperTTS) -> None:
    local = LocalTTS(en=piper)
    assert local.engine_for("Hello", "en") is piper
    assert local.engine_for("你好", "zh-CN") is local.zh
    assert local.engine_for("Blood pressure 120/80", "zh") is local.zh
    assert local.engine_for("你好", "en") is local.zh
    audio, _ = await collect(local, "你好。", "zh", voice="alloy")
    assert audio.sample_rate == 22050
    with pytest.raises(SpeechError) as caught:
        await collect(local, "   ", "en")
    assert caught.value.code == "speech_text_empty"


# --------------------------------------------------------------------------- OpenAI-compatible


Responder = Callable[[str, dict[str, object]], tuple[int, str, bytes]]


class SpeechServer:
    """A tiny real HTTP/1.1 server streaming its answer in chunked encoding."""

    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.requests: list[tuple[str, dict[str, str], dict[str, object]]] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> SpeechServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, path, _ = (await reader.readline()).decode().split(" ", 2)
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, value = line.decode().split(":", 1)
            headers[name.strip().lower()] = value.strip()
        body = json.loads(await reader.readexactly(int(headers["content-length"])))
        self.requests.append((path, headers, body))
        status, media, payload = self.respond(path, body)
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: {media}\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
        )
        for start in range(0, len(payload), 4096):
            piece = payload[start : start + 4096]
            writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()


def speech_wav(rate: int = 24000, seconds: float = 1.0) -> bytes:
    n = np.arange(int(rate * seconds))
    return encode(Audio((0.4 * np.sin(2 * np.pi * 300 * n / rate)).astype(np.float32), rate), "wav")


async def test_openai_tts_streams_wav_from_a_server() -> None:
    def respond(path: str, body: dict[str, object]) -> tuple[int, str, bytes]:
        assert path == "/v1/audio/speech"
        return 200, "audio/wav", speech_wav(24000, 1.0)

    async with SpeechServer(respond) as server:
        tts = OpenAITTS(server.url, "sk-test", "tts-1", "alloy", "nova", 5.0)
        assert tts.name == "openai:tts-1"
        chunks = [c async for c in tts.synthesize("你好", language="zh", speed=1.2)]
        audio = Audio(np.concatenate([c.samples for c in chunks]), chunks[0].sample_rate)
        assert len(chunks) >= 3  # 0.25 s chunks while the body streams
        assert audio.sample_rate == 24000
        assert audio.duration_s == pytest.approx(1.0, abs=0.01)
        assert rms_dbfs(audio.samples) == pytest.approx(-10.96, abs=0.1)
        path, headers, body = server.requests[0]
        assert path == "/v1/audio/speech"
        assert headers["authorization"] == "Bearer sk-test"
        assert body == {
            "model": "tts-1",
            "input": "你好",
            "voice": "nova",
            "response_format": "wav",
            "speed": 1.2,
        }
        [c async for c in tts.synthesize("Hi", language="en", voice="echo")]
        assert server.requests[1][2]["voice"] == "echo"


async def test_openai_tts_understands_raw_pcm() -> None:
    pcm = Audio(np.full(24000, 0.25, dtype=np.float32), 24000).pcm16()

    async with SpeechServer(lambda path, body: (200, "audio/pcm", pcm)) as server:
        tts = OpenAITTS(server.url, "", "kokoro", timeout_s=5.0)
        audio, _ = await collect(tts, "Hello", "en")
    assert audio.sample_rate == 24000
    assert audio.duration_s == pytest.approx(1.0)


async def test_openai_tts_failures_are_unavailable() -> None:
    error = json.dumps({"error": {"message": "voice 'x' does not exist"}}).encode()

    async with SpeechServer(lambda path, body: (400, "application/json", error)) as server:
        with pytest.raises(SpeechUnavailable) as caught:
            await collect(OpenAITTS(server.url, "", "tts-1", timeout_s=5.0), "Hello", "en")
    assert "voice 'x' does not exist" in caught.value.detail
    assert "400" in caught.value.message("en")

    async with SpeechServer(lambda path, body: (503, "text/plain", b"overloaded")) as server:
        with pytest.raises(SpeechUnavailable) as caught:
            await collect(OpenAITTS(server.url, "", "tts-1", timeout_s=5.0), "Hello", "en")
    assert "503" in caught.value.detail and "overloaded" in caught.value.detail

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    refused = OpenAITTS(f"http://127.0.0.1:{closed_port}/v1", "", "tts-1", timeout_s=2.0)
    with pytest.raises(SpeechUnavailable) as caught:
        await collect(refused, "Hello", "en")
    assert "unreachable" in caught.value.detail
    with pytest.raises(SpeechError) as too_long:
        await collect(OpenAITTS("http://x", "", "m", max_chars=3), "Hello", "en")
    assert too_long.value.code == "speech_text_too_long"


# --------------------------------------------------------------------------- scripted, build


async def test_scripted_tts_is_deterministic() -> None:
    tts = ScriptedTTS(seconds_per_char=0.1, sample_rate=16000, chunk_s=0.25, delay_s=0.01)
    assert isinstance(tts, TTS) and tts.name == "scripted"
    chunks = [c async for c in tts.synthesize("abcdefghij", language="en")]
    assert len(chunks) == 4
    assert sum(c.duration_s for c in chunks) == pytest.approx(1.0)
    again = [c async for c in tts.synthesize("abcdefghij", language="en")]
    assert all(np.array_equal(a.samples, b.samples) for a, b in zip(chunks, again, strict=True))
    silent = ScriptedTTS(tone_hz=None)
    audio, _ = await collect(silent, "你好", "zh")
    assert rms_dbfs(audio.samples) == -np.inf
    assert tts.calls[0] == ("abcdefghij", "en", None, 1.0)


def test_build_tts_follows_config() -> None:
    local = build_tts(SpeechConfig(max_speech_chars=100))
    assert isinstance(local, LocalTTS)
    assert local.en.max_chars == 100 and local.zh.max_chars == 100
    remote = build_tts(
        SpeechConfig(tts_backend="openai", tts_url="http://tts:9/v1/", tts_remote_model="kokoro")
    )
    assert isinstance(remote, OpenAITTS)
    assert remote.name == "openai:kokoro"
    assert remote.base_url == "http://tts:9/v1"


async def test_consumer_stopping_early_stops_synthesis(
    piper: PiperTTS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A barge-in stops reading the answer's audio: the worker thread then stops too, after
    the sentence it was making, instead of synthesising the rest for nobody."""
    made: list[Audio] = []
    finished = threading.Event()
    real = piper._chunks

    def counting(text: str, speed: float) -> Iterator[Audio]:
        try:
            for audio in real(text, speed):
                made.append(audio)
                yield audio
        finally:
            finished.set()

    monkeypatch.setattr(piper, "_chunks", counting)
    text = " ".join(["This sentence is one of many."] * 12)
    generator = piper.synthesize(text, language="en")
    assert isinstance(generator, AsyncIterator)
    first = await anext(generator)
    assert first.duration_s > 0.5
    await generator.aclose()  # type: ignore[attr-defined]
    assert await asyncio.to_thread(finished.wait, 60)
    # The one handed over, the one being made, perhaps one more on a busy machine; not 12.
    assert 1 <= len(made) <= 3


def test_tricky_english_boundaries() -> None:
    text = (
        "**Note.** The U.S. guideline (Fig. 2) says wait... then test again?! "
        "Call 911. A. Smith, M.D. agrees."
    )
    assert sentences(text, step=4) == [
        "Note.",
        "The U.S. guideline (Fig. 2) says wait...",
        "then test again?!",
        "Call 911.",
        "A. Smith, M.D. agrees.",
    ]
