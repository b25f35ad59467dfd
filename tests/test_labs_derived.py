"""Golden tests for healtrace.labs.derived.

Expected values are independent hand calculations written out in the comments (and the
published worked examples where the papers give them), not outputs of the code under test.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from healtrace.labs.derived import (
    CREATININE_UMOL_PER_MG_DL,
    Derived,
    anion_gap,
    bmi,
    bmi_category_china,
    bmi_category_who,
    ckd_stage,
    corrected_calcium,
    de_ritis,
    egfr_ckd_epi_2021,
    estimated_average_glucose,
    hba1c_ifcc_to_percent,
    ldl_friedewald,
    non_hdl,
)


def _ok(result: Derived) -> float:
    assert result.valid, result.note_en
    assert result.value is not None
    assert result.note_en and result.note_zh and result.formula and result.source
    return result.value


def _rejected(result: Derived) -> None:
    assert not result.valid
    assert result.value is None
    assert result.note_en.startswith("Not calculated")
    assert result.note_zh.startswith("无法计算")
    assert result.source and result.formula


# --------------------------------------------------------------------------- CKD-EPI 2021


def test_egfr_female_50_scr_0_8_mg_dl() -> None:
    # κ = 0.7, α = −0.241; Scr/κ = 0.8/0.7 = 1.142857 → min term = 1
    # max term = 1.142857^−1.2 = exp(−1.2 × 0.133531) = 0.851941
    # age term = 0.9938^50 = exp(50 × −0.0062193) = 0.732740
    # 142 × 0.851941 × 0.732740 × 1.012 = 89.71
    result = egfr_ckd_epi_2021(0.8 * CREATININE_UMOL_PER_MG_DL, 50, "F")
    assert _ok(result) == pytest.approx(89.71, abs=0.5)
    assert result.unit == "mL/min/1.73m²"
    assert result.category == "G2"
    assert "Inker" in result.source and "2021" in result.source


def test_egfr_female_50_scr_70_7_umol_l() -> None:
    # 70.7 / 88.42 = 0.79960 mg/dL; Scr/κ = 1.142286; ^−1.2 = 0.852452
    # 142 × 0.852452 × 0.732740 × 1.012 = 89.76
    assert _ok(egfr_ckd_epi_2021(70.7, 50, "F")) == pytest.approx(89.76, abs=0.5)


def test_egfr_male_60_scr_1_2_mg_dl() -> None:
    # κ = 0.9, α = −0.302; Scr/κ = 1.2/0.9 = 1.333333 → min term = 1
    # max term = 1.333333^−1.2 = exp(−1.2 × 0.287682) = 0.708066
    # age term = 0.9938^60 = 0.688556
    # 142 × 0.708066 × 0.688556 = 69.23  (no sex factor for men)
    result = egfr_ckd_epi_2021(1.2 * CREATININE_UMOL_PER_MG_DL, 60, "M")
    assert _ok(result) == pytest.approx(69.23, abs=0.5)
    assert result.category == "G2"


def test_egfr_below_kappa_uses_alpha_branch() -> None:
    # Female 40, Scr 0.6 mg/dL: Scr/κ = 0.857143 → max term = 1
    # min term = 0.857143^−0.241 = 1.037849; 0.9938^40 = 0.779758
    # 142 × 1.037849 × 0.779758 × 1.012 = 116.30
    assert _ok(egfr_ckd_epi_2021(0.6 * 88.42, 40, "F")) == pytest.approx(116.30, abs=0.5)
    # Male 30, Scr 0.7 mg/dL: Scr/κ = 0.777778; ^−0.302 = 1.078851; 0.9938^30 = 0.829793
    # 142 × 1.078851 × 0.829793 = 127.12
    result = egfr_ckd_epi_2021(0.7 * 88.42, 30, "M")
    assert _ok(result) == pytest.approx(127.12, abs=0.5)
    assert result.category == "G1"


def test_egfr_high_creatinine_is_g5() -> None:
    # Male 70, Scr 6.0 mg/dL: (6.0/0.9)^−1.2 = 6.666667^−1.2 = 0.102638; 0.9938^70 = 0.647038
    # 142 × 0.102638 × 0.647038 = 9.43
    result = egfr_ckd_epi_2021(6.0 * 88.42, 70, "M")
    assert _ok(result) == pytest.approx(9.43, abs=0.5)
    assert result.category == "G5"
    assert "G5" in result.note_en and "G5" in result.note_zh


def test_egfr_sex_is_case_insensitive() -> None:
    assert egfr_ckd_epi_2021(80, 50, "f").value == egfr_ckd_epi_2021(80, 50, "F").value  # type: ignore[arg-type]


@pytest.mark.parametrize("age", [17, 17.99, 0, -5, 121])
def test_egfr_rejects_non_adult_or_implausible_age(age: float) -> None:
    _rejected(egfr_ckd_epi_2021(80, age, "M"))


def test_egfr_age_17_reason_is_bilingual() -> None:
    result = egfr_ckd_epi_2021(60, 17, "F")
    _rejected(result)
    assert "adults" in result.note_en and "成人" in result.note_zh


@pytest.mark.parametrize("scr", [0, -1, math.nan, math.inf, -math.inf])
def test_egfr_rejects_bad_creatinine(scr: float) -> None:
    _rejected(egfr_ckd_epi_2021(scr, 50, "M"))


@pytest.mark.parametrize("sex", ["X", "", "male?"])
def test_egfr_rejects_unknown_sex(sex: str) -> None:
    _rejected(egfr_ckd_epi_2021(80, 50, sex))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("egfr", "stage"),
    [
        (120, "G1"),
        (90, "G1"),
        (89.9, "G2"),
        (60, "G2"),
        (59.9, "G3a"),
        (45, "G3a"),
        (44.9, "G3b"),
        (30, "G3b"),
        (29.9, "G4"),
        (15, "G4"),
        (14.9, "G5"),
        (0, "G5"),
    ],
)
def test_ckd_stage_boundaries(egfr: float, stage: str) -> None:
    assert ckd_stage(egfr) == stage


def test_ckd_stage_rejects_nan() -> None:
    with pytest.raises(ValueError):
        ckd_stage(math.nan)


@given(
    scr=st.floats(min_value=10, max_value=3000),
    factor=st.floats(min_value=1.0, max_value=50),
    age=st.floats(min_value=18, max_value=110),
    sex=st.sampled_from(["M", "F"]),
)
def test_egfr_decreases_monotonically_with_creatinine(
    scr: float, factor: float, age: float, sex: str
) -> None:
    low = _ok(egfr_ckd_epi_2021(scr, age, sex))  # type: ignore[arg-type]
    high = _ok(egfr_ckd_epi_2021(scr * factor, age, sex))  # type: ignore[arg-type]
    assert high <= low
    if factor >= 1.001:
        assert high < low


# --------------------------------------------------------------------------- anion gap


def test_anion_gap_without_potassium() -> None:
    # 140 − (104 + 24) = 140 − 128 = 12
    result = anion_gap(140, 104, 24)
    assert _ok(result) == pytest.approx(12.0)
    assert result.unit == "mmol/L"
    assert "8–12" in result.note_en and "Kraut" in result.source


def test_anion_gap_with_potassium() -> None:
    # (140 + 4) − (104 + 24) = 144 − 128 = 16
    result = anion_gap(140, 104, 24, k=4.0)
    assert _ok(result) == pytest.approx(16.0)
    assert "K" in result.name and "10–20" in result.note_en


def test_anion_gap_negative_is_flagged_not_rejected() -> None:
    # 120 − (110 + 20) = −10
    result = anion_gap(120, 110, 20)
    assert _ok(result) == pytest.approx(-10.0)
    assert "error" in result.note_en


@pytest.mark.parametrize(
    "args",
    [(0, 104, 24, None), (140, -1, 24, None), (140, 104, math.nan, None), (140, 104, 24, 0.0)],
)
def test_anion_gap_rejects_bad_inputs(args: tuple[float, float, float, float | None]) -> None:
    _rejected(anion_gap(*args))


# --------------------------------------------------------------------------- calcium


def test_corrected_calcium_payne_si() -> None:
    # 2.10 + 0.02 × (40 − 30) = 2.10 + 0.20 = 2.30 mmol/L
    result = corrected_calcium(2.10, 30)
    assert _ok(result) == pytest.approx(2.30)
    assert "Payne" in result.source


def test_corrected_calcium_matches_conventional_units() -> None:
    # Conventional: Ca 8.4 mg/dL, albumin 3.0 g/dL → 8.4 + 0.8 × (4 − 3) = 9.2 mg/dL
    # SI: 8.4 / 4.008 = 2.09581 mmol/L, albumin 30 g/L → 2.09581 + 0.2 = 2.29581 mmol/L
    # back to mg/dL: 2.29581 × 4.008 = 9.2016
    result = corrected_calcium(8.4 / 4.008, 30)
    assert _ok(result) == pytest.approx(2.2958, abs=1e-4)
    (mg,) = result.alternates
    assert mg.unit == "mg/dL"
    assert mg.value == pytest.approx(9.2, abs=0.01)


def test_corrected_calcium_normal_albumin_is_unchanged() -> None:
    assert _ok(corrected_calcium(2.40, 40)) == pytest.approx(2.40)


@pytest.mark.parametrize("args", [(0, 30), (2.1, 0), (2.1, -30), (math.inf, 30), (2.1, math.nan)])
def test_corrected_calcium_rejects_bad_inputs(args: tuple[float, float]) -> None:
    _rejected(corrected_calcium(*args))


# --------------------------------------------------------------------------- lipids


def test_ldl_friedewald() -> None:
    # TG/2.2 = 1.5/2.2 = 0.681818; 5.2 − 1.3 − 0.681818 = 3.218182 ≈ 3.22 mmol/L
    result = ldl_friedewald(5.2, 1.3, 1.5)
    assert _ok(result) == pytest.approx(3.218, abs=0.005)
    assert "Martin" in result.note_en and "Sampson" in result.note_en
    assert "Friedewald" in result.source


def test_ldl_friedewald_matches_mg_dl_form() -> None:
    # mg/dL form: TC 200, HDL 50, TG 150 → 200 − 50 − 150/5 = 120 mg/dL.
    # Using the module's factor 38.67: TC 5.1720, HDL 1.2930, TG 150/88.57 = 1.6936 mmol/L
    # → 5.1720 − 1.2930 − 1.6936/2.2 = 3.1092 mmol/L × 38.67 = 120.2 mg/dL
    result = ldl_friedewald(200 / 38.67, 50 / 38.67, 150 / 88.57)
    _ok(result)
    (mg,) = result.alternates
    assert mg.value == pytest.approx(120, abs=0.5)


@pytest.mark.parametrize("tg", [4.5, 5.0, 12.0])
def test_ldl_friedewald_rejects_high_triglycerides(tg: float) -> None:
    result = ldl_friedewald(5.2, 1.3, tg)
    _rejected(result)
    assert "4.5" in result.note_en and "4.5" in result.note_zh
    assert "Martin-Hopkins" in result.note_en


def test_ldl_friedewald_rejects_non_positive_result() -> None:
    # 2.0 − 1.5 − 2.2/2.2 = −0.5
    _rejected(ldl_friedewald(2.0, 1.5, 2.2))


@pytest.mark.parametrize("args", [(0, 1.3, 1.5), (5.2, -1, 1.5), (5.2, 1.3, math.nan)])
def test_ldl_friedewald_rejects_bad_inputs(args: tuple[float, float, float]) -> None:
    _rejected(ldl_friedewald(*args))


def test_non_hdl() -> None:
    # 5.2 − 1.3 = 3.9 mmol/L
    assert _ok(non_hdl(5.2, 1.3)) == pytest.approx(3.9)
    _rejected(non_hdl(1.0, 1.3))
    _rejected(non_hdl(math.inf, 1.3))


# --------------------------------------------------------------------------- HbA1c / eAG


def test_eag_from_percent() -> None:
    # ADAG: 28.7 × 7 − 46.7 = 200.9 − 46.7 = 154.2 mg/dL (published table: 154 mg/dL)
    #       1.59 × 7 − 2.59 = 11.13 − 2.59 = 8.54 mmol/L (published table: 8.6 = 154/18)
    result = estimated_average_glucose(7.0)
    assert result.unit == "mmol/L"
    assert _ok(result) == pytest.approx(8.54, abs=0.01)
    assert _ok(result) == pytest.approx(8.6, abs=0.1)
    mg = next(q for q in result.alternates if q.unit == "mg/dL")
    assert mg.value == pytest.approx(154.2, abs=0.05)
    assert "Nathan" in result.source


def test_ifcc_to_percent() -> None:
    # 0.09148 × 53 + 2.152 = 4.84844 + 2.152 = 7.00044 %
    assert hba1c_ifcc_to_percent(53) == pytest.approx(7.0004, abs=1e-4)
    # 0.09148 × 48 + 2.152 = 4.39104 + 2.152 = 6.54304 % (the 48 mmol/mol diagnostic cut ≈ 6.5 %)
    assert hba1c_ifcc_to_percent(48) == pytest.approx(6.543, abs=1e-3)


def test_eag_from_ifcc() -> None:
    # 53 mmol/mol → 7.00044 % → 1.59 × 7.00044 − 2.59 = 8.5407 mmol/L
    result = estimated_average_glucose(ifcc_mmol_mol=53)
    assert _ok(result) == pytest.approx(8.5407, abs=1e-3)
    pct = next(q for q in result.alternates if q.unit == "%")
    assert pct.value == pytest.approx(7.0, abs=0.01)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"hba1c_percent": 7.0, "ifcc_mmol_mol": 53.0},
        {"hba1c_percent": 0.0},
        {"hba1c_percent": -7.0},
        {"hba1c_percent": math.nan},
        {"hba1c_percent": math.inf},
        {"hba1c_percent": 1.0},
        {"hba1c_percent": 40.0},
        {"ifcc_mmol_mol": -5.0},
    ],
)
def test_eag_rejects_bad_inputs(kwargs: dict[str, float]) -> None:
    _rejected(estimated_average_glucose(**kwargs))


def test_eag_outside_adag_range_is_flagged() -> None:
    result = estimated_average_glucose(15.0)
    _ok(result)
    assert "ADAG" in result.note_en and "ADAG" in result.note_zh


# --------------------------------------------------------------------------- BMI


def test_bmi_normal() -> None:
    # 70 / 1.75² = 70 / 3.0625 = 22.857 → 22.9
    result = bmi(70, 175)
    assert _ok(result) == pytest.approx(22.857, abs=0.001)
    assert round(_ok(result), 1) == 22.9
    who, china = result.categories
    assert (who.scheme, who.code) == ("WHO", "normal")
    assert china.code == "normal" and "428" in china.scheme
    assert "WS/T 428" in result.source


@pytest.mark.parametrize(
    ("weight", "height", "who", "china"),
    [
        # 80 / 1.75² = 26.12: WHO pre-obese (25–29.9), China overweight (24–27.9)
        (80, 175, "pre_obese", "overweight"),
        # 75 / 1.75² = 24.49: WHO normal (< 25) but China overweight (≥ 24)
        (75, 175, "normal", "overweight"),
        # 90 / 1.75² = 29.39: WHO pre-obese, China obese (≥ 28)
        (90, 175, "pre_obese", "obese"),
        # 110 / 1.70² = 38.06: WHO obese class II
        (110, 170, "obese_ii", "obese"),
        # 50 / 1.70² = 17.30: underweight in both
        (50, 170, "underweight", "underweight"),
    ],
)
def test_bmi_categories(weight: float, height: float, who: str, china: str) -> None:
    result = bmi(weight, height)
    _ok(result)
    assert [c.code for c in result.categories] == [who, china]


@pytest.mark.parametrize(
    ("value", "who", "china"),
    [
        (18.4, "underweight", "underweight"),
        (18.5, "normal", "normal"),
        (23.9, "normal", "normal"),
        (24.0, "normal", "overweight"),
        (25.0, "pre_obese", "overweight"),
        (28.0, "pre_obese", "obese"),
        (30.0, "obese_i", "obese"),
        (35.0, "obese_ii", "obese"),
        (40.0, "obese_iii", "obese"),
    ],
)
def test_bmi_cut_offs(value: float, who: str, china: str) -> None:
    assert bmi_category_who(value).code == who
    assert bmi_category_china(value).code == china


@pytest.mark.parametrize(
    "args", [(0, 175), (70, 0), (-70, 175), (70, math.nan), (math.inf, 175), (70, 1.75)]
)
def test_bmi_rejects_bad_inputs(args: tuple[float, float]) -> None:
    _rejected(bmi(*args))


# --------------------------------------------------------------------------- De Ritis


def test_de_ritis() -> None:
    # 80 / 40 = 2.0
    result = de_ritis(80, 40)
    assert _ok(result) == pytest.approx(2.0)
    assert result.unit == "ratio" and "De Ritis" in result.source
    _rejected(de_ritis(80, 0))
    _rejected(de_ritis(math.nan, 40))


# --------------------------------------------------------------------------- general


def test_derived_is_frozen() -> None:
    result = bmi(70, 175)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.value = 1.0  # type: ignore[misc]


def test_non_numeric_inputs_do_not_crash() -> None:
    _rejected(bmi("70", 175))  # type: ignore[arg-type]
    _rejected(anion_gap(140, None, 24))  # type: ignore[arg-type]
    _rejected(corrected_calcium(True, 30))


_CALCULATORS: list[Callable[[float, float], Derived]] = [
    lambda a, b: egfr_ckd_epi_2021(a, b, "F"),
    lambda a, b: anion_gap(a, b, b),
    corrected_calcium,
    lambda a, b: ldl_friedewald(a, b, b),
    non_hdl,
    lambda a, _b: estimated_average_glucose(a),
    bmi,
    de_ritis,
]


@given(
    a=st.floats(allow_nan=True, allow_infinity=True),
    b=st.floats(allow_nan=True, allow_infinity=True),
    which=st.integers(min_value=0, max_value=len(_CALCULATORS) - 1),
)
def test_any_float_input_gives_consistent_result(a: float, b: float, which: int) -> None:
    result = _CALCULATORS[which](a, b)
    assert result.valid == (result.value is not None)
    if result.value is not None:
        assert math.isfinite(result.value)
    assert result.note_en and result.note_zh
