"""Derived laboratory values computed from canonical SI inputs.

Every function is pure: it takes plain numbers (SI / mmol/L units unless the name says
otherwise), never raises on bad input and returns a frozen :class:`Derived`. When the
inputs make a calculation meaningless (non-finite, zero or negative values, a child for
an adult-only equation, triglycerides too high for Friedewald ...) the result carries
``value=None``, ``valid=False`` and a bilingual reason instead of a number.

Each function's docstring cites the publication the formula comes from; the same
citation is carried in ``Derived.source`` so it can be shown to the user.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CREATININE_UMOL_PER_MG_DL",
    "Category",
    "Derived",
    "Quantity",
    "anion_gap",
    "bmi",
    "bmi_category_china",
    "bmi_category_who",
    "ckd_stage",
    "corrected_calcium",
    "de_ritis",
    "egfr_ckd_epi_2021",
    "estimated_average_glucose",
    "hba1c_ifcc_to_percent",
    "ldl_friedewald",
    "non_hdl",
]

#: µmol/L of creatinine per mg/dL (molar mass 113.12 g/mol), as used by CKD-EPI.
CREATININE_UMOL_PER_MG_DL = 88.42
#: mmol/L of calcium per mg/dL (molar mass 40.08 g/mol).
_CALCIUM_MG_DL_PER_MMOL_L = 4.008
#: mg/dL of cholesterol per mmol/L (molar mass 386.65 g/mol).
_CHOLESTEROL_MG_DL_PER_MMOL_L = 38.67


@dataclass(frozen=True, slots=True)
class Category:
    """A classification of a derived value under one named scheme (e.g. KDIGO, WHO)."""

    scheme: str
    code: str
    label_en: str
    label_zh: str


@dataclass(frozen=True, slots=True)
class Quantity:
    """The same derived value expressed in another unit (e.g. eAG in mg/dL)."""

    value: float
    unit: str


@dataclass(frozen=True, slots=True)
class Derived:
    """One derived lab value with its formula, provenance and bilingual explanation."""

    name: str
    value: float | None
    unit: str
    valid: bool
    note_en: str
    note_zh: str
    formula: str
    source: str
    categories: tuple[Category, ...] = ()
    alternates: tuple[Quantity, ...] = ()

    @property
    def category(self) -> str | None:
        """Code of the first classification (e.g. ``"G3a"``), or None."""
        return self.categories[0].code if self.categories else None


# --------------------------------------------------------------------------- helpers


def _bad_number(label_en: str, label_zh: str, x: object) -> tuple[str, str] | None:
    """Return a bilingual reason when ``x`` is not a finite, strictly positive number."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return (f"{label_en} is not a number.", f"{label_zh}不是数值。")
    if not math.isfinite(x):
        return (f"{label_en} is not a finite number.", f"{label_zh}不是有限数值。")
    if x <= 0:
        return (f"{label_en} must be greater than zero.", f"{label_zh}必须大于零。")
    return None


_OUT_OF_RANGE = (
    "The inputs are outside any physiological range.",
    "输入值超出任何生理范围。",
)


def _first_problem(*checks: tuple[str, str, object]) -> tuple[str, str] | None:
    for label_en, label_zh, x in checks:
        problem = _bad_number(label_en, label_zh, x)
        if problem is not None:
            return problem
    return None


def _invalid(name: str, unit: str, reason: tuple[str, str], formula: str, source: str) -> Derived:
    return Derived(
        name=name,
        value=None,
        unit=unit,
        valid=False,
        note_en=f"Not calculated: {reason[0]}",
        note_zh=f"无法计算：{reason[1]}",
        formula=formula,
        source=source,
    )


# --------------------------------------------------------------------------- eGFR

