"""REST ``/v1/rewards/*``: claims, balance, history, and clear errors for bad input."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from healtrace.agent.memory import ChatStore
from healtrace.api._http import healtrace_error_handler
from healtrace.api.rewards import router
from healtrace.config import Settings
from healtrace.errors import HealTraceError
from tests.test_rewards_engine import NOW, Clock, new_tenant, open_service


@dataclass
class Api:
    client: httpx.AsyncClient
    tenant: str
    #: A hospital key (names the patient) and a key issued for patient p1.
    hospital: dict[str, str]
    patient: dict[str, str]


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    db, svc = await open_service(settings.resolved_database_url, settings, Clock())
    store = ChatStore(db)
    tenant = new_tenant()
    _id, hospital = await store.create_api_key("hospital", tenant_id=tenant)
    _id, patient = await store.create_api_key("p1", tenant_id=tenant, patient_id="p1")
    app = FastAPI()
    app.state.services = SimpleNamespace(settings=settings, store=store)
    app.state.rewards = svc
    app.add_exception_handler(HealTraceError, healtrace_error_handler)
    app.include_router(router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield Api(
            client,
            tenant,
            {"Authorization": f"Bearer {hospital}"},
            {"Authorization": f"Bearer {patient}"},
        )
    await db.dispose()


def _claim(**kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": "evt-1",
        "type": "daily_checkin",
        "occurred_at": NOW.isoformat(),
        "payload": {},
    }
    body.update(kw)
    return body


async def test_a_claim_is_judged_and_replayed(api: Api) -> None:
    r = await api.client.post("/v1/rewards/events", json=_claim(), headers=api.patient)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["amount"], body["patient_id"]) == ("awarded", "1", "p1")
    again = await api.client.post("/v1/rewards/events", json=_claim(), headers=api.patient)
    assert again.json()["replayed"] is True and again.json()["claim_id"] == body["claim_id"]
    balance = await api.client.get("/v1/rewards/balance", headers=api.patient)
    assert balance.json()["awarded"] == "1" and balance.json()["pending"] == "1"
    assert balance.json()["awarded_units"] == str(10**18)


async def test_a_denial_is_a_200_with_a_localized_reason(api: Api) -> None:
    claim = _claim(
        type="blood_pressure_reading",
        patient_id="p9",
        payload={"systolic_mmhg": 20, "diastolic_mmhg": 10},
    )
    headers = {**api.hospital, "Accept-Language": "zh-CN"}
    r = await api.client.post("/v1/rewards/events", json=claim, headers=headers)
    assert r.status_code == 200
    assert r.json()["reason"] == "reward_impossible_value" and "读数" in r.json()["message"]


async def test_history_pages(api: Api) -> None:
    for i in range(3):
        claim = _claim(event_id=f"q-{i}", type="glucose_reading", payload={"value": 5 + i})
        await api.client.post("/v1/rewards/events", json=claim, headers=api.patient)
    first = (await api.client.get("/v1/rewards/history?limit=2", headers=api.patient)).json()
    assert [i["event_id"] for i in first["items"]] == ["q-2", "q-1"]
    assert first["items"][0]["mint"] == "pending"
    rest = await api.client.get(
        f"/v1/rewards/history?limit=2&before={first['next_before']}", headers=api.patient
    )
    assert [i["event_id"] for i in rest.json()["items"]] == ["q-0"]
    assert rest.json()["next_before"] is None


async def _error(api: Api, content: bytes | str, **headers: str) -> tuple[int, dict[str, str]]:
    r = await api.client.post(
        "/v1/rewards/events",
        content=content,
        headers={**api.patient, "Content-Type": "application/json", **headers},
    )
    return r.status_code, r.json()["error"]


@pytest.mark.parametrize(
    ("body", "status", "code", "says"),
    [
        (_claim(type="jogging"), 422, "reward_unknown_type", "jogging"),
        ({"type": "daily_checkin"}, 422, "reward_invalid_event", "event_id"),
        (_claim(occurred_at="yesterday"), 422, "reward_invalid_event", "occurred_at"),
        (_claim(occurred_at="2026-03-10T09:00:00"), 422, "reward_invalid_event", "timezone"),
        (_claim(amount="1000"), 422, "reward_invalid_event", "amount"),
        (_claim(type="glucose_reading", payload={}), 422, "reward_invalid_event", "value"),
        (_claim(occurred_at="2020-01-01T00:00:00Z"), 422, "reward_event_time_invalid", "48"),
        (_claim(patient_id="p2"), 403, "reward_patient_forbidden", "another patient"),
        ([1, 2], 422, "reward_invalid_event", "JSON object"),
    ],
)
async def test_bad_claims_get_clear_errors(
    api: Api, body: Any, status: int, code: str, says: str
) -> None:
    got, error = await _error(api, json.dumps(body))
    assert (got, error["code"]) == (status, code), error
    assert says in error["message"]


async def test_malformed_json(api: Api) -> None:
    status, error = await _error(api, b'{"event_id": "x", ')
    assert (status, error["code"]) == (422, "reward_invalid_event")
    assert "not valid JSON" in error["message"]
    status, error = await _error(api, b"[" * 5000 + b"]" * 5000)
    assert status == 422


async def test_a_huge_claim_is_refused_before_it_is_read(api: Api) -> None:
    huge = json.dumps(_claim(payload={"note": "x" * 100_000}))
    status, error = await _error(api, huge)
    assert (status, error["code"]) == (413, "reward_claim_too_large")
    assert "16384" in error["message"]


async def test_a_conflicting_event_id(api: Api) -> None:
    await api.client.post("/v1/rewards/events", json=_claim(), headers=api.patient)
    other = _claim(occurred_at="2026-03-10T08:00:00+00:00")
    status, error = await _error(api, json.dumps(other))
    assert (status, error["code"]) == (409, "reward_event_conflict")


async def test_a_hospital_key_must_name_the_patient(api: Api) -> None:
    r = await api.client.post("/v1/rewards/events", json=_claim(), headers=api.hospital)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "reward_patient_required")
    r = await api.client.get("/v1/rewards/balance?patient_id=p7", headers=api.hospital)
    assert r.status_code == 200 and r.json()["awarded"] == "0"


async def test_no_key(api: Api) -> None:
    r = await api.client.post("/v1/rewards/events", json=_claim())
    assert (r.status_code, r.json()["error"]["code"]) == (401, "auth_required")
