"""Free-text lab parsing: pasted lines, zh reports, portal tables, junk."""

from __future__ import annotations

import random
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healtrace.labs.parse_text import parse_lab_text
from healtrace.labs.types import RawResult


def one(text: str) -> RawResult:
    results, warnings = parse_lab_text(text)
    assert warnings == []
    assert len(results) == 1, results
    return results[0]


# name, value, unit, ref_low, ref_high, flag, comparator
EXAMPLES = [
    ("血红蛋白 HGB 98 g/L (130-175)", "血红蛋白 HGB", 98, "g/L", 130, 175, "", ""),
    ("Glucose, fasting 126 mg/dL", "Glucose, fasting", 126, "mg/dL", None, None, "", ""),
    ("K+ 6.8 mmol/L ↑", "K+", 6.8, "mmol/L", None, None, "↑", ""),
    ("WBC 12.3 x10^9/L H (4.0-10.0)", "WBC", 12.3, "x10^9/L", 4.0, 10.0, "H", ""),
    ("ALT 56 U/L 参考值 9-50", "ALT", 56, "U/L", 9, 50, "", ""),
    ("TSH <0.01 mIU/L", "TSH", 0.01, "mIU/L", None, None, "", "<"),
    ("Hb: 13.5 g/dL", "Hb", 13.5, "g/dL", None, None, "", ""),
    ("血小板计数 PLT 85 ×10⁹/L ↓ 125~350", "血小板计数 PLT", 85, "×10^9/L", 125, 350, "↓", ""),
    ("总胆固醇 5.8 mmol/L", "总胆固醇", 5.8, "mmol/L", None, None, "", ""),
    ("eGFR >90", "eGFR", 90, "", None, None, "", ">"),
    ("Creatinine 1.2 mg/dL (0.7 - 1.3)", "Creatinine", 1.2, "mg/dL", 0.7, 1.3, "", ""),
    ("钾：６．８", "钾", 6.8, "", None, None, "", ""),
    ("钾 6,8 mmol/L 3,5-5,3", "钾", 6.8, "mmol/L", 3.5, 5.3, "", ""),
    ("K 4.2 mmol/L 3.5–5.3", "K", 4.2, "mmol/L", 3.5, 5.3, "", ""),
    ("K 4.2 mmol/L 3.5~5.3", "K", 4.2, "mmol/L", 3.5, 5.3, "", ""),
    ("K 4.2 mmol/L 3.5 - 5.3", "K", 4.2, "mmol/L", 3.5, 5.3, "", ""),
    ("总胆固醇 5.8 mmol/L <5.2 ↑", "总胆固醇", 5.8, "mmol/L", None, 5.2, "↑", ""),
    ("ALT 56 U/L ≤ 40 H", "ALT", 56, "U/L", None, 40, "H", ""),
    ("HDL 0.8 mmol/L >1.0 L", "HDL", 0.8, "mmol/L", 1.0, None, "L", ""),
    ("Vitamin B12 350 pg/mL", "Vitamin B12", 350, "pg/mL", None, None, "", ""),
    ("HbA1c 6.5 % 4.0-5.6 H", "HbA1c", 6.5, "%", 4.0, 5.6, "H", ""),
    ("WBC 15 10*9/L HH", "WBC", 15, "10*9/L", None, None, "HH", ""),
    ("血钾 2.9 mmol/L 偏低", "血钾", 2.9, "mmol/L", None, None, "偏低", ""),
    ("ALT 80 U/L 高", "ALT", 80, "U/L", None, None, "高", ""),
    ("CRP 12 mg/L *", "CRP", 12, "mg/L", None, None, "*", ""),
    ("白细胞 12.3 ×10^9/L↑", "白细胞", 12.3, "×10^9/L", None, None, "↑", ""),
    ("TSH 2.5 uIU/mL Ref range: 0.4-4.0", "TSH", 2.5, "uIU/mL", 0.4, 4.0, "", ""),
    (
        "Potassium (serum) 5.9 mmol/L [3.5-5.1] (H)",
        "Potassium (serum)",
        5.9,
        "mmol/L",
        3.5,
        5.1,
        "H",
        "",
    ),
    ("PT 12.5 s 11-14", "PT", 12.5, "s", 11, 14, "", ""),
    ("K 4.0 L", "K", 4.0, "", None, None, "L", ""),
    ("Na ≥ 150 mmol/L", "Na", 150, "mmol/L", None, None, "", "≥"),
]