_EGFR_NAME = "eGFR (CKD-EPI 2021)"
_EGFR_UNIT = "mL/min/1.73m²"
_EGFR_FORMULA = (
    "eGFR = 142 × min(Scr/κ, 1)^α × max(Scr/κ, 1)^−1.200 × 0.9938^age × 1.012 [if female]; "
    "Scr in mg/dL (= µmol/L ÷ 88.42); κ = 0.7 (F) / 0.9 (M); α = −0.241 (F) / −0.302 (M)"
)
_EGFR_SOURCE = (
    "Inker LA et al. New creatinine- and cystatin C-based equations to estimate GFR without "
    "race. N Engl J Med 2021;385:1737-1749. Staging: KDIGO 2024 Clinical Practice Guideline "
    "for the Evaluation and Management of CKD. Kidney Int 2024;105(4S):S117-S314."
)

_CKD_STAGES: tuple[tuple[float, str, str, str], ...] = (
    (90.0, "G1", "normal or high", "正常或升高"),
    (60.0, "G2", "mildly decreased", "轻度下降"),
    (45.0, "G3a", "mildly to moderately decreased", "轻至中度下降"),
    (30.0, "G3b", "moderately to severely decreased", "中至重度下降"),
    (15.0, "G4", "severely decreased", "重度下降"),
    (-math.inf, "G5", "kidney failure", "肾衰竭"),
)


def _ckd_category(egfr: float) -> Category:
    for lower, code, label_en, label_zh in _CKD_STAGES:
        if egfr >= lower:
            return Category("KDIGO GFR category", code, label_en, label_zh)
    raise ValueError(f"eGFR must be a finite number, got {egfr!r}")


def ckd_stage(egfr: float) -> str:
    """KDIGO GFR category for an eGFR in mL/min/1.73m².

    G1 ≥ 90, G2 60–89, G3a 45–59, G3b 30–44, G4 15–29, G5 < 15 (KDIGO 2012/2024 CKD
    guideline, Kidney Int Suppl 2013;3:1-150 and Kidney Int 2024;105(4S):S117-S314). The
    value is compared as given (no rounding). Raises ``ValueError`` for NaN.
    """
    if math.isnan(egfr):
        raise ValueError("eGFR must be a finite number, got nan")
    return _ckd_category(egfr).code


def egfr_ckd_epi_2021(
    creatinine_umol_l: float, age_years: float, sex: Literal["M", "F"]
) -> Derived:
    """Estimated GFR by the race-free CKD-EPI 2021 creatinine equation.

    Source: Inker LA, Eneanya ND, Coresh J, et al. New creatinine- and cystatin C-based
    equations to estimate GFR without race. N Engl J Med 2021;385:1737-1749.

    eGFR = 142 × min(Scr/κ, 1)^α × max(Scr/κ, 1)^−1.200 × 0.9938^age × 1.012 [if female],
    Scr in mg/dL (µmol/L ÷ 88.42), κ 0.7 F / 0.9 M, α −0.241 F / −0.302 M. Adults only
    (age ≥ 18). The result carries the KDIGO GFR category (see :func:`ckd_stage`).
    """
    problem = _first_problem(
        ("Serum creatinine", "血清肌酐", creatinine_umol_l), ("Age", "年龄", age_years)
    )
    if problem is None and age_years < 18:
        problem = (
            "CKD-EPI is validated for adults (age ≥ 18) only; use a paediatric equation "
            "such as bedside Schwartz.",
            "CKD-EPI 公式仅适用于成人（≥18 岁）；儿童请使用床旁 Schwartz 等儿科公式。",
        )
    if problem is None and age_years > 120:
        problem = ("Age is implausible (> 120 years).", "年龄不合理（>120 岁）。")
    sex_code = sex.strip().upper() if isinstance(sex, str) else ""
    if problem is None and sex_code not in ("M", "F"):
        problem = ('Sex must be "M" or "F".', "性别须为 “M”（男）或 “F”（女）。")
    if problem is not None:
        return _invalid(_EGFR_NAME, _EGFR_UNIT, problem, _EGFR_FORMULA, _EGFR_SOURCE)

    female = sex_code == "F"
    kappa, alpha = (0.7, -0.241) if female else (0.9, -0.302)
    ratio = creatinine_umol_l / CREATININE_UMOL_PER_MG_DL / kappa
    egfr = 142.0 * min(ratio, 1.0) ** alpha * max(ratio, 1.0) ** -1.200 * 0.9938**age_years
    if female:
        egfr *= 1.012
    stage = _ckd_category(egfr)
    return Derived(
        name=_EGFR_NAME,
        value=egfr,
        unit=_EGFR_UNIT,
        valid=True,
        note_en=(
            f"eGFR {egfr:.1f} {_EGFR_UNIT}: KDIGO {stage.code} ({stage.label_en}). A GFR "
            "category alone does not diagnose CKD: it needs abnormalities persisting > 3 "
            "months, and G1–G2 also need markers of kidney damage such as albuminuria. "
            "Less reliable with unstable creatinine, extremes of muscle mass or diet."
        ),
        note_zh=(
            f"eGFR {egfr:.1f} {_EGFR_UNIT}：KDIGO {stage.code}（{stage.label_zh}）。"
            "仅凭 GFR 分期不能诊断慢性肾脏病：需异常持续超过 3 个月，G1–G2 还需有蛋白尿等"
            "肾损伤标志。肌酐不稳定、肌肉量或饮食极端时结果不可靠。"
        ),
        formula=_EGFR_FORMULA,
        source=_EGFR_SOURCE,
        categories=(stage,),
    )


