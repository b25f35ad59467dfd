"""The lab analyte catalogue and unit conversions (healtrace.labs)."""

from __future__ import annotations

import copy
from importlib import resources

import pytest
import yaml

from healtrace.labs import catalogue as cat
from healtrace.labs.catalogue import CatalogueError, build_catalogue, load_catalogue
from healtrace.labs.units import UnitError, convert, parse_unit, ureg


@pytest.fixture(scope="module")
def catalogue() -> cat.Catalogue:
    return load_catalogue()


def test_catalogue_loads_at_least_80_validated_analytes(catalogue: cat.Catalogue) -> None:
    assert len(catalogue) >= 80
    assert load_catalogue() is catalogue  # cached
    keys = catalogue.keys
    assert len(set(keys)) == len(keys)
    for a in catalogue:
        assert a.name_en and a.name_zh and a.source
        assert parse_unit(a.unit_text) == a.unit
        for r in a.ranges:
            if r.low is not None and r.high is not None:
                assert r.low < r.high


@pytest.mark.parametrize(
    "key",
    [
        "wbc", "rbc", "hemoglobin", "hematocrit", "mcv", "mch", "mchc", "rdw_cv", "platelets",
        "neutrophils_abs", "neutrophils_pct", "lymphocytes_abs", "monocytes_pct",
        "eosinophils_abs", "basophils_pct", "glucose", "glucose_fasting", "sodium",
        "potassium", "chloride", "co2_total", "urea", "bun", "creatinine", "uric_acid",
        "calcium", "phosphate", "magnesium", "alt", "ast", "alp", "ggt", "bilirubin_total",
        "bilirubin_direct", "albumin", "total_protein", "cholesterol_total", "triglycerides",
        "hdl_c", "ldl_c", "tsh", "ft4", "ft3", "hba1c", "pt", "inr", "aptt", "fibrinogen",
        "d_dimer", "crp", "hs_crp", "esr", "procalcitonin", "troponin_t_hs", "bnp",
        "nt_probnp", "ck", "ck_mb", "ldh", "ferritin", "iron", "transferrin_saturation",
        "vitamin_b12", "folate", "urine_ph", "urine_specific_gravity", "urine_protein",
        "urine_glucose", "urine_ketones", "urine_rbc", "urine_wbc", "afp", "cea", "ca125",
        "ca19_9", "psa_total",
    ],
)  # fmt: skip
def test_required_analytes_present(catalogue: cat.Catalogue, key: str) -> None:
    assert catalogue.find(key) is not None


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("HGB", "hemoglobin"),
        ("Hb", "hemoglobin"),
        ("血红蛋白", "hemoglobin"),
        ("血色素", "hemoglobin"),
        ("K", "potassium"),
        ("K+", "potassium"),
        ("钾", "potassium"),
        ("血钾", "potassium"),
        ("GLU", "glucose"),
        ("葡萄糖", "glucose"),
        ("血糖", "glucose"),
        ("空腹血糖", "glucose_fasting"),
        ("ALT", "alt"),
        ("GPT", "alt"),
        ("谷丙转氨酶", "alt"),
        ("alanine aminotransferase", "alt"),
        ("ＡＬＴ", "alt"),  # full-width
        ("ｈｂａ１ｃ", "hba1c"),
        ("糖化血红蛋白", "hba1c"),
        ("2823-3", "potassium"),
        ("718-7", "hemoglobin"),
        ("CA 19-9", "ca19_9"),
        ("ca199", "ca19_9"),
        ("nt-probnp", "nt_probnp"),
        ("肌酐", "creatinine"),
        ("Scr", "creatinine"),
        ("尿素氮", "bun"),
        ("血小板", "platelets"),
        ("  plt ", "platelets"),
        ("NEUT#", "neutrophils_abs"),
        ("NEUT%", "neutrophils_pct"),
        ("甘油三酯", "triglycerides"),
        ("LDL-C", "ldl_c"),
        ("D-二聚体", "d_dimer"),
        ("血沉", "esr"),
        ("尿蛋白", "urine_protein"),
        ("甲胎蛋白", "afp"),
    ],
)
def test_lookup_by_name_alias_and_loinc(catalogue: cat.Catalogue, text: str, key: str) -> None:
    found = catalogue.find(text)
    assert found is not None, text
    assert found.key == key


def test_unknown_names_give_none(catalogue: cat.Catalogue) -> None:
    assert catalogue.find("not a lab test") is None
    assert catalogue.find("") is None
    with pytest.raises(KeyError):
        catalogue["nope"]


