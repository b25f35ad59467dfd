"""FHIR R4 Observations (validated with fhir.resources) become lab rows."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from healtrace.labs.parse_fhir import parse_fhir


def observation(loinc: str, text: str, value: float, unit: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}], "text": text},
        "valueQuantity": {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
        **extra,
    }


POTASSIUM = observation(
    "2823-3",
    "Potassium",
    6.8,
    "mmol/L",
    referenceRange=[{"low": {"value": 3.5}, "high": {"value": 5.3}}],
    interpretation=[{"coding": [{"code": "HH"}]}],
)


def test_a_single_observation() -> None:
    rows, warnings = parse_fhir(POTASSIUM)
    assert warnings == []
    (row,) = rows
    assert (row.name, row.loinc, row.value, row.unit) == ("Potassium", "2823-3", 6.8, "mmol/L")
    assert (row.ref_low, row.ref_high, row.flag, row.source) == (3.5, 5.3, "HH", "fhir")


def test_a_bundle_with_components_comparators_and_other_resources() -> None:
    pressure = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "Blood pressure"},
        "component": [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "valueQuantity": {"value": 150, "code": "mm[Hg]"},
            },
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                "valueQuantity": {"value": 95, "code": "mm[Hg]"},
            },
        ],
    }
    tsh = observation("3016-3", "TSH", 0.01, "m[IU]/L")
    tsh["valueQuantity"]["comparator"] = "<"
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "p1"}},
            {"resource": POTASSIUM},
            {"resource": pressure},
            {"resource": tsh},
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "Smoking"},
                    "valueString": "never",
                }
            },
        ],
    }
    rows, warnings = parse_fhir(json.dumps(bundle))
    assert [r.loinc for r in rows] == ["2823-3", "8480-6", "8462-4", "3016-3"]
    assert rows[-1].comparator == "<" and rows[-1].unit == "m[IU]/L"
    assert [w.code for w in warnings] == ["no_quantity"]


def test_malformed_input_is_reported_not_half_read() -> None:
    assert parse_fhir("{not json")[1][0].code == "invalid_json"
    bad = dict(POTASSIUM, valueQuantity={"value": "six point eight", "code": "mmol/L"})
    rows, warnings = parse_fhir(bad)
    assert rows == [] and warnings[0].code == "invalid_fhir"
    rows, warnings = parse_fhir({"resourceType": "Medication"})
    assert rows == [] and warnings[0].code == "not_an_observation"
    rows, warnings = parse_fhir([1, "x", None])
    assert rows == [] and len(warnings) == 3


@settings(max_examples=60, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.sampled_from(["resourceType", "entry", "code", "x"]), inner)
        ),
        max_leaves=20,
    )
)
def test_arbitrary_json_never_raises(data: Any) -> None:
    parse_fhir(data)
