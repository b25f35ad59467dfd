"""The ``reward`` tool: the model proposes, the rules decide; no amount, no recipient."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from healtrace.config import Settings
from healtrace.rewards import RewardsService
from healtrace.tools.builtin.rewards import reward
from healtrace.tools.core import ToolContext, ToolRegistry
from tests.test_rewards_engine import Clock, new_tenant, open_service


@pytest.fixture
async def svc(settings: Settings) -> AsyncIterator[RewardsService]:
    db, service = await open_service(settings.resolved_database_url, settings, Clock())
    try:
        yield service
    finally:
        await db.dispose()


def _ctx(
    settings: Settings, svc: RewardsService | None, patient: str | None = "p1", locale: str = "en"
) -> ToolContext:
    stores = {"rewards": svc} if svc is not None else {}
    return ToolContext(
        session_id="s" * 32,
        locale=locale,
        settings=settings,
        patient_id=patient,
        tenant_id=new_tenant(),
        stores=stores,
    )


async def _run(ctx: ToolContext, **args: object) -> tuple[bool, str]:
    outcome = await ToolRegistry([reward]).run("c1", "reward", json.dumps(args), ctx)
    return outcome.ok, outcome.content


def test_the_schema_has_no_amount_recipient_or_patient() -> None:
    props = reward.spec.parameters["properties"]
    assert reward.permissions == ("rewards",)
    for forbidden in ("amount", "recipient", "address", "patient_id", "to", "tenant_id"):
        assert forbidden not in props
    activities = props["activity"]["enum"]
    assert "daily_checkin" in activities and "data_contribution" not in activities
    assert reward.spec.parameters["additionalProperties"] is False


async def test_an_extra_amount_argument_is_refused(settings: Settings, svc: RewardsService) -> None:
    ok, text = await _run(_ctx(settings, svc), activity="daily_checkin", amount="1000")
    assert not ok and "amount" in text


async def test_a_proposal_the_rules_accept(settings: Settings, svc: RewardsService) -> None:
    ctx = _ctx(settings, svc)
    ok, text = await _run(ctx, activity="daily_checkin")
    decision = json.loads(text)
    assert ok and decision["status"] == "awarded" and decision["amount"] == "1"
    assert decision["message"] == "You earned 1 HEAL for Daily check-in."
    # The model repeating the call in the same minute gets the first decision back.
    ok, again = await _run(ctx, activity="daily_checkin")
    assert json.loads(again)["replayed"] is True
    assert (await svc.balance(ctx.tenant_id or "", "p1")).awards == 1


async def test_a_proposal_the_rules_deny(settings: Settings, svc: RewardsService) -> None:
    ctx = _ctx(settings, svc, locale="zh-CN")
    ok, text = await _run(
        ctx, activity="blood_pressure_reading", systolic_mmhg=120, diastolic_mmhg=140
    )
    decision = json.loads(text)
    assert ok and decision["status"] == "denied"
    assert decision["reason"] == "reward_impossible_value" and "读数" in decision["message"]


async def test_a_reading_without_its_values_goes_back_to_the_model(
    settings: Settings, svc: RewardsService
) -> None:
    ok, text = await _run(_ctx(settings, svc), activity="blood_pressure_reading")
    assert not ok and "systolic_mmhg" in text


async def test_no_signed_in_patient(settings: Settings, svc: RewardsService) -> None:
    ok, text = await _run(_ctx(settings, svc, patient=None), activity="daily_checkin")
    assert not ok and "No patient is signed in" in text


async def test_no_rewards_service(settings: Settings) -> None:
    ok, text = await _run(_ctx(settings, None), activity="daily_checkin")
    assert not ok and "not enabled" in text


async def test_a_type_the_model_may_not_propose(settings: Settings, svc: RewardsService) -> None:
    ok, text = await _run(_ctx(settings, svc), activity="data_contribution")
    assert not ok and "daily_checkin" in text
