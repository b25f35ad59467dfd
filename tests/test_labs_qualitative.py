"""Dipstick grades and sex-labelled report ranges: read, flagged and never dropped silently."""

from __future__ import annotations

import pytest

from healtrace.labs.interpret import interpret
from healtrace.labs.parse_fhir import parse_fhir
from healtrace.labs.parse_text import parse_lab_text
from healtrace.labs.qualitative import grade_from_label, match_grade
from healtrace.labs.service import interpret_input

URINALYSIS_ZH = """\
尿常规
项目 代号 结果 参考值
尿蛋白 PRO 阴性(-) 阴性
尿糖 GLU 2+ 阴性
酮体 KET ± 阴性
白细胞 LEU +++ 阴性
亚硝酸盐 NIT 阳性 阴性
潜血 BLD - 阴性
尿胆原 URO 正常 正常
尿比重 SG 1.025 1.003-1.030
"""


@pytest.mark.parametrize(
    ("text", "label", "ordinal"),
    [
        ("阴性", "negative", 0),
        ("阴性(-)", "negative", 0),
        ("negative", "negative", 0),
        ("Neg", "negative", 0),
        ("-", "negative", 0),
        ("(-)", "negative", 0),
        ("±", "trace", 0.5),
        ("+-", "trace", 0.5),
        ("trace", "trace", 0.5),
        ("微量", "trace", 0.5),
        ("弱阳性", "trace", 0.5),
        ("+", "1+", 1),
        ("1+", "1+", 1),
        ("++", "2+", 2),
        ("2+", "2+", 2),
        ("+3", "3+", 3),
        ("++++", "4+", 4),
        ("阳性", "positive", 1),
        ("阳性(++)", "2+", 2),
        ("Positive", "positive", 1),
        ("正常", "normal", 0),
    ],
)
def test_grades_read_to_label_and_ordinal(text: str, label: str, ordinal: float) -> None:
    g = grade_from_label(text)
    assert g is not None, text
    assert (g.label, g.ordinal) == (label, ordinal)


@pytest.mark.parametrize("text", ["5+", "+++++", "-5", "1.5+", "negatively", "posture", "2"])
def test_not_grades(text: str) -> None:
    assert grade_from_label(text) is None


def test_bare_signs_only_when_asked() -> None:
    assert match_grade("- 5.5", 0, signs=False) is None
    assert match_grade("阴性", 0, signs=False) is not None


def test_zh_urinalysis_table_reads_every_row() -> None:
    rows, warnings = parse_lab_text(URINALYSIS_ZH)
    got = {r.name: (r.qualitative, r.value) for r in rows}
    assert got == {
        "尿蛋白 PRO": ("negative", 0),
        "尿糖 GLU": ("2+", 2),
        "酮体 KET": ("trace", 0.5),
        "白细胞 LEU": ("3+", 3),
        "亚硝酸盐 NIT": ("positive", 1),
        "潜血 BLD": ("negative", 0),
        "尿胆原 URO": ("normal", 0),
        "尿比重 SG": ("", 1.025),
    }
    assert warnings == []


def test_urinalysis_flags_and_patterns() -> None:
    report = interpret(parse_lab_text(URINALYSIS_ZH)[0])
    flags = {r.key: r.flag for r in report.results}
    assert flags == {
        "urine_protein": "N",
        "urine_glucose": "H",
        "urine_ketones": "H",
        # "白细胞" alone is the blood count; with a grade it is the strip's esterase pad.
        "urine_leukocyte_esterase": "H",
        "urine_nitrite": "H",
        "urine_blood": "N",
        "urine_urobilinogen": "N",
        "urine_specific_gravity": "N",
    }
    codes = {p.code for p in report.patterns}
    assert {"urinary_infection_pattern", "glucose_and_ketones_in_urine"} <= codes
    assert not report.urgent
    out = report.to_dict()
    glu = next(r for r in out["results"] if r["analyte"] == "urine_glucose")
    assert glu["value"] is None and glu["qualitative"] == "2+"
    assert glu["loinc"] == "5792-7"


