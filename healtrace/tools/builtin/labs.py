"""Interpret lab results the patient pasted into the chat (the labs part of HealTrace).

The model passes the results as text; the tool parses, converts and flags them with the
catalogue and tells the model what it would not guess (missing or unknown units,
conflicting ranges). Critical values raise the turn's triage through ``triage_reasons``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, PrivateAttr

from healtrace.errors import InputError
from healtrace.safety.types import Reason
from healtrace.tools.core import ToolContext, ToolRetry, tool


class LabsResult(BaseModel):
    results: list[dict[str, Any]]
    derived: dict[str, Any]
    patterns: list[str]
    #: What the interpreter would not guess; tell the patient.
    warnings: list[str]
    urgent: bool
    note: str
    _reasons: list[Reason] = PrivateAttr(default_factory=list)

    def triage_reasons(self) -> list[Reason]:
        return list(self._reasons)


@tool(timeout_s=30.0)
async def interpret_labs(
    ctx: ToolContext,
    text: Annotated[
        str,
        Field(min_length=3, max_length=20000, examples=["K 4.1 mmol/L (3.5-5.3)"]),
    ],
    sex: Literal["M", "F"] | None = None,
    age: Annotated[int | None, Field(ge=0, le=130)] = None,
) -> LabsResult:
    """Interpret lab test results the user pasted: flags, reference ranges, critical values,
    derived values such as eGFR, and patterns worth a doctor's look.

    Use when the user shares blood or urine test results and asks what they mean. Report
    the warnings to the user; never turn a pattern into a diagnosis.

    Args:
        text: The results exactly as the user wrote them, one result per line.
        sex: The patient's sex if the user said it (M or F); some ranges depend on it.
        age: The patient's age in years if the user said it (needed for eGFR).
    """
    from healtrace.labs.service import interpret_input

    try:
        report, out = await asyncio.to_thread(
            interpret_input, text=text, sex=sex, age=age, locale=ctx.locale
        )
    except InputError as exc:
        raise ToolRetry(exc.message(ctx.locale)) from exc
    results = [
        {
            k: r[k]
            for k in (
                "name",
                "value",
                "qualitative",
                "unit",
                "flag",
                "critical",
                "ref_low",
                "ref_high",
            )
            if r.get(k) is not None
        }
        for r in out["results"]
    ]
    derived = {
        key: {"value": d["value"], "unit": d["unit"]}
        for key, d in out["derived"].items()
        if d.get("value") is not None
    }
    zh = ctx.locale.lower().startswith("zh")
    note = (
        "以上为化验结果的一般解读，不是诊断；请与医生一起解读。"
        if zh
        else "General interpretation of the results, not a diagnosis; review them with a doctor."
    )
    result = LabsResult(
        results=results,
        derived=derived,
        patterns=[p["message"] for p in out["patterns"]],
        warnings=[w["message"] for w in out["warnings"]],
        urgent=report.urgent,
        note=note,
    )
    result._reasons = report.triage_reasons()
    return result