# --------------------------------------------------------------------------- anion gap

_AG_SOURCE = (
    "Kraut JA, Madias NE. Serum anion gap: its uses and limitations in clinical medicine. "
    "Clin J Am Soc Nephrol 2007;2:162-174."
)


def anion_gap(na: float, cl: float, hco3: float, k: float | None = None) -> Derived:
    """Serum anion gap in mmol/L.

    Source: Kraut JA, Madias NE. Serum anion gap: its uses and limitations in clinical
    medicine. Clin J Am Soc Nephrol 2007;2:162-174.

    AG = Na − (Cl + HCO3); with potassium, AG = (Na + K) − (Cl + HCO3). Reference
    intervals (≈ 8–12 without K, ≈ 10–20 with K) depend on the analyser and laboratory.
    """
    with_k = k is not None
    name = "Anion gap (with K)" if with_k else "Anion gap"
    formula = "AG = (Na + K) − (Cl + HCO3)" if with_k else "AG = Na − (Cl + HCO3)"
    checks: list[tuple[str, str, object]] = [
        ("Sodium", "钠", na),
        ("Chloride", "氯", cl),
        ("Bicarbonate", "碳酸氢根", hco3),
    ]
    if with_k:
        checks.append(("Potassium", "钾", k))
    problem = _first_problem(*checks)
    if problem is not None:
        return _invalid(name, "mmol/L", problem, formula, _AG_SOURCE)
    value = na + (k or 0.0) - (cl + hco3)
    if not math.isfinite(value):
        return _invalid(name, "mmol/L", _OUT_OF_RANGE, formula, _AG_SOURCE)
    ref_en, ref_zh = ("about 10–20", "约 10–20") if with_k else ("about 8–12", "约 8–12")
    note_en = (
        f"Anion gap {value:.1f} mmol/L; typical reference {ref_en} mmol/L, but it varies by "
        "laboratory and analyser. Low albumin lowers the gap (≈ 2.5 mmol/L per 10 g/L)."
    )
    note_zh = (
        f"阴离子间隙 {value:.1f} mmol/L；常见参考范围{ref_zh} mmol/L，因实验室和仪器而异。"
        "低白蛋白会使间隙降低（白蛋白每降 10 g/L 约降 2.5 mmol/L）。"
    )
    if value < 0:
        note_en += " A negative gap usually indicates a measurement or transcription error."
        note_zh += "负值通常提示测定或录入错误。"
    return Derived(
        name=name,
        value=value,
        unit="mmol/L",
        valid=True,
        note_en=note_en,
        note_zh=note_zh,
        formula=formula,
        source=_AG_SOURCE,
    )


