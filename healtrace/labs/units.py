"""Laboratory units through a real unit registry (pint), never string arithmetic.

One module-level :data:`ureg` is built on import with the units a medical laboratory report
uses: molar and mass concentrations, enzyme and international units, cell counts
(``×10^9/L``, ``K/µL``), per-high-power-field counts, ``mEq/L`` (its own dimension, bridged
to moles by the ion's valence), ``[pH]`` and UCUM codes such as ``10*9/L`` or ``{INR}``.

:func:`parse_unit` reads the spellings found on real reports (``mmol/l``, ``umol/L``,
``μmol/L``, ``×10⁹/L``, ``x10^9/L``, ``个/μL`` …) and returns ``None`` for anything it does
not know. :func:`convert` converts a value; mass and amount of substance are bridged by a
molar mass, and equivalents and moles by a valence, by checking dimensions explicitly.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from itertools import product
from typing import Any

import pint

__all__ = ["UnitError", "convert", "parse_unit", "ureg"]


class UnitError(ValueError):
    """A unit is unknown, or two units cannot be converted into each other."""


ureg: pint.UnitRegistry[Any] = pint.UnitRegistry(autoconvert_offset_to_baseunit=True)
# Enzyme activity: 1 IU (international unit of enzyme activity) = 1 U = 1 µmol/min. pint
# already defines ``U`` as ``enzyme_unit``. Hormone and immunoassay units (mIU/L for TSH,
# U/mL for CA-125) are arbitrary but convert among their own prefixes the same way.
ureg.define("international_unit = enzyme_unit = IU")
# Equivalents have their own dimension; :func:`convert` bridges them to moles by valence.
ureg.define("equivalent = [equivalent] = Eq = eq")
ureg.define("high_power_field = [microscope_field] = HPF = hpf")
ureg.define("pH_unit = [acidity] = pH")
ureg.define("ratio = [] = INR")
ureg.define("cells = count")
#: Powers of ten written in counts (``10^9/L``, ``×10^12/L``, ``10^3/µL``).
_POWERS = (3, 6, 9, 12)
for _p in _POWERS:
    ureg.define(f"ten_to_{_p} = 1e{_p}")

_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")

#: Spellings (after :func:`_clean`) that map straight to a pint expression.
_ALIASES: dict[str, str] = {
    "%": "percent",
    "1": "dimensionless",
    "ratio": "ratio",
    "{ratio}": "ratio",
    "{inr}": "ratio",
    "inr": "ratio",
    "[ph]": "pH_unit",
    "ph": "pH_unit",
    "{sg}": "dimensionless",
    "[iu]/l": "IU/L",
    "l/l": "L/L",
    "mm/h": "mm/hour",
    "mm/hr": "mm/hour",
    "mm/1h": "mm/hour",
    "s": "second",
    "sec": "second",
    "seconds": "second",
    "秒": "second",
    "fl": "fL",
    "pg": "pg",
    "k/ul": "ten_to_3/uL",
    "k/mm3": "ten_to_3/mm**3",
    "/mm3": "1/mm**3",
    "/hpf": "1/HPF",
    "/[hpf]": "1/HPF",
    "个/hpf": "1/HPF",
    "/ul": "1/uL",
    "个/ul": "1/uL",
    "cells/ul": "1/uL",
    "/l": "1/L",
    "meq/l": "mEq/L",
    "mosm/kg": "mmol/kg",
}

#: Lower-case spellings of units whose case matters in pint (litre, units, IU, equivalents).
_CASE_FIXES: tuple[tuple[str, str], ...] = (
    ("miu", "mIU"),
    ("uiu", "uIU"),
    ("kiu", "kIU"),
    ("iu", "IU"),
    ("meq", "mEq"),
    ("eq", "Eq"),
    ("ku", "kU"),
    ("mu", "mU"),
)

_POWER_OF_TEN = re.compile(r"^(?:[x×*]\s*)?10\s*(?:\^|\*\*|\*|e)\s*(-?\d+)\s*(/.*)$")
_TOKEN = re.compile(r"[A-Za-z]+")


def _clean(text: str) -> str:
    s = re.sub(r"[⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+", lambda m: "^" + m.group(0).translate(_SUPERSCRIPTS), text)
    s = unicodedata.normalize("NFKC", s)
    s = s.replace("μ", "u").replace("µ", "u").replace("×", "x")
    s = re.sub(r"\s+", "", s)
    return s


def _fix_case(expr: str) -> str:
    """Restore pint's case for litre and the unit symbols a report may write in any case."""

    def fix(m: re.Match[str]) -> str:
        tok = m.group(0)
        low = tok.lower()
        if low in {"l", "ml", "ul", "dl", "nl", "pl", "fl"}:
            return low[:-1] + "L"
        for src, dst in _CASE_FIXES:
            if low == src:
                return dst
        if low in {"u"}:
            return "U"
        if low == "hpf":
            return "HPF"
        return tok

    return _TOKEN.sub(fix, expr)


