"""Interpret parsed lab results: look up, convert, flag, derive, spot patterns, raise triage.

:func:`interpret` takes :class:`~healtrace.labs.types.RawResult` rows (from any parser) and
returns a :class:`LabReport`. Every ambiguity becomes a warning instead of a guess: an
unknown analyte, an unknown unit, a missing unit where the accepted units differ in scale
(glucose 5.5 mmol/L vs 99 mg/dL), or a printed reference range that contradicts the
catalogue's. Patterns are stated as possibilities with next steps, never as diagnoses.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from healtrace.labs.catalogue import (
    Analyte,
    Catalogue,
    RefRange,
    load_catalogue,
    normalise_sex,
)
from healtrace.labs.derived import (
    Derived,
    anion_gap,
    bmi,
    corrected_calcium,
    de_ritis,
    egfr_ckd_epi_2021,
    estimated_average_glucose,
    ldl_friedewald,
    non_hdl,
)
from healtrace.labs.types import RawResult
from healtrace.labs.units import UnitError
from healtrace.safety.types import Level, Reason

__all__ = ["Flag", "LabReport", "LabWarning", "Pattern", "ResultItem", "interpret"]

Flag = Literal["LL", "L", "N", "H", "HH"]


def _zh(locale: str) -> bool:
    return locale.lower().startswith("zh")


# --------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class ResultItem:
    """One interpreted result."""

    raw: RawResult
    analyte: Analyte | None
    canonical_value: float | None
    flag: Flag | None
    ref_low: float | None
    ref_high: float | None
    #: Unit ``ref_low``/``ref_high`` are in (canonical, or the report's when not converted).
    ref_unit: str
    ref_source: Literal["report", "catalogue"] | None
    critical: bool = False
    critical_level: Level | None = None

    @property
    def key(self) -> str | None:
        return self.analyte.key if self.analyte else None

    def name(self, locale: str = "en") -> str:
        if self.analyte is None:
            return self.raw.name
        return self.analyte.name_zh if _zh(locale) else self.analyte.name_en

    def to_dict(self, locale: str = "en") -> dict[str, Any]:
        a = self.analyte
        return {
            "name": self.name(locale),
            "loinc": a.loinc if a else (self.raw.loinc or None),
            "value": None if self.raw.qualitative else self.raw.value,
            "qualitative": self.raw.qualitative or None,
            "unit": self.raw.unit,
            "canonical_value": self.canonical_value,
            "canonical_unit": a.unit_text if a else None,
            "flag": self.flag,
            "ref_low": self.ref_low,
            "ref_high": self.ref_high,
            "critical": self.critical,
            "critical_level": self.critical_level.value if self.critical_level else None,
            "analyte": a.key if a else None,
            "ref_source": self.ref_source,
            "ref_unit": self.ref_unit,
            "raw_name": self.raw.name,
            "comparator": self.raw.comparator,
            "line": self.raw.line,
        }


@dataclass(frozen=True)
class LabWarning:
    """Something the interpreter would not guess about."""

    code: str
    message_en: str
    message_zh: str
    line: int = 0
    name: str = ""
    detail: tuple[tuple[str, Any], ...] = ()

    def to_dict(self, locale: str = "en") -> dict[str, Any]:
        out: dict[str, Any] = {
            "code": self.code,
            "message": self.message_zh if _zh(locale) else self.message_en,
        }
        if self.line:
            out["line"] = self.line
        if self.name:
            out["name"] = self.name
        out.update(dict(self.detail))
        return out


@dataclass(frozen=True)
class Pattern:
    """A combination of results worth a closer look, stated as a possibility."""

    code: str
    message_en: str
    message_zh: str
    analytes: tuple[str, ...] = ()
    detail: tuple[tuple[str, Any], ...] = ()

    def to_dict(self, locale: str = "en") -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message_zh if _zh(locale) else self.message_en,
            "analytes": list(self.analytes),
            **dict(self.detail),
        }


def _derived_dict(d: Derived, locale: str) -> dict[str, Any]:
    out = dataclasses.asdict(d)
    out["categories"] = [dataclasses.asdict(c) for c in d.categories]
    out["alternates"] = [dataclasses.asdict(q) for q in d.alternates]
    out["category"] = d.category
    out["note"] = d.note_zh if _zh(locale) else d.note_en
    return out


@dataclass(frozen=True)
class LabReport:
    results: tuple[ResultItem, ...]
    derived: tuple[tuple[str, Derived], ...]
    patterns: tuple[Pattern, ...]
    warnings: tuple[LabWarning, ...]
    locale: str = "en"

    def get(self, key: str) -> ResultItem | None:
        """The first result for an analyte key."""
        return next((r for r in self.results if r.key == key), None)

    def derived_value(self, key: str) -> Derived | None:
        return dict(self.derived).get(key)

    @property
    def urgent(self) -> bool:
        """True when any result is beyond a critical (urgent or emergency) limit."""
        return any(r.critical for r in self.results)

    def triage_reasons(self) -> list[Reason]:
        reasons: list[Reason] = []
        for r in self.results:
            if not r.critical or r.critical_level is None or r.analyte is None:
                continue
            side = "high" if r.flag == "HH" else "low"
            evidence = f"{r.raw.name} {r.raw.comparator}{r.raw.value:g} {r.raw.unit}".strip()
            if r.critical_level is Level.EMERGENCY:
                en = (
                    f"{r.analyte.name_en} {r.raw.comparator}{r.raw.value:g} {r.raw.unit} is at "
                    "a level labs treat as critical: contact a doctor or go to the emergency "
                    "department now, and call the emergency number if you feel unwell."
                )
                zh = (
                    f"{r.analyte.name_zh} {r.raw.comparator}{r.raw.value:g} {r.raw.unit} 已达到"
                    "检验科视为危急值的水平：请立即联系医生或前往急诊；如感到不适，请拨打急救电话。"
                )
            else:
                en = (
                    f"{r.analyte.name_en} {r.raw.comparator}{r.raw.value:g} {r.raw.unit} is at "
                    "a level labs treat as critical: contact a doctor today (same-day "
                    "appointment or urgent care); go to the emergency department if you "
                    "feel unwell."
                )
                zh = (
                    f"{r.analyte.name_zh} {r.raw.comparator}{r.raw.value:g} {r.raw.unit} 已达到"
                    "检验科视为危急值的水平：请今天就联系医生（当日门诊或急诊）；如感到不适请立即就医。"
                )
            reasons.append(
                Reason(
                    category="critical_lab",
                    code=f"critical_lab.{r.analyte.key}.{side}",
                    level=r.critical_level,
                    evidence=evidence,
                    source="labs",
                    message_en=en,
                    message_zh=zh,
                )
            )
        return reasons

    def to_dict(self, locale: str | None = None) -> dict[str, Any]:
        loc = locale or self.locale
        return {
            "results": [r.to_dict(loc) for r in self.results],
            "derived": {k: _derived_dict(d, loc) for k, d in self.derived},
            "patterns": [p.to_dict(loc) for p in self.patterns],
            "warnings": [w.to_dict(loc) for w in self.warnings],
        }


# --------------------------------------------------------------------------- lookup

_SPLIT = re.compile(r"[\s,，;；:：()（）\[\]【】]+")
_FASTING = re.compile(r"fasting|空腹|\bFBG\b|\bFPG\b", re.IGNORECASE)


def _lookup(cat: Catalogue, raw: RawResult) -> Analyte | None:
    found: Analyte | None = None
    if raw.loinc:
        found = cat.find(raw.loinc)
    if found is None:
        found = cat.find(raw.name)
    if found is None:
        stripped = re.sub(r"[(（][^)）]*[)）]", " ", raw.name).strip()
        if stripped and stripped != raw.name:
            found = cat.find(stripped)
    if found is None:
        # Each word of the name ("血红蛋白 HGB"); single ASCII letters ("P", "K") only count
        # as the whole name, and words naming different analytes are ambiguous.
        hits = {
            hit.key: hit
            for token in _SPLIT.split(raw.name)
            if token and not (len(token) == 1 and token.isascii())
            for hit in (cat.find(token),)
            if hit is not None
        }
        if len(hits) > 1:
            hits = _narrow(raw, hits)
        if len(hits) == 1:
            found = next(iter(hits.values()))
    if found is not None and found.key == "glucose" and _FASTING.search(raw.name):
        found = cat.find("glucose_fasting") or found
    return found


_URINE = re.compile(r"尿|urine|\bU-", re.IGNORECASE)


def _narrow(raw: RawResult, hits: dict[str, Analyte]) -> dict[str, Analyte]:
    """Settle names whose words name different analytes on a urinalysis report.

    "白细胞 LEU 阴性" is the strip's leukocyte esterase, not a blood count, and "尿糖 GLU"
    urine glucose, not plasma glucose: a grade picks the analyte reported as grades, a
    name saying urine picks the urinalysis one. Anything else stays ambiguous.
    """
    if raw.qualitative:
        graded = {k: a for k, a in hits.items() if a.qualitative_normal is not None}
        if len(graded) == 1:
            return graded
    if _URINE.search(raw.name):
        urine = {k: a for k, a in hits.items() if a.panel == "urinalysis"}
        if len(urine) == 1:
            return urine
    return hits


# --------------------------------------------------------------------------- flagging

#: Analytes whose critical low limits are strict (``Hb < 60``), per ``safety._measures``.
_STRICT_LOW = {"hemoglobin", "platelets"}
#: Analytes whose urgent high limit is strict (troponin T > 14 ng/L).
_STRICT_URGENT_HIGH = {"troponin_t_hs"}


def _range_flag(v: float, low: float | None, high: float | None, comparator: str) -> Flag | None:
    if comparator in ("<", "≤", "<="):
        # The true value is at or below v.
        if low is not None and v <= low:
            return "L"
        if high is None or v <= high:
            return "N"
        return None
    if comparator in (">", "≥", ">="):
        if high is not None and v >= high:
            return "H"
        if low is None or v >= low:
            return "N" if high is None else None
        return None
    if low is not None and v < low:
        return "L"
    if high is not None and v > high:
        return "H"
    return "N"


def _critical(a: Analyte, v: float, comparator: str) -> tuple[Flag, Level] | None:
    c = a.critical
    if c is None:
        return None
    below_ok = comparator not in (">", "≥", ">=")
    above_ok = comparator not in ("<", "≤", "<=")
    strict_low = a.key in _STRICT_LOW

    def le(limit: float | None, strict: bool) -> bool:
        return limit is not None and (v < limit if strict else v <= limit)

    def ge(limit: float | None, strict: bool) -> bool:
        return limit is not None and (v > limit if strict else v >= limit)

    if below_ok:
        if le(c.low, strict_low):
            return "LL", Level.EMERGENCY
        if le(c.urgent_low, strict_low):
            return "LL", Level.URGENT
    if above_ok:
        if ge(c.high, False):
            return "HH", Level.EMERGENCY
        if ge(c.urgent_high, a.key in _STRICT_URGENT_HIGH):
            return "HH", Level.URGENT
    return None


def _catalogue_range(a: Analyte, sex: str | None, age: float | None) -> RefRange | None:
    ref = a.reference(sex, age)
    if ref is not None or not a.ranges:
        return ref
    # Sex unknown and the ranges differ by sex: flag only outside the widest one.
    lows = [r.low for r in a.ranges]
    highs = [r.high for r in a.ranges]
    low = None if any(x is None for x in lows) else min(x for x in lows if x is not None)
    high = None if any(x is None for x in highs) else max(x for x in highs if x is not None)
    return RefRange(low, high, note="widest range across sexes")


def _report_flag(text: str) -> Flag | None:
    t = text.strip().lower()
    if not t:
        return None
    if t in {"hh", "↑↑", "危急高"}:
        return "HH"
    if t in {"ll", "↓↓", "危急低"}:
        return "LL"
    if t in {"h", "↑", "偏高", "高", "high", "+"}:
        return "H"
    if t in {"l", "↓", "偏低", "低", "low", "-"}:
        return "L"
    if t in {"n", "normal", "正常"}:
        return "N"
    return None


def _conflicts(rep: tuple[float | None, float | None], cat: RefRange) -> bool:
    rlo, rhi = rep
    clo, chi = cat.low, cat.high
    lo_a = -math.inf if rlo is None else rlo
    hi_a = math.inf if rhi is None else rhi
    lo_b = -math.inf if clo is None else clo
    hi_b = math.inf if chi is None else chi
    if hi_a < lo_b or hi_b < lo_a:
        return True
    if None not in (rlo, rhi, clo, chi):
        assert rlo is not None and rhi is not None and clo is not None and chi is not None
        w_rep, w_cat = rhi - rlo, chi - clo
        if w_rep > 0 and w_cat > 0 and not 0.2 <= w_rep / w_cat <= 5:
            return True
    # One-sided ranges: compare the shared bound's scale.
    for x, y in ((rhi, chi), (rlo, clo)):
        if x is not None and y is not None and x > 0 and y > 0 and not 0.2 <= x / y <= 5:
            return True
    return False


def _scale_factors(a: Analyte) -> list[tuple[str, float]]:
    out = [(a.unit_text, 1.0)]
    for u in a.units:
        try:
            out.append((u.text, a.to_canonical(1.0, u.unit)))
        except UnitError:
            continue
    return out


def _plausible(a: Analyte, canonical: float) -> bool:
    lows = [r.low for r in a.ranges if r.low is not None]
    highs = [r.high for r in a.ranges if r.high is not None]
    lo = min(lows) / 5 if lows and min(lows) > 0 else None
    hi = max(highs) * 5 if highs else None
    if a.critical is not None:
        c = a.critical
        floor = [x for x in (c.low, c.urgent_low) if x is not None]
        ceil = [x for x in (c.high, c.urgent_high) if x is not None]
        if floor and lo is not None:
            lo = min(lo, min(floor) / 2)
        if ceil and hi is not None:
            hi = max(hi, max(ceil) * 2)
    return (lo is None or canonical >= lo) and (hi is None or canonical <= hi)


def _qualitative_one(raw: RawResult, a: Analyte, warnings: list[LabWarning]) -> ResultItem:
    flag: Flag | None = None
    if a.qualitative_normal is None:
        warnings.append(
            LabWarning(
                "qualitative_unexpected",
                f"{raw.name}: reported as {raw.qualitative!r}, but {a.name_en} is normally a "
                "number; the result was not interpreted. Please check the original report.",
                f"{raw.name}：结果为“{raw.qualitative}”，但{a.name_zh}通常以数值报告，"
                "未作解读。请核对原始报告。",
                raw.line,
                raw.name,
            )
        )
    else:
        flag = "N" if raw.value <= a.qualitative_normal else "H"
    return ResultItem(
        raw=raw,
        analyte=a,
        canonical_value=None,
        flag=flag,
        ref_low=None,
        ref_high=None,
        ref_unit="",
        ref_source="catalogue" if flag else None,
    )


def _report_range_by_sex(raw: RawResult, sex: str | None, warnings: list[LabWarning]) -> RawResult:
    """Pick the report's range for the patient's sex, or the widest one and say so."""
    code = normalise_sex(sex)
    for label, low, high in raw.ref_by_sex:
        if label == code:
            return dataclasses.replace(raw, ref_low=low, ref_high=high)
    lows = [lo for _, lo, _ in raw.ref_by_sex]
    highs = [hi for _, _, hi in raw.ref_by_sex]
    low = None if None in lows else min(x for x in lows if x is not None)
    high = None if None in highs else max(x for x in highs if x is not None)
    warnings.append(
        LabWarning(
            "range_needs_sex",
            f"{raw.name}: the report gives different reference ranges for men and women; "
            "without your sex the widest was used, so a borderline value may not be flagged.",
            f"{raw.name}：报告对男性和女性给出了不同的参考范围；未提供性别时按最宽的范围判断，"
            "临界值可能不会被标出。",
            raw.line,
            raw.name,
        )
    )
    return dataclasses.replace(raw, ref_low=low, ref_high=high)


def _interpret_one(
    raw: RawResult, a: Analyte, sex: str | None, age: float | None, warnings: list[LabWarning]
) -> ResultItem:
    if raw.qualitative:
        return _qualitative_one(raw, a, warnings)
    if raw.ref_by_sex and raw.ref_low is None and raw.ref_high is None:
        raw = _report_range_by_sex(raw, sex, warnings)
    canonical: float | None = None
    unit_ok = False  # value (and report range) convertible to canonical
    range_unit_text = raw.unit
    if raw.unit.strip():
        try:
            canonical = a.to_canonical(raw.value, raw.unit)
            unit_ok = True
        except UnitError:
            warnings.append(
                LabWarning(
                    "unknown_unit",
                    f"{raw.name}: the unit {raw.unit!r} is not one HealTrace can convert for "
                    f"{a.name_en}; the value was not compared with standard limits.",
                    f"{raw.name}：无法识别或换算单位“{raw.unit}”（{a.name_zh}），"
                    "未与标准范围比较。",
                    raw.line,
                    raw.name,
                    (("unit", raw.unit), ("expected_units", [u for u, _ in _scale_factors(a)])),
                )
            )
    else:
        factors = _scale_factors(a)
        values = [f for _, f in factors]
        if max(values) / min(values) <= 1.05:
            canonical = raw.value * factors[0][1]
            unit_ok = True
            range_unit_text = a.unit_text
        else:
            suggested = [u for u, f in factors if _plausible(a, raw.value * f)]
            detail: list[tuple[str, Any]] = [("expected_units", [u for u, _ in factors])]
            hint_en = hint_zh = ""
            if len(suggested) == 1:
                detail.append(("suggested_unit", suggested[0]))
                hint_en = f" The number's size suggests {suggested[0]}, but please check."
                hint_zh = f"数值大小提示可能是 {suggested[0]}，请核对。"
            warnings.append(
                LabWarning(
                    "missing_unit",
                    f"{raw.name}: no unit was given, and {a.name_en} is reported in units that "
                    f"differ a lot in size, so the value was not interpreted.{hint_en}",
                    f"{raw.name}：未注明单位，而{a.name_zh}的常用单位数值差别很大，"
                    f"因此未作解读。{hint_zh}",
                    raw.line,
                    raw.name,
                    tuple(detail),
                )
            )

    # Reference range: the report's own (converted the same way) beats the catalogue's.
    cat_ref = _catalogue_range(a, sex, age)
    has_report_range = raw.ref_low is not None or raw.ref_high is not None
    ref_low: float | None = None
    ref_high: float | None = None
    ref_source: Literal["report", "catalogue"] | None = None
    ref_unit = a.unit_text
    conflict = False
    flag: Flag | None = None

    if has_report_range and unit_ok:
        try:
            ref_low = (
                a.to_canonical(raw.ref_low, range_unit_text) if raw.ref_low is not None else None
            )
            ref_high = (
                a.to_canonical(raw.ref_high, range_unit_text) if raw.ref_high is not None else None
            )
            ref_source = "report"
        except UnitError:
            ref_low = ref_high = None
        if (
            ref_source == "report"
            and cat_ref is not None
            and _conflicts((ref_low, ref_high), cat_ref)
        ):
            conflict = True
            warnings.append(
                LabWarning(
                    "range_conflict",
                    f"{raw.name}: the report's reference range ({_fmt(raw.ref_low)}–"
                    f"{_fmt(raw.ref_high)} {raw.unit}) does not fit the usual range for "
                    f"{a.name_en} ({_fmt(cat_ref.low)}–{_fmt(cat_ref.high)} {a.unit_text}); "
                    "the unit or range may have been misread, so critical limits were not "
                    "applied. Please check the original report.",
                    f"{raw.name}：报告上的参考范围（{_fmt(raw.ref_low)}–{_fmt(raw.ref_high)} "
                    f"{raw.unit}）与{a.name_zh}的常用范围（{_fmt(cat_ref.low)}–"
                    f"{_fmt(cat_ref.high)} {a.unit_text}）明显不符，单位或范围可能识别有误，"
                    "未按危急值判断。请核对原始报告。",
                    raw.line,
                    raw.name,
                )
            )
    elif has_report_range:
        # Value and range share the report's (unconvertible or missing) unit.
        ref_low, ref_high, ref_source, ref_unit = raw.ref_low, raw.ref_high, "report", raw.unit
        flag = _range_flag(raw.value, ref_low, ref_high, raw.comparator)
    elif unit_ok and cat_ref is not None:
        ref_low, ref_high, ref_source = cat_ref.low, cat_ref.high, "catalogue"

    if not unit_ok and not has_report_range:
        flag = _report_flag(raw.flag)

    critical = False
    level: Level | None = None
    if canonical is not None:
        if ref_source is not None:
            flag = _range_flag(canonical, ref_low, ref_high, raw.comparator)
        if not conflict:
            crit = _critical(a, canonical, raw.comparator)
            if crit is not None:
                flag, level = crit
                critical = True

    return ResultItem(
        raw=raw,
        analyte=a,
        canonical_value=None if canonical is None else round(canonical, 6),
        flag=flag,
        ref_low=ref_low,
        ref_high=ref_high,
        ref_unit=ref_unit,
        ref_source=ref_source,
        critical=critical,
        critical_level=level,
    )


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:g}"


# --------------------------------------------------------------------------- derived


def _derive(
    items: Sequence[ResultItem],
    sex: str | None,
    age: float | None,
    weight_kg: float | None,
    height_cm: float | None,
    warnings: list[LabWarning],
) -> list[tuple[str, Derived]]:
    v: dict[str, float] = {}
    for it in items:
        if it.key and it.canonical_value is not None and not it.raw.comparator and it.key not in v:
            v[it.key] = it.canonical_value
    out: list[tuple[str, Derived]] = []
    sex_code = normalise_sex(sex)
    if "creatinine" in v:
        if age is not None and sex_code is not None:
            out.append(("egfr", egfr_ckd_epi_2021(v["creatinine"], age, sex_code)))
        else:
            warnings.append(
                LabWarning(
                    "egfr_needs_age_sex",
                    "eGFR (kidney filtration) needs your age and sex as well as creatinine.",
                    "估算肾小球滤过率（eGFR）除肌酐外还需要年龄和性别。",
                )
            )
    if all(k in v for k in ("sodium", "chloride", "co2_total")):
        out.append(("anion_gap", anion_gap(v["sodium"], v["chloride"], v["co2_total"])))
    if "calcium" in v and "albumin" in v:
        out.append(("corrected_calcium", corrected_calcium(v["calcium"], v["albumin"])))
    if all(k in v for k in ("cholesterol_total", "hdl_c", "triglycerides")):
        out.append(
            (
                "ldl_friedewald",
                ldl_friedewald(v["cholesterol_total"], v["hdl_c"], v["triglycerides"]),
            )
        )
    if "cholesterol_total" in v and "hdl_c" in v:
        out.append(("non_hdl", non_hdl(v["cholesterol_total"], v["hdl_c"])))
    if "hba1c" in v:
        out.append(("eag", estimated_average_glucose(v["hba1c"])))
    if weight_kg is not None and height_cm is not None:
        out.append(("bmi", bmi(weight_kg, height_cm)))
    if "ast" in v and "alt" in v:
        out.append(("de_ritis", de_ritis(v["ast"], v["alt"])))
    return out


# --------------------------------------------------------------------------- patterns


def _is(it: ResultItem | None, *flags: str) -> bool:
    return it is not None and it.flag in flags


def _uln(it: ResultItem) -> float | None:
    if (
        it.ref_high is not None
        and it.ref_source is not None
        and it.ref_unit == (it.analyte.unit_text if it.analyte else None)
    ):
        return it.ref_high
    if it.analyte is None:
        return None
    highs = [r.high for r in it.analyte.ranges if r.high is not None]
    return max(highs) if highs else None


def _patterns(items: Sequence[ResultItem], derived: dict[str, Derived]) -> list[Pattern]:
    by: dict[str, ResultItem] = {}
    for it in items:
        if it.key and it.key not in by:
            by[it.key] = it
    out: list[Pattern] = []
    hb, mcv = by.get("hemoglobin"), by.get("mcv")
    if _is(hb, "L", "LL") and _is(mcv, "L"):
        out.append(
            Pattern(
                "microcytic_anaemia",
                "Low haemoglobin with small red cells (low MCV): a pattern consistent with "
                "iron deficiency or thalassaemia trait; ferritin and iron studies help tell "
                "them apart. Please discuss with a doctor.",
                "血红蛋白偏低且红细胞偏小（MCV低）：这种组合可见于缺铁或地中海贫血携带等情况，"
                "铁蛋白和铁代谢检查有助于区分。请与医生讨论。",
                ("hemoglobin", "mcv"),
            )
        )
    if _is(hb, "L", "LL") and _is(mcv, "H"):
        out.append(
            Pattern(
                "macrocytic_anaemia",
                "Low haemoglobin with large red cells (high MCV): a pattern that can be seen "
                "with low vitamin B12 or folate, among other causes; B12 and folate levels "
                "are a sensible next step with your doctor.",
                "血红蛋白偏低且红细胞偏大（MCV高）：这种组合可见于维生素B12或叶酸缺乏等情况，"
                "可与医生商量检查维生素B12和叶酸。",
                ("hemoglobin", "mcv"),
            )
        )
    alt, alp = by.get("alt"), by.get("alp")
    if (
        alt is not None
        and alp is not None
        and alt.canonical_value is not None
        and alp.canonical_value is not None
        and (_is(alt, "H", "HH") or _is(alp, "H", "HH"))
    ):
        alt_uln, alp_uln = _uln(alt), _uln(alp)
        if alt_uln and alp_uln and alp.canonical_value > 0:
            r = (alt.canonical_value / alt_uln) / (alp.canonical_value / alp_uln)
            if r >= 5:
                code, en, zh = (
                    "liver_hepatocellular",
                    "mainly hepatocellular (liver-cell) pattern",
                    "以肝细胞损伤为主的模式",
                )
            elif r <= 2:
                code, en, zh = (
                    "liver_cholestatic",
                    "mainly cholestatic (bile-flow) pattern",
                    "以胆汁淤积为主的模式",
                )
            else:
                code, en, zh = "liver_mixed", "mixed pattern", "混合型模式"
            out.append(
                Pattern(
                    code,
                    f"Raised liver enzymes with R factor {r:.1f}: a {en}. This points to where "
                    "to look, not to a cause; a doctor may repeat the tests and consider "
                    "bilirubin, GGT, a medication review or an ultrasound.",
                    f"肝酶升高，R 值 {r:.1f}：提示{zh}。这只提示方向，不代表病因；"
                    "医生可能会复查，并结合胆红素、GGT、用药情况或超声检查评估。",
                    ("alt", "alp"),
                    (("r_factor", round(r, 2)),),
                )
            )
    egfr = derived.get("egfr")
    if egfr is not None and egfr.value is not None and egfr.value < 60:
        out.append(
            Pattern(
                "kidney_function_reduced",
                f"eGFR {egfr.value:.0f} mL/min/1.73m² is below 60: possibly reduced kidney "
                "function. One result is not enough: a doctor will usually repeat it after "
                "about 3 months and check urine albumin.",
                f"eGFR {egfr.value:.0f} mL/min/1.73m² 低于60：可能存在肾功能下降。"
                "单次结果不足以判断，医生通常会在约3个月后复查并检查尿白蛋白。",
                ("creatinine",),
            )
        )
    fpg, a1c, rpg = by.get("glucose_fasting"), by.get("hba1c"), by.get("glucose")
    hyper: list[str] = []
    if fpg is not None and fpg.canonical_value is not None and fpg.canonical_value >= 7.0:
        hyper.append("glucose_fasting")
    if a1c is not None and a1c.canonical_value is not None and a1c.canonical_value >= 6.5:
        hyper.append("hba1c")
    if rpg is not None and rpg.canonical_value is not None and rpg.canonical_value >= 11.1:
        hyper.append("glucose")
    if hyper:
        out.append(
            Pattern(
                "hyperglycaemia_diabetes_range",
                "This result is in the diabetes range on this test; diagnosis needs "
                "confirmation (usually a repeat test on another day, or a second test type). "
                "Please see a doctor.",
                "该结果在此项检查上处于糖尿病范围；确诊需要进一步确认（通常改日复查或做另一种检查）。"
                "请就医。",
                tuple(hyper),
            )
        )
    ldl = by.get("ldl_c")
    ldl_calc = derived.get("ldl_friedewald")
    ldl_high = _is(ldl, "H", "HH") or (
        ldl is None and ldl_calc is not None and ldl_calc.value is not None and ldl_calc.value > 3.4
    )
    if ldl_high:
        out.append(
            Pattern(
                "dyslipidaemia",
                "LDL cholesterol is above the usual target: a raised cardiovascular risk "
                "factor worth discussing with a doctor, who will weigh it with your other "
                "risk factors (blood pressure, smoking, diabetes, family history).",
                "低密度脂蛋白胆固醇高于一般目标值：这是心血管风险因素之一，"
                "建议与医生讨论，并结合血压、吸烟、糖尿病、家族史等综合评估。",
                ("ldl_c",),
            )
        )
    tsh, ft4 = by.get("tsh"), by.get("ft4")
    if _is(tsh, "H", "HH") and _is(ft4, "L", "LL"):
        out.append(
            Pattern(
                "thyroid_underactive_pattern",
                "High TSH with low free T4: a pattern consistent with an underactive thyroid. "
                "A doctor will usually repeat the tests and may check thyroid antibodies.",
                "TSH升高且游离T4降低：这种组合与甲状腺功能减退相符。医生通常会复查，并可能检查甲状腺抗体。",
                ("tsh", "ft4"),
            )
        )
    if _is(tsh, "L", "LL") and _is(ft4, "H", "HH"):
        out.append(
            Pattern(
                "thyroid_overactive_pattern",
                "Low TSH with high free T4: a pattern consistent with an overactive thyroid. "
                "Please see a doctor soon, especially with palpitations or weight loss.",
                "TSH降低且游离T4升高：这种组合与甲状腺功能亢进相符。请尽快就医，尤其是有心悸或体重下降时。",
                ("tsh", "ft4"),
            )
        )
    nitrite, esterase = by.get("urine_nitrite"), by.get("urine_leukocyte_esterase")
    urine_wbc = by.get("urine_wbc")
    if _is(nitrite, "H") or (_is(esterase, "H") and (urine_wbc is None or _is(urine_wbc, "H"))):
        found = tuple(
            k
            for k, it in (
                ("urine_nitrite", nitrite),
                ("urine_leukocyte_esterase", esterase),
                ("urine_wbc", urine_wbc),
            )
            if _is(it, "H")
        )
        out.append(
            Pattern(
                "urinary_infection_pattern",
                "Positive nitrite and/or leukocyte esterase on the urine strip: a pattern seen "
                "with urinary tract infection, though contamination also causes it. A doctor "
                "will weigh it with symptoms (burning, frequency) and may send a urine "
                "culture; seek care promptly with fever, back pain or if pregnant.",
                "尿试纸亚硝酸盐和/或白细胞酯酶阳性：可见于尿路感染，但标本污染也会出现。"
                "医生会结合尿痛、尿频等症状判断，并可能做尿培养；如有发热、腰痛或正在怀孕，请尽快就医。",
                found,
            )
        )
    u_glu, u_ket = by.get("urine_glucose"), by.get("urine_ketones")
    if _is(u_glu, "H") and _is(u_ket, "H"):
        out.append(
            Pattern(
                "glucose_and_ketones_in_urine",
                "Both glucose and ketones in the urine: with diabetes this can mean blood sugar "
                "is out of control. Check blood glucose (and blood ketones if you can) today; "
                "with vomiting, abdominal pain, deep or fast breathing or drowsiness, seek "
                "emergency care.",
                "尿糖和尿酮体同时阳性：如有糖尿病，可能提示血糖控制不佳。请今天测血糖（条件允许时测血酮）；"
                "如出现呕吐、腹痛、呼吸深快或嗜睡，请立即急诊就医。",
                ("urine_glucose", "urine_ketones"),
            )
        )
    wbc = by.get("wbc")
    crp = by.get("crp") or by.get("hs_crp")
    if _is(wbc, "H", "HH") and _is(crp, "H", "HH"):
        out.append(
            Pattern(
                "infection_inflammation",
                "Raised white cells and CRP: a pattern seen with infection or inflammation. "
                "Please see a doctor, and seek care urgently with fever, shortness of breath "
                "or feeling very unwell.",
                "白细胞和C反应蛋白均升高：这种组合可见于感染或炎症。请就医；"
                "如有发热、气促或明显不适，请尽快就诊。",
                ("wbc", crp.key if crp and crp.key else "crp"),
            )
        )
    return out


# --------------------------------------------------------------------------- entry point


def interpret(
    results: Sequence[RawResult],
    *,
    sex: str | None = None,
    age: float | None = None,
    weight_kg: float | None = None,
    height_cm: float | None = None,
    locale: str = "en",
) -> LabReport:
    """Interpret parsed results: flags, derived values, patterns and warnings."""
    cat = load_catalogue()
    warnings: list[LabWarning] = []
    items: list[ResultItem] = []
    for raw in results:
        analyte = _lookup(cat, raw)
        if analyte is None:
            warnings.append(
                LabWarning(
                    "unknown_analyte",
                    f"{raw.name}: not a test HealTrace knows, so it was not interpreted.",
                    f"{raw.name}：HealTrace 暂不认识这项检查，未作解读。",
                    raw.line,
                    raw.name,
                )
            )
            items.append(
                ResultItem(
                    raw=raw,
                    analyte=None,
                    canonical_value=None,
                    flag=None,
                    ref_low=raw.ref_low,
                    ref_high=raw.ref_high,
                    ref_unit=raw.unit,
                    ref_source="report"
                    if raw.ref_low is not None or raw.ref_high is not None
                    else None,
                )
            )
            continue
        items.append(_interpret_one(raw, analyte, sex, age, warnings))
    derived = _derive(items, sex, age, weight_kg, height_cm, warnings)
    patterns = _patterns(items, dict(derived))
    return LabReport(
        results=tuple(items),
        derived=tuple(derived),
        patterns=tuple(patterns),
        warnings=tuple(warnings),
        locale=locale,
    )