# --------------------------------------------------------------------------- calcium

_CA_NAME = "Albumin-corrected calcium"
_CA_FORMULA = (
    "corrected Ca (mmol/L) = Ca + 0.02 × (40 − albumin g/L); "
    "equivalently (mg/dL) = Ca + 0.8 × (4 − albumin g/dL)"
)
_CA_SOURCE = (
    "Payne RB, Little AJ, Williams RB, Milner JR. Interpretation of serum calcium in "
    "patients with abnormal serum proteins. BMJ 1973;4:643-646."
)


def corrected_calcium(total_ca_mmol_l: float, albumin_g_l: float) -> Derived:
    """Albumin-adjusted total calcium (Payne formula), mmol/L.

    Source: Payne RB, Little AJ, Williams RB, Milner JR. Interpretation of serum calcium in
    patients with abnormal serum proteins. BMJ 1973;4:643-646.

    corrected Ca = Ca + 0.02 × (40 − albumin g/L) mmol/L, i.e. in conventional units
    Ca + 0.8 × (4 − albumin g/dL) mg/dL. The mg/dL value is given as an alternate.
    """
    problem = _first_problem(
        ("Total calcium", "总钙", total_ca_mmol_l), ("Albumin", "白蛋白", albumin_g_l)
    )
    if problem is not None:
        return _invalid(_CA_NAME, "mmol/L", problem, _CA_FORMULA, _CA_SOURCE)
    value = total_ca_mmol_l + 0.02 * (40.0 - albumin_g_l)
    return Derived(
        name=_CA_NAME,
        value=value,
        unit="mmol/L",
        valid=True,
        note_en=(
            f"Corrected calcium {value:.2f} mmol/L. Albumin correction is an approximation "
            "and is unreliable in renal failure, acid-base disturbance or critical illness; "
            "measure ionised calcium when it matters."
        ),
        note_zh=(
            f"校正钙 {value:.2f} mmol/L。白蛋白校正仅为近似，在肾衰竭、酸碱失衡或危重症时"
            "不可靠；必要时应直接测定离子钙。"
        ),
        formula=_CA_FORMULA,
        source=_CA_SOURCE,
        alternates=(Quantity(value * _CALCIUM_MG_DL_PER_MMOL_L, "mg/dL"),),
    )


# --------------------------------------------------------------------------- lipids

_LDL_NAME = "LDL cholesterol (Friedewald)"
_LDL_FORMULA = "LDL-C = TC − HDL-C − TG/2.2 (mmol/L); = TC − HDL-C − TG/5 (mg/dL)"
_LDL_SOURCE = (
    "Friedewald WT, Levy RI, Fredrickson DS. Estimation of the concentration of "
    "low-density lipoprotein cholesterol in plasma, without use of the preparative "
    "ultracentrifuge. Clin Chem 1972;18:499-502."
)
_LDL_ALTERNATIVES_EN = (
    "Alternatives: Martin-Hopkins (Martin SS et al. JAMA 2013;310:2061-2068) or Sampson/NIH "
    "equation 2 (Sampson M et al. JAMA Cardiol 2020;5:540-548), or direct LDL-C measurement."
)
_LDL_ALTERNATIVES_ZH = (
    "可改用 Martin-Hopkins 公式（JAMA 2013;310:2061-2068）、Sampson/NIH 公式"
    "（JAMA Cardiol 2020;5:540-548）或直接测定 LDL-C。"
)


