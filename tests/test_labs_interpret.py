"""Golden tests for the lab interpreter (RawResult rows built directly, no parser)."""

from __future__ import annotations

import json

import pytest

from healtrace.labs.interpret import LabReport, interpret
from healtrace.labs.types import RawResult
from healtrace.safety.types import Level


def R(name: str, value: float, unit: str = "", lo: float | None = None, hi: float | None = None,
      **kw: object) -> RawResult:  # fmt: skip
    return RawResult(name, value, unit, lo, hi, **kw)  # type: ignore[arg-type]


def one(rep: LabReport, key: str) -> dict[str, object]:
    found = [r for r in rep.to_dict()["results"] if r["analyte"] == key]
    assert found, key
    return found[0]


def codes(rep: LabReport) -> list[str]:
    return [w.code for w in rep.warnings]


def pattern_codes(rep: LabReport) -> set[str]:
    return {p.code for p in rep.patterns}


# ----------------------------------------------------------------- lookup and flags


def test_report_range_preferred_hb_low() -> None:
    rep = interpret([R("血红蛋白 HGB", 98, "g/L", 130, 175)])
    hb = one(rep, "hemoglobin")
    assert hb["flag"] == "L"
    assert hb["ref_source"] == "report"
    assert (hb["ref_low"], hb["ref_high"]) == (130, 175)
    assert hb["critical"] is False
    assert hb["raw_name"] == "血红蛋白 HGB"


def test_report_range_beats_catalogue() -> None:
    # Catalogue sodium 137–147; this lab prints 135–145, so 136 is normal here.
    rep = interpret([R("Na", 136, "mmol/L", 135, 145)])
    assert one(rep, "sodium")["flag"] == "N"
    assert one(rep, "sodium")["ref_source"] == "report"
    assert "range_conflict" not in codes(rep)


def test_catalogue_range_when_none_printed() -> None:
    rep = interpret([R("Na", 136, "mmol/L")])
    na = one(rep, "sodium")
    assert na["flag"] == "L"
    assert na["ref_source"] == "catalogue"
    assert (na["ref_low"], na["ref_high"]) == (137, 147)


def test_sex_specific_catalogue_range() -> None:
    assert one(interpret([R("Hb", 120, "g/L")], sex="M"), "hemoglobin")["flag"] == "L"
    assert one(interpret([R("Hb", 120, "g/L")], sex="F"), "hemoglobin")["flag"] == "N"


def test_loinc_lookup_and_alias_word() -> None:
    rep = interpret(
        [R("Serum K level", 4.0, "mmol/L", loinc="2823-3"), R("谷丙转氨酶 ALT", 30, "U/L")]
    )
    assert one(rep, "potassium")["flag"] == "N"
    assert one(rep, "alt")["flag"] == "N"


def test_word_lookup_is_not_guessed() -> None:
    rep = interpret([R("HBsAg (P)", 1), R("Hb MCV", 1, "g/L")])
    assert [r["analyte"] for r in rep.to_dict()["results"]] == [None, None]
    assert codes(rep) == ["unknown_analyte", "unknown_analyte"]


def test_potassium_critical_high_emergency() -> None:
    rep = interpret([R("K", 6.8, "mmol/L", 3.5, 5.3)])
    k = one(rep, "potassium")
    assert k["flag"] == "HH"
    assert k["critical"] is True
    assert rep.urgent
    (reason,) = rep.triage_reasons()
    assert reason.category == "critical_lab"
    assert reason.level is Level.EMERGENCY
    assert reason.source == "labs"
    assert "critical" in reason.message_en and "危急值" in reason.message_zh


def test_urgent_band_and_low_critical() -> None:
    rep = interpret([R("K", 6.1, "mmol/L"), R("Na", 118, "mmol/L")])
    assert one(rep, "potassium")["flag"] == "HH"
    assert one(rep, "sodium")["flag"] == "LL"
    levels = {r.code: r.level for r in rep.triage_reasons()}
    assert levels == {
        "critical_lab.potassium.high": Level.URGENT,
        "critical_lab.sodium.low": Level.EMERGENCY,
    }


