"""Medicine names in OCR'd prescription and box text, matched to the knowledge pack.

The list (``data/medications.yaml``) names each medicine in English and Chinese with common
brand names, and the pack article that covers it, so an answer about a photographed
prescription can cite the right article. Latin names match as whole words, ignoring case;
Chinese names match as substrings (OCR output has no word boundaries). A match is a name
and an article, never a dose or an instruction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

__all__ = ["MedicationMatch", "find_medications"]


@dataclass(frozen=True)
class MedicationMatch:
    name_en: str
    name_zh: str
    #: What the text said ("扑热息痛", "Tylenol").
    matched: str
    #: Knowledge-pack article id covering the medicine.
    article: str

    def to_dict(self, locale: str = "en") -> dict[str, Any]:
        zh = locale.lower().startswith("zh")
        return {
            "name": self.name_zh if zh else self.name_en,
            "matched": self.matched,
            "article": self.article,
        }


@cache
def _entries() -> tuple[tuple[str, str, str, re.Pattern[str]], ...]:
    text = resources.files("healtrace.vision").joinpath("data/medications.yaml").read_text("utf-8")
    out = []
    for raw in yaml.safe_load(text)["medications"]:
        names = [raw["name"]["en"], raw["name"]["zh"], *raw.get("aliases", [])]
        parts = []
        for n in sorted(names, key=len, reverse=True):
            if re.search(r"[\u3400-\u9fff]", n):
                parts.append(re.escape(n))
            else:
                parts.append(rf"(?<![A-Za-z]){re.escape(n)}(?![A-Za-z])")
        pattern = re.compile("|".join(parts), re.IGNORECASE)
        out.append((raw["name"]["en"], raw["name"]["zh"], raw["article"], pattern))
    return tuple(out)


def find_medications(text: str) -> list[MedicationMatch]:
    """Medicines named in ``text``, each once, in order of first appearance."""
    found: list[tuple[int, MedicationMatch]] = []
    for en, zh, article, pattern in _entries():
        m = pattern.search(text)
        if m is not None:
            found.append((m.start(), MedicationMatch(en, zh, m.group(0), article)))
    return [match for _, match in sorted(found, key=lambda p: p[0])]