@pytest.mark.parametrize(
    ("key", "value", "unit", "other", "expected", "tol"),
    [
        ("glucose", 5.5, "mmol/L", "mg/dL", 99.1, 0.05),
        ("creatinine", 1.0, "mg/dL", "µmol/L", 88.4, 0.05),
        ("cholesterol_total", 200, "mg/dL", "mmol/L", 5.17, 0.005),
        ("triglycerides", 150, "mg/dL", "mmol/L", 1.69, 0.005),
        ("hemoglobin", 13.5, "g/dL", "g/L", 135, 1e-9),
        ("calcium", 10, "mg/dL", "mmol/L", 2.5, 0.01),
        ("bun", 14, "mg/dL", "mmol/L", 5.0, 0.01),
        ("urea", 14, "mg/dL", "mmol/L", 5.0, 0.01),
        ("bilirubin_total", 1, "mg/dL", "umol/L", 17.1, 0.01),
        ("platelets", 250, "K/µL", "×10^9/L", 250, 1e-9),
        ("hba1c", 48, "mmol/mol", "%", 6.54, 0.01),
        ("potassium", 4.2, "mEq/L", "mmol/L", 4.2, 1e-9),
        ("calcium", 5.0, "mEq/L", "mmol/L", 2.5, 1e-9),
        ("magnesium", 2.0, "mg/dL", "mmol/L", 0.823, 0.001),
        ("ft4", 1.0, "ng/dL", "pmol/L", 12.87, 0.01),
        ("vitamin_b12", 300, "pg/mL", "pmol/L", 221.3, 0.1),
        ("hematocrit", 0.45, "L/L", "%", 45, 1e-9),
        ("tsh", 2.0, "µIU/mL", "mIU/L", 2.0, 1e-9),
        ("urine_acr", 3, "mg/mmol", "mg/g", 26.5, 0.1),
    ],
)
def test_golden_conversions_both_ways(
    catalogue: cat.Catalogue,
    key: str,
    value: float,
    unit: str,
    other: str,
    expected: float,
    tol: float,
) -> None:
    analyte = catalogue[key]
    assert analyte.convert(value, unit, other) == pytest.approx(expected, abs=tol)
    # The golden values are rounded, so the way back is checked to 0.3 %.
    assert analyte.convert(expected, other, unit) == pytest.approx(value, rel=3e-3)


def test_to_canonical(catalogue: cat.Catalogue) -> None:
    assert catalogue["glucose"].to_canonical(99.1, "mg/dL") == pytest.approx(5.5, abs=0.01)
    assert catalogue["creatinine"].to_canonical(1.0, "mg/dL") == pytest.approx(88.4, abs=0.05)
    assert catalogue["hemoglobin"].to_canonical(135, "g/L") == 135
    assert catalogue["wbc"].to_canonical(6500, "个/μL") == pytest.approx(6.5)


def test_units_module_converts_with_molar_mass_and_valence() -> None:
    assert convert(5.5, "mmol/L", "mg/dL", molar_mass=180.16) == pytest.approx(99.09, abs=0.01)
    assert convert(2.5, "mmol/L", "mEq/L", valence=2) == pytest.approx(5.0)
    assert convert(10, "mg/dL", "mEq/L", molar_mass=40.08, valence=2) == pytest.approx(4.99, 0.01)
    assert convert(1, "IU/L", "U/L") == pytest.approx(1)
    assert convert(1, "mIU/L", "µIU/mL") == pytest.approx(1)
    assert convert(60, "mm/h", "mm/h") == 60


@pytest.mark.parametrize(
    ("value", "src", "dst", "kwargs"),
    [
        (1, "mg/dL", "mmol/L", {}),  # no molar mass
        (1, "mmol/L", "s", {"molar_mass": 180.16}),
        (1, "g/L", "10^9/L", {}),
        (1, "%", "mg/dL", {}),
        (1, "mmol/L", "/HPF", {}),
        (1, "U/L", "mg/dL", {"molar_mass": 100.0}),
        (1, "furlongs per fortnight", "mmol/L", {}),
    ],
)
def test_incompatible_units_raise_unit_error(
    value: float, src: str, dst: str, kwargs: dict[str, float]
) -> None:
    with pytest.raises(UnitError):
        convert(value, src, dst, **kwargs)
    assert issubclass(UnitError, ValueError)


def test_analyte_rejects_incompatible_unit(catalogue: cat.Catalogue) -> None:
    with pytest.raises(UnitError):
        catalogue["hemoglobin"].to_canonical(13.5, "mmol/L")
    with pytest.raises(UnitError):
        catalogue["potassium"].to_canonical(4, "bogus")