def ldl_friedewald(tc: float, hdl: float, tg: float) -> Derived:
    """LDL cholesterol by the Friedewald equation, all in mmol/L.

    Source: Friedewald WT, Levy RI, Fredrickson DS. Clin Chem 1972;18:499-502.

    LDL-C = TC − HDL-C − TG/2.2. Invalid when TG ≥ 4.5 mmol/L (400 mg/dL) or when the
    result is ≤ 0. Martin-Hopkins (JAMA 2013;310:2061) and Sampson (JAMA Cardiol
    2020;5:540) are more accurate at high TG or low LDL-C.
    """
    problem = _first_problem(
        ("Total cholesterol", "总胆固醇", tc),
        ("HDL cholesterol", "HDL 胆固醇", hdl),
        ("Triglycerides", "甘油三酯", tg),
    )
    if problem is None and tg >= 4.5:
        problem = (
            f"Friedewald is invalid when triglycerides are ≥ 4.5 mmol/L (400 mg/dL); got "
            f"{tg:g} mmol/L. {_LDL_ALTERNATIVES_EN}",
            f"甘油三酯 ≥ 4.5 mmol/L（400 mg/dL）时 Friedewald 公式不适用（当前 {tg:g} mmol/L）。"
            f"{_LDL_ALTERNATIVES_ZH}",
        )
    value = tc - hdl - tg / 2.2 if problem is None else 0.0
    if problem is None and value <= 0:
        problem = (
            "The calculated LDL-C is not positive; check the inputs or measure LDL-C directly.",
            "计算所得 LDL-C 不为正值；请核对输入或直接测定 LDL-C。",
        )
    if problem is not None:
        return _invalid(_LDL_NAME, "mmol/L", problem, _LDL_FORMULA, _LDL_SOURCE)
    return Derived(
        name=_LDL_NAME,
        value=value,
        unit="mmol/L",
        valid=True,
        note_en=(
            f"Calculated LDL-C {value:.2f} mmol/L. Assumes a fasting sample and no type III "
            f"dyslipidaemia; underestimates at low LDL-C or raised TG. {_LDL_ALTERNATIVES_EN}"
        ),
        note_zh=(
            f"计算 LDL-C {value:.2f} mmol/L。假定为空腹样本且无 III 型高脂蛋白血症；LDL-C "
            f"较低或甘油三酯升高时会低估。{_LDL_ALTERNATIVES_ZH}"
        ),
        formula=_LDL_FORMULA,
        source=_LDL_SOURCE,
        alternates=(Quantity(value * _CHOLESTEROL_MG_DL_PER_MMOL_L, "mg/dL"),),
    )


_NON_HDL_NAME = "Non-HDL cholesterol"
_NON_HDL_FORMULA = "non-HDL-C = TC − HDL-C (mmol/L)"
_NON_HDL_SOURCE = (
    "Expert Panel on Detection, Evaluation, and Treatment of High Blood Cholesterol in "
    "Adults. Third Report of the NCEP (Adult Treatment Panel III). JAMA 2001;285:2486-2497."
)


def non_hdl(tc: float, hdl: float) -> Derived:
    """Non-HDL cholesterol = total cholesterol − HDL cholesterol, mmol/L.

    Source: NCEP Adult Treatment Panel III, JAMA 2001;285:2486-2497 (non-HDL-C as a
    secondary target); valid in the non-fasting state and at any triglyceride level.
    """
    problem = _first_problem(
        ("Total cholesterol", "总胆固醇", tc), ("HDL cholesterol", "HDL 胆固醇", hdl)
    )
    if problem is None and hdl >= tc:
        problem = (
            "HDL cholesterol cannot be greater than or equal to total cholesterol.",
            "HDL 胆固醇不能大于或等于总胆固醇。",
        )
    if problem is not None:
        return _invalid(_NON_HDL_NAME, "mmol/L", problem, _NON_HDL_FORMULA, _NON_HDL_SOURCE)
    value = tc - hdl
    return Derived(
        name=_NON_HDL_NAME,
        value=value,
        unit="mmol/L",
        valid=True,
        note_en=(
            f"Non-HDL cholesterol {value:.2f} mmol/L (all atherogenic lipoproteins); does "
            "not require fasting."
        ),
        note_zh=f"非 HDL 胆固醇 {value:.2f} mmol/L（反映全部致动脉粥样硬化脂蛋白），无需空腹。",
        formula=_NON_HDL_FORMULA,
        source=_NON_HDL_SOURCE,
        alternates=(Quantity(value * _CHOLESTEROL_MG_DL_PER_MMOL_L, "mg/dL"),),
    )