def test_hb_critical_low_is_strict() -> None:
    assert one(interpret([R("Hb", 60, "g/L")]), "hemoglobin")["critical_level"] == "urgent"
    assert one(interpret([R("Hb", 59, "g/L")]), "hemoglobin")["critical_level"] == "emergency"


def test_normal_values_raise_nothing() -> None:
    rep = interpret([R("K", 4.2, "mmol/L"), R("Na", 140, "mmol/L")])
    assert not rep.urgent
    assert rep.triage_reasons() == []


def test_unknown_analyte_kept_with_null_flag() -> None:
    rep = interpret([R("Frobnicin", 3, "mg/L", 1, 2, line=4)])
    (item,) = rep.to_dict()["results"]
    assert item["flag"] is None and item["analyte"] is None
    (w,) = rep.to_dict()["warnings"]
    assert w["code"] == "unknown_analyte" and w["line"] == 4


# ----------------------------------------------------------------- units


def test_glucose_mg_dl_converted_and_flagged_fasting() -> None:
    rep = interpret([R("Glucose, fasting", 126, "mg/dL")])
    g = one(rep, "glucose_fasting")
    assert g["canonical_value"] == pytest.approx(6.99, abs=0.01)
    assert g["canonical_unit"] == "mmol/L"
    assert g["flag"] == "H"


def test_report_range_converted_with_same_unit() -> None:
    rep = interpret([R("GLU", 120, "mg/dL", 70, 99)])
    g = one(rep, "glucose")
    assert g["flag"] == "H" and g["ref_source"] == "report"
    assert g["ref_high"] == pytest.approx(5.49, abs=0.01)
    assert "range_conflict" not in codes(rep)


@pytest.mark.parametrize(("value", "suggested"), [(5.5, "mmol/L"), (99, "mg/dL")])
def test_missing_unit_glucose_is_not_guessed(value: float, suggested: str) -> None:
    rep = interpret([R("GLU", value)])
    g = one(rep, "glucose")
    assert g["canonical_value"] is None
    assert g["flag"] is None
    (w,) = rep.to_dict()["warnings"]
    assert w["code"] == "missing_unit"
    assert w["suggested_unit"] == suggested


@pytest.mark.parametrize(("name", "value"), [("Cr", 88), ("Cr", 1.0), ("Hb", 135), ("Hb", 13.5)])
def test_missing_unit_other_scaled_analytes(name: str, value: float) -> None:
    rep = interpret([R(name, value)])
    assert rep.to_dict()["results"][0]["canonical_value"] is None
    assert codes(rep) == ["missing_unit"]


def test_missing_unit_with_printed_range_flags_from_report() -> None:
    rep = interpret([R("Hb", 98, "", 130, 175)])
    hb = one(rep, "hemoglobin")
    assert hb["canonical_value"] is None
    assert hb["flag"] == "L" and hb["ref_source"] == "report"
    assert hb["critical"] is False
    assert codes(rep) == ["missing_unit"]


def test_missing_unit_single_scale_analyte_is_fine() -> None:
    rep = interpret([R("MCV", 75)])
    assert one(rep, "mcv")["canonical_value"] == 75
    assert one(rep, "mcv")["flag"] == "L"
    assert codes(rep) == []


def test_unknown_unit_warning() -> None:
    rep = interpret([R("K", 4.0, "furlongs", 3.5, 5.3)])
    k = one(rep, "potassium")
    assert k["canonical_value"] is None
    assert k["flag"] == "N" and k["ref_source"] == "report"
    assert "unknown_unit" in codes(rep)


def test_range_conflict_warning() -> None:
    # Range printed in g/dL while the unit says g/L: off by the unit factor.
    rep = interpret([R("Hb", 13.5, "g/L", 13, 17.5)])
    assert "range_conflict" in codes(rep)
    hb = one(rep, "hemoglobin")
    assert hb["critical"] is False  # no false emergency when the units are in doubt
    rep2 = interpret([R("GLU", 5.5, "mmol/L", 70, 99)])
    assert "range_conflict" in codes(rep2)


