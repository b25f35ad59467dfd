"""Splitting an answer into messages WeChat accepts (a byte limit per message)."""

from __future__ import annotations

import re

__all__ = ["split_text"]

#: After a Chinese or Latin sentence end, or a line break.
_SENTENCE_END = re.compile(r"(?<=[。！？；!?;\n])|(?<=[.])(?=\s)")


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def _hard_split(text: str, max_bytes: int) -> list[str]:
    """A sentence longer than a message, cut between characters."""
    parts: list[str] = []
    current = ""
    for ch in text:
        if _size(current) + _size(ch) > max_bytes:
            parts.append(current)
            current = ""
        current += ch
    if current:
        parts.append(current)
    return parts


def split_text(text: str, max_bytes: int) -> list[str]:
    """``text`` as messages of at most ``max_bytes`` UTF-8 bytes each, cut after sentence
    ends where possible (only a sentence longer than a message is cut inside)."""
    text = text.strip()
    if _size(text) <= max_bytes:
        return [text] if text else []
    chunks: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(text):
        if not sentence:
            continue
        if _size(current) + _size(sentence) <= max_bytes:
            current += sentence
            continue
        if current.strip():
            chunks.append(current.strip())
        current = ""
        if _size(sentence) > max_bytes:
            *whole, current = _hard_split(sentence, max_bytes)
            chunks.extend(p.strip() for p in whole if p.strip())
        else:
            current = sentence
    if current.strip():
        chunks.append(current.strip())
    return chunks
