"""A patient's record, cut to the minimum the model needs: recent labs, active conditions,
active medications and allergies.

Only coded clinical content is read. Names, addresses, identifiers, birth dates, narrative
(``text.div``) and free-text notes are never copied, so nothing in a summary identifies the
patient; the Patient resource itself contributes nothing. ``resource_ids`` lists the
resources whose content the summary carries, for the audit log.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from healtrace.records._fhir_resources import clinical_date, concepts, parse_fhir_datetime, path

LOINC = "http://loinc.org"
#: Most lab rows in one summary, whatever ``labs_per_code`` allows.
MAX_LABS = 40
_MAX_TEXT = 120
_ACTIVE_CONDITION = {"active", "recurrence", "relapse"}
_NOT_TRUE = {"entered-in-error", "refuted"}
_VOID_OBSERVATION = {"entered-in-error", "cancelled"}

_FLAGS: dict[str, tuple[str, str]] = {
    "H": ("high", "偏高"),
    "HH": ("critically high", "危急偏高"),
    "L": ("low", "偏低"),
    "LL": ("critically low", "危急偏低"),
    "A": ("abnormal", "异常"),
    "AA": ("critically abnormal", "危急异常"),
    "N": ("normal", "正常"),
    "POS": ("positive", "阳性"),
    "NEG": ("negative", "阴性"),
}
_CRITICALITY: dict[str, tuple[str, str]] = {
    "high": ("high", "高"),
    "low": ("low", "低"),
    "unable-to-assess": ("unable to assess", "无法评估"),
}


class LabResult(BaseModel):
    """One laboratory result. ``flag`` is the report's interpretation code (H, L, HH …)."""

    name: str
    loinc: str = ""
    value: str
    unit: str = ""
    flag: str = ""
    date: str = ""


class ActiveCondition(BaseModel):
    name: str
    onset: str = ""


class ActiveMedication(BaseModel):
    name: str
    dose: str = ""


class Allergy(BaseModel):
    substance: str
    criticality: str = ""
    reactions: list[str] = []


class RecordSummary(BaseModel):
    """What the model may see of a record, and a one-paragraph rendering in ``locale``."""

    locale: str
    labs: list[LabResult] = []
    conditions: list[ActiveCondition] = []
    medications: list[ActiveMedication] = []
    allergies: list[Allergy] = []
    text: str
    #: ``Type/id`` of every resource whose content is in this summary.
    resource_ids: list[str] = []


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def _concept_name(value: Any) -> str:
    for concept in concepts(value):
        if isinstance(concept.get("text"), str) and concept["text"].strip():
            return _clip(concept["text"])
        for coding in concepts(concept.get("coding")):
            if isinstance(coding.get("display"), str) and coding["display"].strip():
                return _clip(coding["display"])
        for coding in concepts(concept.get("coding")):
            if isinstance(coding.get("code"), str) and coding["code"]:
                return str(coding["code"])
    return ""


def _codes(value: Any) -> set[str]:
    return {
        str(coding.get("code"))
        for concept in concepts(value)
        for coding in concepts(concept.get("coding"))
        if coding.get("code")
    }


def _status(value: Any) -> str:
    found = sorted(_codes(value))
    return found[0] if found else ""


def _loinc(value: Any) -> str:
    for concept in concepts(value):
        for coding in concepts(concept.get("coding")):
            if coding.get("system") == LOINC and isinstance(coding.get("code"), str):
                return str(coding["code"])
    return ""


def _day(value: Any) -> str:
    at = parse_fhir_datetime(value)
    return at.date().isoformat() if at is not None else ""