def test_comparators_flag_from_bound() -> None:
    rep = interpret(
        [
            R("hs-cTnT", 3, "ng/L", comparator="<"),
            R("GLU", 33.3, "mmol/L", comparator=">"),
            R("CRP", 200, "mg/L", comparator="<"),
        ]
    )
    assert one(rep, "troponin_t_hs")["flag"] == "N"
    glu = one(rep, "glucose")
    assert glu["flag"] == "HH" and glu["critical"] is True
    assert one(rep, "crp")["flag"] is None


# ----------------------------------------------------------------- derived


def test_egfr_with_age_sex_and_warning_without() -> None:
    rep = interpret([R("Cr", 150, "umol/L")], sex="M", age=60)
    egfr = rep.to_dict()["derived"]["egfr"]
    assert egfr["valid"] and egfr["value"] < 60
    assert "kidney_function_reduced" in pattern_codes(rep)
    no = interpret([R("Cr", 150, "umol/L")])
    assert "egfr" not in no.to_dict()["derived"]
    assert "egfr_needs_age_sex" in codes(no)


def test_egfr_normal_no_kidney_pattern() -> None:
    rep = interpret([R("Cr", 70, "umol/L")], sex="F", age=40)
    assert rep.to_dict()["derived"]["egfr"]["value"] > 90
    assert "kidney_function_reduced" not in pattern_codes(rep)


def test_each_derived_value() -> None:
    rep = interpret(
        [
            R("Na", 140, "mmol/L"),
            R("Cl", 104, "mmol/L"),
            R("HCO3", 24, "mmol/L"),
            R("Ca", 2.0, "mmol/L"),
            R("ALB", 30, "g/L"),
            R("TC", 5.0, "mmol/L"),
            R("HDL-C", 1.2, "mmol/L"),
            R("TG", 1.5, "mmol/L"),
            R("HbA1c", 7.0, "%"),
            R("AST", 40, "U/L"),
            R("ALT", 20, "U/L"),
        ],
        weight_kg=70,
        height_cm=175,
    )
    d = rep.to_dict()["derived"]
    assert d["anion_gap"]["value"] == pytest.approx(12, abs=0.01)
    assert d["corrected_calcium"]["value"] > 2.0
    assert d["ldl_friedewald"]["value"] == pytest.approx(5.0 - 1.2 - 1.5 / 2.2, abs=0.01)
    assert d["non_hdl"]["value"] == pytest.approx(3.8, abs=0.01)
    assert d["eag"]["value"] == pytest.approx(8.6, abs=0.2)
    assert d["bmi"]["value"] == pytest.approx(22.9, abs=0.1)
    assert d["de_ritis"]["value"] == pytest.approx(2.0, abs=0.01)


def test_no_derived_without_inputs() -> None:
    rep = interpret([R("Na", 140, "mmol/L"), R("TC", 5.0, "mmol/L")])
    assert rep.to_dict()["derived"] == {}


# ----------------------------------------------------------------- patterns


def test_microcytic_pattern() -> None:
    rep = interpret([R("Hb", 95, "g/L"), R("MCV", 70, "fL")], sex="F")
    assert "microcytic_anaemia" in pattern_codes(rep)
    msg = next(p for p in rep.to_dict()["patterns"] if p["code"] == "microcytic_anaemia")
    assert "iron deficiency or thalassaemia trait" in msg["message"]
    assert "ferritin" in msg["message"]
    zh = interpret([R("Hb", 95, "g/L"), R("MCV", 70, "fL")], sex="F", locale="zh-CN").to_dict()
    assert "铁蛋白" in zh["patterns"][0]["message"]


def test_macrocytic_pattern() -> None:
    rep = interpret([R("Hb", 95, "g/L"), R("MCV", 110, "fL")], sex="F")
    assert pattern_codes(rep) == {"macrocytic_anaemia"}
    assert "B12" in rep.patterns[0].message_en


def test_no_anaemia_pattern_on_normal() -> None:
    assert pattern_codes(interpret([R("Hb", 140, "g/L"), R("MCV", 90, "fL")], sex="M")) == set()


