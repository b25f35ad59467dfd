"""What the lab parsers produce and the interpreter consumes.

Parsers (free text, OCR'd report rows, FHIR ``Observation``) only read: they turn what the
source says into :class:`RawResult` rows without judging them. The interpreter looks each
name up in the catalogue, converts units, flags values and reports every ambiguity as a
warning instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RawResult:
    """One result as the source wrote it."""

    #: The analyte's name as written ("血红蛋白 HGB", "Glucose, fasting", "K+").
    name: str
    value: float
    #: The unit as written ("g/L", "mg/dL", "×10^9/L"); "" when the source gave none.
    unit: str = ""
    #: The report's own reference range, when it printed one.
    ref_low: float | None = None
    ref_high: float | None = None
    #: The report's own flag as written ("↑", "H", "偏高", "L", "*"), "" when none.
    flag: str = ""
    #: Comparator written before the value ("<", ">", "≤", "≥"), "" when exact.
    comparator: str = ""
    #: Where it came from: "text", "ocr", "fhir".
    source: str = "text"
    #: 1-based line (text, OCR) or entry index (FHIR), for warnings.
    line: int = 0
    #: LOINC code when the source carried one (FHIR).
    loinc: str = ""
    #: A grade instead of a number ("negative", "trace", "1+" … "4+", "positive"); then
    #: ``value`` holds its ordinal (0, 0.5, 1 … 4) and ``unit`` is "".
    qualitative: str = ""
    #: Reference ranges the report printed per sex ("男 130-175 女 115-150"), as
    #: ``(sex, low, high)`` with sex "M"/"F"; ``ref_low``/``ref_high`` stay ``None`` then.
    ref_by_sex: tuple[tuple[str, float | None, float | None], ...] = ()


@dataclass(frozen=True, slots=True)
class ParseWarning:
    """A line that looked like a result but could not be read whole."""

    line: int
    code: str
    detail: str