def _ref(resource: dict[str, Any]) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id')}"


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _lab_rows(obs: dict[str, Any]) -> list[LabResult]:
    day = clinical_date(obs)
    when = day.date().isoformat() if day is not None else ""
    parts = [obs, *concepts(obs.get("component"))] if obs.get("component") else [obs]
    rows: list[LabResult] = []
    for part in parts:
        name = _concept_name(part.get("code"))
        flag = ""
        for concept in concepts(part.get("interpretation")):
            for coding in concepts(concept.get("coding")):
                if isinstance(coding.get("code"), str) and not flag:
                    flag = coding["code"]
        quantity = part.get("valueQuantity")
        if isinstance(quantity, dict) and quantity.get("value") is not None:
            value = str(quantity.get("comparator") or "") + _number(quantity["value"])
            unit = str(quantity.get("unit") or quantity.get("code") or "")
        elif isinstance(part.get("valueString"), str):
            value, unit = _clip(part["valueString"]), ""
        elif part.get("valueCodeableConcept") is not None:
            value, unit = _concept_name(part["valueCodeableConcept"]), ""
        else:
            continue
        if name and value:
            rows.append(
                LabResult(
                    name=name,
                    loinc=_loinc(part.get("code")),
                    value=value,
                    unit=unit,
                    flag=flag,
                    date=when,
                )
            )
    return rows


def _labs(
    observations: Iterable[dict[str, Any]], per_code: int
) -> tuple[list[LabResult], list[str]]:
    groups: dict[str, list[tuple[str, LabResult, str]]] = {}
    for obs in observations:
        for row in _lab_rows(obs):
            key = row.loinc or row.name.casefold()
            groups.setdefault(key, []).append((row.date, row, _ref(obs)))
    chosen: list[tuple[str, LabResult, str]] = []
    # Tests with the newest results first; tests of the same day by name.
    newest_groups = sorted(groups.values(), key=lambda g: g[0][1].name.casefold())
    newest_groups.sort(key=lambda g: max(d for d, _, _ in g), reverse=True)
    for group in newest_groups:
        group.sort(key=lambda item: item[0], reverse=True)
        chosen.extend(group[:per_code])
    chosen = chosen[:MAX_LABS]
    return [row for _, row, _ in chosen], [ref for _, _, ref in chosen]


def _dose(dosages: Any) -> str:
    for dosage in concepts(dosages):
        if isinstance(dosage.get("text"), str) and dosage["text"].strip():
            return _clip(dosage["text"])
        for rate in concepts(dosage.get("doseAndRate")):
            quantity = rate.get("doseQuantity")
            if isinstance(quantity, dict) and quantity.get("value") is not None:
                unit = quantity.get("unit") or quantity.get("code") or ""
                return f"{_number(quantity['value'])} {unit}".strip()
    return ""


def summarize(
    resources: list[dict[str, Any]], locale: str, *, labs_per_code: int = 3
) -> RecordSummary:
    """The minimum-necessary summary of ``resources`` (any mix of types, one patient).

    Labs are laboratory-category Observations, the newest ``labs_per_code`` per test;
    conditions, medication requests/statements and allergies count only while active
    and not entered in error or refuted.
    """
    used: list[str] = []
    medications_by_id = {
        str(r.get("id")): r for r in resources if r.get("resourceType") == "Medication"
    }
    lab_obs = [
        r
        for r in resources
        if r.get("resourceType") == "Observation"
        and "laboratory" in _codes(r.get("category"))
        and r.get("status") not in _VOID_OBSERVATION
    ]
    labs, lab_refs = _labs(lab_obs, labs_per_code)
    used.extend(lab_refs)

    conditions: list[ActiveCondition] = []
    medications: list[ActiveMedication] = []
    allergies: list[Allergy] = []
    for resource in resources:
        kind = resource.get("resourceType")
        if kind == "Condition":
            status = _status(resource.get("clinicalStatus"))
            active = status in _ACTIVE_CONDITION or (
                not status and not any(k.startswith("abatement") for k in resource)
            )
            if not active or _status(resource.get("verificationStatus")) in _NOT_TRUE:
                continue
            name = _concept_name(resource.get("code"))
            if name:
                onset = _day(resource.get("onsetDateTime")) or _day(
                    path(resource, "onsetPeriod.start")
                )
                conditions.append(ActiveCondition(name=name, onset=onset))
                used.append(_ref(resource))
        elif kind in ("MedicationRequest", "MedicationStatement"):
            if resource.get("status") != "active":
                continue
            name = _concept_name(resource.get("medicationCodeableConcept"))
            reference = path(resource, "medicationReference.reference")
            if not name and isinstance(reference, str):
                medication = medications_by_id.get(reference.rsplit("/", 1)[-1])
                if medication is not None:
                    name = _concept_name(medication.get("code"))
                    used.append(_ref(medication))
            if not name:
                display = path(resource, "medicationReference.display")
                name = _clip(display) if isinstance(display, str) else ""
            if name and all(m.name != name for m in medications):
                field = "dosageInstruction" if kind == "MedicationRequest" else "dosage"
                medications.append(ActiveMedication(name=name, dose=_dose(resource.get(field))))
                used.append(_ref(resource))
        elif kind == "AllergyIntolerance":
            status = _status(resource.get("clinicalStatus"))
            if status not in ("", "active"):
                continue
            if _status(resource.get("verificationStatus")) in _NOT_TRUE:
                continue
            reactions = concepts(resource.get("reaction"))
            substance = _concept_name(resource.get("code")) or next(
                (n for n in (_concept_name(r.get("substance")) for r in reactions) if n), ""
            )
            if not substance:
                continue
            manifestations: list[str] = []
            for reaction in reactions:
                for manifestation in concepts(reaction.get("manifestation")):
                    name = _concept_name(manifestation)
                    if name and name not in manifestations:
                        manifestations.append(name)
            criticality = resource.get("criticality")
            allergies.append(
                Allergy(
                    substance=substance,
                    criticality=criticality if isinstance(criticality, str) else "",
                    reactions=manifestations,
                )
            )
            used.append(_ref(resource))

    summary = RecordSummary(
        locale=locale,
        labs=labs,
        conditions=conditions,
        medications=medications,
        allergies=allergies,
        text="",
        resource_ids=list(dict.fromkeys(used)),
    )
    summary.text = render(summary, locale)
    return summary


