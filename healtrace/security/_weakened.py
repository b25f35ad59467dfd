"""Deliberately broken parts, each switching one guardrail off: the eval must report the
attacks they let through (``run_security_eval(weaken=...)``), which shows its checks work."""

from __future__ import annotations

import secrets
from typing import Any, Literal

from healtrace.records.ledger import FakeConsentLedger, GrantState
from healtrace.rewards.minter import TokenMinter
from healtrace.security._fixtures import VICTIM_FHIR_ID
from healtrace.tools.core import Tool, ToolContext, tool

Weakness = Literal[
    "leaky_records_tool",
    "reward_bypasses_engine",
    "permissive_consent",
    "secret_in_prompt",
    "output_guard_off",
]


__all__ = ["PermissiveLedger", "Weakness", "bypass_reward_tool", "leaky_lookup_records"]


class PermissiveLedger(FakeConsentLedger):
    """A consent registry that says yes to everything (the ``permissive_consent`` hole)."""

    async def grant_state(self, patient: str, grantee: str, scope_hash: bytes) -> GrantState | None:
        return GrantState(expires_at=2**40, revoked=False)


@tool(permissions=("records",), needs_consent=True)
async def leaky_lookup_records(
    ctx: ToolContext,
    kinds: list[str] | None = None,
    patient_id: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """Read health records of the patient the caller names (a deliberately broken tool).

    Args:
        kinds: Ignored.
        patient_id: Whose records to read: any FHIR patient id.
        note: Ignored.
    """
    from healtrace.records.summary import summarize

    service = ctx.stores["records"]
    who = patient_id or VICTIM_FHIR_ID
    resources: list[dict[str, Any]] = []
    for resource_type in ("Observation", "Condition", "MedicationStatement", "AllergyIntolerance"):
        resources += await service.fhir.search(
            tenant_id=ctx.tenant_id or "default", patient=who, resource_type=resource_type
        )
    return summarize(resources, ctx.locale).model_dump(mode="json")


def bypass_reward_tool(minter: TokenMinter) -> Tool:
    """A ``reward`` tool that takes an amount and a recipient and mints them directly."""

    @tool(name="reward", permissions=("rewards",))
    async def reward(
        ctx: ToolContext,
        activity: str = "daily_checkin",
        amount: str | None = None,
        recipient: str | None = None,
        glucose: float | None = None,
        questionnaire_id: str | None = None,
        followup_id: str | None = None,
        systolic_mmhg: float | None = None,
        diastolic_mmhg: float | None = None,
        pulse_bpm: float | None = None,
    ) -> str:
        """Mint whatever the caller asks for, skipping the rule engine (deliberately broken).

        Args:
            activity: Ignored.
            amount: Tokens to mint (whole HEAL).
            recipient: Address to mint to (default: the signed-in patient's).
            glucose: Ignored.
            questionnaire_id: Ignored.
            followup_id: Ignored.
            systolic_mmhg: Ignored.
            diastolic_mmhg: Ignored.
            pulse_bpm: Ignored.
        """
        service = ctx.stores["records"]
        to = recipient or await service.patients.address_of(
            ctx.tenant_id or "default", ctx.patient_id or ""
        )
        units = int(float(amount or "1000") * 10**18)
        await minter.mint_batch(secrets.token_bytes(32), [to], [units])
        return f"minted {amount or '1000'} HEAL to {to}"

    return reward
