"""Red-flag triage: rules and a bilingual lexicon that run on every patient message.

Safety is code, not a prompt. :class:`Triager` normalises the message, finds the lexicon's
findings (each match checked for negation, hypotheticals, past events and figures of speech),
adds findings from numbers (temperatures, ages, weeks of pregnancy, vital signs, lab values),
and fires every rule whose findings are all present. The level is the most urgent rule's;
with no red flag, appointment-worthy symptoms give ``routine`` and everything else
``self-care``.

>>> triage("My dad's face is drooping and he can't lift his arm", "en").level
<Level.EMERGENCY: 'emergency'>
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from itertools import islice
from pathlib import Path

from healtrace.safety._lexicon import Finding, Lexicon, Rule, load_lexicon
from healtrace.safety._measures import (
    ANALYTES,
    Measurement,
    classify_lab,
    measure,
    numeric_findings,
)
from healtrace.safety._prefilter import necessary_literals
from healtrace.safety._text import Analysis, normalise
from healtrace.safety.regions import emergency_number
from healtrace.safety.types import CATEGORIES, Level, Reason, TriageResult

__all__ = ["Triager", "default_triager", "triage"]

#: A finding whose pattern matches more often than this is judged on its first matches only,
#: which bounds the work on spam.
_MAX_MATCHES = 64
_WANTS_HUMAN = "wants_human"
#: A joke marker withdraws red flags only in a message this short.
_RETRACTION_MAX_CHARS = 160
_CATEGORY_ORDER = {c: i for i, c in enumerate(CATEGORIES)}
_LAB_UNITS = {
    "potassium": "mmol/L",
    "sodium": "mmol/L",
    "glucose": "mmol/L",
    "haemoglobin": "g/L",
    "platelets": "×10⁹/L",
    "wbc": "×10⁹/L",
    "neutrophils": "×10⁹/L",
    "inr": "",
    "calcium": "mmol/L",
    "creatinine": "µmol/L",
    "troponin": "ng/L",
}


#: A condition: alternatives (``|``), each a conjunction of findings (``+``).
_Term = tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    rule: Rule
    #: Every term must hold.
    all: tuple[_Term, ...]
    #: At least one term must hold, when there are any.
    any: tuple[_Term, ...]
    #: No term may hold.
    none: tuple[_Term, ...]


def _terms(items: tuple[str, ...]) -> tuple[_Term, ...]:
    return tuple(
        tuple(tuple(n.strip() for n in alt.split("+")) for alt in item.split("|")) for item in items
    )


def _holds(term: _Term, present: dict[str, str]) -> tuple[str, ...] | None:
    """The first alternative of ``term`` whose findings are all present."""
    for alternative in term:
        if all(name in present for name in alternative):
            return alternative
    return None


class Triager:
    """Assess patient messages for red flags. Build once (compiles the lexicon), reuse."""

    def __init__(self, lexicon: Lexicon | None = None, *, lexicon_dir: Path | None = None) -> None:
        self.lexicon = lexicon if lexicon is not None else load_lexicon(lexicon_dir)
        self._findings: tuple[Finding, ...] = tuple(self.lexicon.findings.values())
        # Every finding's parts, each with the literals one of which all its matches contain.
        # A message only runs the parts whose literals it holds (and the few without any).
        self._flat: list[tuple[int, re.Pattern[str]]] = []
        self._always: list[int] = []
        self._by_literal: dict[str, list[int]] = {}
        for fi, finding in enumerate(self._findings):
            for part in finding.parts:
                pid = len(self._flat)
                self._flat.append((fi, part))
                literals = necessary_literals(part)
                if literals is None:
                    self._always.append(pid)
                    continue
                for lit in literals:
                    self._by_literal.setdefault(lit, []).append(pid)
        # Literals by their first two characters, so a message only tests those it could hold.
        self._by_prefix: dict[str, tuple[str, ...]] = {}
        for lit in sorted(self._by_literal):
            key = lit[:2]
            self._by_prefix[key] = (*self._by_prefix.get(key, ()), lit)
        self._rules = tuple(
            _CompiledRule(r, _terms(r.all), _terms(r.any), _terms(r.none))
            for r in self.lexicon.rules
        )
        # A rule can only fire when a finding of its first group is present.
        self._rules_by_finding: dict[str, list[int]] = {}
        for i, compiled in enumerate(self._rules):
            first = compiled.all[:1] or compiled.any
            for name in {alt[0] for term in first for alt in term}:
                self._rules_by_finding.setdefault(name, []).append(i)

    # -- public --------------------------------------------------------------------------

    def assess(self, text: str, locale: str, *, region: str | None = None) -> TriageResult:
        """The triage of one patient message. ``region`` is the tenant's, if set."""
        number, where = emergency_number(region, locale)
        norm = normalise(text)
        if not any(ch.isalnum() for ch in norm):
            return TriageResult(Level.SELF_CARE, (), number, where)
        analysis, present, measurements = self._analyse(norm)

        reasons: list[Reason] = []
        notes: list[str] = []
        candidates = sorted({i for name in present for i in self._rules_by_finding.get(name, ())})
        for compiled in (self._rules[i] for i in candidates):
            evidence = self._fires(compiled, present)
            if evidence is None:
                continue
            rule = compiled.rule
            if rule.category not in _CATEGORY_ORDER:
                notes.append(rule.code)
                continue
            reasons.append(
                Reason(
                    category=rule.category,
                    code=rule.code,
                    level=rule.level,
                    evidence=evidence,
                    source="rules",
                    message_en=rule.message_en.replace("{number}", number),
                    message_zh=rule.message_zh.replace("{number}", number),
                )
            )
        reasons.extend(self._lab_reasons(measurements, number))
        if len(norm) <= _RETRACTION_MAX_CHARS and self.lexicon.language.retraction.search(
            analysis.masked
        ):
            # "chest pain lol jk": an explicit joke withdraws red flags, but never self-harm.
            reasons = [r for r in reasons if r.category == "self_harm"]
        reasons = _strongest_per_category(reasons)

        level = max(reasons, key=lambda r: r.level.rank).level if reasons else Level.SELF_CARE
        if not level.at_least(Level.ROUTINE) and notes:
            level = Level.ROUTINE
        extra: dict[str, object] = {}
        if notes:
            extra["notes"] = notes
        return TriageResult(
            level=level,
            reasons=tuple(reasons),
            emergency_number=number,
            region=where,
            wants_human=_WANTS_HUMAN in present,
            extra=extra,
        )

    def findings(self, text: str) -> dict[str, str]:
        """Every finding present in ``text`` (name → the words that matched); for debugging."""
        return self._analyse(normalise(text))[1]

    # -- internals -----------------------------------------------------------------------

    def _analyse(self, norm: str) -> tuple[Analysis, dict[str, str], list[Measurement]]:
        analysis = Analysis(norm, self.lexicon.language)
        present = self._present(analysis)
        measurements = [
            m for m in measure(analysis.masked) if analysis.context_of(m.start, m.start) is None
        ]
        present.update(numeric_findings(measurements))
        return analysis, present, measurements

    def _present(self, analysis: Analysis) -> dict[str, str]:
        text = analysis.masked
        pids = set(self._always)
        for lit in self._literals_in(text):
            pids.update(self._by_literal[lit])
        by_finding: dict[int, list[re.Match[str]]] = {}
        for pid in sorted(pids):
            fi, part = self._flat[pid]
            for m in islice(part.finditer(text), _MAX_MATCHES):
                if m.end() > m.start():
                    by_finding.setdefault(fi, []).append(m)
        matches: list[tuple[Finding, list[re.Match[str]]]] = []
        spans: list[tuple[int, int]] = []
        for fi, ms in sorted(by_finding.items()):
            ms.sort(key=lambda m: m.start())
            matches.append((self._findings[fi], ms))
            spans.extend(m.span() for m in ms)
        analysis.absorb(spans)
        present: dict[str, str] = {}
        for finding, ms in matches:
            for m in ms:
                start, end = m.span()
                if analysis.negated(start, end):
                    continue
                if finding.context == "acute" and analysis.context_of(start, end) is not None:
                    continue
                present[finding.name] = m.group(0).strip()
                break
        return present

    def _literals_in(self, text: str) -> set[str]:
        by_prefix = self._by_prefix
        found: set[str] = set()
        keys = {text[i : i + 2] for i in range(len(text) - 1)} | set(text)
        for key in keys & by_prefix.keys():
            for lit in by_prefix[key]:
                if lit in text:
                    found.add(lit)
        return found

    @staticmethod
    def _fires(compiled: _CompiledRule, present: dict[str, str]) -> str | None:
        evidence: list[str] = []
        for term in compiled.all:
            hit = _holds(term, present)
            if hit is None:
                return None
            evidence.extend(present[name] for name in hit)
        if compiled.any:
            hit = next((h for t in compiled.any if (h := _holds(t, present)) is not None), None)
            if hit is None:
                return None
            evidence.extend(present[name] for name in hit)
        for term in compiled.none:
            if _holds(term, present) is not None:
                return None
        unique = list(dict.fromkeys(evidence))
        # "crushing chest pain" + "crushing": keep the longer words only.
        kept = [e for e in unique if not any(e != o and e in o for o in unique)]
        return " + ".join(kept)

    def _lab_reasons(self, measurements: list[Measurement], number: str) -> list[Reason]:
        out: list[Reason] = []
        messages = self.lexicon.lab_messages
        for m in measurements:
            if not m.is_lab:
                continue
            verdict = classify_lab(m)
            if verdict is None or not verdict[0].at_least(Level.URGENT):
                continue
            level, direction = verdict
            key = f"{m.kind}.{direction}"
            template = (
                messages.get(key)
                or (messages.get("default.emergency") if level is Level.EMERGENCY else None)
                or messages["default"]
            )
            analyte = ANALYTES[m.kind]
            unit = _LAB_UNITS.get(m.kind, "")
            value = f"{m.value:g} {unit}".strip()
            fill = {"{value}": value, "{number}": number}
            message_en = template.message_en
            message_zh = template.message_zh
            for k, v in {**fill, "{name}": analyte.name_en}.items():
                message_en = message_en.replace(k, v)
            for k, v in {**fill, "{name}": analyte.name_zh}.items():
                message_zh = message_zh.replace(k, v)
            out.append(
                Reason(
                    category="critical_lab",
                    code=f"critical_lab.{m.kind}_{direction}",
                    level=level,
                    evidence=m.evidence,
                    source="labs",
                    message_en=message_en,
                    message_zh=message_zh,
                )
            )
        return out


def _strongest_per_category(reasons: list[Reason]) -> list[Reason]:
    """Keep, per category, only the reasons at that category's highest level (one per code)."""
    best: dict[str, int] = {}
    for r in reasons:
        best[r.category] = max(best.get(r.category, -1), r.level.rank)
    seen: set[str] = set()
    kept: list[Reason] = []
    for r in reasons:
        if r.level.rank == best[r.category] and r.code not in seen:
            seen.add(r.code)
            kept.append(r)
    kept.sort(key=lambda r: (-r.level.rank, _CATEGORY_ORDER.get(r.category, 99)))
    return kept


@cache
def default_triager() -> Triager:
    """The shared triager with the packaged lexicon, built on first use (about a second)."""
    return Triager()


def triage(text: str, locale: str, region: str | None = None) -> TriageResult:
    """Triage with the packaged lexicon."""
    return default_triager().assess(text, locale, region=region)