def render(summary: RecordSummary, locale: str) -> str:
    """The summary as one paragraph, in Chinese for ``zh*`` locales and English otherwise."""
    zh = locale.lower().startswith("zh")

    def word(table: dict[str, tuple[str, str]], key: str) -> str:
        pair = table.get(key) or table.get(key.upper())
        return (pair[1] if zh else pair[0]) if pair else key

    sep = "；" if zh else "; "
    sentences: list[str] = []
    if summary.labs:
        items = []
        for lab in summary.labs:
            notes = [n for n in (word(_FLAGS, lab.flag) if lab.flag else "", lab.date) if n]
            value = f"{lab.value} {lab.unit}".strip()
            note = ("（" + "，".join(notes) + "）") if zh else (f" ({', '.join(notes)})")
            items.append(f"{lab.name} {value}{note if notes else ''}")
        sentences.append(("近期化验：" if zh else "Recent lab results: ") + sep.join(items))
    else:
        sentences.append("无化验结果记录" if zh else "No lab results on record")
    if summary.conditions:
        items = []
        for c in summary.conditions:
            since = (f"（{c.onset} 起）" if zh else f" (since {c.onset})") if c.onset else ""
            items.append(c.name + since)
        sentences.append(("当前疾病：" if zh else "Active conditions: ") + sep.join(items))
    else:
        sentences.append("无当前疾病记录" if zh else "No active conditions on record")
    if summary.medications:
        items = [
            m.name + ((f"（{m.dose}）" if zh else f" ({m.dose})") if m.dose else "")
            for m in summary.medications
        ]
        sentences.append(("在用药物：" if zh else "Current medications: ") + sep.join(items))
    else:
        sentences.append("无在用药物记录" if zh else "No current medications on record")
    if summary.allergies:
        items = []
        for a in summary.allergies:
            notes = []
            if a.criticality:
                label = word(_CRITICALITY, a.criticality)
                notes.append(f"严重程度{label}" if zh else f"criticality {label}")
            notes.extend(a.reactions)
            if notes:
                items.append(
                    a.substance
                    + ("（" + "，".join(notes) + "）" if zh else f" ({', '.join(notes)})")
                )
            else:
                items.append(a.substance)
        sentences.append(("过敏：" if zh else "Allergies: ") + sep.join(items))
    else:
        sentences.append("无过敏记录" if zh else "No allergies on record")
    return ("。".join(sentences) + "。") if zh else (". ".join(sentences) + ".")
