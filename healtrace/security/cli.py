"""``healtrace eval security``: run the prompt-injection and abuse suite, print the counts."""

from __future__ import annotations

import asyncio
import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import typer

__all__ = ["eval_security_command"]


class ModelChoice(StrEnum):
    adversarial = "adversarial"
    local = "local"


def eval_security_command(
    model: Annotated[
        ModelChoice,
        typer.Option(
            "--model",
            help="adversarial: a scripted model that obeys every attack (default, fast); "
            "local: the real in-process llama.cpp model (slow; `healtrace models fetch` first)",
        ),
    ] = ModelChoice.adversarial,
    attacks: Annotated[
        Path | None,
        typer.Option(help="A .jsonl attack file (default: the shipped catalogue)"),
    ] = None,
    category: Annotated[
        list[str] | None, typer.Option("--category", help="Only attacks of this category")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Run at most this many attacks (after filtering)")
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Run every attack against a freshly built service and report how many succeed.

    Exit 1 if any attack reached another patient's records, consent-gated records or
    tokens, or a burst from one key was not throttled; 2 if the attack file is invalid.
    """
    from healtrace.security.attacks import CATEGORIES, AttackFileError, load_attacks
    from healtrace.security.evaluation import format_report, run_security_eval

    try:
        loaded = load_attacks(attacks)
    except AttackFileError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from exc
    if category:
        unknown = sorted(set(category) - set(CATEGORIES))
        if unknown:
            typer.echo(f"error: unknown categories {unknown}; known: {list(CATEGORIES)}", err=True)
            raise typer.Exit(2)
        loaded = [a for a in loaded if a.category in category]
    if limit is not None:
        loaded = loaded[:limit]
    chosen: Literal["adversarial", "local"] = (
        "local" if model is ModelChoice.local else "adversarial"
    )
    report = asyncio.run(run_security_eval(loaded, model=chosen))
    if json_:
        typer.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        typer.echo(format_report(report), nl=False)
    if not report.ok:
        raise typer.Exit(1)
