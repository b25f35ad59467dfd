"""The record summary: minimum-necessary clinical facts, nothing that identifies the patient."""

from __future__ import annotations

import json
from typing import Any

import carebundle
import pytest

from healtrace.records._fhir_resources import prepare_bundle
from healtrace.records.summary import RecordSummary, summarize

LOINC = "http://loinc.org"
LAB = [
    {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "laboratory",
            }
        ]
    }
]
PID = "pat-7f3a"
FAMILY, GIVEN = "Quennell", "Ottoline"
BIRTH = "1961-09-23"
MRN = "MRN-5550142"
STREET, CITY, POSTCODE = "17 Larkspur Mews", "Wexbridge", "WX4 9QT"


def status(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": f"http://terminology.hl7.org/CodeSystem/{system}", "code": code}]}


def lab(oid: str, loinc: str, name: str, value: Any, when: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": LAB,
        "code": {"coding": [{"system": LOINC, "code": loinc, "display": name}]},
        "subject": {"reference": f"Patient/{PID}", "display": f"{GIVEN} {FAMILY}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": "%"},
        **extra,
    }


def record() -> list[dict[str, Any]]:
    """One patient with identifiers everywhere a real record has them."""
    patient = {
        "resourceType": "Patient",
        "id": PID,
        "text": {"status": "generated", "div": f"<div>{GIVEN} {FAMILY}, born {BIRTH}</div>"},
        "identifier": [
            {"type": {"coding": [{"code": "MR"}]}, "system": "urn:hospital:mrn", "value": MRN}
        ],
        "name": [{"family": FAMILY, "given": [GIVEN]}],
        "birthDate": BIRTH,
        "address": [{"line": [STREET], "city": CITY, "postalCode": POSTCODE}],
        "telecom": [{"system": "phone", "value": "+44 7700 900123"}],
    }
    subject = {"reference": f"Patient/{PID}"}
    return [
        patient,
        lab(
            "a1c-1",
            "4548-4",
            "Hemoglobin A1c",
            8.6,
            "2024-01-05",
            interpretation=[{"coding": [{"code": "H"}]}],
        ),
        lab("a1c-2", "4548-4", "Hemoglobin A1c", 8.1, "2024-07-05"),
        lab(
            "a1c-3",
            "4548-4",
            "Hemoglobin A1c",
            7.4,
            "2025-01-05",
            interpretation=[{"coding": [{"code": "H"}]}],
        ),
        lab(
            "a1c-4",
            "4548-4",
            "Hemoglobin A1c",
            6.9,
            "2025-07-05",
            note=[{"text": f"Called {GIVEN} {FAMILY} at home ({STREET}) about this result"}],
        ),
        lab(
            "k-1",
            "2823-3",
            "Potassium",
            5.9,
            "2025-06-01",
            interpretation=[{"coding": [{"code": "HH"}]}],
        )
        | {"valueQuantity": {"value": 5.9, "unit": "mmol/L"}},
        lab("void", "2823-3", "Potassium", 9.9, "2025-06-02") | {"status": "entered-in-error"},
        {
            "resourceType": "Observation",
            "id": "hr",
            "status": "final",
            "category": [{"coding": [{"code": "vital-signs"}]}],
            "code": {"text": "Heart rate"},
            "subject": subject,
            "effectiveDateTime": "2025-07-05",
            "valueQuantity": {"value": 71, "unit": "/min"},
        },
        {
            "resourceType": "Condition",
            "id": "dm",
            "clinicalStatus": status("condition-clinical", "active"),
            "code": {"text": "Type 2 diabetes mellitus"},
            "subject": subject,
            "onsetDateTime": "2019-03-02",
            "note": [{"text": f"{FAMILY} family history"}],
        },
        {
            "resourceType": "Condition",
            "id": "old",
            "clinicalStatus": status("condition-clinical", "resolved"),
            "code": {"text": "Community-acquired pneumonia"},
            "subject": subject,
        },
        {
            "resourceType": "Condition",
            "id": "wrong",
            "clinicalStatus": status("condition-clinical", "active"),
            "verificationStatus": status("condition-ver-status", "entered-in-error"),
            "code": {"text": "Epilepsy"},
            "subject": subject,
        },
        {
            "resourceType": "MedicationRequest",
            "id": "metformin",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": {"text": "Metformin 500 mg tablet"},
            "subject": subject,
            "dosageInstruction": [{"text": "1 tablet twice daily with meals"}],
        },
        {
            "resourceType": "MedicationRequest",
            "id": "stopped",
            "status": "stopped",
            "intent": "order",
            "medicationCodeableConcept": {"text": "Glibenclamide 5 mg"},
            "subject": subject,
        },
        {"resourceType": "Medication", "id": "med-atorva", "code": {"text": "Atorvastatin 20 mg"}},
        {
            "resourceType": "MedicationStatement",
            "id": "statin",
            "status": "active",
            "medicationReference": {"reference": "Medication/med-atorva"},
            "subject": subject,
            "dosage": [{"doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}]}],
        },
        {
            "resourceType": "AllergyIntolerance",
            "id": "pen",
            "clinicalStatus": status("allergyintolerance-clinical", "active"),
            "criticality": "high",
            "code": {"text": "Penicillin"},
            "patient": subject,
            "reaction": [
                {
                    "manifestation": [{"text": "Hives"}, {"text": "Wheezing"}],
                    "description": f"{GIVEN} reacted badly at {CITY} clinic",
                }
            ],
        },
    ]


IDENTIFYING = [FAMILY, GIVEN, BIRTH, MRN, STREET, CITY, POSTCODE, "7700 900123", PID]


def assert_no_identifiers(summary: RecordSummary) -> None:
    dumped = summary.model_dump_json()
    for value in IDENTIFYING:
        assert value not in dumped, value
        assert value not in summary.text, value


@pytest.mark.parametrize("locale", ["en", "zh-CN"])
def test_no_identifier_reaches_the_summary(locale: str) -> None:
    summary = summarize(record(), locale)
    assert_no_identifiers(summary)
    assert "Patient/" not in json.dumps(summary.resource_ids)
    assert "1961" not in summary.model_dump_json()


def test_minimum_necessary_fields() -> None:
    summary = summarize(record(), "en", labs_per_code=3)
    assert [(lab.name, lab.value, lab.flag, lab.date) for lab in summary.labs] == [
        ("Hemoglobin A1c", "6.9", "", "2025-07-05"),
        ("Hemoglobin A1c", "7.4", "H", "2025-01-05"),
        ("Hemoglobin A1c", "8.1", "", "2024-07-05"),
        ("Potassium", "5.9", "HH", "2025-06-01"),
    ]
    assert summary.labs[3].unit == "mmol/L" and summary.labs[0].loinc == "4548-4"
    assert [(c.name, c.onset) for c in summary.conditions] == [
        ("Type 2 diabetes mellitus", "2019-03-02")
    ]
    assert [(m.name, m.dose) for m in summary.medications] == [
        ("Metformin 500 mg tablet", "1 tablet twice daily with meals"),
        ("Atorvastatin 20 mg", "1 tablet"),
    ]
    assert [(a.substance, a.criticality, a.reactions) for a in summary.allergies] == [
        ("Penicillin", "high", ["Hives", "Wheezing"])
    ]
    assert summary.resource_ids == [
        "Observation/a1c-4",
        "Observation/a1c-3",
        "Observation/a1c-2",
        "Observation/k-1",
        "Condition/dm",
        "MedicationRequest/metformin",
        "Medication/med-atorva",
        "MedicationStatement/statin",
        "AllergyIntolerance/pen",
    ]
    assert summarize(record(), "en", labs_per_code=1).resource_ids[:2] == [
        "Observation/a1c-4",
        "Observation/k-1",
    ]


def test_english_and_chinese_text() -> None:
    en = summarize(record(), "en").text
    assert en.startswith("Recent lab results: Hemoglobin A1c 6.9 % (2025-07-05); ")
    assert "Potassium 5.9 mmol/L (critically high, 2025-06-01)" in en
    assert "Active conditions: Type 2 diabetes mellitus (since 2019-03-02)." in en
    assert "Current medications: Metformin 500 mg tablet (1 tablet twice daily with meals)" in en
    assert en.endswith("Allergies: Penicillin (criticality high, Hives, Wheezing).")
    assert "\n" not in en

    zh = summarize(record(), "zh-CN").text
    assert zh.startswith("近期化验：Hemoglobin A1c 6.9 %（2025-07-05）；")
    assert "Potassium 5.9 mmol/L（危急偏高，2025-06-01）" in zh
    assert "当前疾病：Type 2 diabetes mellitus（2019-03-02 起）。" in zh
    assert "在用药物：Metformin 500 mg tablet（1 tablet twice daily with meals）" in zh
    assert zh.endswith("过敏：Penicillin（严重程度高，Hives，Wheezing）。")


def test_an_empty_record_says_so() -> None:
    assert summarize([], "en").text == (
        "No lab results on record. No active conditions on record. "
        "No current medications on record. No allergies on record."
    )
    assert (
        summarize([], "zh").text == "无化验结果记录。无当前疾病记录。无在用药物记录。无过敏记录。"
    )
    assert summarize([], "en").resource_ids == []


def test_a_carebundle_patient_summarises_without_identifiers() -> None:
    bundle = json.loads(carebundle.to_json(carebundle.generate_bundle(seed=11)))
    prepared, errors = prepare_bundle(bundle)
    assert errors == []
    resources = [item.resource for _, item in prepared]
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    summary = summarize(resources, "en")
    assert summary.labs and summary.conditions and summary.medications
    dumped = summary.model_dump_json()
    for value in [
        patient["name"][0]["family"],
        *patient["name"][0]["given"],
        patient["birthDate"],
        patient["id"],
        *(i["value"] for i in patient.get("identifier", [])),
    ]:
        assert value not in dumped, value
    assert "SYNTHETIC TEST DATA" not in dumped  # narratives are never copied
