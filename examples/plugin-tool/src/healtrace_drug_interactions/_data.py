"""The package's curated tables, read once from package data, and name normalisation."""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any, Literal

Severity = Literal["contraindicated", "major", "moderate"]
Language = Literal["en", "zh-CN"]
SEVERITIES: tuple[Severity, ...] = ("contraindicated", "major", "moderate")
LANGUAGES: tuple[Language, ...] = ("en", "zh-CN")

_SEPARATORS = re.compile(r"[\s\-/+_,;·]+")
# A strength written after the name, and all that follows: "warfarin 5 mg", "二甲双胍 0.5g".
_STRENGTH = re.compile(r"\s*\d+(?:[.,]\d+)?\s*(?:mg|mcg|μg|ug|g|ml|iu|毫克|微克|克|毫升).*$")
_FORMS = re.compile(r"\s+(?:tablets?|tabs?|capsules?|caps?|injection|oral|er|sr|xl)$")
_ZH_FORMS = re.compile(r"(?:肠溶片|缓释片|控释片|分散片|片|胶囊|注射液|颗粒)$")


def normalise(name: str) -> str:
    """The key a name is looked up by: Unicode-normalised, lower case, no strength or
    dosage form, separators (space, ``-``, ``/``, ``+``) as single spaces."""
    text = unicodedata.normalize("NFKC", name).casefold().strip()
    text = _STRENGTH.sub("", text).strip()
    text = _FORMS.sub("", text).strip()
    text = _ZH_FORMS.sub("", text).strip() or text
    return _SEPARATORS.sub(" ", text).strip()


@dataclass(frozen=True, slots=True)
class Drug:
    generic: str
    zh: str
    names: tuple[str, ...]

    def label(self, language: Language) -> str:
        return self.zh if language == "zh-CN" else self.generic


@dataclass(frozen=True, slots=True)
class Entry:
    drugs: frozenset[str]
    severity: Severity
    mechanism: dict[Language, str]
    advice: dict[Language, str]
    source: str


@dataclass(frozen=True, slots=True)
class Tables:
    drugs: dict[str, Drug]
    #: Every known name (normalised) to its generic name.
    index: dict[str, str]
    interactions: dict[frozenset[str], Entry]

    def lookup(self, name: str) -> Drug | None:
        generic = self.index.get(normalise(name))
        return self.drugs[generic] if generic else None


def _read(resource: str) -> Any:
    return json.loads(files(__package__).joinpath("data", resource).read_text(encoding="utf-8"))


@cache
def tables() -> Tables:
    """The drug names and the interaction table; raises ``ValueError`` if they disagree."""
    raw_drugs: dict[str, dict[str, list[str]]] = _read("drugs.json")["drugs"]
    drugs: dict[str, Drug] = {}
    index: dict[str, str] = {}
    for generic, info in raw_drugs.items():
        names = (generic, *info["zh"], *info["aliases"])
        drugs[generic] = Drug(generic=generic, zh=info["zh"][0], names=names)
        for alias in names:
            key = normalise(alias)
            if index.setdefault(key, generic) != generic:
                raise ValueError(f"drugs.json: {alias!r} names both {index[key]} and {generic}")
    interactions: dict[frozenset[str], Entry] = {}
    for item in _read("interactions.json")["interactions"]:
        pair = frozenset(item["drugs"])
        unknown = pair - drugs.keys()
        if len(pair) != 2 or unknown:
            raise ValueError(f"interactions.json: bad pair {item['drugs']} (unknown: {unknown})")
        if pair in interactions:
            raise ValueError(f"interactions.json: {sorted(pair)} is listed twice")
        if item["severity"] not in SEVERITIES:
            raise ValueError(f"interactions.json: {sorted(pair)}: severity {item['severity']!r}")
        interactions[pair] = Entry(
            drugs=pair,
            severity=item["severity"],
            mechanism={lang: item["mechanism"][lang] for lang in LANGUAGES},
            advice={lang: item["advice"][lang] for lang in LANGUAGES},
            source=item["source"],
        )
    return Tables(drugs=drugs, index=index, interactions=interactions)