# --------------------------------------------------------------------------- HbA1c → eAG

_EAG_NAME = "Estimated average glucose (ADAG)"
_EAG_FORMULA = (
    "eAG (mmol/L) = 1.59 × A1c − 2.59; eAG (mg/dL) = 28.7 × A1c − 46.7; "
    "A1c (%) = 0.09148 × IFCC (mmol/mol) + 2.152"
)
_EAG_SOURCE = (
    "Nathan DM, Kuenen J, Borg R, et al. Translating the A1C assay into estimated average "
    "glucose values. Diabetes Care 2008;31:1473-1478. IFCC–NGSP master equation: Hoelzel W "
    "et al. Clin Chem 2004;50:166-174."
)


def hba1c_ifcc_to_percent(ifcc_mmol_mol: float) -> float:
    """Convert HbA1c from IFCC mmol/mol to NGSP/DCCT % (master equation).

    Source: Hoelzel W et al. IFCC reference system for measurement of hemoglobin A1c in
    human blood and the national standardization schemes in the United States, Japan, and
    Sweden. Clin Chem 2004;50:166-174. NGSP % = 0.09148 × IFCC + 2.152.
    """
    return 0.09148 * ifcc_mmol_mol + 2.152


def estimated_average_glucose(
    hba1c_percent: float | None = None, *, ifcc_mmol_mol: float | None = None
) -> Derived:
    """Estimated average glucose from HbA1c (ADAG study); value in mmol/L.

    Source: Nathan DM et al. Translating the A1C assay into estimated average glucose
    values. Diabetes Care 2008;31:1473-1478.

    eAG mmol/L = 1.59 × A1c − 2.59 (alternate mg/dL = 28.7 × A1c − 46.7). Pass either
    ``hba1c_percent`` (NGSP/DCCT %) or ``ifcc_mmol_mol``, which is converted with
    A1c % = 0.09148 × IFCC + 2.152 (Hoelzel, Clin Chem 2004;50:166).
    """
    if (hba1c_percent is None) == (ifcc_mmol_mol is None):
        return _invalid(
            _EAG_NAME,
            "mmol/L",
            (
                "Give HbA1c either in % (NGSP) or in mmol/mol (IFCC), exactly one.",
                "请只提供一种 HbA1c：% (NGSP) 或 mmol/mol (IFCC)。",
            ),
            _EAG_FORMULA,
            _EAG_SOURCE,
        )
    if ifcc_mmol_mol is not None:
        problem = _bad_number("HbA1c (IFCC)", "糖化血红蛋白（IFCC）", ifcc_mmol_mol)
        a1c = hba1c_ifcc_to_percent(ifcc_mmol_mol) if problem is None else 0.0
    else:
        problem = _bad_number("HbA1c", "糖化血红蛋白", hba1c_percent)
        a1c = float(hba1c_percent) if problem is None and hba1c_percent is not None else 0.0
    if problem is None and not 2.0 <= a1c <= 25.0:
        problem = (
            f"HbA1c {a1c:.1f} % is outside the plausible range (2–25 %).",
            f"糖化血红蛋白 {a1c:.1f}% 超出合理范围（2–25%）。",
        )
    if problem is not None:
        return _invalid(_EAG_NAME, "mmol/L", problem, _EAG_FORMULA, _EAG_SOURCE)
    mmol = 1.59 * a1c - 2.59
    mg = 28.7 * a1c - 46.7
    note_en = (
        f"HbA1c {a1c:.1f} % corresponds to an estimated average glucose of {mmol:.1f} mmol/L "
        f"({mg:.0f} mg/dL) over roughly the past 2–3 months."
    )
    note_zh = (
        f"糖化血红蛋白 {a1c:.1f}% 对应近 2–3 个月估计平均血糖 {mmol:.1f} mmol/L（{mg:.0f} mg/dL）。"
    )
    if not 5.0 <= a1c <= 13.0:
        note_en += " Outside the ADAG study range (about 5–13 %), so less certain."
        note_zh += "超出 ADAG 研究范围（约 5–13%），估计的确定性较低。"
    note_en += " Misleading with anaemia, haemoglobinopathies or altered red-cell turnover."
    note_zh += "贫血、血红蛋白病或红细胞寿命改变时可能失真。"
    return Derived(
        name=_EAG_NAME,
        value=mmol,
        unit="mmol/L",
        valid=True,
        note_en=note_en,
        note_zh=note_zh,
        formula=_EAG_FORMULA,
        source=_EAG_SOURCE,
        alternates=(Quantity(mg, "mg/dL"), Quantity(a1c, "%")),
    )


