"""Triage on the shipped, blind-written case set (healtrace/safety/data/triage_cases.jsonl)."""

from __future__ import annotations

import pytest

from healtrace.safety.evaluation import (
    DEFAULT_CASES,
    CaseResult,
    TriageReport,
    evaluate,
    format_report,
    load_cases,
    split_of,
)
from healtrace.safety.triage import Triager
from healtrace.safety.types import Level


@pytest.fixture(scope="module")
def report() -> TriageReport:
    return evaluate(Triager(), load_cases())


def _failures(results: tuple[CaseResult, ...]) -> list[str]:
    return [
        f"{r.case.id}: expected {r.case.expected.value}, got {r.predicted.value}: {r.case.text}"
        for r in results
    ]


def test_the_case_set_is_shipped() -> None:
    cases = load_cases()
    assert DEFAULT_CASES.exists()
    assert len(cases) >= 360
    assert {c.kind for c in cases} == {"red_flag", "near_miss", "negation", "benign", "adversarial"}
    assert {c.locale for c in cases} == {"en", "zh-CN"}


def test_emergency_sensitivity(report: TriageReport) -> None:
    missed = [r for r in report.results if r.case.expected is Level.EMERGENCY and not r.passed]
    assert report.all.emergency_sensitivity is not None
    assert report.all.emergency_sensitivity >= 0.98, _failures(tuple(missed))


def test_specificity(report: TriageReport) -> None:
    over = [
        r
        for r in report.results
        if r.case.expected is not Level.EMERGENCY and r.predicted is Level.EMERGENCY
    ]
    assert report.all.specificity is not None
    assert report.all.specificity >= 0.90, _failures(tuple(over))


def test_every_negation_case_passes(report: TriageReport) -> None:
    # Negation cases are routine or self-care: anything below urgent passes.
    negations = tuple(r for r in report.results if r.case.kind == "negation")
    assert negations
    assert all(r.passed for r in negations), _failures(tuple(r for r in negations if not r.passed))


def test_no_look_alike_is_called_an_emergency(report: TriageReport) -> None:
    over = tuple(
        r
        for r in report.results
        if r.case.kind in ("near_miss", "negation", "benign") and r.predicted is Level.EMERGENCY
    )
    assert not over, _failures(over)


def test_held_out_metrics_are_reported(report: TriageReport) -> None:
    dev, held_out = report.dev, report.held_out
    assert dev.cases + held_out.cases == report.all.cases
    assert dev.cases > 100 and held_out.cases > 100
    assert all(split_of(r.case.id) == r.case.split for r in report.results)
    assert held_out.emergency_sensitivity is not None
    assert held_out.emergency_sensitivity >= 0.95
    assert held_out.specificity is not None
    assert held_out.specificity >= 0.90
    text = format_report(report, show_failures=True)
    assert "held_out" in text
    assert "emergency sensitivity" in text


def test_triage_is_fast_on_the_set(report: TriageReport) -> None:
    assert report.latency_p50_ms < 2.0


def test_the_fresh_set_does_not_regress() -> None:
    """The second set, written blind after the rules were done, measures generalisation.

    Its dev half has since been tuned on; its held-out half never has. The floors are the
    figures measured when the held-out half was first scored after tuning (emergency
    sensitivity 0.761, specificity 0.897), so a change that loses ground fails here.
    """
    from pathlib import Path

    fresh = Path(DEFAULT_CASES).with_name("triage_fresh.jsonl")
    report = evaluate(Triager(), load_cases(fresh))
    held = report.held_out
    assert held.emergency_sensitivity is not None and held.specificity is not None
    assert held.emergency_sensitivity >= 0.76
    assert held.specificity >= 0.89
    assert report.all.emergency_sensitivity is not None
    assert report.all.emergency_sensitivity >= 0.86