@pytest.mark.parametrize(
    "text",
    ["", "   ", "junk", "mg/dL/", "10^7/L", "mmol/L; drop table", "🙂", "(((", "**", "1/0",
     "x" * 200, "__class__", "mg dL"],
)  # fmt: skip
def test_junk_units_give_none(text: str) -> None:
    assert parse_unit(text) is None


def test_parse_unit_rejects_non_strings() -> None:
    assert parse_unit(None) is None
    assert parse_unit(42) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "same_as"),
    [
        ("mmol/l", "mmol/L"),
        ("umol/L", "µmol/L"),
        ("μmol/L", "µmol/L"),
        ("10^9/L", "10*9/L"),
        ("×10⁹/L", "10*9/L"),
        ("x10^9/L", "10*9/L"),
        ("×10^12/L", "10*12/L"),
        ("10^3/µL", "K/uL"),
        ("个/μL", "/uL"),
        ("/HPF", "/[HPF]"),
        ("mIU/L", "m[IU]/L"),
        ("ｍｇ／ｄＬ", "mg/dL"),
        ("IU/L", "[IU]/L"),
        ("MMOL/L", "mmol/L"),
        ("MG/DL", "mg/dL"),
    ],
)
def test_common_spellings_parse(text: str, same_as: str) -> None:
    unit = parse_unit(text)
    other = parse_unit(same_as)
    assert unit is not None and other is not None
    assert ureg.Quantity(1, unit).to(other).magnitude == pytest.approx(1)


def test_thousand_per_microlitre_is_ten_to_nine_per_litre() -> None:
    assert convert(1, "K/uL", "10^9/L") == pytest.approx(1)
    assert convert(1, "10^3/µL", "×10⁹/L") == pytest.approx(1)


def test_sex_and_age_specific_ranges(catalogue: cat.Catalogue) -> None:
    hb = catalogue["hemoglobin"]
    male, female = hb.reference("M"), hb.reference("F")
    assert male is not None and female is not None
    assert male.sex == "M" and female.sex == "F"
    assert female.low is not None and male.low is not None and female.low < male.low
    assert hb.reference("男") == male and hb.reference("female") == female
    assert hb.reference() is None  # the ranges differ by sex
    cr = catalogue["creatinine"]
    young, old = cr.reference("M", 30), cr.reference("M", 70)
    assert young is not None and old is not None and young != old
    assert catalogue["potassium"].reference("F") == catalogue["potassium"].reference()
    for key in ("rbc", "hematocrit", "uric_acid", "ferritin", "ggt"):
        a = catalogue[key]
        assert a.reference("M") != a.reference("F"), key
    psa = catalogue["psa_total"].reference("M")
    assert psa is not None and psa.high == 4.0 and psa.contains(3.9) and not psa.contains(4.1)


def test_critical_limits_match_safety_table(catalogue: cat.Catalogue) -> None:
    expected = {
        "potassium": (2.5, 2.9, 6.0, 6.5),
        "sodium": (120, 125, 155, 160),
        "glucose": (3.0, 3.9, 20.0, 33.3),
        "hemoglobin": (60, 80, 200, None),
        "platelets": (10, 30, 1000, None),
        "inr": (None, None, 5.0, 8.0),
        "calcium": (1.75, 1.9, 3.0, 3.5),
        "troponin_t_hs": (None, None, 14, 52),
    }
    for key, (low, urgent_low, urgent_high, high) in expected.items():
        c = catalogue[key].critical
        assert c is not None, key
        assert (c.low, c.urgent_low, c.urgent_high, c.high) == (low, urgent_low, urgent_high, high)


def _data() -> dict[str, object]:
    text = resources.files("healtrace.labs").joinpath("data/analytes.yaml").read_text("utf-8")
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"unit": "bananas/L"}, "does not parse"),
        ({"units": ["s"]}, "cannot convert"),
        ({"reference": [{"low": 5, "high": 3}]}, "below high"),
        ({"loinc": "2823-4"}, "LOINC"),
        ({"aliases": ["Na"]}, "ambiguous"),
        ({"critical": {"low": 3.0, "urgent_low": 2.0}}, "urgent low"),
        ({"colour": "blue"}, "unknown fields"),
    ],
)
def test_validation_errors_are_clear(patch: dict[str, object], message: str) -> None:
    data = copy.deepcopy(_data())
    analytes = data["analytes"]
    assert isinstance(analytes, list)
    potassium = next(a for a in analytes if a["key"] == "potassium")
    potassium.update(patch)
    with pytest.raises(CatalogueError, match=message):
        build_catalogue(data)
