"""Evaluate triage on a labelled case set (``healtrace/safety/data/triage_cases.jsonl``).

Each case is one patient message with the level a cautious triage nurse would give it, its
red-flag category (or ``none``) and its kind: ``red_flag``, ``near_miss``, ``negation``,
``benign`` or ``adversarial``.

A case *passes* when the engine is safe without over-calling: an expected emergency is called
an emergency, an expected urgent case is called urgent, and a case expected below urgent is
called below urgent (routine and self-care count as the same side). Metrics:

* emergency sensitivity: expected emergency → predicted emergency;
* specificity: expected not emergency → predicted not emergency;
* red-flag sensitivity: expected emergency or urgent → predicted at least urgent;
* per category: sensitivity (red-flag cases of the category predicted at least at their
  expected level) and specificity (near-miss and negation cases predicted below urgent);
* per kind: the share of cases that pass; exact-level accuracy; a confusion matrix.

The set is split in two halves by a hash of the id: ``dev`` (used when tuning rules) and
``held-out`` (checked afterwards). Metrics are reported for all cases and for each half.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from healtrace.safety.triage import Triager
from healtrace.safety.types import Level, TriageResult

__all__ = [
    "DEFAULT_CASES",
    "Case",
    "CaseError",
    "CaseResult",
    "SplitMetrics",
    "TriageReport",
    "evaluate",
    "format_report",
    "load_cases",
    "split_of",
]

DEFAULT_CASES = Path(__file__).parent / "data" / "triage_cases.jsonl"
KINDS = ("red_flag", "near_miss", "negation", "benign", "adversarial")
LEVELS = (Level.EMERGENCY, Level.URGENT, Level.ROUTINE, Level.SELF_CARE)
Split = Literal["all", "dev", "held_out"]


class CaseError(ValueError):
    """The case file is malformed; the message names the line."""


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    locale: str
    text: str
    expected: Level
    category: str
    kind: str

    @property
    def split(self) -> Literal["dev", "held_out"]:
        return split_of(self.id)


def split_of(case_id: str) -> Literal["dev", "held_out"]:
    """``dev`` when the SHA-1 of the id is even, else ``held_out``."""
    return "dev" if int(hashlib.sha1(case_id.encode()).hexdigest(), 16) % 2 == 0 else "held_out"


def load_cases(path: Path | None = None) -> list[Case]:
    """Cases from a ``.jsonl`` file (default: the shipped set)."""
    path = path or DEFAULT_CASES
    try:
        lines = path.read_text("utf-8").splitlines()
    except OSError as exc:
        raise CaseError(f"cannot read {path}: {exc}") from exc
    cases: list[Case] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            expected = row.get("expected", row.get("expected_level", row.get("level")))
            case = Case(
                id=str(row["id"]),
                locale=str(row["locale"]),
                text=str(row["text"]),
                expected=Level(expected),
                category=str(row.get("category") or "none"),
                kind=str(row["kind"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CaseError(f"{path}:{number}: {type(exc).__name__}: {exc}") from exc
        if case.kind not in KINDS:
            raise CaseError(f"{path}:{number}: unknown kind {case.kind!r}")
        if case.id in seen:
            raise CaseError(f"{path}:{number}: repeated id {case.id!r}")
        seen.add(case.id)
        cases.append(case)
    return cases


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: Case
    predicted: Level
    result: TriageResult
    latency_ms: float

    @property
    def passed(self) -> bool:
        expected, predicted = self.case.expected, self.predicted
        if expected.at_least(Level.URGENT):
            return predicted is expected
        return not predicted.at_least(Level.URGENT)

    @property
    def exact(self) -> bool:
        return self.predicted is self.case.expected


def _ratio(hits: int, total: int) -> float | None:
    return hits / total if total else None


@dataclass(frozen=True, slots=True)
class CategoryMetrics:
    red_flags: int
    sensitivity: float | None
    look_alikes: int
    specificity: float | None


@dataclass(frozen=True, slots=True)
class SplitMetrics:
    cases: int
    emergency_cases: int
    emergency_sensitivity: float | None
    non_emergency_cases: int
    specificity: float | None
    red_flag_cases: int
    red_flag_sensitivity: float | None
    exact_accuracy: float | None
    pass_rate: float | None
    by_kind: dict[str, float | None]
    by_category: dict[str, CategoryMetrics]
    #: expected level → predicted level → count.
    confusion: dict[str, dict[str, int]]

    @classmethod
    def of(cls, results: Sequence[CaseResult]) -> SplitMetrics:
        emerg = [r for r in results if r.case.expected is Level.EMERGENCY]
        non = [r for r in results if r.case.expected is not Level.EMERGENCY]
        red = [r for r in results if r.case.expected.at_least(Level.URGENT)]
        by_kind: dict[str, float | None] = {}
        for kind in KINDS:
            rs = [r for r in results if r.case.kind == kind]
            by_kind[kind] = _ratio(sum(r.passed for r in rs), len(rs))
        by_category: dict[str, CategoryMetrics] = {}
        for category in sorted({r.case.category for r in results} - {"none"}):
            pos = [
                r
                for r in results
                if r.case.category == category
                and r.case.kind == "red_flag"
                and r.case.expected.at_least(Level.URGENT)
            ]
            neg = [
                r
                for r in results
                if r.case.category == category and r.case.kind in ("near_miss", "negation")
            ]
            by_category[category] = CategoryMetrics(
                len(pos),
                _ratio(sum(r.predicted.at_least(r.case.expected) for r in pos), len(pos)),
                len(neg),
                _ratio(sum(not r.predicted.at_least(Level.URGENT) for r in neg), len(neg)),
            )
        confusion = {e.value: {p.value: 0 for p in LEVELS} for e in LEVELS}
        for r in results:
            confusion[r.case.expected.value][r.predicted.value] += 1
        return cls(
            cases=len(results),
            emergency_cases=len(emerg),
            emergency_sensitivity=_ratio(
                sum(r.predicted is Level.EMERGENCY for r in emerg), len(emerg)
            ),
            non_emergency_cases=len(non),
            specificity=_ratio(sum(r.predicted is not Level.EMERGENCY for r in non), len(non)),
            red_flag_cases=len(red),
            red_flag_sensitivity=_ratio(
                sum(r.predicted.at_least(Level.URGENT) for r in red), len(red)
            ),
            exact_accuracy=_ratio(sum(r.exact for r in results), len(results)),
            pass_rate=_ratio(sum(r.passed for r in results), len(results)),
            by_kind=by_kind,
            by_category=by_category,
            confusion=confusion,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "emergency_cases": self.emergency_cases,
            "emergency_sensitivity": self.emergency_sensitivity,
            "non_emergency_cases": self.non_emergency_cases,
            "specificity": self.specificity,
            "red_flag_cases": self.red_flag_cases,
            "red_flag_sensitivity": self.red_flag_sensitivity,
            "exact_accuracy": self.exact_accuracy,
            "pass_rate": self.pass_rate,
            "by_kind": self.by_kind,
            "by_category": {
                k: {
                    "red_flags": v.red_flags,
                    "sensitivity": v.sensitivity,
                    "look_alikes": v.look_alikes,
                    "specificity": v.specificity,
                }
                for k, v in self.by_category.items()
            },
            "confusion": self.confusion,
        }


@dataclass(frozen=True, slots=True)
class TriageReport:
    results: tuple[CaseResult, ...]
    splits: dict[str, SplitMetrics] = field(default_factory=dict)
    latency_p50_ms: float = 0.0
    latency_max_ms: float = 0.0

    @property
    def all(self) -> SplitMetrics:
        return self.splits["all"]

    @property
    def dev(self) -> SplitMetrics:
        return self.splits["dev"]

    @property
    def held_out(self) -> SplitMetrics:
        return self.splits["held_out"]

    @property
    def failures(self) -> tuple[CaseResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "splits": {name: m.as_dict() for name, m in self.splits.items()},
            "latency_p50_ms": self.latency_p50_ms,
            "latency_max_ms": self.latency_max_ms,
            "failures": [
                {
                    "id": r.case.id,
                    "split": r.case.split,
                    "kind": r.case.kind,
                    "category": r.case.category,
                    "expected": r.case.expected.value,
                    "predicted": r.predicted.value,
                    "codes": [x.code for x in r.result.reasons],
                    "text": r.case.text,
                }
                for r in self.failures
            ],
        }


def evaluate(triager: Triager, cases: Iterable[Case]) -> TriageReport:
    """Run every case through ``triager`` and compute the metrics."""
    results: list[CaseResult] = []
    for case in cases:
        start = time.perf_counter()
        result = triager.assess(case.text, case.locale)
        elapsed = (time.perf_counter() - start) * 1000
        results.append(CaseResult(case, result.level, result, elapsed))
    splits = {
        "all": SplitMetrics.of(results),
        "dev": SplitMetrics.of([r for r in results if r.case.split == "dev"]),
        "held_out": SplitMetrics.of([r for r in results if r.case.split == "held_out"]),
    }
    latencies = sorted(r.latency_ms for r in results) or [0.0]
    return TriageReport(
        tuple(results),
        splits,
        latency_p50_ms=latencies[len(latencies) // 2],
        latency_max_ms=latencies[-1],
    )


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def format_report(report: TriageReport, *, show_failures: bool = False, width: int = 110) -> str:
    """The report as text tables (rich), for a terminal or a log."""
    import io

    from rich.console import Console
    from rich.table import Table

    console = Console(
        file=io.StringIO(), width=width, record=True, force_terminal=False, color_system=None
    )
    names = ("all", "dev", "held_out")
    summary = Table(title="triage evaluation")
    summary.add_column("metric")
    for name in names:
        summary.add_column(name, justify="right")
    rows: list[tuple[str, list[str]]] = [
        ("cases", [str(report.splits[n].cases) for n in names]),
        (
            "emergency sensitivity",
            [
                f"{_pct(report.splits[n].emergency_sensitivity)} "
                f"(n={report.splits[n].emergency_cases})"
                for n in names
            ],
        ),
        (
            "specificity (not emergency)",
            [
                f"{_pct(report.splits[n].specificity)} (n={report.splits[n].non_emergency_cases})"
                for n in names
            ],
        ),
        (
            "red-flag sensitivity (≥ urgent)",
            [
                f"{_pct(report.splits[n].red_flag_sensitivity)} "
                f"(n={report.splits[n].red_flag_cases})"
                for n in names
            ],
        ),
        ("exact-level accuracy", [_pct(report.splits[n].exact_accuracy) for n in names]),
        ("pass rate", [_pct(report.splits[n].pass_rate) for n in names]),
    ]
    rows += [(f"pass: {k}", [_pct(report.splits[n].by_kind[k]) for n in names]) for k in KINDS]
    for label, values in rows:
        summary.add_row(label, *values)
    console.print(summary)

    per_category = Table(title="per category (all cases)")
    for column in ("category", "red flags", "sensitivity", "look-alikes", "specificity"):
        per_category.add_column(column, justify="right" if column != "category" else "left")
    for category, m in report.all.by_category.items():
        per_category.add_row(
            category,
            str(m.red_flags),
            _pct(m.sensitivity),
            str(m.look_alikes),
            _pct(m.specificity),
        )
    console.print(per_category)

    confusion = Table(title="confusion (rows expected, columns predicted; all cases)")
    confusion.add_column("expected")
    for level in LEVELS:
        confusion.add_column(level.value, justify="right")
    for expected, row in report.all.confusion.items():
        confusion.add_row(expected, *(str(row[p.value]) for p in LEVELS))
    console.print(confusion)
    console.print(
        f"latency: median {report.latency_p50_ms:.2f} ms, max {report.latency_max_ms:.2f} ms; "
        f"{len(report.failures)} failures"
    )
    if show_failures:
        for r in report.failures:
            codes = ", ".join(x.code for x in r.result.reasons) or "no rule"
            console.print(
                f"FAIL {r.case.id} [{r.case.split}] expected {r.case.expected.value}, "
                f"got {r.predicted.value} ({codes}): {r.case.text}",
                markup=False,
                highlight=False,
            )
    return console.export_text()
