"""``check_drug_interactions``: look up every pair of the patient's medicines in a small
curated table of well-established, clinically significant interactions."""

from __future__ import annotations

from itertools import combinations
from typing import Annotated

from healtrace.tools import ToolContext, ToolRetry, tool
from pydantic import BaseModel, Field

from healtrace_drug_interactions._data import SEVERITIES, Drug, Language, Severity, tables

#: Said with every result, whatever it found: the table is small on purpose.
NOT_PROOF_OF_SAFETY: dict[Language, str] = {
    "en": (
        "This checker knows only a small set of well-established interactions. That no "
        "interaction is listed does not mean the combination is safe: ask a pharmacist or "
        "doctor before starting, stopping or combining medicines."
    ),
    "zh-CN": (
        "本工具只收录了少量公认的药物相互作用。未列出相互作用并不代表这些药物可以安全合用："
        "开始、停用或合用药物前，请咨询药师或医生。"
    ),
}

MedicationName = Annotated[str, Field(min_length=1, max_length=80)]


class Medication(BaseModel):
    """One medicine the checker recognised."""

    given: str = Field(description="The name as the user gave it.")
    generic: str = Field(description="Its generic (INN) name.")
    name: str = Field(description="Its generic name in the session's language.")


class Interaction(BaseModel):
    """One listed interaction between two of the medicines."""

    drugs: tuple[str, str] = Field(description="The two medicines, in the session's language.")
    generics: tuple[str, str]
    severity: Severity
    mechanism: str
    advice: str
    source: str


class InteractionReport(BaseModel):
    """What the model is given: interactions, most severe first, and what was not checked."""

    language: Language
    recognised: list[Medication]
    interactions: list[Interaction]
    unrecognised: list[str]
    pairs_checked: int
    note: str


def _language(locale: str) -> Language:
    return "zh-CN" if locale.lower().startswith("zh") else "en"


def _examples(limit: int = 12) -> str:
    return ", ".join(sorted(tables().drugs)[:limit])


@tool(timeout_s=5, permissions=(), locales=("en", "zh-CN"))
async def check_drug_interactions(
    ctx: ToolContext,
    medications: Annotated[
        list[MedicationName],
        Field(min_length=2, max_length=10, examples=[["warfarin", "aspirin"]]),
    ],
) -> InteractionReport:
    """Check a list of medicines for well-known, clinically significant interactions
    between any two of them (severity, mechanism, what to do, source).

    Use when the user asks whether medicines can be taken together or lists what they
    take. Generic names, common brand names and Chinese names are understood. A result
    without interactions is not proof of safety; say so.

    Args:
        medications: The medicines to check, 2 to 10, one name per item, as the user
            wrote them (e.g. "warfarin", "Advil", "阿司匹林").
    """
    language = _language(ctx.locale)
    data = tables()
    recognised: dict[str, tuple[str, Drug]] = {}
    written: dict[str, list[str]] = {}
    unrecognised: list[str] = []
    for raw in medications:
        given = raw.strip()
        drug = data.lookup(given)
        if drug is None:
            if given and given not in unrecognised:
                unrecognised.append(given)
            continue
        recognised.setdefault(drug.generic, (given, drug))
        written.setdefault(drug.generic, []).append(given)
    if len(recognised) < 2:
        known = (
            ", ".join(
                generic if names == [generic] else f"{generic} (given as {', '.join(names)})"
                for generic, names in written.items()
            )
            or "none"
        )
        unknown = ", ".join(unrecognised) or "none"
        raise ToolRetry(
            f"At least two different recognised medicines are needed (recognised: {known}; "
            f"not recognised: {unknown}). Check the spelling, give each medicine as its own "
            f"item, and use generic or common brand names (known generics include "
            f"{_examples()}). If the user named only one medicine, ask what else they take."
        )
    found: list[Interaction] = []
    pairs = list(combinations(recognised.values(), 2))
    for (_, a), (_, b) in pairs:
        entry = data.interactions.get(frozenset((a.generic, b.generic)))
        if entry is None:
            continue
        found.append(
            Interaction(
                drugs=(a.label(language), b.label(language)),
                generics=(a.generic, b.generic),
                severity=entry.severity,
                mechanism=entry.mechanism[language],
                advice=entry.advice[language],
                source=entry.source,
            )
        )
    found.sort(key=lambda i: SEVERITIES.index(i.severity))
    return InteractionReport(
        language=language,
        recognised=[
            Medication(given=given, generic=drug.generic, name=drug.label(language))
            for given, drug in recognised.values()
        ],
        interactions=found,
        unrecognised=unrecognised,
        pairs_checked=len(pairs),
        note=NOT_PROOF_OF_SAFETY[language],
    )
