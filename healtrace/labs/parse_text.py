"""Lab results as patients paste them: free text, one or several results a line, portal tables.

:func:`parse_lab_text` only reads. It finds analyte names from the catalogue in each line
(longest alias wins, case-insensitive, so "Vitamin B12" or "HbA1c" never lend their digits to
the value), then reads the value that follows, with an optional comparator, and around it the
unit, the report's flag and its reference range in any order. It never judges a value; the
interpreter looks every name up again.

Every pattern has bounded quantifiers and the input is truncated at ``max_chars``, so junk of
any size costs bounded time and never raises.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache

from healtrace.labs.catalogue import load_catalogue
from healtrace.labs.qualitative import Grade, match_grade
from healtrace.labs.types import ParseWarning, RawResult
from healtrace.labs.units import parse_unit

__all__ = ["parse_lab_text"]

#: Names a report prints that are not catalogue analytes but are results all the same.
_EXTRA_NAMES = ("eGFR", "GFR", "估算肾小球滤过率", "肾小球滤过率")

_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")
_SUPER_RUN = re.compile(r"[⁰¹²³⁴⁵⁶⁷⁸⁹⁻]{1,6}")
_ARROWS = re.compile(r"[↑↓]{1,3}")
_NUM = r"\d{1,12}(?:[.,]\d{1,12})?"
_CMP = r"<=|>=|≤|≥|<|>"
_VALUE = re.compile(rf"(?<![A-Za-z0-9.,])(?:({_CMP})[ \t]{{0,2}})?({_NUM})(?![.,]?\d)")
_SEP = re.compile(r"[ \t:;,=]{1,40}")
_FILLER = re.compile(
    r"(?:参考值|参考范围|参考区间|正常值|正常范围|参考|"
    r"ref(?:erence)?\.?(?:[ \t]{0,2}(?:range|interval|int\.?))?|range|normal)[ \t]{0,3}:?",
    re.IGNORECASE,
)
_FILLER_TAIL = re.compile(
    r"[ \t(\[]{0,4}(?:参考值|参考范围|参考区间|正常值|正常范围|参考|ref(?:erence)?|range|normal)?"
    r"[ \t:(\[]{0,4}$",
    re.IGNORECASE,
)
_RANGE = re.compile(
    rf"[(\[]?[ \t]{{0,2}}({_NUM})[ \t]{{0,3}}(?:-|–|—|~|to|至)[ \t]{{0,3}}({_NUM})"
    r"[ \t]{0,2}[)\]]?(?![\w^/*])"
)
_ONE_SIDED = re.compile(rf"[(\[]?[ \t]{{0,2}}({_CMP})[ \t]{{0,2}}({_NUM})[ \t]{{0,2}}[)\]]?(?!\w)")
_FLAG = re.compile(
    r"[(\[]?(偏高|偏低|高|低|HH|LL|H|L|high|low|[↑↓]{1,3}|\*{1,2})[)\]]?(?![A-Za-z0-9^/])",
    re.IGNORECASE,
)
_SEX_LABEL = re.compile(
    r"(男性?|女性?|(?<![A-Za-z])(?:male|female|men|women|M|F)(?![A-Za-z]))"
    r"[ \t]{0,2}[:：]?[ \t]{0,2}",
    re.IGNORECASE,
)
_TOKEN = re.compile(r"[^\s()\[\]↑↓,;]{1,25}")
_UNITISH = re.compile(
    r"(?:%|‰|[A-Za-zμ个][A-Za-z0-9μ^*.·]{0,12}/[A-Za-z0-9μ^*./]{1,16}"
    r"|(?:[x×*][ \t]?)?10[ \t]?(?:\^|\*{1,2})?[ \t]?\d{1,2}[ \t]?/[ \t]?[A-Za-zμ]{1,3})"
)
#: What makes a line without a known name look like "name number unit".
_UNIT_ONLY = re.compile(_UNITISH.pattern + r"|fL|pg|IU|U|s|秒|INR", re.IGNORECASE)
_SHORT_UNITS = frozenset({"s", "g", "%"})
_UNKNOWN = re.compile(
    rf"[ \t]{{0,8}}([^\W\d_][^\d]{{0,40}}?)[ \t]{{0,4}}:?[ \t]{{0,4}}(?:(?:{_CMP})[ \t]{{0,2}})?"
    rf"{_NUM}[ \t]{{0,3}}([^\s()\[\]]{{1,25}})"
)


def _norm(text: str) -> str:
    """Full-width → ASCII (NFKC), superscripts kept as ``^n`` so ``10⁹`` stays a power."""
    s = _SUPER_RUN.sub(lambda m: "^" + m.group(0).translate(_SUPERSCRIPTS), text)
    s = unicodedata.normalize("NFKC", s)
    s = s.replace("µ", "μ").replace("|", " ")
    return _ARROWS.sub(lambda m: f" {m.group(0)} ", s)


def _lower(text: str) -> str:
    """Lower case, char by char, so indices in the result match the input."""
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


def _is_word(c: str) -> bool:
    return c.isascii() and c.isalnum()


@cache
def _alias_index() -> tuple[frozenset[str], dict[str, tuple[int, ...]]]:
    names: set[str] = set()
    for analyte in load_catalogue():
        for name in (*analyte.names, *_EXTRA_NAMES):
            base = _lower(_norm(name).strip())
            for variant in (
                base,
                base.replace("-", " "),
                base.replace("-", ""),
                base.replace(" ", ""),
                base.replace(" ", "-"),
            ):
                if variant and not variant.isdigit():
                    names.add(variant)
    lengths: dict[str, set[int]] = {}
    for n in names:
        lengths.setdefault(n[0], set()).add(len(n))
    return frozenset(names), {c: tuple(sorted(ls, reverse=True)) for c, ls in lengths.items()}


def _find_names(line: str) -> list[tuple[int, int]]:
    """Spans of catalogue names in ``line``, longest match first, left to right."""
    names, lengths = _alias_index()
    low = _lower(line)
    spans: list[tuple[int, int]] = []
    i, n = 0, len(low)
    while i < n:
        c = low[i]
        found = 0
        if c in lengths and not (
            _is_word(c) and i > 0 and (_is_word(low[i - 1]) or low[i - 1] in "/^*.")
        ):
            for length in lengths[c]:
                end = i + length
                if end > n or low[i:end] not in names:
                    continue
                if _is_word(low[end - 1]) and end < n and (_is_word(low[end]) or low[end] in "/^"):
                    continue
                found = length
                break
        if found:
            spans.append((i, i + found))
            i += found
        else:
            i += 1
    return spans


def _number(text: str) -> float | None:
    """``6,8`` → 6.8; ``1,234`` is ambiguous (thousands or decimal) → ``None``."""
    if "," in text:
        whole, frac = text.split(",", 1)
        if len(frac) == 3:
            return None
        text = f"{whole}.{frac}"
    try:
        return float(text)
    except ValueError:
        return None


def _unit_at(rest: str, pos: int) -> tuple[str, int] | None:
    """The unit starting at ``rest[pos]`` and where it ends, or ``None``."""
    first = _TOKEN.match(rest, pos)
    if first is None:
        return None
    candidates = [first]
    second = _TOKEN.match(rest, _skip_blank(rest, first.end()))
    if second is not None and (
        first.group(0).lower() in {"x", "×", "*"}
        or first.group(0).endswith("/")
        or second.group(0).startswith("/")
    ):
        candidates.insert(0, second)
    for last in candidates:
        written = rest[pos : last.end()]
        compact = re.sub(r"[ \t]{1,8}", "", written)
        if _FLAG.fullmatch(compact):
            continue
        if _UNITISH.fullmatch(compact) or (
            (len(compact) >= 2 or compact in _SHORT_UNITS)
            and not compact[0].isdigit()
            and parse_unit(compact) is not None
        ):
            return written, last.end()
    return None


def _skip_blank(text: str, pos: int) -> int:
    m = _SEP.match(text, pos)
    return m.end() if m else pos


def _sex_range(rest: str, start: int) -> tuple[str, float, float, int] | None:
    """A range labelled with a sex ("男 130-175", "F: 115-150") at ``start``."""
    label = _SEX_LABEL.match(rest, start)
    if label is None:
        return None
    m = _RANGE.match(rest, label.end())
    if m is None:
        return None
    a, b = _number(m.group(1)), _number(m.group(2))
    if a is None or b is None or a > b:
        return None
    sex = "F" if label.group(1).lower().startswith(("女", "f", "w")) else "M"
    return sex, a, b, m.end()


_Tail = tuple[
    str, float | None, float | None, str, tuple[tuple[str, float | None, float | None], ...]
]


def _read_tail(rest: str) -> _Tail:
    """Unit, reference range (or ranges by sex) and flag after the value, in any order."""
    unit, low, high, flag = "", None, None, ""
    by_sex: list[tuple[str, float | None, float | None]] = []
    have_range = False
    pos, skipped = 0, 0
    for _ in range(14):
        pos = _skip_blank(rest, pos)
        if pos >= len(rest):
            break
        if not have_range:
            filler = _FILLER.match(rest, pos)
            start = _skip_blank(rest, filler.end()) if filler else pos
            labelled = _sex_range(rest, start)
            if labelled is not None and all(s != labelled[0] for s, _, _ in by_sex):
                by_sex.append(labelled[:3])
                pos = labelled[3]
                continue
            m = _RANGE.match(rest, start)
            if m:
                a, b = _number(m.group(1)), _number(m.group(2))
                if a is not None and b is not None and a <= b:
                    low, high, have_range, pos = a, b, True, m.end()
                    continue
            m = _ONE_SIDED.match(rest, start)
            if m:
                bound = _number(m.group(2))
                if bound is not None:
                    if m.group(1) in {"<", "<=", "≤"}:
                        high = bound
                    else:
                        low = bound
                    have_range, pos = True, m.end()
                    continue
            if filler:
                pos = filler.end()
                continue
        if not flag:
            m = _FLAG.match(rest, pos)
            if m:
                flag, pos = m.group(1), m.end()
                continue
        if not unit:
            found = _unit_at(rest, pos)
            if found:
                unit, pos = found
                continue
        token = _TOKEN.match(rest, pos)
        if token is None or any(ch.isdigit() for ch in token.group(0)) or skipped >= 2:
            if token is None and rest[pos] in "()[]":
                pos += 1
                continue
            break
        skipped += 1
        pos = token.end()
    if by_sex and low is None and high is None:
        return unit.strip(), None, None, flag, tuple(by_sex)
    return unit.strip(), low, high, flag, ()


def _parse_line(
    line: str, lineno: int, results: list[RawResult], warnings: list[ParseWarning]
) -> None:
    spans = _find_names(line)
    if not spans:
        m = _UNKNOWN.match(line)
        if m and any(ch.isalpha() for ch in m.group(1)) and _UNIT_ONLY.fullmatch(m.group(2)):
            warnings.append(
                ParseWarning(lineno, "unknown_analyte", f"unrecognised name {m.group(1)!r}")
            )
        return
    # Adjacent names with no digit (or grade) between them name one result ("血红蛋白 HGB").
    groups: list[tuple[int, int, bool]] = []
    for start, end in spans:
        graded = _graded(line[start:end])
        if groups and not any(ch.isdigit() for ch in line[groups[-1][1] : start]):
            between = line[groups[-1][1] : start]
            if not (groups[-1][2] and _grade_in(between, signs=True) is not None):
                groups[-1] = (groups[-1][0], end, groups[-1][2] or graded)
                continue
        groups.append((start, end, graded))
    for k, (start, end, graded) in enumerate(groups):
        stop = groups[k + 1][0] if k + 1 < len(groups) else len(line)
        segment = line[end:stop]
        m = _VALUE.search(segment)
        # A grade counts before any number for strip analytes; for others ("CRP 阴性") only
        # a word and only with no number at all, so the interpreter can say it expected one.
        grade = _grade_in(segment, signs=graded)
        if grade is not None and (m is None or (graded and grade[0] <= m.start())):
            name = (line[start:end] + segment[: grade[0]]).strip(" \t:=,;")
            results.append(
                RawResult(
                    name=name,
                    value=grade[1].ordinal,
                    qualitative=grade[1].label,
                    source="text",
                    line=lineno,
                )
            )
            continue
        if m is None or m.start() > 40:
            continue
        name_end = m.start()
        # A range printed before the value ("Glucose (normal 3.9-6.1) 5.5") is the range.
        before: tuple[float, float] | None = None
        pre = _RANGE.match(segment, m.start())
        if not m.group(1) and pre is not None:
            after = _VALUE.search(segment, pre.end())
            a, b = _number(pre.group(1)), _number(pre.group(2))
            if (
                after is not None
                and after.start() - pre.end() <= 6
                and a is not None
                and b is not None
            ):
                before, m = (a, b), after
                name_end = len(_FILLER_TAIL.sub("", segment[: pre.start()]))
        name = (line[start:end] + segment[:name_end]).strip(" \t:=,;([")
        value = _number(m.group(2))
        if value is None:
            warnings.append(
                ParseWarning(lineno, "ambiguous_number", f"{name}: cannot read {m.group(2)!r}")
            )
            continue
        unit, low, high, flag, by_sex = _read_tail(segment[m.end() :])
        if before is not None and low is None and high is None and not by_sex:
            low, high = before
        results.append(
            RawResult(
                name=name,
                value=value,
                unit=unit,
                ref_low=low,
                ref_high=high,
                flag=flag,
                comparator=m.group(1) or "",
                source="text",
                line=lineno,
                ref_by_sex=by_sex,
            )
        )


def _graded(name: str) -> bool:
    """Whether a name found in the text is an analyte reported as a grade."""
    analyte = load_catalogue().find(name)
    return analyte is not None and analyte.qualitative_normal is not None


def _grade_in(segment: str, *, signs: bool) -> tuple[int, Grade] | None:
    """The first grade starting a token in the first 40 characters of ``segment``."""
    for i in range(min(len(segment), 41)):
        if i and segment[i - 1] not in " \t:=,;(":
            continue
        g = match_grade(segment, i, signs=signs)
        if g is not None:
            return i, g
    return None


def parse_lab_text(
    text: str, *, max_chars: int = 20000
) -> tuple[list[RawResult], list[ParseWarning]]:
    """Results and warnings read from pasted lab text; never raises on junk."""
    results: list[RawResult] = []
    warnings: list[ParseWarning] = []
    if not isinstance(text, str) or not text:
        return results, warnings
    if len(text) > max_chars:
        text = text[:max_chars]
        warnings.append(
            ParseWarning(
                text.count("\n") + 1,
                "truncated",
                f"input longer than {max_chars} characters; the rest was not read",
            )
        )
    for lineno, raw in enumerate(text.splitlines(), start=1):
        try:
            line = _norm(raw)
        except ValueError:  # pragma: no cover - NFKC on odd code points
            continue
        if line.strip():
            _parse_line(line, lineno, results, warnings)
    return results, warnings
