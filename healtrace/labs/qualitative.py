"""Qualitative results: dipstick grades and presence tests ("阴性(-)", "trace", "2+", "+++").

A urine test strip reports most pads as a grade, not a number. :func:`match_grade` reads the
grade written at a position in already-normalised text (full-width forms folded by NFKC)
and returns its canonical label and an ordinal: negative 0, trace 0.5, 1+ … 4+ as 1 … 4,
and a bare "positive" as 1 (at least 1+). The interpreter compares the ordinal with the
highest grade the catalogue calls normal for that analyte.

Bare signs ("-", "+") are only accepted by callers that already know the analyte is
reported as a grade: in "Glucose - 5.5" the dash is a separator, not a result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["GRADES", "Grade", "grade_from_label", "match_grade"]


@dataclass(frozen=True, slots=True)
class Grade:
    label: str
    ordinal: float
    #: Where the match ended in the text it was read from.
    end: int = 0


#: Canonical labels and their ordinals, in order.
GRADES: dict[str, float] = {
    "negative": 0.0,
    "normal": 0.0,
    "trace": 0.5,
    "positive": 1.0,
    "1+": 1.0,
    "2+": 2.0,
    "3+": 3.0,
    "4+": 4.0,
}

_B = r"(?![A-Za-z0-9+\-])"  # nothing that would extend the token
_WORDS: tuple[tuple[str, str], ...] = (
    # Longest first: "弱阳性" before "阳性", "阴性(-)" swallows its own sign.
    (r"弱阳性(?:[ \t]{0,2}\(±\)|[ \t]{0,2}\(\+-\))?", "trace"),
    (r"阴性(?:[ \t]{0,2}\(-\))?", "negative"),
    (r"阳性(?:[ \t]{0,2}\([1-4]?\+{0,4}\))?", "positive"),
    (r"未检出|未见|无", "negative"),
    (r"微量|可疑|极少", "trace"),
    (r"正常", "normal"),
    (r"(?<![A-Za-z])(?:negative|neg|nil|not[ \t]detected|absent|none)" + _B, "negative"),
    (r"(?<![A-Za-z])(?:trace|tr)" + _B, "trace"),
    (r"(?<![A-Za-z])(?:positive|pos|detected|present)" + _B, "positive"),
    (r"(?<![A-Za-z])normal" + _B, "normal"),
)
_WORD_RES = tuple((re.compile(p, re.IGNORECASE), label) for p, label in _WORDS)
_SIGNS = re.compile(
    r"(?<![\w+\-])\(?[ \t]{0,1}(?:(±|\+-|\+/-)|([1-4])[ \t]?\+|\+([1-4])|(\+{1,4})|(-))"
    r"[ \t]{0,1}\)?(?![\w+\-.])"
)


def match_grade(text: str, pos: int = 0, *, signs: bool = True) -> Grade | None:
    """The grade written at ``text[pos]`` (after no skipping), or ``None``."""
    for regex, label in _WORD_RES:
        m = regex.match(text, pos)
        if m:
            # "阳性(2+)" is read as 2+; plain "阳性" as at least 1+.
            if label == "positive":
                inner = re.search(r"\(([1-4])?(\+{1,4})\)", m.group(0))
                if inner:
                    n = int(inner.group(1)) if inner.group(1) else len(inner.group(2))
                    return Grade(f"{n}+", float(n), m.end())
            return Grade(label, GRADES[label], m.end())
    if not signs:
        return None
    m = _SIGNS.match(text, pos)
    if m is None:
        return None
    if m.group(1):
        return Grade("trace", 0.5, m.end())
    if m.group(5):
        return Grade("negative", 0.0, m.end())
    n = int(m.group(2) or m.group(3) or 0) or len(m.group(4))
    return Grade(f"{n}+", float(n), m.end())


def grade_from_label(text: str) -> Grade | None:
    """A whole string as a grade ("Negative", "2+", "阴性"), for FHIR ``valueString``."""
    t = text.strip()
    g = match_grade(t)
    if g is None or t[g.end :].strip(" .。()"):
        return None
    return g
