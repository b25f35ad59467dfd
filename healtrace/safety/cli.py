"""``healtrace triage TEXT`` and ``healtrace eval triage``.

Mounted by ``healtrace/cli.py``: ``app.command("triage")(triage_command)`` and
``eval_app.command("triage")(eval_triage_command)``.

Exit codes: ``eval triage`` exits 1 when a metric is below a given minimum and 2 when the case
file cannot be read.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class TriageLocale(StrEnum):
    ZH_CN = "zh-CN"
    EN = "en"


def triage_command(
    text: Annotated[str, typer.Argument(help="The patient's message")],
    locale: Annotated[
        TriageLocale, typer.Option("--locale", help="Language of the explanations")
    ] = TriageLocale.EN,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    region: Annotated[
        str | None,
        typer.Option("--region", help="Region for the emergency number (CN, US, GB …)"),
    ] = None,
) -> None:
    """Triage one message: its urgency level and the red flags that set it."""
    from healtrace.safety.triage import triage

    result = triage(text, locale.value, region=region)
    if json_:
        typer.echo(json.dumps(result.to_dict(locale.value), ensure_ascii=False, indent=2))
        return
    typer.echo(f"level: {result.level.value}")
    typer.echo(f"emergency number: {result.emergency_number} ({result.region})")
    if result.wants_human:
        typer.echo("wants a human: yes")
    for reason in result.reasons:
        typer.echo(f"- [{reason.level.value}] {reason.code}: {reason.message(locale.value)}")
        if reason.evidence:
            typer.echo(f"  evidence: {reason.evidence}")


def eval_triage_command(
    cases: Annotated[
        Path | None,
        typer.Option(help="A .jsonl case file (default: the shipped triage_cases.jsonl)"),
    ] = None,
    show_failures: Annotated[
        bool, typer.Option("--show-failures", help="List every failing case")
    ] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    min_emergency_sensitivity: Annotated[
        float | None,
        typer.Option(help="Exit 1 if emergency sensitivity (all cases) is below this"),
    ] = None,
    min_specificity: Annotated[
        float | None,
        typer.Option(help="Exit 1 if specificity (all cases) is below this"),
    ] = None,
) -> None:
    """Sensitivity, specificity and per-category results of triage on a labelled case set."""
    from healtrace.safety.evaluation import CaseError, evaluate, format_report, load_cases
    from healtrace.safety.triage import Triager

    try:
        loaded = load_cases(cases)
    except CaseError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    report = evaluate(Triager(), loaded)
    if json_:
        typer.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        typer.echo(format_report(report, show_failures=show_failures), nl=False)
    below: list[str] = []
    sensitivity = report.all.emergency_sensitivity
    specificity = report.all.specificity
    if min_emergency_sensitivity is not None and (
        sensitivity is None or sensitivity < min_emergency_sensitivity
    ):
        below.append(f"emergency sensitivity {sensitivity} < {min_emergency_sensitivity}")
    if min_specificity is not None and (specificity is None or specificity < min_specificity):
        below.append(f"specificity {specificity} < {min_specificity}")
    if below:
        typer.echo("below the minimum: " + "; ".join(below), err=True)
        raise typer.Exit(1)