@pytest.mark.parametrize(
    ("text", "name", "value", "unit", "low", "high", "flag", "comparator"), EXAMPLES
)
def test_examples(
    text: str,
    name: str,
    value: float,
    unit: str,
    low: float | None,
    high: float | None,
    flag: str,
    comparator: str,
) -> None:
    r = one(text)
    assert (r.name, r.unit, r.ref_low, r.ref_high, r.flag, r.comparator) == (
        name,
        unit,
        low,
        high,
        flag,
        comparator,
    )
    assert r.value == pytest.approx(value)
    assert r.source == "text"
    assert r.line == 1


def test_several_results_per_line() -> None:
    results, warnings = parse_lab_text("钠 140 钾 4.1 氯 100；Hb 13,5 g/dL, WBC 6.2")
    assert warnings == []
    assert [(r.name, r.value) for r in results] == [
        ("钠", 140),
        ("钾", 4.1),
        ("氯", 100),
        ("Hb", 13.5),
        ("WBC", 6.2),
    ]


def test_decimal_comma_only_when_unambiguous() -> None:
    results, warnings = parse_lab_text("PLT 1,234")
    assert results == []
    assert [w.code for w in warnings] == ["ambiguous_number"]


def test_digits_in_names_are_not_values() -> None:
    r = one("Hemoglobin A1c   6.5   %   4.0-5.6   H")
    assert (r.name, r.value, r.unit, r.flag) == ("Hemoglobin A1c", 6.5, "%", "H")
    assert one("CA 19-9 52 U/mL").value == 52
    assert one("25(OH)D 18 ng/mL").value == 18


ZH_REPORT = """\
XX市第一人民医院 检验报告单
姓名：张三  性别：男  年龄：56岁
项目\t结果\t单位\t参考范围\t提示
白细胞计数 WBC\t12.3\t×10⁹/L\t3.5-9.5\t↑
红细胞计数 RBC\t3.9\t×10¹²/L\t4.3～5.8\t↓
血红蛋白 HGB  98  g/L  130-175  ↓
血小板计数(PLT)：85 ×10^9/L 125~350 偏低
中性粒细胞百分比 NEUT% 82.1 % 40-75 ↑
空腹血糖 GLU 7.8 mmol/L 3.9-6.1 H
钾：６．８ mmol/L（3.5-5.3）↑
钠 132 mmol/L 137-147 ↓
肌酐 Cr 135 μmol/L 57-111 ↑
总胆固醇 5.8 mmol/L <5.2
糖化血红蛋白 HbA1c 7.2 % 4.0-6.0 高
丙氨酸氨基转移酶(ALT) 56 U/L 参考值 9-50
审核医生：李四
"""


def test_zh_report() -> None:
    results, warnings = parse_lab_text(ZH_REPORT)
    assert warnings == []
    got = {r.name: r for r in results}
    assert len(results) == 12
    wbc = got["白细胞计数 WBC"]
    assert (wbc.value, wbc.unit, wbc.ref_low, wbc.ref_high, wbc.flag) == (
        12.3,
        "×10^9/L",
        3.5,
        9.5,
        "↑",
    )
    assert wbc.line == 4
    rbc = got["红细胞计数 RBC"]
    assert (rbc.unit, rbc.ref_low, rbc.ref_high, rbc.flag) == ("×10^12/L", 4.3, 5.8, "↓")
    plt = got["血小板计数(PLT)"]
    assert (plt.value, plt.unit, plt.flag) == (85, "×10^9/L", "偏低")
    k = got["钾"]
    assert (k.value, k.unit, k.ref_low, k.ref_high, k.flag) == (6.8, "mmol/L", 3.5, 5.3, "↑")
    assert got["肌酐 Cr"].unit == "μmol/L"
    assert got["总胆固醇"].ref_high == 5.2
    assert got["糖化血红蛋白 HbA1c"].flag == "高"
    alt = got["丙氨酸氨基转移酶(ALT)"]
    assert (alt.value, alt.ref_low, alt.ref_high) == (56, 9, 50)
    assert got["中性粒细胞百分比 NEUT%"].unit == "%"