def test_urobilinogen_trace_is_normal_but_protein_trace_is_not() -> None:
    report = interpret(parse_lab_text("尿胆原 URO ±\n尿蛋白 PRO ±")[0])
    assert {r.key: r.flag for r in report.results} == {
        "urine_urobilinogen": "N",
        "urine_protein": "H",
    }


def test_english_strip_results() -> None:
    rows, _ = parse_lab_text("Nitrite positive, leukocyte esterase 2+\nUrine protein: trace")
    assert [(r.name, r.qualitative) for r in rows] == [
        ("Nitrite", "positive"),
        ("leukocyte esterase", "2+"),
        ("Urine protein", "trace"),
    ]


def test_a_dash_after_a_numeric_analyte_is_a_separator() -> None:
    rows, _ = parse_lab_text("Glucose - 5.5 mmol/L")
    assert len(rows) == 1
    assert rows[0].value == 5.5 and rows[0].qualitative == ""


def test_a_grade_for_a_numeric_analyte_is_surfaced_not_dropped() -> None:
    _, out = interpret_input(text="CRP 阴性\nK 4.1 mmol/L", locale="zh-CN")
    crp = out["results"][0]
    assert crp["analyte"] == "crp" and crp["qualitative"] == "negative" and crp["flag"] is None
    assert [w["code"] for w in out["warnings"]] == ["qualitative_unexpected"]
    assert "通常以数值报告" in out["warnings"][0]["message"]


def test_fhir_value_string_and_codeable_concept() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "5802-4"}]},
                    "valueCodeableConcept": {
                        "coding": [{"system": "http://snomed.info/sct", "code": "10828004"}]
                    },
                }
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "5804-0"}]},
                    "valueString": "Negative",
                }
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "Urine colour"},
                    "valueString": "yellow",
                }
            },
        ],
    }
    rows, warnings = parse_fhir(bundle)
    assert [(r.loinc, r.qualitative) for r in rows] == [
        ("5802-4", "positive"),
        ("5804-0", "negative"),
    ]
    assert [w.code for w in warnings] == ["no_quantity"]
    report = interpret(rows)
    assert [(r.key, r.flag) for r in report.results] == [
        ("urine_nitrite", "H"),
        ("urine_protein", "N"),
    ]


# --------------------------------------------------------------------------- ranges by sex


@pytest.mark.parametrize(
    "line",
    [
        "血红蛋白 HGB 128 g/L 男 130-175 女 115-150",
        "血红蛋白 HGB 128 g/L 男:130-175; 女:115-150",
        "Hemoglobin 128 g/L M: 130-175 F: 115-150",
        "Hemoglobin 128 g/L (male 130-175, female 115-150)",
    ],
)
def test_ranges_by_sex_are_read_with_their_labels(line: str) -> None:
    rows, _ = parse_lab_text(line)
    assert len(rows) == 1
    assert rows[0].ref_low is None and rows[0].ref_high is None
    assert set(rows[0].ref_by_sex) == {("M", 130, 175), ("F", 115, 150)}


def test_the_patients_sex_picks_the_range() -> None:
    rows, _ = parse_lab_text("血红蛋白 HGB 128 g/L 男 130-175 女 115-150")
    male = interpret(rows, sex="M").results[0]
    female = interpret(rows, sex="女").results[0]
    assert (male.flag, male.ref_low, male.ref_high, male.ref_source) == ("L", 130, 175, "report")
    assert (female.flag, female.ref_low, female.ref_high) == ("N", 115, 150)
    unknown = interpret(rows)
    assert (unknown.results[0].ref_low, unknown.results[0].ref_high) == (115, 175)
    assert [w.code for w in unknown.warnings] == ["range_needs_sex"]


def test_a_range_printed_before_the_value() -> None:
    rows, _ = parse_lab_text("Glucose (normal 3.9-6.1) 7.4 mmol/L")
    assert [(r.name, r.value, r.ref_low, r.ref_high, r.unit) for r in rows] == [
        ("Glucose", 7.4, 3.9, 6.1, "mmol/L")
    ]
