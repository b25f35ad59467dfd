"""Cut a streamed answer into speakable sentences as the model writes it.

A voice turn speaks the answer while it is still being generated: each sentence goes to TTS
the moment its last character arrives, so the user hears the first sentence within a second
instead of after the whole answer. Model output is markdown with citation markers, which a
synthesiser would read aloud literally ("asterisk asterisk"), so what is spoken is stripped
of markup first; the written answer keeps it.

The rules are deliberately conservative about ending a sentence: a wrong split makes an odd
pause, a missed split only makes a longer sentence (and the length cap bounds that).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["SentenceSplitter", "speakable"]

#: Long sentences are cut at a comma near here so synthesis can start early.
MAX_SENTENCE_CHARS: Final = 200

_CJK_ENDS: Final = "。！？；…\n"
_ASCII_ENDS: Final = ".!?;"
#: What may follow a sentence's last mark and still belong to it (quotes, brackets and the
#: end of markdown emphasis: "**Note.** Next").
_CLOSERS: Final = "\"'”’」』）)]】》*_`"
_SOFT_BREAKS: Final = "，,、：:；;"

#: Words that end in a period without ending the sentence (compared lower-case, no dot).
_ABBREVIATIONS: Final = frozenset(
    {
        "e.g",
        "i.e",
        "eg",
        "ie",
        "dr",
        "mr",
        "mrs",
        "ms",
        "prof",
        "st",
        "sr",
        "jr",
        "vs",
        "etc",
        "approx",
        "fig",
        "no",
        "nos",
        "vol",
        "ref",
        "min",
        "max",
        "avg",
        "incl",
        "u.s",
        "a.m",
        "p.m",
        "b.i.d",
        "t.i.d",
        "q.i.d",
        "p.o",
        "i.v",
        "al",
    }
)

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")

_CODE_FENCE = re.compile(r"^\s*(```|~~~).*$", re.MULTILINE)
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+", re.MULTILINE)
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)、])\s+", re.MULTILINE)
_QUOTE = re.compile(r"^\s*>\s?", re.MULTILINE)
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\((?:https?://|/|#)[^)]*\)")
_CITATION = re.compile(r"\[\^?\d+(?:\s*[,，-]\s*\d+)*\]|【\d+(?:[,，]\d+)*】")
#: URLs, leaving out the punctuation that ends the sentence around them.
_URL = re.compile(r"(?:https?://|www\.)[^\s<>\]）)]*[^\s<>\]）).,;:!?'\"。，]")
_EMPHASIS = re.compile(r"(\*\*|__|\*|~~)(?=\S)(.+?)(?<=\S)\1")
_CODE = re.compile(r"`+([^`]*)`+")
_HTML = re.compile(r"</?[a-zA-Z][^>]*>")
_RULE = re.compile(r"^\s*(?:[-*_]\s*){3,}$", re.MULTILINE)
_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-{3,}.*$", re.MULTILINE)
_SPACES = re.compile(r"[ \t\u00a0]+")


def speakable(text: str) -> str:
    """``text`` without markdown, citation markers or URLs, as a synthesiser should read it."""
    text = _CODE_FENCE.sub("", text)
    text = _RULE.sub("", text)
    text = _TABLE_SEP.sub("", text)
    text = _HEADING.sub("", text)
    text = _QUOTE.sub("", text)
    text = _BULLET.sub("", text)
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _CITATION.sub("", text)
    text = _URL.sub("", text)
    text = _CODE.sub(r"\1", text)
    text = _HTML.sub("", text)
    for _ in range(2):  # nested **_x_**
        text = _EMPHASIS.sub(r"\2", text)
    text = text.replace("|", " ").replace("*", "").replace("#", " ")
    text = _SPACES.sub(" ", text)
    # A citation removed before a full stop leaves "word ." behind.
    text = re.sub(r"\s+([.,!?;:。，！？；：])", r"\1", text)
    return text.strip()


def _is_cjk(ch: str) -> bool:
    return bool(_CJK.match(ch))


class SentenceSplitter:
    """Feed text deltas with :meth:`feed`; complete sentences come back as soon as they end.

    Sentences end at ``。！？；…`` and newlines at once, and at ``. ! ? ;`` once the next
    character shows they were not a decimal point ("3.5"), an abbreviation ("e.g.", "Dr."),
    a list number ("1.") or part of a URL. :meth:`flush` returns what is left when the stream
    ends. Every returned sentence has gone through :func:`speakable` and is non-empty.
    """

    def __init__(self, max_chars: int = MAX_SENTENCE_CHARS) -> None:
        self.max_chars = max_chars
        self._buffer = ""
        self._in_code = False

    def feed(self, delta: str) -> list[str]:
        self._buffer += delta
        out: list[str] = []
        while True:
            end = self._boundary(final=False)
            if end is None:
                end = self._forced_cut()
            if end is None:
                break
            out.extend(self._emit(self._buffer[:end]))
            self._buffer = self._buffer[end:]
        return out

    def flush(self) -> list[str]:
        out: list[str] = []
        while self._buffer:
            end = self._boundary(final=True) or self._forced_cut() or len(self._buffer)
            out.extend(self._emit(self._buffer[:end]))
            self._buffer = self._buffer[end:]
        return out

    def _emit(self, raw: str) -> list[str]:
        # Code blocks are shown, not read out.
        if raw.lstrip().startswith(("```", "~~~")):
            self._in_code = not self._in_code
            return []
        if self._in_code:
            return []
        text = speakable(raw)
        return [text] if re.search(r"\w", text) else []

    def _boundary(self, *, final: bool) -> int | None:
        buf = self._buffer
        n = len(buf)
        for i, ch in enumerate(buf):
            if ch in _CJK_ENDS:
                if ch == "\n" and not buf[:i].strip():
                    continue  # leading blank lines are not a sentence
                return self._after_closers(i + 1)
            if ch in "！？":
                return self._after_closers(i + 1)
            if ch not in _ASCII_ENDS:
                continue
            j = i + 1
            while j < n and buf[j] in _CLOSERS:
                j += 1
            if j >= n:
                if final:
                    return n
                return None  # the next delta decides
            nxt = buf[j]
            if ch in "!?;" and (nxt.isspace() or _is_cjk(nxt)):
                return j
            if ch == "." and (nxt.isspace() or _is_cjk(nxt)) and self._ends_sentence(i):
                return j
        return None

    def _after_closers(self, j: int) -> int:
        while j < len(self._buffer) and self._buffer[j] in _CLOSERS:
            j += 1
        return j

    def _ends_sentence(self, dot: int) -> bool:
        """Whether the period at ``dot`` (followed by whitespace) ends a sentence."""
        before = self._buffer[:dot]
        word_match = re.search(r"(\S+)$", before)
        if word_match is None:
            return False
        word = word_match.group(1).lstrip("(\"'“")
        line_start = before.rfind("\n") + 1
        # "1." or "a." at the start of a line is a list marker.
        if word_match.start() <= line_start + 3 and re.fullmatch(r"\d{1,3}|[a-zA-Z]", word):
            return False
        lowered = word.lower()
        if lowered in _ABBREVIATIONS:
            return False
        # Initials ("J. Smith") and dotted abbreviations ("e.g", "U.S").
        if re.fullmatch(r"[A-Z]", word) or re.fullmatch(r"(?:[a-zA-Z]\.)+[a-zA-Z]", word):
            return False
        return not word.startswith(("http://", "https://", "www."))

    def _forced_cut(self) -> int | None:
        """Where to cut a sentence that runs past ``max_chars``: the last comma, else space."""
        buf = self._buffer
        if len(buf) <= self.max_chars:
            return None
        window = buf[: self.max_chars]
        for breaks in (_SOFT_BREAKS, " \t"):
            cut = max(window.rfind(c) for c in breaks)
            if cut >= self.max_chars // 4:
                return cut + 1
        return self.max_chars