# --------------------------------------------------------------------------- BMI

_BMI_NAME = "Body mass index"
_BMI_UNIT = "kg/m²"
_BMI_FORMULA = "BMI = weight (kg) / height (m)²"
_BMI_SOURCE = (
    "WHO. Obesity: preventing and managing the global epidemic. WHO Technical Report Series "
    "894, 2000. 中华人民共和国卫生行业标准 WS/T 428-2013《成人体重判定》."
)

_WHO_BMI: tuple[tuple[float, str, str, str], ...] = (
    (40.0, "obese_iii", "obese class III", "肥胖 III 级"),
    (35.0, "obese_ii", "obese class II", "肥胖 II 级"),
    (30.0, "obese_i", "obese class I", "肥胖 I 级"),
    (25.0, "pre_obese", "pre-obese (overweight)", "超重（肥胖前期）"),
    (18.5, "normal", "normal range", "正常范围"),
    (-math.inf, "underweight", "underweight", "体重过低"),
)
_CHINA_BMI: tuple[tuple[float, str, str, str], ...] = (
    (28.0, "obese", "obese", "肥胖"),
    (24.0, "overweight", "overweight", "超重"),
    (18.5, "normal", "normal", "体重正常"),
    (-math.inf, "underweight", "underweight", "体重过低"),
)


def _classify(
    value: float, scheme: str, table: tuple[tuple[float, str, str, str], ...]
) -> Category:
    for lower, code, label_en, label_zh in table:
        if value >= lower:
            return Category(scheme, code, label_en, label_zh)
    raise ValueError(f"BMI must be a finite number, got {value!r}")


def bmi_category_who(value: float) -> Category:
    """WHO adult BMI class: < 18.5, 18.5–24.9, 25–29.9, 30–34.9, 35–39.9, ≥ 40.

    Source: WHO Technical Report Series 894 (2000), Table 2.1.
    """
    return _classify(value, "WHO", _WHO_BMI)


def bmi_category_china(value: float) -> Category:
    """Chinese adult BMI class: < 18.5 underweight, 18.5–23.9 normal, 24–27.9 overweight,
    ≥ 28 obese.

    Source: WS/T 428-2013《成人体重判定》(National Health and Family Planning Commission
    of the PRC, 2013).
    """
    return _classify(value, "China WS/T 428-2013", _CHINA_BMI)


