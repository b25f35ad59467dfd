"""Voice turns over the chat WebSocket, driven by a client streaming real audio in 20 ms frames.

The real-engine test uses Whisper tiny.en, Silero VAD and piper; the others use scripted
ASR/TTS behind the same interfaces (and the real VAD) so timing-sensitive paths —
barge-in, echo, push-to-talk errors — run fast and deterministically.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from healtrace.agent.memory import ChatStore
from healtrace.agent.models.testing import DemoModel
from healtrace.api.app import create_app
from healtrace.api.testing import LiveServer
from healtrace.config import Settings, SpeechConfig
from healtrace.speech.asr import ScriptedASR, WhisperASR
from healtrace.speech.audio import decode_audio, resample
from healtrace.speech.engines import SpeechEngines
from healtrace.speech.tts import LocalTTS, ScriptedTTS
from healtrace.speech.types import SAMPLE_RATE, Audio
from healtrace.speech.whisper_models import resolve_whisper_model
from healtrace.storage import Database
from tests._speech import espeak

QUESTION = "What is a normal blood pressure?"
LONG_ANSWER = (
    "A normal blood pressure for adults is below 120 over 80. "
    "Readings between 120 and 129 are called elevated. "
    "High blood pressure usually has no symptoms, so measure it regularly. "
    "Please see a doctor if your readings stay high."
)
FRAME = SAMPLE_RATE // 50  # 20 ms


def frames(audio: Audio, rate: int = SAMPLE_RATE, flag: int = 0) -> list[bytes]:
    """The audio as the client sends it: flags byte + s16le PCM, 20 ms per frame."""
    pcm = resample(audio, rate).pcm16() if rate != audio.sample_rate else audio.pcm16()
    step = rate // 50 * 2
    return [bytes([flag]) + pcm[i : i + step] for i in range(0, len(pcm), step)]


def silence(seconds: float) -> Audio:
    return Audio(np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32), SAMPLE_RATE)


def louder(audio: Audio, gain: float) -> Audio:
    return Audio(np.clip(audio.samples * gain, -1, 1).astype(np.float32), audio.sample_rate)


async def stream(ws: ClientConnection, chunks: list[bytes], *, pace_s: float = 0.0) -> None:
    for chunk in chunks:
        await ws.send(chunk)
        if pace_s:
            await asyncio.sleep(pace_s)


async def recv(ws: ClientConnection, wait_s: float = 30) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), wait_s))  # type: ignore[no-any-return]


async def until(ws: ClientConnection, *types: str, wait_s: float = 30) -> list[dict[str, Any]]:
    seen = []
    while True:
        frame = await recv(ws, wait_s)
        seen.append(frame)
        if frame["type"] in types:
            return seen


async def api_key(settings: Settings) -> str:
    db = Database(settings.resolved_database_url)
    await db.migrate()
    try:
        return (await ChatStore(db).create_api_key("voice"))[1]
    finally:
        await db.dispose()


async def connect(live: LiveServer, key: str) -> ClientConnection:
    ws = await websockets.connect(live.ws)
    await ws.send(json.dumps({"type": "hello", "api_key": key}))
    assert (await recv(ws))["type"] == "hello_ok"
    return ws


@pytest.fixture(scope="module")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("voice")


@pytest.fixture(scope="module")
def question(speech_dir: Path) -> Audio:
    return espeak(QUESTION, "en-us", speech_dir)


@pytest.fixture(scope="module")
def interruption(speech_dir: Path) -> Audio:
    return espeak("Stop, I have another question.", "en-us", speech_dir)


@pytest.fixture
def voice_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"speech": SpeechConfig(voice_format="wav", partial_interval_ms=800)}
    )


# --------------------------------------------------------------------------- real engines


async def test_a_spoken_turn_with_real_engines(
    voice_settings: Settings, question: Audio, interruption: Audio
) -> None:
    """Whisper hears the question, the answer streams as text and piper's speech, in order;
    talking over the answer stops it and the stored answer says what had been heard."""
    tiny = WhisperASR(
        resolve_whisper_model("tiny.en", voice_settings.models_dir), threads=2, name="tiny.en"
    )
    engines = SpeechEngines(voice_settings.speech, voice_settings.models_dir, asr=tiny)
    engines._tts = LocalTTS()
    key = await api_key(voice_settings)
    model = DemoModel(answer=LONG_ANSWER, token_interval_ms=60, tool_rounds=0)
    app = create_app(voice_settings, model=model, speech=engines)
    async with LiveServer(app) as live:
        ws = await connect(live, key)
        await ws.send(json.dumps({"type": "audio_start", "sample_rate": 48000}))
        ready = await recv(ws)
        assert ready["type"] == "voice_ready"
        assert ready["asr"] == "tiny.en" and "piper" in ready["tts"]
        # The question at 48 kHz (what browsers capture), then silence to end it.
        await stream(ws, frames(question, 48000) + frames(silence(1.2), 48000))
        seen = await until(ws, "audio")
        kinds = [f["type"] for f in seen]
        assert kinds[0] == "speech_started"
        transcripts = [f for f in seen if f["type"] == "transcript"]
        final = transcripts[-1]
        assert final["final"] and not any(f["final"] for f in transcripts[:-1])
        assert "blood pressure" in final["text"].lower()
        # Order: final transcript, then the turn (for that utterance), tokens, then speech.
        started = kinds.index("turn_started")
        assert seen.index(final) < started < kinds.index("token")
        assert seen[started]["client_message_id"] == final["utterance_id"]
        first_audio = seen[-1]
        assert first_audio["index"] == 0 and first_audio["format"] == "wav"
        assert first_audio["text"].startswith("A normal blood pressure")
        wav = base64.b64decode(first_audio["data"])
        heard = decode_audio(wav, max_bytes=10_000_000, max_seconds=60)
        assert heard.duration_s > 1.0
        assert first_audio["duration_ms"] == pytest.approx(
            heard.duration_s * 1000, abs=60
        )  # the event says how long it plays
        # The answer is still being written when its first sentence is already audio.
        assert "answer_done" not in kinds

        # The client's player reports that the first sentence has played in full.
        turn_id = first_audio["turn_id"]
        played = {"type": "playback", "state": "started", "turn_id": turn_id}
        await ws.send(json.dumps({**played, "played_ms": first_audio["duration_ms"] + 100}))
        # Barge-in: the microphone first hears the answer's own echo, then the user talking
        # over it, louder; both are flagged as captured during playback.
        echo = frames(louder(resample(heard, SAMPLE_RATE), 0.1), 48000, flag=1)[:25]
        await stream(ws, echo + frames(interruption, 48000, flag=1), pace_s=0.004)
        after = await until(ws, "barge_in")
        barge = after[-1]
        assert barge["turn_id"] == turn_id
        # Heard: the first sentence in full; cut off: whatever was playing after it.
        assert barge["spoken_text"] == first_audio["text"]
        assert barge["played_ms"] >= first_audio["duration_ms"]
        rest = await until(ws, "answer_done")
        assert rest[-1]["finish_reason"] == "cancelled"
        # What the user said over the answer becomes the next utterance.
        await stream(ws, frames(silence(1.2), 48000))
        nxt = await until(ws, "turn_started")
        final2 = next(f for f in nxt if f["type"] == "transcript" and f["final"])
        assert "question" in final2["text"].lower()
        # Nothing more of the interrupted answer is spoken, and it never reports completion.
        spoken_after = [f for f in rest + nxt if f.get("turn_id") == turn_id]
        assert not [f for f in spoken_after if f["type"] in ("audio", "audio_done", "token")]
        await ws.close()

        async with httpx.AsyncClient() as client:
            r = await client.get(
                f"{live.http}/v1/sessions/{ready_session(seen, nxt)}/messages",
                headers={"Authorization": f"Bearer {key}"},
            )
        messages = r.json()
        user = messages[0]
        assert user["voice"]["input"] == "voice" and user["voice"]["asr"] == "tiny.en"
        answer = next(m for m in messages if m["role"] == "assistant")
        assert answer["status"] == "cancelled"
        assert answer["voice"]["interrupted"] is True
        assert answer["voice"]["spoken_text"] == barge["spoken_text"]
        # Only what was played can have been heard.
        assert barge["played_ms"] <= answer["voice"]["audio_ms"]


def ready_session(*batches: list[dict[str, Any]]) -> str:
    for batch in batches:
        for f in batch:
            if f.get("session_id"):
                return str(f["session_id"])
    raise AssertionError("no session id seen")


# --------------------------------------------------------------------------- scripted engines


@pytest.fixture
async def scripted(
    voice_settings: Settings,
) -> AsyncIterator[tuple[LiveServer, str, ScriptedASR, ScriptedTTS]]:
    asr = ScriptedASR(lambda audio: QUESTION)
    tts = ScriptedTTS(seconds_per_char=0.04)
    engines = SpeechEngines(voice_settings.speech, voice_settings.models_dir, asr=asr, tts=tts)
    key = await api_key(voice_settings)
    model = DemoModel(answer=LONG_ANSWER, token_interval_ms=15, tool_rounds=0)
    async with LiveServer(create_app(voice_settings, model=model, speech=engines)) as live:
        yield live, key, asr, tts


async def test_echo_of_the_answer_does_not_interrupt_it(
    scripted: tuple[LiveServer, str, ScriptedASR, ScriptedTTS], question: Audio
) -> None:
    live, key, asr, _ = scripted
    ws = await connect(live, key)
    await ws.send(json.dumps({"type": "audio_start"}))
    assert (await recv(ws))["type"] == "voice_ready"
    await stream(ws, frames(question) + frames(silence(1.0)))
    seen = await until(ws, "audio")
    audio = decode_audio(base64.b64decode(seen[-1]["data"]), max_bytes=10_000_000, max_seconds=60)
    # The client's microphone hears the assistant's own voice, 20 dB down, while playing.
    echo = louder(question, 0.1)
    await stream(ws, frames(echo, flag=1) + frames(louder(audio, 0.1), flag=1))
    rest = await until(ws, "audio_done")
    kinds = [f["type"] for f in rest]
    assert "barge_in" not in kinds
    done = next(f for f in rest if f["type"] == "answer_done")
    assert done["finish_reason"] == "stop"
    assert len(asr.calls) == 1  # the echo was never transcribed as a new question
    await ws.close()


async def test_push_to_talk(
    scripted: tuple[LiveServer, str, ScriptedASR, ScriptedTTS], question: Audio
) -> None:
    live, key, asr, _ = scripted
    ws = await connect(live, key)
    await ws.send(json.dumps({"type": "audio_start", "mode": "push_to_talk", "speak": False}))
    ready = await recv(ws)
    assert ready["tts"] is None
    await stream(ws, frames(question))
    await ws.send(json.dumps({"type": "audio_end"}))
    seen = await until(ws, "answer_done")
    kinds = [f["type"] for f in seen]
    assert kinds[:3] == ["speech_started", "transcript", "turn_started"]
    assert "audio" not in kinds
    assert asr.calls[0][1] == "en"  # the session's language, not auto-detect
    assert asr.calls[0][2] is None  # English gets no vocabulary prompt (it hurt, measured)
    # Released with nothing said: a specific error, and the connection keeps serving.
    await stream(ws, frames(silence(0.5)))
    await ws.send(json.dumps({"type": "audio_end"}))
    err = await recv(ws)
    assert (err["type"], err["code"]) == ("error", "audio_silent")
    await ws.send(json.dumps({"type": "audio_end"}))
    assert (await recv(ws))["code"] == "audio_empty"
    await ws.send(json.dumps({"type": "ping"}))
    assert (await recv(ws))["type"] == "pong"
    await ws.close()


async def test_partial_transcripts_come_before_the_final_one(
    scripted: tuple[LiveServer, str, ScriptedASR, ScriptedTTS], question: Audio
) -> None:
    """While the user speaks, partial transcripts of the utterance so far; then one final."""
    live, key, asr, _ = scripted
    ws = await connect(live, key)
    await ws.send(json.dumps({"type": "audio_start", "speak": False}))
    assert (await recv(ws))["type"] == "voice_ready"
    chunks = frames(question) + frames(silence(1.0))
    seen: list[dict[str, Any]] = []
    for start in range(0, len(chunks), 10):
        # A ping after every 200 ms of audio lets the server's event loop run the partial
        # transcription between frames, as real-time pacing would, without sleeping.
        await stream(ws, chunks[start : start + 10])
        await ws.send(json.dumps({"type": "ping"}))
        seen += await until(ws, "pong")
    if "turn_started" not in [f["type"] for f in seen]:
        seen += await until(ws, "turn_started")
    seen = seen[: [f["type"] for f in seen].index("turn_started") + 1]
    transcripts = [f for f in seen if f["type"] == "transcript"]
    partials = [f for f in transcripts if not f["final"]]
    assert partials, [f["type"] for f in seen]
    assert transcripts[-1]["final"] and len(transcripts) == len(partials) + 1
    utterance = transcripts[-1]["utterance_id"]
    assert {f["utterance_id"] for f in transcripts} == {utterance}
    # Each partial covers more of the utterance than the one before.
    lengths = [f["duration_ms"] for f in partials]
    assert lengths == sorted(lengths) and lengths[-1] < transcripts[-1]["duration_ms"]
    assert seen[-1]["client_message_id"] == utterance
    assert len(asr.calls) == len(partials) + 1
    await ws.close()


async def test_push_to_talk_longer_than_the_limit_is_refused(
    voice_settings: Settings, question: Audio
) -> None:
    settings = voice_settings.model_copy(
        update={"speech": SpeechConfig(voice_format="wav", max_audio_seconds=1.0)}
    )
    asr = ScriptedASR([])
    engines = SpeechEngines(settings.speech, settings.models_dir, asr=asr, tts=ScriptedTTS())
    key = await api_key(settings)
    app = create_app(settings, model=DemoModel(answer="-", tool_rounds=0), speech=engines)
    async with LiveServer(app) as live:
        for locale, words in (("en", "the limit is 1)"), ("zh-CN", "上限为 1 秒")):
            ws = await websockets.connect(live.ws)
            await ws.send(json.dumps({"type": "hello", "api_key": key, "locale": locale}))
            assert (await recv(ws))["type"] == "hello_ok"
            await ws.send(json.dumps({"type": "audio_start", "mode": "push_to_talk"}))
            assert (await recv(ws))["type"] == "voice_ready"
            await stream(ws, frames(question))  # about 2 s
            await ws.send(json.dumps({"type": "audio_end"}))
            err = await recv(ws)
            assert (err["type"], err["code"]) == ("error", "audio_too_long")
            assert words in err["message"]
            await ws.close()
    assert asr.calls == []  # nothing over the limit reaches the recogniser


async def test_bad_voice_input_gets_specific_errors(
    scripted: tuple[LiveServer, str, ScriptedASR, ScriptedTTS],
) -> None:
    live, key, _, _ = scripted
    ws = await connect(live, key)
    await ws.send(b"\x00" + b"\x00\x00" * 320)
    assert (await recv(ws))["code"] == "voice_not_started"
    await ws.send(json.dumps({"type": "audio_start", "sample_rate": 11025}))
    err = await recv(ws)
    assert err["code"] == "audio_sample_rate_unsupported" and "11025" in err["message"]
    await ws.send(json.dumps({"type": "audio_start", "format": "opus"}))
    assert (await recv(ws))["code"] == "invalid_event"
    await ws.send(json.dumps({"type": "audio_start"}))
    assert (await recv(ws))["type"] == "voice_ready"
    await ws.send(b"\x00\x01\x02\x03")  # 3 PCM bytes: half a sample
    assert (await recv(ws))["code"] == "audio_frame_invalid"
    await ws.send(b"\x01" + b"\x00" * 70000)
    assert (await recv(ws))["code"] == "frame_too_large"
    await ws.send(json.dumps({"type": "ping"}))
    assert (await recv(ws))["type"] == "pong"
    await ws.close()


async def test_zh_errors_are_in_chinese(
    scripted: tuple[LiveServer, str, ScriptedASR, ScriptedTTS],
) -> None:
    live, key, _, _ = scripted
    ws = await websockets.connect(live.ws)
    await ws.send(json.dumps({"type": "hello", "api_key": key, "locale": "zh-CN"}))
    await recv(ws)
    await ws.send(json.dumps({"type": "audio_start", "sample_rate": 22050}))
    assert "不支持" in (await recv(ws))["message"]
    await ws.close()


async def test_voice_records_are_stored(store: ChatStore) -> None:
    """On SQLite and PostgreSQL: how a question was heard and what of the answer was heard."""
    session = await store.create_session((await store.create_api_key("v"))[0], locale="zh-CN")
    heard = {"input": "voice", "duration_ms": 2380, "asr": "faster-whisper:base"}
    started = await store.begin_turn(session.id, turn_id="t1", text="头痛", voice=heard)
    answer = await store.add_message(
        session.id, turn_id="t1", role="assistant", content="多喝水。休息。", status="cancelled"
    )
    spoken = {"spoken_text": "多喝水。", "cut_text": "休息。", "interrupted": True}
    await store.set_voice(answer.id, spoken)
    messages = await store.messages(session.id)
    assert [m.voice for m in messages] == [heard, spoken]
    assert started.user_message.voice == heard


def test_vocabulary_prompt_only_for_the_configured_languages(voice_settings: Settings) -> None:
    engines = SpeechEngines(voice_settings.speech, voice_settings.models_dir)
    zh = engines.prompt("zh-CN")
    assert zh is not None and zh.startswith("发烧、咳嗽") and len(zh) <= 90
    assert engines.prompt("en") is None and engines.prompt(None) is None
    both = SpeechEngines(SpeechConfig(asr_prompt_languages=["zh", "en"]), voice_settings.models_dir)
    en = both.prompt("en")
    assert en is not None and en.startswith("fever, cough") and "HbA1c" in en


async def test_spoken_turns_count_against_a_visitors_rate_limit(
    voice_settings: Settings, question: Audio
) -> None:
    site = "https://hospital.example"
    voice_settings.rate_limit_per_user_per_min = 1
    asr = ScriptedASR(lambda audio: QUESTION)
    engines = SpeechEngines(
        voice_settings.speech, voice_settings.models_dir, asr=asr, tts=ScriptedTTS()
    )
    model = DemoModel(answer="Drink water.", tool_rounds=0)
    app = create_app(voice_settings, model=model, speech=engines)
    async with LiveServer(app) as live:
        store = app.state.services.store
        _kid, key = await store.create_api_key("site", kind="publishable", allowed_origins=[site])
        async with websockets.connect(live.ws, origin=site) as ws:  # type: ignore[arg-type]
            await ws.send(json.dumps({"type": "hello", "api_key": key, "end_user": "v1"}))
            assert (await recv(ws))["type"] == "hello_ok"
            await ws.send(
                json.dumps({"type": "audio_start", "mode": "push_to_talk", "speak": False})
            )
            assert (await recv(ws))["type"] == "voice_ready"
            for expected in ("answer_done", "error"):
                await stream(ws, frames(question))
                await ws.send(json.dumps({"type": "audio_end"}))
                last = (await until(ws, "answer_done", "error"))[-1]
                assert last["type"] == expected, last
            assert last["code"] == "rate_limited" and last["retryable"] is True
        assert len(model.requests) == 1  # the second spoken question never reached the model