@lru_cache(maxsize=512)
def _parse(text: str) -> pint.Unit | None:
    s = _clean(text)
    if not s:
        return None
    low = s.lower()
    if low in _ALIASES:
        expr = _ALIASES[low]
    else:
        m = _POWER_OF_TEN.match(low)
        if m:
            power = int(m.group(1))
            if power not in _POWERS:
                return None
            expr = f"ten_to_{power}" + _fix_case(m.group(2))
        else:
            if not re.fullmatch(r"[A-Za-z0-9/.*^()\[\]]+", s):
                return None
            if s.isupper():  # "MG/DL", "MMOL/L": no lab unit uses mega, so read as lower case
                s = s.lower()
            expr = _fix_case(s.replace("[iu]", "IU").replace("[IU]", "IU"))
    q = _expression(expr)
    if isinstance(q, pint.Quantity) and float(q.magnitude) == 1:
        return ureg.Unit(q.units)
    if isinstance(q, (int, float)) and q == 1:
        return ureg.dimensionless
    return None


def _expression(expr: str) -> Any:
    try:
        return ureg.parse_expression(expr)
    except Exception:  # noqa: BLE001 - pint raises many types on junk; junk means "unknown"
        return None


def parse_unit(text: str | None) -> pint.Unit | None:
    """The pint unit for a report's unit text, or ``None`` if it is unknown or junk."""
    if not isinstance(text, str) or len(text) > 40:
        return None
    return _parse(text)


def _as_unit(unit: str | pint.Unit) -> pint.Unit:
    if isinstance(unit, pint.Unit):
        return unit
    parsed = parse_unit(unit)
    if parsed is None:
        raise UnitError(f"unknown unit: {unit!r}")
    return parsed


def convert(
    value: float,
    from_unit: str | pint.Unit,
    to_unit: str | pint.Unit,
    *,
    molar_mass: float | None = None,
    valence: int = 1,
) -> float:
    """Convert ``value`` from one unit to another.

    ``molar_mass`` (g/mol) bridges mass and amount of substance (mg/dL ↔ mmol/L);
    ``valence`` bridges equivalents and moles (mEq/L = mmol/L × valence). Raises
    :class:`UnitError` for unknown or incompatible units.
    """
    src = _as_unit(from_unit)
    dst = _as_unit(to_unit)
    if valence <= 0:
        raise UnitError(f"valence must be positive, not {valence}")
    q: Any = ureg.Quantity(float(value), src)
    bridges: list[Any] = [1]
    if molar_mass is not None:
        if molar_mass <= 0:
            raise UnitError(f"molar mass must be positive, not {molar_mass}")
        mm = ureg.Quantity(molar_mass, "g/mol")
        bridges = [1, mm, 1 / mm]
    eq = ureg.Quantity(valence, "Eq/mol")
    target = dst.dimensionality
    for a, b in product(bridges, (1, eq, 1 / eq)):
        candidate = q * a * b
        if candidate.dimensionality == target:
            return float(candidate.to(dst).magnitude)
    hint = "" if molar_mass is not None else " (a molar mass may be needed)"
    raise UnitError(f"cannot convert {src} to {dst}{hint}")