EN_TABLE = """\
Test\tResult\tFlag\tUnits\tReference Range
WBC\t12.3\tH\tx10^9/L\t4.0-10.0
RBC\t4.50\t\tx10^12/L\t4.20-5.80
Hemoglobin\t10.1\tL\tg/dL\t13.2-17.1
Platelets\t85\tL\tK/uL\t140-400
Glucose, fasting\t126\tH\tmg/dL\t65-99
Sodium\t139\t\tmmol/L\t135-146
Potassium\t>6.0\tHH\tmmol/L\t3.5-5.3
Creatinine    1.2        mg/dL     0.7 - 1.3
eGFR          >90                  mL/min/1.73m2     >59
ALT (SGPT)    56     H   U/L       9-46
TSH           <0.01  L   mIU/L     0.40-4.50
Cholesterol, Total  212  H  mg/dL  <200
"""


def test_en_portal_table() -> None:
    results, warnings = parse_lab_text(EN_TABLE)
    assert warnings == []
    assert len(results) == 12
    got = {r.name: r for r in results}
    assert "Test" not in got
    assert (got["WBC"].flag, got["WBC"].unit, got["WBC"].ref_high) == ("H", "x10^9/L", 10.0)
    rbc = got["RBC"]
    assert (rbc.value, rbc.flag, rbc.unit, rbc.ref_low) == (4.5, "", "x10^12/L", 4.2)
    assert got["Platelets"].unit == "K/uL"
    assert got["Glucose, fasting"].ref_high == 99
    k = got["Potassium"]
    assert (k.comparator, k.value, k.flag, k.ref_low, k.ref_high) == (">", 6.0, "HH", 3.5, 5.3)
    egfr = got["eGFR"]
    assert (egfr.comparator, egfr.value, egfr.unit, egfr.ref_low) == (">", 90, "mL/min/1.73m2", 59)
    assert (got["ALT (SGPT)"].value, got["ALT (SGPT)"].flag) == (56, "H")
    tsh = got["TSH"]
    assert (tsh.comparator, tsh.value, tsh.flag, tsh.unit) == ("<", 0.01, "L", "mIU/L")
    chol = got["Cholesterol, Total"]
    assert (chol.value, chol.ref_high, chol.flag) == (212, 200, "H")
    assert [r.line for r in results] == list(range(2, 14))


def test_header_rows_ignored() -> None:
    for header in ("项目 结果 单位 参考范围", "Test Result Units Reference Range", "Test\tResult"):
        assert parse_lab_text(header) == ([], [])


def test_unknown_analyte_warns() -> None:
    results, warnings = parse_lab_text("Foo bar 12 mg/dL\nK 4.0 mmol/L")
    assert [r.name for r in results] == ["K"]
    assert [(w.line, w.code) for w in warnings] == [(1, "unknown_analyte")]
    assert "Foo bar" in warnings[0].detail


def test_prose_without_results_is_silent() -> None:
    assert parse_lab_text("I feel tired since 3 days, doctor said to come back.") == ([], [])


def test_empty() -> None:
    assert parse_lab_text("") == ([], [])
    assert parse_lab_text("\n\n  \t\n") == ([], [])


def test_printable_noise() -> None:
    rng = random.Random(1)
    noise = "".join(rng.choice(string.printable) for _ in range(200_000))
    results, warnings = parse_lab_text(noise, max_chars=300_000)
    assert all(isinstance(r, RawResult) for r in results)
    assert all(w.code in {"unknown_analyte", "ambiguous_number"} for w in warnings)


def test_huge_input_truncated() -> None:
    text = "K 4.0 mmol/L\n" + "x" * 10_000_000
    results, warnings = parse_lab_text(text)
    assert [r.value for r in results] == [4.0]
    assert [w.code for w in warnings] == ["truncated"]


def test_binary_and_emoji() -> None:
    junk = bytes(range(256)).decode("latin-1") + "\x00\ud800💊🩸 K 😀 4.1 \u202e"
    parse_lab_text(junk)
    parse_lab_text("💉" * 5000 + "\x00" * 5000)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_arbitrary_text_never_raises(text: str) -> None:
    results, _ = parse_lab_text(text)
    for r in results:
        assert r.value == r.value and r.value >= 0
        assert r.line >= 1


LAB_TOKENS = ["K", "钾", "Hb", "4.1", "<", "≤", "-", "~", "(", ")", "mmol/L", "H", "↑", ","]
LAB_TOKENS += [";", " ", "\t", "6,8", "1,234", "×10⁹/L"]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.sampled_from(LAB_TOKENS),
        max_size=40,
    )
)
def test_lab_like_tokens_never_raise(tokens: list[str]) -> None:
    parse_lab_text("".join(tokens))
