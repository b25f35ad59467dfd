"""Speech speed: ASR real-time factor, TTS time to first audio, and voice-turn latency.

    python benchmarks/speech.py [--runs 3] [--write BENCHMARKS.md] [--skip-turn]

``--skip-turn`` leaves the voice-turn block (``speech-turn``) of BENCHMARKS.md as it is.

1. ASR: faster-whisper (int8, 2 threads) on espeak-ng speech; real-time factor = decode time
   / audio duration (lower is faster), median of ``--runs``; a short clip and ~26 s of speech.
2. Round trip: text → piper / espeak-ng → WAV → Whisper base, with word / character error
   rates (the sentences of tests/test_speech_api.py).
3. TTS: time from asking for a sentence to its first audio chunk, and real-time factor; and
   Silero VAD's cost per 32 ms chunk.
4. Voice turn: a live server with the embedded defaults (Whisper base, Silero VAD, the local
   Qwen2.5 0.5B model with retrieval, piper); a WebSocket client streams a spoken question
   at real-time pace in 20 ms frames and times each stage from the end of speech to the first
   byte of the answer's audio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _report import write_block

from healtrace.config import Settings
from healtrace.speech.asr import WhisperASR
from healtrace.speech.audio import decode_audio, resample
from healtrace.speech.engines import SpeechEngines
from healtrace.speech.tts import EspeakPinyinTTS, PiperTTS
from healtrace.speech.types import Audio
from healtrace.speech.whisper_models import resolve_whisper_model

EN_TEXT = (
    "I have had a headache and a mild fever for two days. "
    "Should I take paracetamol, and when should I see a doctor?"
)
ZH_PINYIN = "wo3 fa1 shao1 liang3 tian1 le5, hai2 you3 ke2 sou4, xu1 yao4 qu4 yi1 yuan4 ma5?"
ZH_TEXT = "我发烧两天了，还有咳嗽，需要去医院吗？"
TURN_QUESTION = "What is a normal blood pressure?"
#: About half a minute of English, to show the real-time factor once Whisper's fixed 30 s
#: window is filled with speech rather than padding.
EN_LONG = " ".join(
    [
        EN_TEXT,
        "The fever started on Monday evening and was highest at night, about thirty eight "
        "and a half degrees.",
        "I also have a sore throat and a dry cough, but no chest pain and no shortness of breath.",
        "I have been drinking plenty of water and resting, and I took ibuprofen once.",
        "I am not pregnant, I have no allergies, and I do not take any other medicines.",
    ]
)
#: The round trip (TTS → WAV → Whisper base) sentences, the same as tests/test_speech_api.py.
ROUND_TRIP_EN = "The patient has a fever and a sore throat."
ROUND_TRIP_ZH = (
    "我发烧两天了，还有咳嗽，需要去医院吗？",
    "我头痛，还有点发烧。",
    "我的血压是一百四十，高吗？",
    "我发烧了，喉咙很痛。",
)


def espeak(text: str, voice: str, tmp: Path) -> Audio:
    out = tmp / f"{voice}-{abs(hash(text))}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(out), text], check=True)
    return decode_audio(out.read_bytes(), max_bytes=50_000_000, max_seconds=600)


def _error_rate(reference: str, heard: str, *, chars: bool) -> float:
    """Word (or, for Chinese, character) error rate: edit distance over reference length."""

    def units(text: str) -> list[str]:
        if chars:
            return [c for c in text if c.isalnum()]
        return "".join(c.lower() if c.isalnum() else " " for c in text).split()

    ref, hyp = units(reference), units(heard)
    row = list(range(len(hyp) + 1))
    for i, x in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1] / max(1, len(ref))


async def asr_rows(tmp: Path, runs: int, models_dir: Path) -> list[str]:
    en = espeak(EN_TEXT, "en-us", tmp)
    zh = espeak(ZH_PINYIN, "cmn-latn-pinyin", tmp)
    long_en = espeak(EN_LONG, "en-us", tmp)
    engines = SpeechEngines(Settings().speech, models_dir)
    rows = []
    for name, clip, lang, prompt, reference in (
        ("base", en, "en", None, EN_TEXT),
        ("base", long_en, "en", None, EN_LONG),
        ("base", zh, "zh", engines.prompt("zh"), ZH_TEXT),
        ("tiny.en", en, "en", None, EN_TEXT),
    ):
        asr = WhisperASR(resolve_whisper_model(name, models_dir), threads=2, name=name)
        start = time.perf_counter()
        asr.load()
        load_s = time.perf_counter() - start
        times = []
        for _ in range(runs + 1):
            start = time.perf_counter()
            result = await asr.transcribe(clip, language=lang, prompt=prompt)
            times.append(time.perf_counter() - start)
        decode = statistics.median(times[1:])
        error = _error_rate(reference, result.text, chars=lang == "zh")
        rows.append(
            f"| Whisper {name}, int8, 2 threads | {lang} | {clip.duration_s:.1f} | "
            f"{load_s:.2f} | {decode * 1000:.0f} | **{decode / clip.duration_s:.3f}** | "
            f"{'CER' if lang == 'zh' else 'WER'} {error:.2f} | {result.text[:60]} |"
        )
    return rows


async def round_trip_rows(models_dir: Path) -> list[str]:
    """Text → local TTS → WAV file → Whisper base (int8, 2 threads), as the service runs it."""
    from healtrace.speech.audio import encode

    asr = WhisperASR(resolve_whisper_model("base", models_dir), threads=2, name="base")
    engines = SpeechEngines(Settings().speech, models_dir, asr=asr)
    rows = []
    cases = [
        (PiperTTS(), ROUND_TRIP_EN, "en"),
        *((EspeakPinyinTTS(), t, "zh") for t in ROUND_TRIP_ZH),
    ]
    rates = []
    for engine, text, lang in cases:
        pieces = [p async for p in engine.synthesize(text, language=lang)]
        speech = Audio(np.concatenate([p.samples for p in pieces]), pieces[0].sample_rate)
        wav = encode(speech, "wav")
        heard = decode_audio(wav, max_bytes=len(wav), max_seconds=60)
        result = await asr.transcribe(heard, language=lang, prompt=engines.prompt(lang))
        rate = _error_rate(text, result.text, chars=lang == "zh")
        if lang == "zh":
            rates.append(rate)
        voice = "piper" if lang == "en" else "espeak-ng"
        metric = "CER" if lang == "zh" else "WER"
        rows.append(f"| {voice} → Whisper base | {text} | {result.text} | {metric} {rate:.2f} |")
    rows.append(
        f"| espeak-ng → Whisper base | **mean of the {len(rates)} zh sentences** | | "
        f"**CER {statistics.mean(rates):.2f}** |"
    )
    return rows


def vad_row(runs: int) -> str:
    """Silero VAD cost per 32 ms chunk, as a voice stream runs it (one session, one thread)."""
    from healtrace.speech.vad import SileroVAD

    vad = SileroVAD()
    chunk = np.zeros(512, dtype=np.float32)
    per_chunk = []
    for _ in range(runs + 1):
        start = time.perf_counter()
        for _ in range(500):
            vad.probability(chunk)
        per_chunk.append((time.perf_counter() - start) / 500)
    ms = statistics.median(per_chunk[1:]) * 1000
    return f"Silero VAD: {ms:.2f} ms per 32 ms chunk ({ms / 32:.3f} of real time per stream)."


async def tts_rows(runs: int) -> list[str]:
    rows = []
    for label, engine, text, lang in (
        ("piper en_US-joe-medium", PiperTTS(), "Drink plenty of water and rest.", "en"),
        (
            "piper en_US-joe-medium",
            PiperTTS(),
            "A normal blood pressure for adults is below 120 over 80.",
            "en",
        ),
        ("espeak-ng cmn-latn-pinyin", EspeakPinyinTTS(), "多喝水，注意休息。", "zh"),
    ):
        load = getattr(engine, "load", None)
        if callable(load):
            load()
        firsts, rtfs = [], []
        for _ in range(runs + 1):
            start = time.perf_counter()
            first: float | None = None
            total = 0.0
            async for chunk in engine.synthesize(text, language=lang):
                if first is None:
                    first = time.perf_counter() - start
                total += chunk.duration_s
            elapsed = time.perf_counter() - start
            assert first is not None
            firsts.append(first)
            rtfs.append(elapsed / total)
        rows.append(
            f"| {label} | “{text}” | **{statistics.median(firsts[1:]) * 1000:.0f}** | "
            f"{statistics.median(rtfs[1:]):.3f} |"
        )
    return rows


async def _read_until_audio_done(ws: Any, events: list[tuple[float, dict[str, Any]]]) -> None:
    """Timestamp every event of one voice turn as it arrives."""
    while True:
        event = json.loads(await ws.recv())
        events.append((time.perf_counter(), event))
        if event["type"] == "audio_done":
            return


async def voice_turn(runs: int, tmp: Path, *, scripted: bool) -> dict[str, float]:
    import websockets

    from healtrace.agent.memory import ChatStore
    from healtrace.api.app import create_app
    from healtrace.api.testing import LiveServer
    from healtrace.config import ScriptedBackendConfig
    from healtrace.storage import Database

    backends = (
        [ScriptedBackendConfig(first_token_ms=40, token_interval_ms=20, tool_rounds=0)]
        if scripted
        else Settings().llm_backends
    )
    settings = Settings(
        data_dir=tmp / ("scripted" if scripted else "local"), dev_key=False, llm_backends=backends
    )
    db = Database(settings.resolved_database_url)
    await db.migrate()
    key = (await ChatStore(db).create_api_key("bench"))[1]
    await db.dispose()
    question = espeak(TURN_QUESTION, "en-us", tmp)
    # Cut espeak's trailing quiet so the end of the clip is the end of speech.
    loud = np.flatnonzero(np.abs(question.samples) > 0.01)
    question = Audio(question.samples[: loud[-1] + 1], question.sample_rate)
    pcm = resample(question, 48000).pcm16()
    speech = [b"\x00" + pcm[i : i + 1920] for i in range(0, len(pcm), 1920)]
    tail = [b"\x00" + bytes(1920)] * 75  # 1.5 s of silence
    stages: dict[str, list[float]] = {}
    async with LiveServer(create_app(settings)) as live:
        for run in range(runs + 1):
            # A new conversation each time, so every turn has the same prompt to evaluate.
            ws = await websockets.connect(live.ws, max_size=1 << 24)
            await ws.send(json.dumps({"type": "hello", "api_key": key}))
            await ws.recv()
            await ws.send(json.dumps({"type": "audio_start", "sample_rate": 48000}))
            await ws.recv()
            await asyncio.sleep(3)  # the engines warm up while a user would start talking
            events: list[tuple[float, dict[str, Any]]] = []
            reader = asyncio.create_task(_read_until_audio_done(ws, events))
            for frame in speech:  # real-time pace, as a microphone delivers it
                await ws.send(frame)
                await asyncio.sleep(0.02)
            t0 = time.perf_counter()
            for frame in tail:
                await ws.send(frame)
                await asyncio.sleep(0.02)
            await asyncio.wait_for(reader, 300)
            await ws.close()

            def at(
                kind: str, events: list[tuple[float, dict[str, Any]]] = events, **match: Any
            ) -> tuple[float, dict[str, Any]]:
                return next(
                    (t, e)
                    for t, e in events
                    if e["type"] == kind and all(e.get(k) == v for k, v in match.items())
                )

            t_final, final = at("transcript", final=True)
            t_started, _ = at("turn_started")
            t_token, _ = at("token")
            t_audio, audio = at("audio")
            if run == 0:
                continue  # the first turn also loads the model's prompt cache
            asr_s = final["asr_ms"] / 1000
            synth_s = audio["synth_ms"] / 1000
            tools = sum(1 for _, e in events if e["type"] == "tool_call")
            for name, value in (
                ("end-of-speech detection (VAD silence)", t_final - t0 - asr_s),
                ("ASR (Whisper base, final)", asr_s),
                ("store + triage, turn started", t_started - t_final),
                ("model: first answer token (retrieval, tool rounds)", t_token - t_started),
                ("model: rest of the first sentence", t_audio - synth_s - t_token),
                ("TTS + encode first sentence (piper, opus)", synth_s),
                ("tool calls before answering (count, not ms)", tools / 1000),
                ("**end of speech → first audio byte**", t_audio - t0),
            ):
                stages.setdefault(name, []).append(value * 1000)
    return {name: statistics.median(v) for name, v in stages.items()}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", type=Path)
    parser.add_argument("--skip-turn", action="store_true")
    args = parser.parse_args()
    models_dir = Settings().models_dir
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        asr = await asr_rows(tmp, args.runs, models_dir)
        trips = await round_trip_rows(models_dir)
        tts = await tts_rows(args.runs)
        vad = vad_row(args.runs)
        turns = (
            {}
            if args.skip_turn
            else {
                "scripted": await voice_turn(args.runs, tmp, scripted=True),
                "local": await voice_turn(args.runs, tmp, scripted=False),
            }
        )
    cpu = os.cpu_count()
    lines = [
        f"{cpu} CPU cores; median of {args.runs} runs after a warm-up run. ASR input made "
        "with espeak-ng (the round trip's English with piper).",
        "",
        "| ASR | language | audio (s) | load (s) | decode (ms) | real-time factor | errors "
        "| text |",
        "|---|---|---|---|---|---|---|---|",
        *asr,
        "",
        "Target: real-time factor ≤ 0.15 for base int8 on 2 threads.",
        "",
        "Round trip with the real engines: text → TTS → WAV file → Whisper base (the zh "
        "prompt is the service's medical vocabulary):",
        "",
        "| path | said | heard | errors |",
        "|---|---|---|---|",
        *trips,
        "",
        "| TTS | sentence | first audio (ms) | real-time factor |",
        "|---|---|---|---|",
        *tts,
        "",
        "Target: first audio ≤ 300 ms.",
        "",
        vad,
    ]
    body = "\n".join(lines)
    print(body)
    if args.write:
        write_block(args.write, "speech", body)
    if turns:
        lines = [
            "Voice turn, latency by stage from the end of speech (Silero VAD with 600 ms "
            "end-of-speech silence, Whisper base, piper, opus; retrieval on). Two model "
            "backends: the scripted one (first token after 40 ms, so its column shows what "
            "the voice stack itself adds) and the embedded local Qwen2.5-Coder-0.5B Q4_K_M "
            "on the same 2 cores:",
            "",
            "| stage (median) | scripted model (ms) | local model (ms) |",
            "|---|---|---|",
        ]
        for name, scripted_ms in turns["scripted"].items():
            lines.append(f"| {name} | {scripted_ms:.0f} | {turns['local'][name]:.0f} |")
        lines += [
            "",
            "Anchor: Pipecat and LiveKit report 0.5–1.2 s voice-to-voice with GPU or cloud models.",
        ]
        body = "\n".join(lines)
        print(body)
        if args.write:
            write_block(args.write, "speech-turn", body)


if __name__ == "__main__":
    asyncio.run(main())