def bmi(weight_kg: float, height_cm: float) -> Derived:
    """Body mass index with WHO and Chinese (WS/T 428-2013) adult categories.

    Sources: WHO. Obesity: preventing and managing the global epidemic. WHO Technical
    Report Series 894, 2000; WS/T 428-2013 成人体重判定 (cut-offs 18.5 / 24 / 28).

    BMI = weight kg / (height m)². ``categories`` holds the WHO class first, then the
    Chinese one. The cut-offs apply to adults; children need BMI-for-age percentiles.
    """
    problem = _first_problem(("Weight", "体重", weight_kg), ("Height", "身高", height_cm))
    if problem is None and not 30.0 <= height_cm <= 300.0:
        problem = (
            f"Height {height_cm:g} cm is implausible; give height in centimetres.",
            f"身高 {height_cm:g} cm 不合理；请以厘米为单位填写身高。",
        )
    if problem is None and weight_kg > 700.0:
        problem = (
            f"Weight {weight_kg:g} kg is implausible; give weight in kilograms.",
            f"体重 {weight_kg:g} kg 不合理；请以千克为单位填写体重。",
        )
    if problem is not None:
        return _invalid(_BMI_NAME, _BMI_UNIT, problem, _BMI_FORMULA, _BMI_SOURCE)
    height_m = height_cm / 100.0
    value = weight_kg / (height_m * height_m)
    who = bmi_category_who(value)
    china = bmi_category_china(value)
    return Derived(
        name=_BMI_NAME,
        value=value,
        unit=_BMI_UNIT,
        valid=True,
        note_en=(
            f"BMI {value:.1f} {_BMI_UNIT}: WHO {who.label_en}; Chinese standard (WS/T 428) "
            f"{china.label_en}. Adult cut-offs; BMI does not distinguish fat from muscle."
        ),
        note_zh=(
            f"BMI {value:.1f} {_BMI_UNIT}：中国标准（WS/T 428）{china.label_zh}；WHO 标准"
            f"{who.label_zh}。适用于成人；BMI 不能区分脂肪与肌肉。"
        ),
        formula=_BMI_FORMULA,
        source=_BMI_SOURCE,
        categories=(who, china),
    )


# --------------------------------------------------------------------------- De Ritis

_DE_RITIS_NAME = "De Ritis ratio (AST/ALT)"
_DE_RITIS_FORMULA = "De Ritis ratio = AST / ALT (both in the same unit, e.g. U/L)"
_DE_RITIS_SOURCE = (
    "De Ritis F, Coltorti M, Giusti G. An enzymic test for the diagnosis of viral "
    "hepatitis: the transaminase serum activities. Clin Chim Acta 1957;2:70-74. Botros M, "
    "Sikaris KA. The De Ritis ratio: the test of time. Clin Biochem Rev 2013;34:117-130."
)


def de_ritis(ast: float, alt: float) -> Derived:
    """AST/ALT (De Ritis) ratio, dimensionless; AST and ALT in the same unit (U/L).

    Sources: De Ritis F et al. Clin Chim Acta 1957;2:70-74; Botros M, Sikaris KA. The De
    Ritis ratio: the test of time. Clin Biochem Rev 2013;34:117-130.
    """
    problem = _first_problem(("AST", "AST（谷草转氨酶）", ast), ("ALT", "ALT（谷丙转氨酶）", alt))
    if problem is not None:
        return _invalid(_DE_RITIS_NAME, "ratio", problem, _DE_RITIS_FORMULA, _DE_RITIS_SOURCE)
    value = ast / alt
    if not math.isfinite(value):
        return _invalid(_DE_RITIS_NAME, "ratio", _OUT_OF_RANGE, _DE_RITIS_FORMULA, _DE_RITIS_SOURCE)
    return Derived(
        name=_DE_RITIS_NAME,
        value=value,
        unit="ratio",
        valid=True,
        note_en=(
            f"AST/ALT ratio {value:.2f}. Interpret only together with the absolute enzyme "
            "levels and the clinical picture; a ratio > 2 is classically associated with "
            "alcohol-related liver disease, but it is not diagnostic on its own."
        ),
        note_zh=(
            f"AST/ALT 比值 {value:.2f}。须结合转氨酶绝对值及临床情况解读；比值 > 2 传统上"
            "与酒精性肝病相关，但单凭比值不能诊断。"
        ),
        formula=_DE_RITIS_FORMULA,
        source=_DE_RITIS_SOURCE,
    )
