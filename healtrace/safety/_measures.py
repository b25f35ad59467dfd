"""Numbers a patient types: temperatures, ages, weeks of pregnancy, vital signs, lab results.

:func:`measure` finds them in normalised text (see ``_text.normalise``) and
:func:`numeric_findings` turns them into ``num.*`` findings the lexicon rules can use.
:func:`classify_lab` applies the critical-value table below.

Critical values
---------------

A result in the ``emergency`` band means "go to the emergency department now"; one in the
``urgent`` band means "speak to a clinician today". Values outside the reference range but
inside both bands are ``routine`` (an ordinary appointment). All limits are in SI units;
conversions: glucose 1 mmol/L = 18.016 mg/dL; haemoglobin 1 g/dL = 10 g/L; calcium
1 mmol/L = 4.008 mg/dL; creatinine 1 mg/dL = 88.42 µmol/L; platelets and white cells
10^9/L = 10^3/µL.

=================  ============  ==========  ===========  ============  ============
analyte (SI unit)  low: emerg.   low: urg.   high: urg.   high: emerg.  reference
=================  ============  ==========  ===========  ============  ============
potassium mmol/L   ≤ 2.5         ≤ 2.9       ≥ 6.0        ≥ 6.5         3.5–5.3
sodium mmol/L      ≤ 120         ≤ 125       ≥ 155        ≥ 160         135–145
glucose mmol/L     ≤ 3.0         ≤ 3.9       ≥ 20.0       ≥ 33.3        3.9–6.1
haemoglobin g/L    < 60          < 80        ≥ 200        —             120–175
platelets 10^9/L   < 10          < 30        ≥ 1000       —             150–450
WBC 10^9/L         —             ≤ 1.5       ≥ 30         ≥ 100         4.0–10.0
neutrophils 10^9/L —             ≤ 0.5       —            —             1.8–7.5
INR                —             —           ≥ 5.0        ≥ 8.0         0.8–1.2
calcium mmol/L     ≤ 1.75        ≤ 1.9       ≥ 3.0        ≥ 3.5         2.1–2.6
creatinine µmol/L  —             —           ≥ 354        —             44–133
troponin ng/L      —             —           > 14         ≥ 52          ≤ 14
=================  ============  ==========  ===========  ============  ============

Rules in ``lexicon/critical_lab.yaml`` raise some results further with symptoms: glucose
≥ 20 with vomiting, drowsiness or fast breathing (DKA/HHS), low glucose with confusion,
INR ≥ 5 or platelets < 50 with bleeding, neutrophils ≤ 1.0 with fever, potassium ≥ 6.0
with palpitations or weakness.

Sources: the Royal College of Pathologists, *The communication of critical and unexpected
pathology results* (G158, 2017), whose suggested "critical" limits are potassium ≤ 2.5 /
≥ 6.5, sodium ≤ 120 / ≥ 160 and adjusted calcium ≤ 1.8 / ≥ 3.5; Wagar et al., *Critical
values comparison: a College of American Pathologists Q-Probes survey of 163 clinical
laboratories*, Arch Pathol Lab Med 2007;131:1769-75 (median limits across US laboratories,
e.g. glucose < 45–50 mg/dL, haemoglobin < 6–7 g/dL, platelets < 20–40 × 10^9/L, INR > 5–6);
China's 危急值报告制度 (one of the 18 core medical-quality rules, 国卫医发〔2018〕8号), under
which each hospital sets its own list (commonly K < 2.8 / > 6.2, Na < 120 / > 160, 血糖
< 2.8 / > 25 mmol/L, 血小板 < 30 × 10^9/L); and the ESC 0/1-hour algorithm for
high-sensitivity troponin T (99th centile 14 ng/L, rule-in ≥ 52 ng/L). Where the lists
differ, the emergency band uses the more extreme common limit and the urgent band the more
cautious one. A deployment should check the table against its own laboratory's list.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from healtrace.safety.types import Level

#: Every ``num.*`` finding :func:`numeric_findings` can produce (rules may refer to them).
NUMERIC_FINDINGS: frozenset[str] = frozenset(
    {
        "num.temp_ge_38",
        "num.temp_ge_39",
        "num.temp_ge_39_5",
        "num.temp_ge_40",
        "num.temp_lt_36",
        "num.temp_le_35",
        "num.temp_lt_38",
        "num.age_ge_40",
        "num.age_ge_65",
        "num.child",
        "num.infant_lt_3m",
        "num.infant_3_6m",
        "num.infant_lt_12m",
        "num.toddler",
        "num.gestation",
        "num.preterm",
        "num.term",
        "num.early_pregnancy",
        "num.spo2_le_92",
        "num.spo2_93_94",
        "num.spo2_le_88",
        "num.bp_very_high",
        "num.bp_low",
        "num.hr_ge_130",
        "num.hr_le_40",
        "num.rr_ge_25",
        "num.glucose_ge_20",
        "num.glucose_low",
        "num.potassium_ge_6",
        "num.inr_ge_5",
        "num.platelets_lt_50",
        "num.neutrophils_le_1",
        "num.troponin_high",
        "num.lab_value",
        "num.lab_abnormal",
    }
)


@dataclass(frozen=True, slots=True)
class Measurement:
    #: ``temp_c``, ``age_years``, ``age_months``, ``gestation_weeks``, ``spo2``, ``bp``,
    #: ``hr``, ``rr``, or a lab analyte key (``potassium``, ``glucose`` …).
    kind: str
    #: In SI units (°C, mmol/L, g/L, 10^9/L, µmol/L, ng/L …).
    value: float
    evidence: str
    start: int
    #: Diastolic pressure for ``bp``.
    value2: float = 0.0

    @property
    def is_lab(self) -> bool:
        return self.kind in ANALYTES


# --- numbers in words -------------------------------------------------------------------

_EN_NUMBERS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
}
_EN_NUM = r"\d{1,2}|a|an|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve"
_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5}
_CN_DIGITS.update({"六": 6, "七": 7, "八": 8, "九": 9})
_CN_NUM = r"[零〇一二两三四五六七八九十百]+"


def cn_number(text: str) -> float | None:
    """``三十九`` → 39, ``十二`` → 12, ``一百零五`` → 105; ``None`` if not a number."""
    if not text:
        return None
    if text.isdigit():
        return float(text)
    total = 0
    current = 0
    for ch in text:
        if ch in _CN_DIGITS:
            current = _CN_DIGITS[ch]
        elif ch == "十":
            total += (current or 1) * 10
            current = 0
        elif ch == "百":
            total += (current or 1) * 100
            current = 0
        else:
            return None
    return float(total + current)


def _number(text: str) -> float | None:
    text = text.strip()
    if text in _EN_NUMBERS:
        return float(_EN_NUMBERS[text])
    try:
        return float(text)
    except ValueError:
        return cn_number(text)


# --- temperature ------------------------------------------------------------------------

_NUM = r"(\d{2,3}(?:\.\d{1,2})?)"
_TEMP_UNIT = re.compile(
    rf"(?<![\d.]){_NUM} ?(?:°|º|˚|deg(?:ree)?s?\b|度)? ?(c|f|celsius|fahrenheit|centigrade)\b"
    rf"|(?<![\d.]){_NUM} ?(?:°|º|˚|度)(?! ?\d)"
    rf"|(?<![\d.])(\d{{2}}) ?度 ?(\d)(?![\d.])"
)
_TEMP_CONTEXT = re.compile(
    r"(?:temp(?:erature)?s?|fever|febrile|pyrexia|\bt|体温|发烧|发热|高烧|低烧|烧到|烧了|腋温|"
    r"肛温|耳温|口温|额温)"
    r"(?:\s*(?:of|is|was|at|around|about|up to|reached|hit|went up to|spiked to|reading|"
    r"now|still|measured|are|has been|:|=|~|是|为|有|到|达|了|一直|还是|最高|测|量))*\s*" + _NUM
)
_TEMP_BEFORE = re.compile(
    rf"(?<![\d.]){_NUM} ?(?:°|º|degrees?)? ?(?:c |f )?(?:fever|temp(?:erature)?)\b"
)
_TEMP_BARE = re.compile(
    r"\b(?:is|was|at|of|reading|reads|read|hit|reached|up to|now|still|temp|around|about|"
    r"has|had|got|with|running)\s+"
    r"(3[5-9]\.\d{1,2}|4[0-2]\.\d)(?![\d.])(?! ?(?:mmol|mg|g/|%|kg|cm|weeks|wks|mm|ml|u/|iu))"
)
_TEMP_CN = re.compile(r"([三四]十[一二三四五六七八九]?) ?度 ?([一二三四五六七八九])?")
_WEATHER = re.compile(
    r"天气|气温|室温|外面|室外|水温|洗澡|weather|outside|room|water|bath|oven|fridge|freezer"
)


def _celsius(value: float, unit: str | None) -> float | None:
    fahrenheit = unit.startswith("f") if unit else 86 <= value <= 113
    if fahrenheit:
        value = (value - 32) * 5 / 9
    return value if 30 <= value <= 45 else None


def _temperatures(text: str) -> list[Measurement]:
    out: list[Measurement] = []
    seen: set[int] = set()

    def add(value: float | None, m: re.Match[str], start: int) -> None:
        if value is None or start in seen:
            return
        if _WEATHER.search(text, max(0, start - 16), start):
            return
        seen.add(start)
        out.append(Measurement("temp_c", round(value, 2), m.group(0), start))

    for m in _TEMP_UNIT.finditer(text):
        if m.group(1):
            add(_celsius(float(m.group(1)), m.group(2)), m, m.start(1))
        elif m.group(3):
            add(_celsius(float(m.group(3)), None), m, m.start(3))
        else:
            add(_celsius(float(f"{m.group(4)}.{m.group(5)}"), None), m, m.start(4))
    for m in _TEMP_BEFORE.finditer(text):
        add(_celsius(float(m.group(1)), None), m, m.start(1))
    for m in _TEMP_BARE.finditer(text):
        add(_celsius(float(m.group(1)), None), m, m.start(1))
    for m in _TEMP_CONTEXT.finditer(text):
        add(_celsius(float(m.group(1)), None), m, m.start(1))
    for m in _TEMP_CN.finditer(text):
        whole = cn_number(m.group(1))
        tenth = cn_number(m.group(2) or "")
        if whole is not None:
            add(_celsius(whole + (tenth or 0) / 10, None), m, m.start())
    return out


# --- ages -------------------------------------------------------------------------------

_NOT_AGE = (
    r"(?!\s*(?:kg|kgs|kilos?|lbs?|pounds|cm|weeks?|wks?|months?|days?|mg|%|°|degrees|minutes|"
    r"mins?|hours?|hrs?|times|pills|tablets|percent|mmol|/|\.\d|度|周|个月|天|斤|公斤|次))"
)
_AGE_YEARS = [
    re.compile(r"(?<![\d.])(\d{1,3}) ?-? ?(?:years?|yrs?|yr) ?-? ?old\b"),
    re.compile(r"(?<![\d.])(\d{1,3}) ?(?:yo|y/o|y\.o\.?|yrs?)\b"),
    re.compile(r"\b(?:aged?|age:?)\s*(\d{1,3})\b" + _NOT_AGE),
    re.compile(
        r"\b(?:im|i am|hes|he is|shes|she is|who is|whos|is now|just turned|turned)\s+"
        r"(?:only |just |now |turning |nearly |almost |over )?(\d{2,3})\b" + _NOT_AGE
    ),
    re.compile(r"(?<![\d.])([1-9]\d)(?:m|f)\b"),
    re.compile(r"(?<![\d.])([1-9]\d) ?(?:male|female|man|woman|guy|lady)\b"),
    re.compile(r"(?<![\d.])(\d{1,3}) ?(?:多|来)?周?岁"),
    re.compile(rf"({_CN_NUM})(?:多|来)?周?岁"),
    re.compile(r"年龄[:：]?\s*(\d{1,3})"),
]
_AGE_DECADE = re.compile(r"\bin (?:my|his|her|their) (?:late |early |mid )?([1-9])0s\b")
_AGE_MONTHS = [
    re.compile(rf"(?<![\d.])({_EN_NUM})[ -](day|week|wk|month|mo)s?[ -]old\b"),
    re.compile(rf"\b(?:aged?|age) ({_EN_NUM}) (day|week|month)s?\b"),
    re.compile(
        r"\b(?:baby|babies|infant|newborn|son|daughter|he|she|bub|grandson|granddaughter|"
        r"little one|twins?|boy|girl)\s+(?:is|was|who is|whos|just turned|turned)?\s*"
        rf"(?:only |just |barely |almost |nearly |about )?({_EN_NUM}) (day|week|month)s?\b"
        r"(?! (?:ago|pregnant|along|gestation|of pregnancy))"
    ),
    re.compile(rf"(?<![\d.])(\d{{1,2}}|{_CN_NUM}) ?(?:个)?(多|半)?(月|周|星期|天)(?:大|龄)"),
    re.compile(
        rf"(?<![\d.])(\d{{1,2}}|{_CN_NUM}) ?(?:个)?(多|半)?(月|周|星期|天)(?:的|大的)?"
        r"(?:宝宝|婴儿|孩子|小孩|宝贝|娃|女儿|儿子|男婴|女婴|小朋友|新生儿|孙子|孙女|外孙)"
    ),
    re.compile(
        r"(?:宝宝|婴儿|孩子|小孩|宝贝|娃|女儿|儿子|男婴|女婴|孙子|孙女|外孙女?)"
        r"(?:今天|现在|目前)?(?:才|刚|刚刚|已经|快|不到|还不到|还没)?(?:满)?\s?"
        rf"(\d{{1,2}}|{_CN_NUM}) ?(?:个)?(多|半)?(月|周|星期|天)(?!前|以前|之前|后|没|不|都|一直)"
    ),
    re.compile(
        rf"\b(?:baby|infant|newborn|son|daughter|bub)\s?(\d{{1,2}}|{_CN_NUM}) ?(?:个)?(多|半)?"
        r"(月|周|星期|天)(?!前|以前|之前|后)"
    ),
    re.compile(
        rf"出生(?:才|刚|刚刚|不到)?\s?(\d{{1,2}}|{_CN_NUM}) ?(?:个)?(多|半)?(月|周|星期|天)"
    ),
]
_NEWBORN = re.compile(r"\bnew ?-?borns?\b|\bneonat\w*|新生儿|刚出生|未满月|没满月|月子里的宝宝")
_ONE_MONTH = re.compile(r"(?:刚|才)?满月")
_UNDER_100_DAYS = re.compile(r"(?:不到|还没到?|没到|未满)(?:百天|一百天|三个月|3 ?个月)")
_TODDLER = re.compile(r"\btoddler\b|幼儿")
_UNIT_MONTHS = {
    "day": 1 / 30.4,
    "天": 1 / 30.4,
    "week": 1 / 4.35,
    "wk": 1 / 4.35,
    "周": 1 / 4.35,
    "星期": 1 / 4.35,
    "month": 1.0,
    "mo": 1.0,
    "月": 1.0,
}


def _ages(text: str) -> list[Measurement]:
    out: list[Measurement] = []
    for rx in _AGE_YEARS:
        for m in rx.finditer(text):
            value = _number(m.group(1))
            if value is not None and 0 < value < 120:
                out.append(Measurement("age_years", value, m.group(0), m.start()))
    for m in _AGE_DECADE.finditer(text):
        out.append(Measurement("age_years", int(m.group(1)) * 10 + 5, m.group(0), m.start()))
    for rx in _AGE_MONTHS:
        for m in rx.finditer(text):
            groups = m.groups()
            value = _number(groups[0])
            unit = groups[-1]
            if value is None:
                continue
            extra = 0.5 if len(groups) == 3 and groups[1] else 0.0
            months = (value + extra) * _UNIT_MONTHS[unit]
            if months < 36:
                out.append(Measurement("age_months", round(months, 2), m.group(0), m.start()))
    for rx, months in ((_NEWBORN, 0.5), (_ONE_MONTH, 1.0), (_UNDER_100_DAYS, 2.5)):
        for m in rx.finditer(text):
            out.append(Measurement("age_months", months, m.group(0), m.start()))
    for m in _TODDLER.finditer(text):
        out.append(Measurement("age_months", 24.0, m.group(0), m.start()))
    return out


# --- pregnancy --------------------------------------------------------------------------

_GESTATION = [
    (
        re.compile(
            r"(?<![\d.])(\d{1,2})(?: ?\+ ?\d)? ?(?:-| )?(?:weeks?|wks?|w)(?: and \d days?)?"
            r"(?: ?\+ ?\d)? ?(?:pregnant|along|gestation|of pregnancy|into (?:my|the|her) "
            r"pregnancy|preg)"
        ),
        1.0,
    ),
    (
        re.compile(
            r"\b(?:pregnant|gestation)(?: with \w+)?(?: at| for)? (\d{1,2}) ?(?:weeks?|wks?)"
        ),
        1.0,
    ),
    (re.compile(rf"(?<![\d.])({_EN_NUM}) ?(?:-| )?months? (?:pregnant|along)"), 4.35),
    (
        re.compile(
            rf"(?:孕|怀孕|妊娠|怀了|怀)(?:了|期)?\s?(\d{{1,2}}|{_CN_NUM}) ?"
            r"(?:\+ ?\d ?)?(?:个)?(?:多)?"
            r"(周|星期|月)"
        ),
        0.0,
    ),
    (re.compile(rf"(\d{{1,2}}|{_CN_NUM}) ?(?:个)?(?:多)?(周|月)(?:的)?(?:身孕|孕)"), 0.0),
]
_BARE_WEEKS = re.compile(
    r"(?<!for )(?<!past )(?<!last )(?<!over )(?<!about )(?<!within )(?<!every )(?<!after )"
    r"(?<!since )(?<!next )(?<!than )(?<![\d.])(2[4-9]|3\d|4[0-2]) ?(?:weeks|wks|w)\b"
    r"(?! (?:ago|old|later|after|since|now|of (?!pregnancy)|in|from|before|until|time))"
    r"|(?<![\d.])([2-4]\d) ?\+ ?[0-6](?: ?weeks| ?wks| ?w)?\b"
)
_OVER_40 = re.compile(r"(?<![\d.])([2-4]\d)(?: ?\+ ?[0-6])? ?/ ?40\b")
_TERM = re.compile(
    r"\bfull[- ]?term\b|\boverdue\b|past (?:my|her|the) due date|"
    r"足月|过了预产期|预产期(?:已过|过了|到了)"
)
_THIRD_TRIMESTER = re.compile(r"\bthird trimester\b|孕晚期")
_FIRST_TRIMESTER = re.compile(r"\b(?:first trimester|early pregnancy)\b|孕早期|早孕")


def _gestations(text: str) -> list[Measurement]:
    out: list[Measurement] = []
    for rx, factor in _GESTATION:
        for m in rx.finditer(text):
            value = _number(m.group(1))
            if value is None:
                continue
            unit_factor = factor or (4.35 if m.group(2) == "月" else 1.0)
            weeks = value * unit_factor
            if 3 <= weeks <= 44:
                out.append(Measurement("gestation_weeks", weeks, m.group(0), m.start()))
    for m in _OVER_40.finditer(text):
        out.append(Measurement("gestation_weeks", float(m.group(1)), m.group(0), m.start()))
    for m in _BARE_WEEKS.finditer(text):
        weeks = float(m.group(1) or m.group(2))
        if 20 <= weeks <= 43:
            out.append(Measurement("gestation_weeks", weeks, m.group(0), m.start()))
    for rx, weeks in ((_TERM, 39.0), (_THIRD_TRIMESTER, 32.0), (_FIRST_TRIMESTER, 8.0)):
        for m in rx.finditer(text):
            out.append(Measurement("gestation_weeks", weeks, m.group(0), m.start()))
    return out


# --- vital signs ------------------------------------------------------------------------

_VITAL_GAP = (
    r"(?:\s*(?:is|was|of|at|reading|only|down to|now|just|about|around|:|=|~|"
    r"是|为|在|有|只有|仅|到|了|掉到|降到))*\s*"
)
_SPO2 = re.compile(
    r"(?:spo2|sp02|o2 sats?|oxygen (?:saturation|sats?|levels?)|sats|saturation|pulse ?ox\w*|"
    r"血氧(?:饱和度)?|氧饱和度|指氧)" + _VITAL_GAP + r"(\d{2,3})(?:\.\d)? ?%?"
)
_BP = re.compile(
    r"(?:\bbp|blood pressure|血压)" + _VITAL_GAP + r"(\d{2,3}) ?/ ?(\d{2,3})"
    r"|(?:高压|收缩压)" + _VITAL_GAP + r"(\d{2,3})"
)
_HR = re.compile(
    r"(?:heart rate|pulse(?: rate)?|\bhr|心率|脉搏|心跳)" + _VITAL_GAP + r"(\d{2,3})"
    r"(?! ?(?:/|°|度|%))"
)
_RR = re.compile(
    r"(?:resp(?:iratory)? rate|breathing rate|\brr|呼吸频率|呼吸)" + _VITAL_GAP + r"(\d{2})"
    r" ?(?:breaths|/min|次|per min|a minute|times a minute)"
    r"|(?:resp(?:iratory)? rate|\brr)" + _VITAL_GAP + r"(\d{2})\b"
)


def _vitals(text: str) -> list[Measurement]:
    out: list[Measurement] = []
    for m in _SPO2.finditer(text):
        v = float(m.group(1))
        if 50 <= v <= 100:
            out.append(Measurement("spo2", v, m.group(0), m.start()))
    for m in _BP.finditer(text):
        if m.group(1):
            sys_, dia = float(m.group(1)), float(m.group(2))
        else:
            sys_, dia = float(m.group(3)), 0.0
        if 40 <= sys_ <= 300:
            out.append(Measurement("bp", sys_, m.group(0), m.start(), dia))
    for m in _HR.finditer(text):
        v = float(m.group(1))
        if 20 <= v <= 260:
            out.append(Measurement("hr", v, m.group(0), m.start()))
    for m in _RR.finditer(text):
        v = float(m.group(1) or m.group(2))
        if 4 <= v <= 80:
            out.append(Measurement("rr", v, m.group(0), m.start()))
    return out


# --- laboratory values ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Analyte:
    key: str
    name_en: str
    name_zh: str
    names: str
    #: Convert (value, unit text) to the SI value, or ``None`` when implausible.
    to_si: Callable[[float, str], float | None]
    low_emergency: float | None
    low_urgent: float | None
    high_urgent: float | None
    high_emergency: float | None
    ref_low: float
    ref_high: float
    #: ``<`` limits are strict (``Hb < 60``); ``≤``/``≥`` otherwise.
    strict_low: bool = False


def _within(lo: float, hi: float) -> Callable[[float, str], float | None]:
    def conv(v: float, unit: str) -> float | None:
        return v if lo <= v <= hi else None

    return conv


def _glucose(v: float, unit: str) -> float | None:
    if "mg" in unit or (not unit and v > 40):
        v = v / 18.016
    return v if 0.5 <= v <= 90 else None


def _haemoglobin(v: float, unit: str) -> float | None:
    if "dl" in unit or (not unit and v <= 25):
        v = v * 10
    return v if 15 <= v <= 260 else None


def _count(upper: float) -> Callable[[float, str], float | None]:
    """Platelets and white cells: 10^9/L = 10^3/µL; a raw count per µL is divided by 1000."""

    def conv(v: float, unit: str) -> float | None:
        if unit in ("/ul", "/μl", "/mm3") or (not unit and v > upper):
            v = v / 1000
        return v if 0 <= v <= upper else None

    return conv


def _calcium(v: float, unit: str) -> float | None:
    if "mg" in unit or (not unit and v > 5):
        v = v / 4.008
    return v if 0.5 <= v <= 5.5 else None


def _creatinine(v: float, unit: str) -> float | None:
    if "mg" in unit or (not unit and v < 20):
        v = v * 88.42
    return v if 10 <= v <= 3000 else None


def _troponin(v: float, unit: str) -> float | None:
    if unit in ("ng/ml", "ug/l", "μg/l"):
        v = v * 1000
    elif not unit and v < 5:
        # A bare small number is conventional troponin I in ng/mL.
        v = v * 1000
    return v if 0 <= v <= 100000 else None


_PRE = r"(?<![a-z0-9])"
_POST = r"(?![a-z])"
ANALYTES: dict[str, Analyte] = {
    a.key: a
    for a in (
        Analyte(
            "potassium", "potassium", "血钾",
            _PRE + r"(?:serum |plasma )?(?:potassium|k\+?)" + _POST
            + r"|(?<!尿)(?<!补)(?<!氯化)(?<!枸橼酸)(?:血清|血)?钾(?:离子)?(?!片|盐|肥)",
            _within(1.0, 9.9), 2.5, 2.9, 6.0, 6.5, 3.5, 5.3,
        ),
        Analyte(
            "sodium", "sodium", "血钠",
            _PRE + r"(?:serum |plasma )?(?:sodium|na\+?)" + _POST
            + r"|(?<!尿)(?<!氯化)(?<!碳酸氢)(?:血清|血)?钠(?:离子)?(?!片|盐)",
            _within(95, 200), 120, 125, 155, 160, 135, 145,
        ),
        Analyte(
            "glucose", "blood glucose", "血糖",
            _PRE + r"(?:fasting |random |capillary |blood |plasma |serum )?"
            r"(?:glucose|glu|bgl?|bsl|fbg|fpg|rbg|cbg|blood sugars?|sugar (?:level|reading)s?|"
            r"my sugars?|(?:his|her) sugars?)" + _POST
            + r"|(?:空腹|随机|餐后(?:两小时|2小时)?|指尖|末梢)?(?:血糖|葡萄糖)(?:值)?",
            _glucose, 3.0, 3.9, 20.0, 33.3, 3.9, 6.1,
        ),
        Analyte(
            "haemoglobin", "haemoglobin", "血红蛋白",
            _PRE + r"(?<!glycated )(?<!glycosylated )(?:hb|hgb|haemoglobin|hemoglobin)" + _POST
            + r"|(?<!糖化)(?:血红蛋白|血色素|血红素)",
            _haemoglobin, 60, 80, 200, None, 120, 175, strict_low=True,
        ),
        Analyte(
            "platelets", "platelets", "血小板",
            _PRE + r"(?:plt|plts|platelets?(?: count)?)" + _POST + r"|血小板(?:计数)?",
            _count(3000), 10, 30, 1000, None, 150, 450, strict_low=True,
        ),
        Analyte(
            "wbc", "white cell count", "白细胞",
            _PRE + r"(?:wbc|white (?:blood )?(?:cell )?count|white cells|leukocytes?|"
            r"leucocytes?)" + _POST + r"|白细胞(?:计数)?",
            _count(500), None, 1.5, 30, 100, 4.0, 10.0,
        ),
        Analyte(
            "neutrophils", "neutrophils", "中性粒细胞",
            _PRE + r"(?:anc|neut(?:rophil)?s?(?: count)?|absolute neutrophil count)" + _POST
            + r"|中性粒细胞(?:绝对值|计数)?",
            _count(100), None, 0.5, None, None, 1.8, 7.5,
        ),
        Analyte(
            "inr", "INR", "INR",
            _PRE + r"(?:inr|pt/inr)" + _POST + r"|国际标准化比值?",
            _within(0.5, 20), None, None, 5.0, 8.0, 0.8, 1.2,
        ),
        Analyte(
            "calcium", "calcium", "血钙",
            _PRE + r"(?:(?:corrected |adjusted |serum )?calcium|ca(?:\+\+|2\+)?)(?![a-z0-9])"
            + r"|(?<!补)(?<!碳酸)(?<!葡萄糖酸)(?:血清|血)?钙(?!片|剂)",
            _calcium, 1.75, 1.9, 3.0, 3.5, 2.1, 2.6,
        ),
        Analyte(
            "creatinine", "creatinine", "肌酐",
            _PRE + r"(?:creatinine|creat|scr|cr)" + _POST + r"|(?:血)?肌酐",
            _creatinine, None, None, 354, None, 44, 133,
        ),
        Analyte(
            "troponin", "troponin", "肌钙蛋白",
            _PRE + r"(?:hs-?)?(?:c?tn[it]|troponin(?: [it])?)" + _POST
            + r"|(?:高敏)?肌钙蛋白(?: ?[it])?",
            _troponin, None, None, 14.01, 52, 0, 14,
        ),
    )
}  # fmt: skip

_LAB_GAP = (
    r"(?:\s*(?:levels?|values?|count|result|reading|serum|plasma|blood|test|was|is|of|at|"
    r"came back(?: at)?|today|now|only|just|about|around|approx\.?|approximately|very|"
    r"\(\w{1,4}\)|~|:|=|是|为|有|只有|仅|高达|达到?|到|结果|值|水平|检测|测定|化验|测|查|"
    r"偏高|偏低|升高|降低|很高|很低|了|才|都|竟然|居然|\(|\[)){0,6}\s*"
)
_COMPARATOR = (
    r"(?P<cmp>[<>≤≥]|above|below|over|under|greater than|less than|more than|"
    r"超过|高于|低于|大于|小于|不到)?\s*"
)
_LAB_UNIT = (
    r"(?P<unit>mmol/l|mmol|meq/l|mg/dl|mg%|g/l|g/dl|gm/dl|[uμµ]mol/l|"
    r"[x×*] ?10 ?\^? ?9 ?/ ?l|[x×*] ?10 ?\^? ?9|[x×*] ?109 ?/ ?l|10 ?\^ ?9 ?/ ?l|"
    r"[x×*] ?10 ?\^? ?3 ?/ ?[uμµ]l|k/[uμµ]l|/[uμµ]l|/mm3|ng/l|ng/ml|pg/ml|[uμµ]g/l|%|k\b)?"
)
_LAB = re.compile(
    "(?P<name>"
    + "|".join(f"(?P<{a.key}>{a.names})" for a in ANALYTES.values())
    + ")"
    + _LAB_GAP
    + _COMPARATOR
    + r"(?P<num>\d{1,3}(?:,\d{3})+(?![\d,])|\d+(?:[.,]\d{1,3}(?!\d))?)(?![\d.])(?! ?[-–~] ?\d)"
    + r"\s?"
    + _LAB_UNIT
)


_THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+")


def _labs(text: str) -> list[Measurement]:
    out: list[Measurement] = []
    for m in _LAB.finditer(text):
        if m.group("cmp"):
            continue
        key = next(k for k in ANALYTES if m.group(k))
        unit = (m.group("unit") or "").replace(" ", "").replace("µ", "μ")
        if unit == "%":
            continue
        if unit in ("mmol",):
            unit = "mmol/l"
        raw = m.group("num")
        # "150,000" groups thousands; "6,8" has a decimal comma.
        if _THOUSANDS.fullmatch(raw):
            number = float(raw.replace(",", ""))
        else:
            number = float(raw.replace(",", "."))
        si = ANALYTES[key].to_si(number, unit)
        if si is not None:
            out.append(Measurement(key, round(si, 3), m.group(0).strip(), m.start()))
    return out


_ANY_NUMBER = re.compile(r"\d|[一二两三四五六七八九十百]")
_AGE_WORDS = re.compile(
    r"new ?-?born|neonat|toddler|\bold\b|month|week|满月|百天|新生儿|刚出生|幼儿"
)
_PREGNANCY_WORDS = re.compile(
    r"preg|gestation|weeks|wks|\d ?w\b|/ ?40|term|trimester|overdue|due date|孕|怀|妊娠|足月|预产期"
)


def measure(text: str) -> list[Measurement]:
    """Every measurement in a normalised message, in no particular order."""
    has_number = bool(_ANY_NUMBER.search(text))
    out: list[Measurement] = []
    if has_number or _AGE_WORDS.search(text):
        out += _ages(text)
    if (has_number or _PREGNANCY_WORDS.search(text)) and _PREGNANCY_WORDS.search(text):
        out += _gestations(text)
    if has_number:
        out += _temperatures(text) + _vitals(text) + _labs(text)
    return out


def classify_lab(m: Measurement) -> tuple[Level, str] | None:
    """The level and direction (``high``/``low``) of a lab value, or ``None`` when normal."""
    a = ANALYTES[m.kind]
    v = m.value

    def low(limit: float | None) -> bool:
        if limit is None:
            return False
        return v < limit if a.strict_low else v <= limit

    if low(a.low_emergency):
        return Level.EMERGENCY, "low"
    if a.high_emergency is not None and v >= a.high_emergency:
        return Level.EMERGENCY, "high"
    if low(a.low_urgent):
        return Level.URGENT, "low"
    if a.high_urgent is not None and v >= a.high_urgent:
        return Level.URGENT, "high"
    if v < a.ref_low:
        return Level.ROUTINE, "low"
    if v > a.ref_high:
        return Level.ROUTINE, "high"
    return None


def numeric_findings(measurements: list[Measurement]) -> dict[str, str]:
    """``num.*`` findings (name → evidence) from a message's measurements."""
    found: dict[str, str] = {}

    def add(name: str, m: Measurement) -> None:
        found.setdefault(name, m.evidence)

    for m in measurements:
        v = m.value
        match m.kind:
            case "temp_c":
                for limit, name in ((38, "num.temp_ge_38"), (39, "num.temp_ge_39")):
                    if v >= limit:
                        add(name, m)
                if v >= 39.5:
                    add("num.temp_ge_39_5", m)
                if v >= 40:
                    add("num.temp_ge_40", m)
                if v < 36:
                    add("num.temp_lt_36", m)
                if v <= 35:
                    add("num.temp_le_35", m)
            case "age_years":
                if v >= 40:
                    add("num.age_ge_40", m)
                if v >= 65:
                    add("num.age_ge_65", m)
                if v < 16:
                    add("num.child", m)
                if 1 <= v < 4:
                    add("num.toddler", m)
                if v < 1:
                    add("num.infant_lt_12m", m)
            case "age_months":
                add("num.child", m)
                if v < 3:
                    add("num.infant_lt_3m", m)
                elif v < 6:
                    add("num.infant_3_6m", m)
                if v < 12:
                    add("num.infant_lt_12m", m)
                else:
                    add("num.toddler", m)
            case "gestation_weeks":
                add("num.gestation", m)
                if 20 <= v < 37:
                    add("num.preterm", m)
                if v >= 37:
                    add("num.term", m)
                if v < 14:
                    add("num.early_pregnancy", m)
            case "spo2":
                if v <= 88:
                    add("num.spo2_le_88", m)
                if v <= 92:
                    add("num.spo2_le_92", m)
                elif v <= 94:
                    add("num.spo2_93_94", m)
            case "bp":
                if v >= 180 or m.value2 >= 120:
                    add("num.bp_very_high", m)
                # NICE NG51 high-risk criterion: systolic 90 mmHg or less.
                if v <= 90:
                    add("num.bp_low", m)
            case "hr":
                if v >= 130:
                    add("num.hr_ge_130", m)
                if v <= 40:
                    add("num.hr_le_40", m)
            case "rr":
                if v >= 25:
                    add("num.rr_ge_25", m)
            case _ if m.is_lab:
                add("num.lab_value", m)
                if classify_lab(m) is not None:
                    add("num.lab_abnormal", m)
                if m.kind == "glucose" and v >= 20:
                    add("num.glucose_ge_20", m)
                if m.kind == "glucose" and v <= 3.9:
                    add("num.glucose_low", m)
                if m.kind == "potassium" and v >= 6.0:
                    add("num.potassium_ge_6", m)
                if m.kind == "inr" and v >= 5:
                    add("num.inr_ge_5", m)
                if m.kind == "platelets" and v < 50:
                    add("num.platelets_lt_50", m)
                if m.kind == "neutrophils" and v <= 1.0:
                    add("num.neutrophils_le_1", m)
                if m.kind == "troponin" and v > 14:
                    add("num.troponin_high", m)
    temps = [m.value for m in measurements if m.kind == "temp_c"]
    if temps and max(temps) < 38:
        found["num.temp_lt_38"] = next(m.evidence for m in measurements if m.kind == "temp_c")
    return found
