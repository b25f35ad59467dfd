"""The rule engine and ledger: decisions, anti-abuse checks, idempotency, and caps that
hold under 100 concurrent claims on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from healtrace.config import Settings
from healtrace.rewards import (
    RewardConflict,
    RewardEvent,
    RewardInputError,
    RewardsConfig,
    RewardsService,
    RuleSet,
)
from healtrace.rewards.rules import parse_rules
from healtrace.storage import Database

NOW = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
TOKEN = 10**18

#: Rules for tests: small numbers so caps are reached quickly.
TEST_RULES = """
version: 1
rules:
  - id: checkin
    event_type: daily_checkin
    amount: "1"
    daily_cap: 3
    title: {en: "Daily check-in", zh-CN: "每日签到"}
  - id: questionnaire
    event_type: questionnaire_completed
    amount: "5"
    cooldown_s: 3600
    title: {en: "Questionnaire", zh-CN: "问卷"}
  - id: bp_streak
    event_type: blood_pressure_reading
    amount: "10"
    streak_days: 3
    title: {en: "Blood-pressure streak", zh-CN: "连续记录血压"}
  - id: glucose
    event_type: glucose_reading
    amount: "0.5"
    title: {en: "Glucose reading", zh-CN: "血糖记录"}
  - id: followup
    event_type: followup_completed
    amount: "20"
    lifetime_cap: 2
    title: {en: "Follow-up", zh-CN: "随访"}
  - id: contribution
    event_type: data_contribution
    amount: "50"
    tool_allowed: false
    title: {en: "Data contribution", zh-CN: "数据贡献"}
