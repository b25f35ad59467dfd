"""The speech engines a running service holds: built on first use, shared by every channel.

Loading Whisper or a piper voice takes a second or more and hundreds of megabytes, so
nothing is loaded until the first voice turn or ``/v1/audio/*`` request asks for it, and
then only once. Tests pass scripted engines in instead.
"""

from __future__ import annotations

import re
import threading
from functools import cache
from pathlib import Path

from healtrace.config import SpeechConfig
from healtrace.speech.types import ASR, TTS

__all__ = ["SpeechEngines", "vocabulary"]


class SpeechEngines:
    def __init__(
        self,
        config: SpeechConfig,
        models_dir: Path,
        *,
        asr: ASR | None = None,
        tts: TTS | None = None,
    ) -> None:
        self.config = config
        self.models_dir = models_dir
        self._asr = asr
        self._tts = tts
        self._lock = threading.Lock()

    @property
    def asr(self) -> ASR:
        if self._asr is None:
            with self._lock:
                if self._asr is None:
                    from healtrace.speech.asr import build_asr

                    self._asr = build_asr(self.config, self.models_dir)
        return self._asr

    @property
    def tts(self) -> TTS:
        if self._tts is None:
            with self._lock:
                if self._tts is None:
                    from healtrace.speech.tts import build_tts

                    self._tts = build_tts(self.config)
        return self._tts

    def warm(self) -> None:
        """Load the local models now (blocking): called when a client starts voice input, so
        Whisper and piper load while the patient is still speaking, not after."""
        for engine in (self.asr, self.tts, getattr(self.tts, "en", None)):
            load = getattr(engine, "load", None)
            if callable(load):
                load()

    def prompt(self, language: str | None) -> str | None:
        """Medical vocabulary for Whisper's initial prompt, in the language spoken."""
        if language is None:
            return None
        from healtrace.speech.asr import medical_prompt

        lang = "zh" if language.lower().startswith("zh") else "en"
        if lang not in self.config.asr_prompt_languages:
            return None
        # A Chinese character is one or two Whisper tokens: keep zh prompts short, since long
        # prompts slow decoding and invite Whisper to continue them instead of listening.
        return medical_prompt(vocabulary(lang), lang, max_chars=90 if lang == "zh" else 220) or None


#: What patients say most in a consultation; the knowledge pack's topics follow.
_CORE = {
    "zh": ("发烧", "咳嗽", "头痛", "喉咙痛", "血压", "血糖", "胸痛", "肚子疼", "拉肚子", "布洛芬"),
    "en": (
        "fever",
        "cough",
        "headache",
        "sore throat",
        "blood pressure",
        "blood sugar",
        "chest pain",
        "paracetamol",
        "ibuprofen",
    ),
}
_HEAD = re.compile(r"[:：(（,，]| [—–-] ")


@cache
def vocabulary(language: str) -> tuple[str, ...]:
    """Terms patients say that Whisper mishears: lab analyte names and knowledge topics.

    A few everyday consultation words first, then the heads of the knowledge pack's article
    titles ("肚子疼：常见原因…" → "肚子疼"), then lab analyte names; the prompt keeps as
    many as fit.
    """
    from healtrace.knowledge.pack import article_paths, load_article
    from healtrace.labs.catalogue import load_catalogue

    zh = language == "zh"
    topics: list[str] = []
    want = "zh-CN" if zh else "en"
    for path in article_paths():
        if path.parent.name != want:
            continue
        try:
            title = load_article(path).title
        except Exception:  # noqa: BLE001 - a bad article must not break speech
            continue
        head = _HEAD.split(title, maxsplit=1)[0].strip()
        if (2 if zh else 4) <= len(head) <= 24:
            topics.append(head)
    labs = [a.name_zh if zh else a.name_en for a in load_catalogue()]
    seen: dict[str, None] = {}
    for t in (*_CORE["zh" if zh else "en"], *sorted(topics, key=len), *sorted(labs, key=len)):
        seen.setdefault(t, None)
    return tuple(seen)
