"""Lab results from FHIR R4 ``Observation`` resources (alone, in a list, or in a ``Bundle``).

Each resource is validated with the ``fhir.resources`` R4B models first, so a malformed
resource is reported (``invalid_fhir``) rather than half-read. Read: the LOINC code
(``code.coding`` with system ``http://loinc.org``), the name (``code.text``, else the
coding's display), ``valueQuantity`` (value, comparator, unit — the UCUM ``code`` preferred
over the human ``unit``), the first ``referenceRange`` (low/high), and the interpretation
code (``H``, ``HH``, ``L``, ``LL``, ``A`` …) as the report's own flag. Observations with
``component``s (blood pressure, panels) contribute one row per component with a quantity;
observations without a quantity (strings, codeable concepts) are skipped with a warning.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from healtrace.labs.qualitative import GRADES, Grade, grade_from_label
from healtrace.labs.types import ParseWarning, RawResult

LOINC = "http://loinc.org"
#: Bundles larger than this many entries are cut (and say so).
MAX_ENTRIES = 2000


def _resources(data: Any) -> Iterator[tuple[int, Any]]:
    if isinstance(data, list):
        for i, item in enumerate(data[:MAX_ENTRIES], start=1):
            yield i, item
    elif isinstance(data, dict) and data.get("resourceType") == "Bundle":
        entries = data.get("entry") or []
        if isinstance(entries, list):
            for i, entry in enumerate(entries[:MAX_ENTRIES], start=1):
                yield i, entry.get("resource") if isinstance(entry, dict) else None
    else:
        yield 1, data


def _name_and_loinc(code: Any) -> tuple[str, str]:
    loinc = ""
    display = ""
    for coding in (code.coding or []) if code is not None else []:
        if coding.system == LOINC and coding.code and not loinc:
            loinc = coding.code
        if coding.display and not display:
            display = coding.display
    text = (code.text if code is not None else None) or display or loinc
    return text or "", loinc


def _row(
    code: Any,
    quantity: Any,
    ranges: Any,
    interpretation: Any,
    index: int,
) -> RawResult:
    name, loinc = _name_and_loinc(code)
    low = high = None
    if ranges:
        first = ranges[0]
        low = float(first.low.value) if first.low is not None and first.low.value else None
        high = float(first.high.value) if first.high is not None and first.high.value else None
    flag = ""
    for concept in interpretation or []:
        for coding in concept.coding or []:
            if coding.code:
                flag = coding.code
                break
        if flag:
            break
    return RawResult(
        name=name,
        value=float(quantity.value),
        unit=quantity.code or quantity.unit or "",
        ref_low=low,
        ref_high=high,
        flag=flag,
        comparator=quantity.comparator or "",
        source="fhir",
        line=index,
        loinc=loinc,
    )


#: SNOMED CT and HL7 v3 interpretation codes for presence results.
_GRADE_CODES = {
    "260385009": "negative",
    "neg": "negative",
    "10828004": "positive",
    "pos": "positive",
    "260405006": "trace",
    "det": "positive",
    "nd": "negative",
}


def _qualitative_row(code: Any, value: Any, index: int) -> RawResult | None:
    """A grade from ``valueString`` or ``valueCodeableConcept`` ("Negative", "2+")."""
    grade: Grade | None = None
    if isinstance(value, str):
        grade = grade_from_label(value)
    else:
        texts = [value.text] + [c.display for c in value.coding or []]
        for t in texts:
            if t and (grade := grade_from_label(t)) is not None:
                break
        for coding in value.coding or [] if grade is None else []:
            label = _GRADE_CODES.get(str(coding.code or "").lower())
            if label is not None:
                grade = Grade(label, GRADES[label])
                break
    if grade is None:
        return None
    name, loinc = _name_and_loinc(code)
    return RawResult(
        name=name,
        value=grade.ordinal,
        qualitative=grade.label,
        source="fhir",
        line=index,
        loinc=loinc,
    )


def parse_fhir(
    payload: str | bytes | dict[str, Any] | list[Any],
) -> tuple[list[RawResult], list[ParseWarning]]:
    """Rows from an Observation, a list of them, or a Bundle; JSON text or parsed data."""
    from fhir.resources.R4B.observation import Observation

    results: list[RawResult] = []
    warnings: list[ParseWarning] = []
    if isinstance(payload, str | bytes):
        try:
            data: Any = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return [], [ParseWarning(0, "invalid_json", "the FHIR payload is not JSON")]
    else:
        data = payload
    if isinstance(data, dict) and data.get("resourceType") == "Bundle":
        entries = data.get("entry")
        if isinstance(entries, list) and len(entries) > MAX_ENTRIES:
            warnings.append(
                ParseWarning(0, "truncated", f"only the first {MAX_ENTRIES} entries were read")
            )
    for index, resource in _resources(data):
        if not isinstance(resource, dict) or resource.get("resourceType") != "Observation":
            kind = resource.get("resourceType") if isinstance(resource, dict) else None
            if kind not in ("Patient", "DiagnosticReport", "Specimen", "Encounter"):
                warnings.append(
                    ParseWarning(
                        index, "not_an_observation", f"entry is {kind or 'not a resource'}"
                    )
                )
            continue
        try:
            obs = Observation.model_validate(resource)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            warnings.append(ParseWarning(index, "invalid_fhir", f"{where}: {first['msg']}"[:200]))
            continue
        rows = 0
        if obs.valueQuantity is not None and obs.valueQuantity.value is not None:
            results.append(
                _row(obs.code, obs.valueQuantity, obs.referenceRange, obs.interpretation, index)
            )
            rows += 1
        elif (obs.valueString or obs.valueCodeableConcept) is not None:
            row = _qualitative_row(obs.code, obs.valueString or obs.valueCodeableConcept, index)
            if row is not None:
                results.append(row)
                rows += 1
        for component in obs.component or []:
            quantity = component.valueQuantity
            if quantity is not None and quantity.value is not None:
                results.append(
                    _row(
                        component.code,
                        quantity,
                        component.referenceRange,
                        component.interpretation,
                        index,
                    )
                )
                rows += 1
            elif (component.valueString or component.valueCodeableConcept) is not None:
                row = _qualitative_row(
                    component.code,
                    component.valueString or component.valueCodeableConcept,
                    index,
                )
                if row is not None:
                    results.append(row)
                    rows += 1
        if rows == 0:
            warnings.append(ParseWarning(index, "no_quantity", "the observation has no number"))
    return results, warnings
