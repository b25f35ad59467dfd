"""Read the signed-in patient's own records, only as far as their consent allows.

The model chooses only *which kinds* of records; it cannot name a patient (the session's
patient key decides who), a grantee or a scope. Every kind goes through the consent gate,
which reads the grant from the chain; what is denied is explained to the patient with how
to grant access. The audit entry's hash goes into the answer's evidence record.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, PrivateAttr

from healtrace.tools.core import ToolContext, ToolRetry, tool

RecordKind = Literal["labs", "conditions", "medications", "allergies"]
ALL_KINDS: tuple[RecordKind, ...] = ("labs", "conditions", "medications", "allergies")


class RecordsResult(BaseModel):
    #: Minimum-necessary summary of what the patient allowed (None when nothing was).
    summary: dict[str, Any] | None
    text: str
    #: Record kinds the assistant may not read, with what to tell the patient.
    denied: list[str]
    how_to_grant: str
    note: str
    _audit: list[str] = PrivateAttr(default_factory=list)

    def consent_refs(self) -> list[str]:
        """The audit hashes of this lookup's consent decisions (for the evidence record)."""
        return list(self._audit)


@tool(timeout_s=20.0, permissions=("records",), needs_consent=True)
async def lookup_records(
    ctx: ToolContext,
    kinds: Annotated[list[RecordKind] | None, Field(min_length=1, max_length=4)] = None,
) -> RecordsResult:
    """Read the signed-in patient's own health records (recent lab results, conditions,
    medications, allergies), only those they have granted the assistant access to.

    Use when the patient asks about their own results, diagnoses, medicines or allergies.
    If access is denied, tell the patient what was not read and how to grant access; never
    guess what the records say.

    Args:
        kinds: Which kinds of records to read (omit for all four).
    """
    service = ctx.stores.get("records")
    if ctx.patient_id is None or service is None:
        from healtrace.errors import localized

        raise ToolRetry(localized("records_no_patient", ctx.locale))
    patient = await service.patients.get(ctx.tenant_id or "default", ctx.patient_id)
    result = await service.lookup(
        patient, list(kinds or ALL_KINDS), locale=ctx.locale, session_id=ctx.session_id
    )
    denied = result.denied
    summary = result.summary
    zh = ctx.locale.lower().startswith("zh")
    out = RecordsResult(
        summary=summary.model_dump(mode="json") if summary is not None else None,
        text=summary.text if summary is not None else "",
        denied=sorted({f"{d.resource_type} ({d.reason})" for d in denied}),
        how_to_grant=service.denial_text(denied, ctx.locale) if denied else "",
        note="仅包含患者授权读取的记录。" if zh else "Only records the patient allowed are shown.",
    )
    out._audit = [result.audit_hash]
    return out
