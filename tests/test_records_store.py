"""The embedded FHIR store on SQLite and PostgreSQL, its factory and the records CLI."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import carebundle
import pytest
from typer.testing import CliRunner

from healtrace.config import Settings
from healtrace.errors import ConfigurationError, InputError, NotFoundError
from healtrace.records.cli import records_app
from healtrace.records.fhir_config import FhirConfig
from healtrace.records.fhir_store import (
    FhirStore,
    HttpFhirStore,
    SqlFhirStore,
    open_fhir_store,
)
from healtrace.storage import Database

LOINC = "http://loinc.org"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def tenant() -> str:
    # The PostgreSQL database is shared by the whole run: every test has its own tenant.
    return f"t-{uuid.uuid4().hex[:12]}"


def lab(
    oid: str, patient: str, loinc: str, value: float, when: str, **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [{"coding": [{"system": OBS_CATEGORY, "code": "laboratory"}]}],
        "code": {"coding": [{"system": LOINC, "code": loinc}], "text": f"test {loinc}"},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": "%"},
        **extra,
    }


def vital(oid: str, patient: str, when: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [{"coding": [{"system": OBS_CATEGORY, "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": 70, "unit": "/min"},
    }


def carebundle_json(seed: int = 42, profile: str = "type2_diabetes") -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        carebundle.to_json(carebundle.generate_bundle(profile=profile, seed=seed))
    )
    return loaded


@pytest.fixture
async def fhir(database_url: str) -> AsyncIterator[SqlFhirStore]:
    db = Database(database_url)
    await db.migrate()
    try:
        yield SqlFhirStore(db, max_bundle_bytes=2_000_000)
    finally:
        await db.dispose()


async def test_put_get_round_trip(fhir: SqlFhirStore) -> None:
    t = tenant()
    assert isinstance(fhir, FhirStore)
    rid = await fhir.put(lab("o1", "p1", "4548-4", 7.1, "2025-03-01"), tenant_id=t)
    assert rid == "o1"
    got = await fhir.get("Observation", "o1", tenant_id=t)
    assert got["valueQuantity"] == {"value": 7.1, "unit": "%"}
    assert got["meta"]["lastUpdated"].endswith("+00:00")
    # No id: one is assigned and returned.
    new_id = await fhir.put({"resourceType": "Patient", "gender": "female"}, tenant_id=t)
    assert (await fhir.get("Patient", new_id, tenant_id=t))["gender"] == "female"
    # JSON text is accepted too; a second put replaces.
    await fhir.put(json.dumps(lab("o1", "p1", "4548-4", 7.4, "2025-03-01")), tenant_id=t)
    assert (await fhir.get("Observation", "o1", tenant_id=t))["valueQuantity"]["value"] == 7.4
    with pytest.raises(NotFoundError) as missing:
        await fhir.get("Observation", "nope", tenant_id=t)
    assert missing.value.code == "fhir_not_found"


async def test_search_by_patient_type_category_code_and_date(fhir: SqlFhirStore) -> None:
    t = tenant()
    for resource in [
        {"resourceType": "Patient", "id": "p1"},
        lab("a1c-old", "p1", "4548-4", 8.2, "2024-06-01"),
        lab("a1c-mid", "p1", "4548-4", 7.6, "2025-01-15T08:00:00Z"),
        lab("a1c-new", "p1", "4548-4", 7.0, "2025-06-30T23:30:00+08:00"),
        lab("k", "p1", "2823-3", 4.1, "2025-02-01"),
        lab("other-patient", "p2", "4548-4", 6.0, "2025-05-01"),
        vital("hr", "p1", "2025-07-01"),
        {
            "resourceType": "Condition",
            "id": "dm",
            "subject": {"reference": "Patient/p1"},
            "code": {"text": "Type 2 diabetes"},
            "onsetDateTime": "2020",
        },
    ]:
        await fhir.put(resource, tenant_id=t)

    async def ids(**query: Any) -> list[str]:
        query.setdefault("resource_type", "Observation")
        found = await fhir.search(tenant_id=t, patient="p1", **query)
        return [r["id"] for r in found]

    # Newest first by clinical date; the +08:00 time is 15:30 UTC on 30 June.
    assert await ids() == ["hr", "a1c-new", "k", "a1c-mid", "a1c-old"]
    assert await ids(category="laboratory") == ["a1c-new", "k", "a1c-mid", "a1c-old"]
    assert await ids(category=f"{OBS_CATEGORY}|vital-signs") == ["hr"]
    assert await ids(category="http://other.example|laboratory") == []
    assert await ids(code="4548-4") == ["a1c-new", "a1c-mid", "a1c-old"]
    assert await ids(code=f"{LOINC}|2823-3") == ["k"]
    assert await ids(code="4548") == []  # tokens match whole, never by prefix
    assert await ids(code="4548-4", date_from=date(2025, 1, 15)) == ["a1c-new", "a1c-mid"]
    assert await ids(code="4548-4", date_to=date(2025, 1, 15)) == ["a1c-mid", "a1c-old"]
    assert await ids(date_from=date(2025, 1, 1), date_to=date(2025, 3, 1)) == ["k", "a1c-mid"]
    assert await ids(limit=2) == ["hr", "a1c-new"]
    assert await ids(resource_type="Condition") == ["dm"]
    assert await ids(resource_type="Patient") == ["p1"]
    # "Patient/p1" and "p1" name the same patient.
    found = await fhir.search(tenant_id=t, patient="Patient/p1", resource_type="Condition")
    assert [r["id"] for r in found] == ["dm"]
    found = await fhir.search(tenant_id=t, patient="p2", resource_type="Observation")
    assert [r["id"] for r in found] == ["other-patient"]


async def test_tenants_are_isolated(fhir: SqlFhirStore) -> None:
    a, b = tenant(), tenant()
    await fhir.put(lab("o1", "p1", "4548-4", 7.1, "2025-03-01"), tenant_id=a)
    await fhir.put(lab("o1", "p1", "4548-4", 9.9, "2025-03-01"), tenant_id=b)
    await fhir.put(lab("o2", "p1", "4548-4", 6.5, "2025-04-01"), tenant_id=a)
    assert (await fhir.get("Observation", "o1", tenant_id=a))["valueQuantity"]["value"] == 7.1
    assert (await fhir.get("Observation", "o1", tenant_id=b))["valueQuantity"]["value"] == 9.9
    with pytest.raises(NotFoundError):
        await fhir.get("Observation", "o2", tenant_id=b)
    found_b = await fhir.search(tenant_id=b, patient="p1", resource_type="Observation")
    assert [r["id"] for r in found_b] == ["o1"]
    found_c = await fhir.search(tenant_id=tenant(), patient="p1", resource_type="Observation")
    assert found_c == []
    report = await fhir.put_bundle(carebundle_json(), tenant_id=a)
    patient = next(r for r in report.stored if r.startswith("Patient/")).split("/")[1]
    assert await fhir.search(tenant_id=b, patient=patient, resource_type="Observation") == []


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ("{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        ("[1, 2]", "a resource is a JSON object"),
        ({"id": "x"}, "resourceType is missing"),
        ({"resourceType": "Sandwich"}, "'Sandwich' is not a FHIR R4 resource type"),
        ({"resourceType": "Observation", "code": {"text": "x"}}, "Observation.status"),
        (
            {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "id": "a b"},
            "Observation.id",
        ),
        (
            {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "bogus": 1},
            "Observation.bogus",
        ),
        ({"resourceType": "Bundle", "type": "collection"}, "put_bundle"),
    ],
)
async def test_invalid_json_and_resources_are_refused(
    fhir: SqlFhirStore, payload: Any, problem: str
) -> None:
    t = tenant()
    with pytest.raises(InputError) as refused:
        await fhir.put(payload, tenant_id=t)
    assert refused.value.code == "fhir_invalid"
    assert problem in refused.value.detail
    assert problem in refused.value.message("en")
    assert refused.value.message("zh-CN").startswith("这不是有效的 FHIR R4 资源")


async def test_bundle_stores_valid_entries_and_reports_the_others(fhir: SqlFhirStore) -> None:
    t = tenant()
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": "urn:uuid:7c1e9f0e-0000-4000-8000-000000000001",
                "resource": {"resourceType": "Patient", "gender": "male"},
            },
            {
                "resource": lab("ok", "placeholder", "4548-4", 7.0, "2025-01-01")
                | {"subject": {"reference": "urn:uuid:7c1e9f0e-0000-4000-8000-000000000001"}}
            },
            {"resource": {"resourceType": "Observation", "id": "bad", "code": {"text": "x"}}},
            "not an entry",
            {
                "resource": {"resourceType": "Patient", "id": "gone"},
                "request": {"method": "DELETE", "url": "Patient/gone"},
            },
        ],
    }
    report = await fhir.put_bundle(bundle, tenant_id=t)
    pid = "7c1e9f0e-0000-4000-8000-000000000001"
    assert report.stored == [f"Patient/{pid}", "Observation/ok"]
    assert [(e.index, e.resource_type) for e in report.errors] == [
        (2, "Observation"),
        (3, ""),
        (4, "Patient"),
    ]
    assert "Observation.status" in report.errors[0].message
    assert "DELETE" in report.errors[2].message
    # The urn:uuid reference now names the stored patient.
    found = await fhir.search(tenant_id=t, patient=pid, resource_type="Observation")
    assert [r["subject"]["reference"] for r in found] == [f"Patient/{pid}"]

    with pytest.raises(InputError) as refused:
        await fhir.put_bundle({"resourceType": "Bundle", "type": "searchset"}, tenant_id=t)
    assert refused.value.code == "fhir_invalid"
    with pytest.raises(InputError) as refused:
        await fhir.put_bundle(lab("x", "p", "1-8", 1, "2025"), tenant_id=t)
    assert "expected a Bundle" in refused.value.detail
    with pytest.raises(InputError) as too_big:
        await fhir.put_bundle(" " * 2_000_001, tenant_id=t)
    assert too_big.value.code == "fhir_bundle_too_large"
    assert "2000001" in too_big.value.message("en")


async def test_carebundle_bundle_loads_idempotently(fhir: SqlFhirStore) -> None:
    t = tenant()
    bundle = carebundle_json()
    first = await fhir.put_bundle(json.dumps(bundle), tenant_id=t)
    assert first.errors == []
    assert len(first.stored) == len(bundle["entry"])
    counts = first.by_type
    assert counts["Patient"] == 1 and counts["Observation"] >= 10
    patient = next(r for r in first.stored if r.startswith("Patient/")).split("/")[1]
    labs = await fhir.search(
        tenant_id=t, patient=patient, resource_type="Observation", category="laboratory"
    )
    observations = await fhir.search(tenant_id=t, patient=patient, resource_type="Observation")
    assert 0 < len(labs) < len(observations) == counts["Observation"]
    assert all(r["subject"]["reference"] == f"Patient/{patient}" for r in observations)
    conditions = await fhir.search(tenant_id=t, patient=patient, resource_type="Condition")
    assert len(conditions) == counts["Condition"]
    a1c = await fhir.search(
        tenant_id=t, patient=patient, resource_type="Observation", code="4548-4"
    )
    assert [r["code"]["coding"][0]["code"] for r in a1c] == ["4548-4"]

    again = await fhir.put_bundle(bundle, tenant_id=t)
    assert sorted(again.stored) == sorted(first.stored)
    observations_again = await fhir.search(
        tenant_id=t, patient=patient, resource_type="Observation", limit=1000
    )
    assert len(observations_again) == counts["Observation"]


def test_open_fhir_store_follows_the_settings(settings: Settings) -> None:
    db = Database(settings.resolved_database_url)
    assert isinstance(open_fhir_store(settings, db), SqlFhirStore)
    http = settings.model_copy(
        update={"fhir": FhirConfig(backend="http", base_url="http://127.0.0.1:9/fhir")}
    )
    assert isinstance(open_fhir_store(http, db), HttpFhirStore)
    missing = settings.model_copy(update={"fhir": FhirConfig(backend="http")})
    with pytest.raises(ConfigurationError, match="HEALTRACE_FHIR__BASE_URL"):
        open_fhir_store(missing, db)


def test_fhir_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTRACE_FHIR__BACKEND", "http")
    monkeypatch.setenv("HEALTRACE_FHIR__TOKEN", "s3cret")
    monkeypatch.setenv("HEALTRACE_FHIR__TIMEOUT_S", "3.5")
    config = Settings().fhir
    assert (config.backend, config.timeout_s) == ("http", 3.5)
    assert config.token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(config)


def test_cli_generates_and_loads_patients(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "patients.json"
    made = runner.invoke(records_app, ["generate", "-n", "2", "-o", str(out), "--seed", "7"])
    assert made.exit_code == 0, made.output
    bundle = json.loads(out.read_text())
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    assert sum(e["resource"]["resourceType"] == "Patient" for e in bundle["entry"]) == 2
    # Same seed, same bytes.
    runner.invoke(
        records_app, ["generate", "-n", "2", "-o", str(tmp_path / "b.json"), "--seed", "7"]
    )
    assert (tmp_path / "b.json").read_text() == out.read_text()

    loaded = runner.invoke(records_app, ["load", str(out), "--tenant", "clinic-a"])
    assert loaded.exit_code == 0, loaded.output
    assert f"Loaded {len(bundle['entry'])} resources into tenant 'clinic-a'" in loaded.output
    assert "Patient 2" in loaded.output

    bundle["entry"][1]["resource"].pop("status", None)
    bundle["entry"][1]["resource"]["resourceType"] = "Observation"
    partly = tmp_path / "partly.json"
    partly.write_text(json.dumps(bundle))
    result = runner.invoke(records_app, ["load", str(partly)])
    assert result.exit_code == 0
    assert f"Loaded {len(bundle['entry']) - 1} resources" in result.output
    assert "entry[1] Observation: Observation." in result.output
    assert "1 entries were not loaded" in result.output

    broken = tmp_path / "broken.json"
    broken.write_text('{"resourceType": "Bundle", ')
    failed = runner.invoke(records_app, ["load", str(broken)])
    assert failed.exit_code == 1
    assert "not JSON" in failed.output
