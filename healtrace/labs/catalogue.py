"""The laboratory analyte catalogue: names, LOINC codes, units, reference and critical limits.

:func:`load_catalogue` reads ``data/analytes.yaml`` once, validates it (every unit parses,
every accepted unit converts to the canonical one, ranges are ordered, names and aliases are
unambiguous) and returns a :class:`Catalogue`. :meth:`Catalogue.find` looks an analyte up by
key, English or Chinese name, alias or LOINC code, ignoring case, full-width forms, spaces
and hyphens.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal

import pint
import yaml

from healtrace.labs.qualitative import GRADES
from healtrace.labs.units import UnitError, convert, parse_unit

__all__ = [
    "AcceptedUnit",
    "Analyte",
    "Catalogue",
    "CatalogueError",
    "CriticalLimits",
    "RefRange",
    "load_catalogue",
    "normalise_name",
    "normalise_sex",
]

Sex = Literal["M", "F"]


class CatalogueError(ValueError):
    """``analytes.yaml`` is malformed; the message names the analyte and the field."""


@dataclass(frozen=True)
class RefRange:
    """An adult reference interval; ``None`` for ``low`` or ``high`` means one-sided."""

    low: float | None
    high: float | None
    sex: Sex | None = None
    age_min: float | None = None
    age_max: float | None = None
    note: str | None = None

    def applies(self, sex: str | None, age: float | None) -> bool:
        if self.sex is not None and sex is not None and self.sex != sex:
            return False
        if age is not None:
            if self.age_min is not None and age < self.age_min:
                return False
            if self.age_max is not None and age >= self.age_max:
                return False
        return True

    def contains(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)


@dataclass(frozen=True)
class CriticalLimits:
    """Emergency limits (``low``/``high``) and urgent limits, in the canonical unit.

    The numbers match the critical-value table in ``healtrace.safety._measures``.
    """

    low: float | None = None
    high: float | None = None
    urgent_low: float | None = None
    urgent_high: float | None = None


@dataclass(frozen=True)
class AcceptedUnit:
    """A unit a result may arrive in, and how it reaches the canonical unit.

    Without ``scale``, conversion goes through :func:`healtrace.labs.units.convert` (with
    ``molar_mass`` overriding the analyte's). With ``scale``, it is the linear formula
    ``canonical = value × scale + offset`` (HbA1c mmol/mol → %).
    """

    text: str
    unit: pint.Unit
    molar_mass: float | None = None
    scale: float | None = None
    offset: float = 0.0
    note: str | None = None


@dataclass(frozen=True)
class Analyte:
    key: str
    loinc: str
    name_en: str
    name_zh: str
    panel: str
    unit_text: str
    unit: pint.Unit
    source: str
    aliases: tuple[str, ...] = ()
    loinc_note: str | None = None
    molar_mass: float | None = None
    valence: int = 1
    units: tuple[AcceptedUnit, ...] = ()
    ranges: tuple[RefRange, ...] = ()
    critical: CriticalLimits | None = None
    #: For analytes a strip or presence test reports as a grade ("阴性", "2+"): the highest
    #: grade ordinal that is normal (0 negative, 0.5 trace); ``None`` when only numbers count.
    qualitative_normal: float | None = None

    def _formula(self, unit: pint.Unit) -> AcceptedUnit | None:
        for accepted in self.units:
            if accepted.scale is not None and accepted.unit == unit:
                return accepted
        return None

    def _molar_mass(self, unit: pint.Unit) -> float | None:
        for accepted in self.units:
            if accepted.unit == unit and accepted.molar_mass is not None:
                return accepted.molar_mass
        return self.molar_mass

    def _unit(self, unit: str | pint.Unit) -> pint.Unit:
        if isinstance(unit, pint.Unit):
            return unit
        parsed = parse_unit(unit)
        if parsed is None:
            raise UnitError(f"unknown unit for {self.key}: {unit!r}")
        return parsed

    def to_canonical(self, value: float, unit: str | pint.Unit) -> float:
        """``value`` in ``unit`` expressed in this analyte's canonical unit."""
        u = self._unit(unit)
        formula = self._formula(u)
        if formula is not None and formula.scale is not None:
            return value * formula.scale + formula.offset
        return convert(value, u, self.unit, molar_mass=self._molar_mass(u), valence=self.valence)

    def from_canonical(self, value: float, unit: str | pint.Unit) -> float:
        """A canonical ``value`` expressed in ``unit``."""
        u = self._unit(unit)
        formula = self._formula(u)
        if formula is not None and formula.scale is not None:
            return (value - formula.offset) / formula.scale
        return convert(value, self.unit, u, molar_mass=self._molar_mass(u), valence=self.valence)

    def convert(self, value: float, from_unit: str | pint.Unit, to_unit: str | pint.Unit) -> float:
        """``value`` from one unit to another, through the canonical unit."""
        return self.from_canonical(self.to_canonical(value, from_unit), to_unit)

    def reference(self, sex: str | None = None, age: float | None = None) -> RefRange | None:
        """The best reference interval: one matching the sex beats a sex-neutral one.

        With ``sex=None`` a sex-neutral interval is returned if there is one, else ``None``
        when the intervals differ by sex.
        """
        sex_norm = normalise_sex(sex)
        candidates = [r for r in self.ranges if r.applies(sex_norm, age)]
        if sex_norm is None:
            neutral = [r for r in candidates if r.sex is None]
            if neutral:
                return neutral[0]
            sexes = {r.sex for r in candidates}
            return candidates[0] if len(sexes) == 1 and candidates else None
        specific = [r for r in candidates if r.sex == sex_norm]
        if specific:
            return specific[0]
        return candidates[0] if candidates else None

    @property
    def names(self) -> tuple[str, ...]:
        return (self.key, self.name_en, self.name_zh, *self.aliases)


def normalise_sex(sex: str | None) -> Sex | None:
    """ "M"/"F" from the ways patients and forms write it (m, male, 男, 女性 …), else ``None``."""
    if sex is None:
        return None
    s = sex.strip().lower()
    if s in {"m", "male", "man", "男", "男性"}:
        return "M"
    if s in {"f", "female", "woman", "女", "女性"}:
        return "F"
    return None


_IGNORED = re.compile(r"[\s\-_‐‑–—·]+")


def normalise_name(text: str) -> str:
    """Lookup form of a name: NFKC (full-width → ASCII), case-folded, no spaces or hyphens."""
    s = unicodedata.normalize("NFKC", text).casefold()
    s = s.replace("µ", "μ").replace("₁₂", "12")
    return _IGNORED.sub("", s)


@dataclass(frozen=True)
class Catalogue:
    analytes: tuple[Analyte, ...]
    _index: Mapping[str, Analyte] = field(repr=False, compare=False)

    def find(self, name_or_alias: str) -> Analyte | None:
        """The analyte for a key, name (en/zh), alias or LOINC code, or ``None``."""
        if not isinstance(name_or_alias, str):
            return None
        return self._index.get(normalise_name(name_or_alias))

    def __getitem__(self, key: str) -> Analyte:
        found = self.find(key)
        if found is None:
            raise KeyError(key)
        return found

    def __iter__(self) -> Iterator[Analyte]:
        return iter(self.analytes)

    def __len__(self) -> int:
        return len(self.analytes)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(a.key for a in self.analytes)


# ---------------------------------------------------------------- loading and validation

_LOINC = re.compile(r"^\d{1,7}-\d$")
_TOP_FIELDS = {
    "qualitative_normal",
    "key",
    "loinc",
    "loinc_note",
    "names",
    "aliases",
    "panel",
    "unit",
    "molar_mass_g_per_mol",
    "valence",
    "units",
    "reference",
    "critical",
    "source",
}


def _loinc_check_digit_ok(code: str) -> bool:
    """LOINC's mod-10 check digit (Luhn over the part before the hyphen)."""
    body, check = code.split("-")
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return (10 - total % 10) % 10 == int(check)


def _num(where: str, name: str, value: Any, *, positive: bool = False) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CatalogueError(f"{where}: {name} must be a number, not {value!r}")
    if positive and value <= 0:
        raise CatalogueError(f"{where}: {name} must be positive")
    return float(value)


def _parse_unit(where: str, text: Any) -> pint.Unit:
    if not isinstance(text, str):
        raise CatalogueError(f"{where}: unit must be a string, not {text!r}")
    unit = parse_unit(text)
    if unit is None:
        raise CatalogueError(f"{where}: unit {text!r} does not parse")
    return unit


def _accepted(where: str, raw: Any) -> AcceptedUnit:
    if isinstance(raw, str):
        return AcceptedUnit(text=raw, unit=_parse_unit(where, raw))
    if not isinstance(raw, dict) or "unit" not in raw:
        raise CatalogueError(f"{where}: accepted unit must be a string or mapping with 'unit'")
    unknown = set(raw) - {"unit", "molar_mass_g_per_mol", "scale", "offset", "note"}
    if unknown:
        raise CatalogueError(f"{where}: unknown fields {sorted(unknown)}")
    return AcceptedUnit(
        text=raw["unit"],
        unit=_parse_unit(where, raw["unit"]),
        molar_mass=_num(
            where, "molar_mass_g_per_mol", raw.get("molar_mass_g_per_mol"), positive=True
        ),
        scale=_num(where, "scale", raw.get("scale"), positive=True),
        offset=_num(where, "offset", raw.get("offset")) or 0.0,
        note=raw.get("note"),
    )


def _range(where: str, raw: Any) -> RefRange:
    if not isinstance(raw, dict):
        raise CatalogueError(f"{where}: reference entry must be a mapping")
    unknown = set(raw) - {"low", "high", "sex", "age_min", "age_max", "note"}
    if unknown:
        raise CatalogueError(f"{where}: unknown reference fields {sorted(unknown)}")
    low = _num(where, "low", raw.get("low"))
    high = _num(where, "high", raw.get("high"))
    if low is None and high is None:
        raise CatalogueError(f"{where}: a reference range needs low or high")
    if low is not None and high is not None and not low < high:
        raise CatalogueError(f"{where}: reference low {low} must be below high {high}")
    sex = raw.get("sex")
    if sex not in (None, "M", "F"):
        raise CatalogueError(f"{where}: sex must be M or F, not {sex!r}")
    age_min = _num(where, "age_min", raw.get("age_min"))
    age_max = _num(where, "age_max", raw.get("age_max"))
    if age_min is not None and age_max is not None and not age_min < age_max:
        raise CatalogueError(f"{where}: age_min must be below age_max")
    return RefRange(low, high, sex, age_min, age_max, raw.get("note"))


def _critical(where: str, raw: Any) -> CriticalLimits | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw:
        raise CatalogueError(f"{where}: critical must be a non-empty mapping")
    unknown = set(raw) - {"low", "high", "urgent_low", "urgent_high"}
    if unknown:
        raise CatalogueError(f"{where}: unknown critical fields {sorted(unknown)}")
    c = CriticalLimits(**{k: _num(where, k, v) for k, v in raw.items()})
    lows = [v for v in (c.low, c.urgent_low) if v is not None]
    highs = [v for v in (c.urgent_high, c.high) if v is not None]
    if c.low is not None and c.urgent_low is not None and c.low > c.urgent_low:
        raise CatalogueError(f"{where}: emergency low must not exceed urgent low")
    if c.high is not None and c.urgent_high is not None and c.high < c.urgent_high:
        raise CatalogueError(f"{where}: emergency high must not be below urgent high")
    if lows and highs and max(lows) >= min(highs):
        raise CatalogueError(f"{where}: critical low limits must be below high limits")
    return c


def _qualitative(where: str, raw: Any) -> float | None:
    if raw is None:
        return None
    if raw not in ("negative", "trace", "normal"):
        raise CatalogueError(f"{where}: qualitative_normal must be negative, trace or normal")
    return GRADES[raw]


def _analyte(i: int, raw: Any) -> Analyte:
    if not isinstance(raw, dict):
        raise CatalogueError(f"analytes[{i}]: must be a mapping")
    where = f"analyte {raw.get('key', i)!r}"
    unknown = set(raw) - _TOP_FIELDS
    if unknown:
        raise CatalogueError(f"{where}: unknown fields {sorted(unknown)}")
    for required in ("key", "loinc", "names", "unit", "source", "panel"):
        if not raw.get(required):
            raise CatalogueError(f"{where}: missing {required}")
    key = raw["key"]
    if not isinstance(key, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", key):
        raise CatalogueError(f"{where}: key must be snake_case")
    loinc = str(raw["loinc"])
    if not _LOINC.match(loinc) or not _loinc_check_digit_ok(loinc):
        raise CatalogueError(f"{where}: {loinc!r} is not a valid LOINC code (check digit)")
    names = raw["names"]
    if not isinstance(names, dict) or not names.get("en") or not names.get("zh"):
        raise CatalogueError(f"{where}: names needs en and zh")
    aliases = raw.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
        raise CatalogueError(f"{where}: aliases must be a list of strings")
    unit = _parse_unit(where, raw["unit"])
    molar_mass = _num(where, "molar_mass_g_per_mol", raw.get("molar_mass_g_per_mol"), positive=True)
    valence = raw.get("valence", 1)
    if not isinstance(valence, int) or isinstance(valence, bool) or valence < 1:
        raise CatalogueError(f"{where}: valence must be a positive integer")
    ranges = tuple(_range(where, r) for r in raw.get("reference") or [])
    analyte = Analyte(
        key=key,
        loinc=loinc,
        name_en=names["en"],
        name_zh=names["zh"],
        panel=raw["panel"],
        unit_text=raw["unit"],
        unit=unit,
        source=str(raw["source"]),
        aliases=tuple(aliases),
        loinc_note=raw.get("loinc_note"),
        molar_mass=molar_mass,
        valence=valence,
        units=tuple(_accepted(where, u) for u in raw.get("units") or []),
        ranges=ranges,
        critical=_critical(where, raw.get("critical")),
        qualitative_normal=_qualitative(where, raw.get("qualitative_normal")),
    )
    for accepted in analyte.units:
        try:
            there = analyte.from_canonical(1.0, accepted.unit)
            back = analyte.to_canonical(there, accepted.unit)
        except UnitError as exc:
            raise CatalogueError(f"{where}: unit {accepted.text!r}: {exc}") from exc
        if not math.isclose(back, 1.0, rel_tol=1e-9):
            raise CatalogueError(f"{where}: unit {accepted.text!r} does not round-trip")
    return analyte


def build_catalogue(data: Any) -> Catalogue:
    """Validate parsed YAML (``{"analytes": [...]}``) into a :class:`Catalogue`."""
    if not isinstance(data, dict) or not isinstance(data.get("analytes"), list):
        raise CatalogueError("analytes.yaml must be a mapping with an 'analytes' list")
    analytes = tuple(_analyte(i, raw) for i, raw in enumerate(data["analytes"]))
    index: dict[str, Analyte] = {}
    for analyte in analytes:
        for name in (*analyte.names, analyte.loinc):
            norm = normalise_name(name)
            other = index.get(norm)
            if other is not None and other.key != analyte.key:
                raise CatalogueError(
                    f"name {name!r} is ambiguous: {other.key!r} and {analyte.key!r}"
                )
            index[norm] = analyte
    return Catalogue(analytes, index)


@cache
def load_catalogue() -> Catalogue:
    """The bundled catalogue, validated once and cached."""
    text = resources.files("healtrace.labs").joinpath("data/analytes.yaml").read_text("utf-8")
    return build_catalogue(yaml.safe_load(text))
