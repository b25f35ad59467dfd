"""Shared by the speech tests: speech made with espeak-ng, and error rates."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

from healtrace.speech.audio import decode_audio
from healtrace.speech.types import Audio


def espeak(text: str, voice: str, tmp: Path) -> Audio:
    """``text`` spoken by espeak-ng (``en-us``, or ``cmn-latn-pinyin`` for pinyin), 16 kHz."""
    out = tmp / f"speech-{abs(hash((text, voice)))}.wav"
    subprocess.run(["/usr/bin/espeak-ng", "-v", voice, "-w", str(out), text], check=True)
    return decode_audio(out.read_bytes(), max_bytes=50_000_000, max_seconds=600)


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def words(text: str) -> list[str]:
    return "".join(c if c.isalnum() or c.isspace() else " " for c in text.lower()).split()


def wer(ref: str, hyp: str) -> float:
    """Word error rate."""
    return edit_distance(words(ref), words(hyp)) / len(words(ref))


def cer(ref: str, hyp: str) -> float:
    """Character error rate over letters and digits (punctuation ignored on both sides)."""
    keep = [c for c in ref if c.isalnum()]
    return edit_distance(keep, [c for c in hyp if c.isalnum()]) / len(keep)


def wav_with_codec_tag(tag: int, seconds: float = 1.0, rate: int = 16000) -> bytes:
    """A WAV whose fmt chunk names codec ``tag`` (0x0001 is PCM), with ``seconds`` of data."""
    data = bytes(int(seconds * rate) * 2)
    fmt = struct.pack("<HHIIHH", tag, 1, rate, rate * 2, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body
