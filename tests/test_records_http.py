"""HttpFhirStore against a real FHIR REST server on 127.0.0.1 (tests/_fhir_server.py)."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import carebundle
import httpx
import pytest

from healtrace.api.testing import LiveServer
from healtrace.config import Settings
from healtrace.errors import ConfigurationError, InputError, NotFoundError
from healtrace.records.fhir_store import (
    FhirStore,
    FhirUnauthorized,
    FhirUnavailable,
    HttpFhirStore,
    SqlFhirStore,
)
from healtrace.storage import Database
from tests._fhir_server import FhirTestServer

TENANT = "clinic-a"
TOKEN = "test-token"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


@dataclass
class Rig:
    server: FhirTestServer
    live: LiveServer
    backing: SqlFhirStore
    patient: str

    @property
    def base(self) -> str:
        return f"{self.live.http}/fhir"

    def store(self, token: str = TOKEN, **options: Any) -> HttpFhirStore:
        options.setdefault("retry_base_s", 0.0)
        return HttpFhirStore(self.base, token, **options)


@pytest.fixture
async def rig(settings: Settings) -> AsyncIterator[Rig]:
    db = Database(settings.resolved_database_url)
    await db.migrate()
    backing = SqlFhirStore(db)
    bundle = json.loads(carebundle.to_json(carebundle.generate_bundle(seed=5)))
    report = await backing.put_bundle(bundle, tenant_id=TENANT)
    patient = next(r for r in report.stored if r.startswith("Patient/")).split("/")[1]
    for i, (day, value) in enumerate(
        [("2025-01-10", 8.4), ("2025-04-10", 7.9), ("2025-07-10", 7.2)]
    ):
        await backing.put(
            {
                "resourceType": "Observation",
                "id": f"a1c-{i}",
                "status": "final",
                "category": [{"coding": [{"system": OBS_CATEGORY, "code": "laboratory"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
                "subject": {"reference": f"Patient/{patient}"},
                "effectiveDateTime": day,
                "valueQuantity": {"value": value, "unit": "%"},
            },
            tenant_id=TENANT,
        )
    server = FhirTestServer(backing, tenant_id=TENANT, token=TOKEN, page_size=2)
    try:
        async with LiveServer(server.app) as live:
            try:
                yield Rig(server, live, backing, patient)
            finally:
                server.release()
    finally:
        await db.dispose()


async def test_search_follows_next_links_and_matches_the_embedded_store(rig: Rig) -> None:
    store = rig.store()
    assert isinstance(store, FhirStore)
    try:
        for query in [
            {"resource_type": "Observation", "code": "4548-4"},
            {"resource_type": "Observation", "category": "laboratory", "limit": 7},
            {
                "resource_type": "Observation",
                "code": "http://loinc.org|4548-4",
                "date_from": date(2025, 4, 1),
                "date_to": date(2025, 12, 31),
            },
            {"resource_type": "Condition"},
            {"resource_type": "MedicationRequest"},
            {"resource_type": "Patient"},
        ]:
            expected = await rig.backing.search(tenant_id=TENANT, patient=rig.patient, **query)
            got = await store.search(tenant_id=TENANT, patient=rig.patient, **query)
            assert [r["id"] for r in got] == [r["id"] for r in expected], query
            assert got, query
    finally:
        await store.aclose()
    searches = [r for r in rig.server.requests if r.startswith("GET /fhir/Observation?")]
    assert any("_offset=" in r for r in searches)  # the next link was followed
    first = searches[0]
    assert f"patient={rig.patient}" in first and "_sort=-date" in first and "_count=50" in first


async def test_search_stops_paging_at_the_limit(rig: Rig) -> None:
    async with httpx.AsyncClient() as http:
        store = rig.store(http=http)
        found = await store.search(
            tenant_id=TENANT, patient=rig.patient, resource_type="Observation", limit=3
        )
    assert len(found) == 3
    assert len(rig.server.requests) == 2  # pages of two: two requests give three results
    expected = await rig.backing.search(
        tenant_id=TENANT, patient=rig.patient, resource_type="Observation", limit=3
    )
    assert [r["id"] for r in found] == [r["id"] for r in expected]  # newest first


async def test_date_parameters_are_sent_as_ranges(rig: Rig) -> None:
    store = rig.store()
    try:
        await store.search(
            tenant_id=TENANT,
            patient=rig.patient,
            resource_type="Condition",
            date_from=date(2020, 1, 1),
            date_to=date(2026, 1, 1),
        )
    finally:
        await store.aclose()
    sent = rig.server.requests[0]
    assert "onset-date=ge2020-01-01" in sent and "onset-date=le2026-01-01" in sent
    assert "_sort=-onset-date" in sent


async def test_get_put_and_put_bundle(rig: Rig) -> None:
    store = rig.store()
    try:
        patient = await store.get("Patient", rig.patient, tenant_id=TENANT)
        assert patient["id"] == rig.patient
        with pytest.raises(NotFoundError) as missing:
            await store.get("Observation", "no-such-id", tenant_id=TENANT)
        assert missing.value.code == "fhir_not_found"

        rid = await store.put(
            {"resourceType": "Patient", "id": "via-http", "gender": "other"}, tenant_id=TENANT
        )
        assert rid == "via-http"
        assert (await rig.backing.get("Patient", rid, tenant_id=TENANT))["gender"] == "other"
        with pytest.raises(InputError) as invalid:
            await store.put({"resourceType": "Observation"}, tenant_id=TENANT)
        assert invalid.value.code == "fhir_invalid"  # refused before anything is sent
        assert not any(r.startswith("PUT /fhir/Observation") for r in rig.server.requests)

        bundle = json.loads(carebundle.to_json(carebundle.generate_bundle(seed=6)))
        report = await store.put_bundle(bundle, tenant_id=TENANT)
        assert report.errors == [] and len(report.stored) == len(bundle["entry"])
        other = next(r for r in report.stored if r.startswith("Patient/")).split("/")[1]
        found = await store.search(tenant_id=TENANT, patient=other, resource_type="Condition")
        assert len(found) == report.by_type["Condition"]
    finally:
        await store.aclose()


async def test_wrong_or_missing_token_is_fhir_unauthorized(rig: Rig) -> None:
    for token in ("wrong", ""):
        store = rig.store(token)
        try:
            with pytest.raises(FhirUnauthorized) as refused:
                await store.get("Patient", rig.patient, tenant_id=TENANT)
        finally:
            await store.aclose()
        assert refused.value.code == "fhir_unauthorized"
        assert isinstance(refused.value, ConfigurationError)
        assert "HEALTRACE_FHIR__TOKEN" in refused.value.message("en")
        assert "HTTP 401" in refused.value.message("zh-CN")
    readonly = rig.store("readonly")
    try:
        assert (await readonly.get("Patient", rig.patient, tenant_id=TENANT))["id"]
        with pytest.raises(FhirUnauthorized, match="403"):
            await readonly.put({"resourceType": "Patient", "id": "x"}, tenant_id=TENANT)
    finally:
        await readonly.aclose()
    assert len(rig.server.requests) == 4  # refusals are not retried


async def test_server_errors_are_retried_twice_then_fhir_unavailable(rig: Rig) -> None:
    waits: list[float] = []

    async def no_sleep(seconds: float) -> None:
        waits.append(seconds)

    store = rig.store(retry_base_s=0.5, sleep=no_sleep)
    try:
        rig.server.fail_next = 2
        assert (await store.get("Patient", rig.patient, tenant_id=TENANT))["id"] == rig.patient
        assert len(rig.server.requests) == 3 and waits == [0.5, 1.0]

        rig.server.always_fail = True
        with pytest.raises(FhirUnavailable) as failed:
            await store.search(tenant_id=TENANT, patient=rig.patient, resource_type="Condition")
    finally:
        await store.aclose()
    assert len(rig.server.requests) == 6
    assert failed.value.code == "fhir_unavailable"
    assert "HTTP 500" in failed.value.message("en")
    assert failed.value.message("zh-CN").startswith("病历暂时无法获取")


async def test_timeouts_are_retried_then_fhir_unavailable(rig: Rig) -> None:
    rig.server.hang = True
    store = rig.store(timeout_s=0.2)
    try:
        with pytest.raises(FhirUnavailable, match="in time") as failed:
            await store.get("Patient", rig.patient, tenant_id=TENANT)
    finally:
        await store.aclose()
    assert isinstance(failed.value.__cause__, httpx.TimeoutException)
    assert len(rig.server.requests) == 3


async def test_unreachable_server_is_fhir_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens on the port once the socket is closed.
    store = HttpFhirStore(f"http://127.0.0.1:{port}/fhir", TOKEN, retry_base_s=0.0)
    try:
        with pytest.raises(FhirUnavailable, match="could not be reached"):
            await store.get("Patient", "p", tenant_id=TENANT)
    finally:
        await store.aclose()


async def test_next_links_to_another_server_are_not_followed() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        page = {
            "resourceType": "Bundle",
            "type": "searchset",
            "link": [{"relation": "next", "url": "https://elsewhere.example/fhir/Observation"}],
            "entry": [{"resource": {"resourceType": "Observation", "id": "o1"}}],
        }
        return httpx.Response(200, json=page)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        store = HttpFhirStore("https://fhir.hospital.example/r4", TOKEN, http=http)
        with pytest.raises(FhirUnavailable, match="another server"):
            await store.search(tenant_id=TENANT, patient="p", resource_type="Observation")
    assert len(seen) == 1 and seen[0].startswith("https://fhir.hospital.example/r4/Observation?")


async def test_a_tenant_bound_store_refuses_other_tenants() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing may be sent for another tenant")

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        store = HttpFhirStore("https://fhir.example/r4", TOKEN, http=http, tenant_id=TENANT)
        with pytest.raises(ConfigurationError, match="clinic-b"):
            await store.search(tenant_id="clinic-b", patient="p", resource_type="Observation")
        with pytest.raises(ConfigurationError):
            await store.get("Patient", "p", tenant_id="clinic-b")