@pytest.mark.parametrize(
    ("alt", "alp", "code"),
    [(500, 100, "liver_hepatocellular"), (60, 400, "liver_cholestatic"), (200, 150, "liver_mixed")],
)
def test_liver_r_factor(alt: float, alp: float, code: str) -> None:
    rep = interpret([R("ALT", alt, "U/L"), R("ALP", alp, "U/L")], sex="M")
    assert pattern_codes(rep) == {code}


def test_no_liver_pattern_when_normal() -> None:
    rep = interpret([R("ALT", 30, "U/L"), R("ALP", 80, "U/L")], sex="M")
    assert pattern_codes(rep) == set()


def test_hyperglycaemia_pattern() -> None:
    rep = interpret([R("FPG", 7.2, "mmol/L")])
    assert "hyperglycaemia_diabetes_range" in pattern_codes(rep)
    msg = rep.patterns[0].message_en
    assert "diabetes range on this test" in msg and "confirmation" in msg
    assert "hyperglycaemia_diabetes_range" in pattern_codes(interpret([R("HbA1c", 6.5, "%")]))
    assert pattern_codes(interpret([R("FPG", 5.0, "mmol/L"), R("HbA1c", 5.4, "%")])) == set()


def test_dyslipidaemia_pattern() -> None:
    assert "dyslipidaemia" in pattern_codes(interpret([R("LDL-C", 4.5, "mmol/L")]))
    assert pattern_codes(interpret([R("LDL-C", 2.5, "mmol/L")])) == set()


def test_thyroid_patterns() -> None:
    under = interpret([R("TSH", 12, "mIU/L"), R("FT4", 8, "pmol/L")])
    assert pattern_codes(under) == {"thyroid_underactive_pattern"}
    over = interpret([R("TSH", 0.01, "mIU/L"), R("FT4", 40, "pmol/L")])
    assert pattern_codes(over) == {"thyroid_overactive_pattern"}
    normal = interpret([R("TSH", 2, "mIU/L"), R("FT4", 15, "pmol/L")])
    assert pattern_codes(normal) == set()


def test_infection_pattern() -> None:
    assert "infection_inflammation" in pattern_codes(
        interpret([R("WBC", 15, "10^9/L"), R("CRP", 80, "mg/L")])
    )
    assert pattern_codes(interpret([R("WBC", 6, "10^9/L"), R("CRP", 2, "mg/L")])) == set()


def test_patterns_never_say_diagnosis() -> None:
    rep = interpret(
        [
            R("Hb", 95, "g/L"),
            R("MCV", 70, "fL"),
            R("FPG", 8, "mmol/L"),
            R("TSH", 12, "mIU/L"),
            R("FT4", 8, "pmol/L"),
        ],
        sex="F",
    )
    for p in rep.patterns:
        assert "you have" not in p.message_en.lower()
        assert "diagnosed" not in p.message_en.lower()
        assert "确诊为" not in p.message_zh


# ----------------------------------------------------------------- JSON contract


def test_to_dict_shape_and_json() -> None:
    rep = interpret(
        [R("K", 6.8, "mmol/L"), R("Cr", 90, "umol/L"), R("GLU", 99), R("xyz", 1)],
        sex="M",
        age=50,
        weight_kg=80,
        height_cm=180,
    )
    d = rep.to_dict()
    assert set(d) == {"results", "derived", "patterns", "warnings"}
    json.dumps(d, ensure_ascii=False)
    required = {
        "name",
        "loinc",
        "value",
        "unit",
        "canonical_value",
        "canonical_unit",
        "flag",
        "ref_low",
        "ref_high",
        "critical",
    }
    for item in d["results"]:
        assert required <= set(item)
        assert isinstance(item["critical"], bool)
    for w in d["warnings"]:
        assert {"code", "message"} <= set(w)
    assert {"egfr", "bmi"} <= set(d["derived"])
    zh = rep.to_dict("zh-CN")
    assert zh["results"][0]["name"] == "钾"