"""


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def rules_for_tests() -> RuleSet:
    return parse_rules(TEST_RULES, "test rules")


def rewards_settings(settings: Settings, **config: Any) -> Settings:
    return settings.model_copy(update={"rewards": RewardsConfig(**config)})


def new_tenant() -> str:
    """The PostgreSQL database is shared across the run: every test gets its own tenant."""
    return "t-" + uuid.uuid4().hex[:12]


def event(
    tenant: str,
    type: str = "daily_checkin",
    *,
    patient: str = "p1",
    at: datetime = NOW,
    event_id: str | None = None,
    **payload: Any,
) -> RewardEvent:
    return RewardEvent(
        event_id=event_id or uuid.uuid4().hex,
        tenant_id=tenant,
        patient_id=patient,
        type=type,
        occurred_at=at,
        payload=payload,
    )


def bp(tenant: str, sys: float, dia: float, at: datetime = NOW, **kw: Any) -> RewardEvent:
    return event(
        tenant, "blood_pressure_reading", at=at, systolic_mmhg=sys, diastolic_mmhg=dia, **kw
    )


async def open_service(
    url: str, settings: Settings, clock: Clock, **config: Any
) -> tuple[Database, RewardsService]:
    db = Database(url)
    await db.migrate()
    config.setdefault("burst_max_events", 1000)
    service = RewardsService(
        rewards_settings(settings, **config), db, rules=rules_for_tests(), clock=clock
    )
    return db, service


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def svc(settings: Settings, clock: Clock) -> AsyncIterator[RewardsService]:
    db, service = await open_service(settings.resolved_database_url, settings, clock)
    try:
        yield service
    finally:
        await db.dispose()


async def test_checkin_pays_up_to_the_daily_cap_then_again_next_day(
    svc: RewardsService, clock: Clock
) -> None:
    t = new_tenant()
    results = [await svc.claim(event(t)) for _ in range(4)]
    assert [r.status for r in results] == ["awarded"] * 3 + ["denied"]
    assert results[0].amount == TOKEN and results[3].amount == 0
    assert results[3].reason == "reward_cap_reached" and results[3].params["cap"] == "daily"
    assert results[0].message("en") == "You earned 1 HEAL for Daily check-in."
    assert results[0].message("zh-CN") == "您因“每日签到”获得 1 HEAL。"
    assert "每日签到" in results[3].message("zh-CN")
    clock.advance(days=1)
    assert (await svc.claim(event(t, at=clock.now))).awarded


async def test_a_repeated_event_id_returns_the_first_decision_and_pays_once(
    svc: RewardsService,
) -> None:
    t = new_tenant()
    first = await svc.claim(event(t, event_id="evt-1"))
    again = await svc.claim(event(t, event_id="evt-1"))
    assert first.awarded and not first.replayed
    assert again.replayed and again.claim_id == first.claim_id and again.amount == TOKEN
    balance = await svc.balance(t, "p1")
    assert (balance.awarded, balance.awards) == (TOKEN, 1)


async def test_a_reused_event_id_for_another_claim_is_a_conflict(svc: RewardsService) -> None:
    t = new_tenant()
    await svc.claim(bp(t, 120, 80, event_id="evt-2"))
    with pytest.raises(RewardConflict) as info:
        await svc.claim(bp(t, 121, 80, event_id="evt-2"))
    assert info.value.code == "reward_event_conflict"
    assert "evt-2" in info.value.message("en")


async def test_the_same_reading_twice_is_a_duplicate(svc: RewardsService) -> None:
    t = new_tenant()
    first = await svc.claim(bp(t, 128, 82, pulse_bpm=70))
    second = await svc.claim(bp(t, 128, 82, pulse_bpm=70))
    later = await svc.claim(bp(t, 128, 82, NOW + timedelta(minutes=5), pulse_bpm=70))
    assert first.status == "recorded"
    assert (second.status, second.reason) == ("denied", "reward_duplicate_reading")
    assert second.params["original_claim_id"] == first.claim_id
    assert later.status == "recorded"


@pytest.mark.parametrize(
    ("type", "payload", "why"),
    [
        ("blood_pressure_reading", {"systolic_mmhg": 40, "diastolic_mmhg": 30}, "systolic"),
        ("blood_pressure_reading", {"systolic_mmhg": 350, "diastolic_mmhg": 90}, "systolic"),
        ("blood_pressure_reading", {"systolic_mmhg": 120, "diastolic_mmhg": 130}, "lower"),
        ("blood_pressure_reading", {"systolic_mmhg": 120, "diastolic_mmhg": 120}, "lower"),
        (
            "blood_pressure_reading",
            {"systolic_mmhg": 120, "diastolic_mmhg": 80, "pulse_bpm": 400},
            "pulse",
        ),
        ("glucose_reading", {"value": 0.2}, "glucose"),
        ("glucose_reading", {"value": 60}, "glucose"),
        ("glucose_reading", {"value": 1000, "unit": "mg/dL"}, "glucose"),
    ],
)
async def test_impossible_values_are_denied(
    svc: RewardsService, type: str, payload: dict[str, Any], why: str
) -> None:
    t = new_tenant()
    result = await svc.claim(event(t, type, **payload))
    assert (result.status, result.reason) == ("denied", "reward_impossible_value")
    assert why in result.params["detail"]
    assert why in result.message("en")


async def test_plausible_glucose_in_either_unit_pays(svc: RewardsService) -> None:
    t = new_tenant()
    assert (await svc.claim(event(t, "glucose_reading", value=5.6))).amount == TOKEN // 2
    mg = await svc.claim(event(t, "glucose_reading", value=101, unit="mg/dL"))
    assert mg.awarded


async def test_a_burst_of_claims_is_denied_until_the_window_passes(
    settings: Settings, clock: Clock
) -> None:
    db, svc = await open_service(
        settings.resolved_database_url, settings, clock, burst_max_events=3, burst_window_s=600
    )
    try:
        t = new_tenant()
        results = [await svc.claim(bp(t, 120 + i, 80)) for i in range(5)]
        assert [r.reason for r in results[3:]] == ["reward_burst", "reward_burst"]
        assert "3" in results[3].message("en")
        clock.advance(minutes=11)
        assert (await svc.claim(bp(t, 130, 80))).reason != "reward_burst"
    finally:
        await db.dispose()


async def test_cooldown_between_awards(svc: RewardsService, clock: Clock) -> None:
    t = new_tenant()
    q = "questionnaire_completed"
    assert (await svc.claim(event(t, q, questionnaire_id="phq9"))).awarded
    clock.advance(minutes=30)
    soon = await svc.claim(event(t, q, at=clock.now, questionnaire_id="gad7"))
    assert (soon.status, soon.reason) == ("denied", "reward_cooldown")
    assert soon.params["available_at"].startswith("2026-03-10T10:00")
    clock.advance(minutes=31)
    assert (await svc.claim(event(t, q, at=clock.now, questionnaire_id="who5"))).awarded
    dup = await svc.claim(event(t, q, at=clock.now, questionnaire_id="phq9"))
    assert dup.reason == "reward_duplicate_submission"


async def test_lifetime_cap(svc: RewardsService, clock: Clock) -> None:
    t = new_tenant()
    reasons = []
    for day in range(3):
        at = NOW + timedelta(days=day)
        clock.now = at
        result = await svc.claim(event(t, "followup_completed", at=at, followup_id=f"f{day}"))
        reasons.append(result.reason)
    assert reasons == ["reward_awarded", "reward_awarded", "reward_cap_reached"]


async def test_data_contribution_needs_a_consent_reference(svc: RewardsService) -> None:
    t = new_tenant()
    bare = await svc.claim(event(t, "data_contribution", dataset="bp-2026"))
    assert (bare.status, bare.reason) == ("denied", "reward_consent_required")
    blank = await svc.claim(event(t, "data_contribution", dataset="bp-2026", consent_ref=" "))
    assert blank.reason == "reward_consent_required"
    ok = await svc.claim(
        event(t, "data_contribution", dataset="bp-2026", consent_ref="grant:0xabc")
    )
    assert ok.awarded and ok.amount == 50 * TOKEN


async def test_a_streak_pays_on_its_last_day_and_starts_again(
    svc: RewardsService, clock: Clock
) -> None:
    t = new_tenant()
    decisions = []
    for day in range(4):
        clock.now = NOW + timedelta(days=day)
        result = await svc.claim(bp(t, 120 + day, 80, clock.now))
        decisions.append((result.status, result.params.get("days")))
    assert decisions == [("recorded", 1), ("recorded", 2), ("awarded", None), ("recorded", 1)]
    assert "1 of 3" in (await svc.history(t, "p1")).items[0].claim.message("en")
    # A missed day breaks the streak.
    clock.now = NOW + timedelta(days=5)
    gap = await svc.claim(bp(t, 125, 80, clock.now))
    assert (gap.status, gap.params["days"]) == ("recorded", 1)


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"type": "jogging"}, "reward_unknown_type"),
        ({"type": "blood_pressure_reading", "systolic_mmhg": 120}, "reward_invalid_event"),
        ({"type": "daily_checkin", "amount": "100"}, "reward_invalid_event"),
        ({"type": "glucose_reading", "value": "lots"}, "reward_invalid_event"),
        ({"at": NOW - timedelta(days=3)}, "reward_event_time_invalid"),
        ({"at": NOW + timedelta(hours=1)}, "reward_event_time_invalid"),
    ],
)
async def test_claims_that_cannot_be_judged_are_refused_and_not_stored(
    svc: RewardsService, kwargs: dict[str, Any], code: str
) -> None:
    t = new_tenant()
    with pytest.raises(RewardInputError) as info:
        await svc.claim(event(t, **kwargs))
    assert info.value.code == code
    assert info.value.message("zh-CN") and info.value.message("en")
    assert (await svc.history(t, "p1")).items == []


async def test_unknown_type_lists_the_rewarded_activities(svc: RewardsService) -> None:
    with pytest.raises(RewardInputError) as info:
        await svc.claim(event(new_tenant(), "jogging"))
    assert "daily_checkin" in info.value.message("en")


async def test_disabled_rewards_refuse_claims(settings: Settings, clock: Clock) -> None:
    db, svc = await open_service(settings.resolved_database_url, settings, clock, enabled=False)
    try:
        with pytest.raises(RewardInputError, match="disabled"):
            await svc.claim(event(new_tenant()))
    finally:
        await db.dispose()


async def test_history_is_newest_first_and_paginated(svc: RewardsService, clock: Clock) -> None:
    t = new_tenant()
    ids = []
    for i in range(5):
        clock.now = NOW + timedelta(days=i)
        ids.append((await svc.claim(event(t, at=clock.now))).claim_id)
    first = await svc.history(t, "p1", limit=2)
    assert [i.claim.claim_id for i in first.items] == ids[:-3:-1]
    assert first.items[0].mint == "pending" and first.next_before is not None
    rest = await svc.history(t, "p1", limit=10, before=first.next_before)
    assert [i.claim.claim_id for i in rest.items] == ids[2::-1]
    assert rest.next_before is None
    balance = await svc.balance(t, "p1")
    assert (balance.awarded, balance.minted, balance.pending) == (5 * TOKEN, 0, 5 * TOKEN)
    assert (await svc.balance(t, "nobody")).awarded == 0


async def test_caps_hold_under_100_concurrent_claims(
    database_url: str, settings: Settings, clock: Clock
) -> None:
    db, svc = await open_service(database_url, settings, clock)
    try:
        t = new_tenant()
        results = await asyncio.gather(*(svc.claim(event(t)) for _ in range(100)))
        awarded = [r for r in results if r.awarded]
        assert len(awarded) == 3
        assert {r.reason for r in results if not r.awarded} == {"reward_cap_reached"}
        balance = await svc.balance(t, "p1")
        assert (balance.awarded, balance.awards) == (3 * TOKEN, 3)
        # Two patients at once: each gets its own cap.
        mixed = await asyncio.gather(
            *(svc.claim(event(t, patient=f"p{2 + i % 2}")) for i in range(100))
        )
        assert sum(r.awarded for r in mixed) == 6
    finally:
        await db.dispose()


async def test_one_event_id_sent_100_times_at_once_pays_once(
    database_url: str, settings: Settings, clock: Clock
) -> None:
    db, svc = await open_service(database_url, settings, clock)
    try:
        t = new_tenant()
        same = event(t, event_id="retry-storm")
        results = await asyncio.gather(*(svc.claim(same) for _ in range(100)))
        assert len({r.claim_id for r in results}) == 1
        assert sum(not r.replayed for r in results) == 1
        assert all(r.awarded for r in results)
        assert (await svc.balance(t, "p1")).awards == 1
        # The same reading under 100 different event ids: recorded once.
        readings = await asyncio.gather(*(svc.claim(bp(t, 131, 85)) for _ in range(100)))
        assert sum(r.reason == "reward_duplicate_reading" for r in readings) == 99
    finally:
        await db.dispose()
