"""Consent in code: scopes, custodial keys, grants and revocations signed by the patient, and
the gate in front of every record read (the scripted ledger here; the real ConsentRegistry
on anvil in test_records_chain.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from healtrace.audit import AuditLog
from healtrace.chain.consent_sig import GrantConsent, digest, sign
from healtrace.config import Settings
from healtrace.errors import ConfigurationError, InputError
from healtrace.records.consent import ConsentGate, ConsentService
from healtrace.records.custody import Custody, load_custody_secret
from healtrace.records.fhir_store import SqlFhirStore
from healtrace.records.ledger import FakeConsentLedger
from healtrace.records.patients import PatientInfo, PatientStore, grantee_address
from healtrace.records.scopes import Scope, candidate_scopes, parse_scope
from healtrace.records.service import RecordsService
from healtrace.storage import Database

# --- scopes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("patient/Observation.rs", "patient/Observation.rs"),
        ("patient/Observation.sr", "patient/Observation.rs"),
        ("patient/Observation.r", "patient/Observation.rs"),
        (" patient/Condition.rs ", "patient/Condition.rs"),
        (
            "patient/Observation.rs?category=laboratory",
            "patient/Observation.rs?category=laboratory",
        ),
        ("patient/*.rs", "patient/*.rs"),
    ],
)
def test_scopes_parse_to_one_canonical_form(text: str, canonical: str) -> None:
    assert parse_scope(text).canonical == canonical


@pytest.mark.parametrize(
    "text",
    [
        "patient/Observation.cruds",  # writes are never granted
        "patient/Observation.rw",
        "user/Observation.rs",
        "patient/Patient.rs",  # not a type the assistant reads
        "patient/Observation.rs?code=1234",
        "patient/Observation.rs?category=lab;DROP",
        "Observation.read",
        "",
        "patient/Observation.rrs",
    ],
)
def test_unknown_scopes_are_refused(text: str) -> None:
    with pytest.raises(InputError) as err:
        parse_scope(text)
    assert err.value.code == "consent_scope_invalid"


def test_scope_hash_is_keccak_of_the_canonical_string() -> None:
    from eth_hash.auto import keccak

    assert parse_scope("patient/Observation.sr").hash == keccak(b"patient/Observation.rs")
    labs = candidate_scopes("Observation", "laboratory")
    assert [s.canonical for s in labs] == [
        "patient/Observation.rs?category=laboratory",
        "patient/Observation.rs",
        "patient/*.rs?category=laboratory",
        "patient/*.rs",
    ]
    assert Scope("Observation", "vital-signs").covers("Observation", "laboratory") is False


# --- custodial keys -------------------------------------------------------------------------


def test_custodial_keys_are_sealed_per_patient_and_exportable(tmp_path: Path) -> None:
    secret = load_custody_secret("", tmp_path / "custody.key")
    assert (tmp_path / "custody.key").stat().st_mode & 0o777 == 0o600
    assert load_custody_secret("", tmp_path / "custody.key") == secret  # kept, not remade
    custody = Custody(secret)
    address, sealed = custody.create("clinic", "p1")
    key = custody.open("clinic", "p1", sealed)
    assert Account.from_key(key).address == address
    assert key.hex() not in sealed  # encrypted at rest
    with pytest.raises(ConfigurationError):
        custody.open("other-clinic", "p1", sealed)  # a row copied elsewhere does not open
    with pytest.raises(ConfigurationError):
        Custody(b"x" * 64).open("clinic", "p1", sealed)
    exported = custody.export("clinic", "p1", sealed, "correct horse battery")
    assert Account.decrypt(exported, "correct horse battery") == key
    with pytest.raises(InputError) as weak:
        custody.export("clinic", "p1", sealed, "short")
    assert weak.value.code == "key_export_password_weak"
    with pytest.raises(ConfigurationError):
        load_custody_secret("too short", tmp_path / "x")


# --- grants, the gate and lookups ---------------------------------------------------------------


@dataclass
class Clock:
    now: float = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    db: Database
    clock: Clock
    ledger: FakeConsentLedger
    records: RecordsService
    me: PatientInfo
    other: PatientInfo


LAB = {
    "resourceType": "Observation",
    "status": "final",
    "category": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "laboratory",
                }
            ]
        }
    ],
    "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}], "text": "Potassium"},
    "effectiveDateTime": "2026-11-01T08:00:00Z",
    "valueQuantity": {"value": 4.1, "unit": "mmol/L"},
}
CONDITION = {
    "resourceType": "Condition",
    "clinicalStatus": {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                "code": "active",
            }
        ]
    },
    "code": {"text": "Hypertension"},
    "onsetDateTime": "2020-01-01",
}


async def make_world(settings: Settings, db: Database) -> World:
    clock = Clock()
    ledger = FakeConsentLedger(clock=clock)
    audit = AuditLog(db)
    patients = PatientStore(db, Custody(b"s" * 64))
    fhir = SqlFhirStore(db)
    consent = ConsentService(settings, db, patients, ledger, audit, fhir=fhir, clock=clock)
    records = RecordsService(
        patients=patients,
        consent=consent,
        gate=ConsentGate(ledger, clock=clock),
        fhir=fhir,
        audit=audit,
    )
    me = await patients.create("clinic", "pat-me")
    other = await patients.create("clinic", "pat-other")
    for patient, value in ((me, 4.1), (other, 6.9)):
        ref = {"reference": f"Patient/{patient.fhir_patient_id}"}
        await fhir.put(
            {
                **LAB,
                "id": f"k-{patient.fhir_patient_id}",
                "subject": ref,
                "valueQuantity": {"value": value, "unit": "mmol/L"},
            },
            tenant_id="clinic",
        )
        await fhir.put(
            {**CONDITION, "id": f"c-{patient.fhir_patient_id}", "subject": ref},
            tenant_id="clinic",
        )
    return World(db, clock, ledger, records, me, other)


@pytest.fixture
async def world(settings: Settings) -> Any:
    db = Database(settings.resolved_database_url)
    await db.migrate()
    yield await make_world(settings, db)
    await db.dispose()


async def test_grant_allows_exactly_its_scope_and_revoke_holds_next_call(world: World) -> None:
    records, me = world.records, world.me
    denied = await records.lookup(me, ["labs", "conditions"], locale="en")
    assert denied.summary is None and {d.reason for d in denied.decisions} == {"no_grant"}

    (grant,) = await records.consent.grant(me, ["patient/Observation.rs?category=laboratory"])
    assert grant.grantee == grantee_address("assistant", "clinic")
    result = await records.lookup(me, ["labs", "conditions"], locale="en")
    allowed = {d.resource_type: d.allowed for d in result.decisions}
    assert allowed == {"Observation": True, "Condition": False}
    assert result.read_ids == ["Observation/k-pat-me"]  # never the other patient's

    await records.consent.revoke(me, grant.grant_id)
    after = await records.lookup(me, ["labs"], locale="en")
    assert after.read_ids == [] and after.decisions[0].reason == "revoked"
    listed = await records.consent.list_grants(me)
    assert [g.status for g in listed] == ["revoked"]


async def test_grants_expire_by_the_clock(world: World) -> None:
    await world.records.consent.grant(world.me, ["patient/Condition.rs"], days=2)
    assert (await world.records.lookup(world.me, ["conditions"], locale="en")).read_ids
    world.clock.now += 2 * 86_400 + 1
    expired = await world.records.lookup(world.me, ["conditions"], locale="en")
    assert expired.read_ids == [] and expired.decisions[0].reason == "expired"
    assert [g.status for g in await world.records.consent.list_grants(world.me)] == ["expired"]


async def test_grant_to_the_assistant_is_not_a_grant_to_a_clinician(world: World) -> None:
    await world.records.consent.grant(world.me, ["patient/*.rs"], grantee="clinician:c7")
    assert (await world.records.lookup(world.me, ["labs"], locale="en")).read_ids == []
    as_clinician = await world.records.lookup(
        world.me, ["labs"], locale="en", grantee="clinician:c7"
    )
    assert as_clinician.read_ids == ["Observation/k-pat-me"]


async def test_every_lookup_and_decision_is_audited(world: World) -> None:
    await world.records.lookup(world.me, ["labs"], locale="en", session_id="s1")
    await world.records.consent.grant(world.me, ["patient/Observation.rs"])
    result = await world.records.lookup(world.me, ["labs"], locale="en", session_id="s1")
    log = await world.records.audit.for_patient("clinic", world.me.id)
    assert [e.action for e in log] == ["records_lookup", "consent_granted", "records_lookup"]
    latest = log[0]
    assert latest.hash == result.audit_hash
    assert latest.details["resources"] == ["Observation/k-pat-me"]
    assert log[2].details["decisions"][0]["reason"] == "no_grant"
    assert await world.records.audit.for_patient("clinic", world.other.id) == []
    assert (await world.records.audit.verify()).ok


async def test_signatures_only_the_patient_can_make_are_accepted(world: World) -> None:
    consent, me, ledger = world.records.consent, world.me, world.ledger
    scope = parse_scope("patient/Observation.rs")
    message = GrantConsent(
        patient=me.address,
        grantee=grantee_address("assistant", "clinic"),
        scope_hash=scope.hash,
        expires_at=int(world.clock.now) + 86_400,
        nonce=await ledger.nonce(me.address),
        deadline=int(world.clock.now) + 600,
    )
    # Signed by another key (the service's, say), not the patient's.
    forged = bytes(
        Account.unsafe_sign_hash(digest(ledger.domain, message), Account.create().key).signature
    )
    with pytest.raises(InputError) as err:
        await consent.grant_signed(
            me,
            scope.canonical,
            grantee="assistant",
            expires_at=message.expires_at,
            nonce=message.nonce,
            deadline=message.deadline,
            signature=forged,
        )
    assert err.value.code == "consent_signature_invalid"
    key = await consent.patients.private_key("clinic", me.id)
    good = sign(key, ledger.domain, message)
    args = {
        "grantee": "assistant",
        "expires_at": message.expires_at,
        "nonce": message.nonce,
        "deadline": message.deadline,
        "signature": good,
    }
    await consent.grant_signed(me, scope.canonical, **args)
    with pytest.raises(InputError) as replay:
        await consent.grant_signed(me, scope.canonical, **args)
    assert replay.value.code == "consent_signature_replayed"
    world.clock.now += 601
    late = GrantConsent(**{**message.__dict__, "nonce": message.nonce + 1})
    with pytest.raises(InputError) as expired:
        await consent.grant_signed(
            me,
            scope.canonical,
            **{**args, "nonce": late.nonce, "signature": sign(key, ledger.domain, late)},
        )
    assert expired.value.code == "consent_signature_expired"


async def test_the_chain_down_means_no_access(world: World) -> None:
    await world.records.consent.grant(world.me, ["patient/*.rs"])
    world.ledger.down = True
    result = await world.records.lookup(world.me, ["labs"], locale="zh-CN")
    assert result.read_ids == [] and result.decisions[0].reason == "chain_unavailable"
    assert "无法核验" in world.records.denial_text(result.denied, "zh-CN")


async def test_bad_grant_requests(world: World) -> None:
    consent = world.records.consent
    for scopes, kwargs, code in [
        (["patient/Observation.cruds"], {}, "consent_scope_invalid"),
        ([], {}, "consent_scope_invalid"),
        (["patient/Observation.rs"], {"days": 0}, "consent_duration_invalid"),
        (["patient/Observation.rs"], {"days": 10_000}, "consent_duration_invalid"),
        (["patient/Observation.rs"], {"grantee": "everyone"}, "consent_grantee_invalid"),
    ]:
        with pytest.raises(InputError) as err:
            await consent.grant(world.me, scopes, **kwargs)
        assert err.value.code == code
    with pytest.raises(Exception) as missing:
        await consent.revoke(world.me, "0x" + "00" * 32)
    assert getattr(missing.value, "code", "") == "consent_not_found"


# --- the property: no data without a valid grant at that moment ------------------------------

SCOPES = ["patient/Observation.rs?category=laboratory", "patient/Condition.rs", "patient/*.rs"]
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("grant"), st.sampled_from(SCOPES), st.integers(1, 5)),
        st.tuples(st.just("revoke"), st.sampled_from(SCOPES), st.just(0)),
        st.tuples(st.just("wait"), st.just(""), st.integers(1, 3)),
        st.tuples(st.just("lookup"), st.sampled_from(["labs", "conditions"]), st.just(0)),
    ),
    min_size=1,
    max_size=14,
)


@hsettings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
def test_no_lookup_returns_data_without_a_valid_grant(settings: Settings, ops: list[Any]) -> None:
    async def run() -> None:
        db = Database("sqlite:///:memory:")
        await db.migrate()
        try:
            w = await make_world(settings, db)
            expiry: dict[str, float] = {}  # the model: scope -> end, for live grants
            ids: dict[str, str] = {}
            for op, arg, n in ops:
                if op == "grant":
                    (g,) = await w.records.consent.grant(w.me, [arg], days=n)
                    expiry[arg], ids[arg] = w.clock.now + n * 86_400, g.grant_id
                elif op == "revoke" and arg in expiry:
                    await w.records.consent.revoke(w.me, ids[arg])
                    del expiry[arg]
                elif op == "wait":
                    w.clock.now += n * 86_400
                elif op == "lookup":
                    result = await w.records.lookup(w.me, [arg], locale="en")
                    wanted = (
                        "Observation.rs?category=laboratory" if arg == "labs" else "Condition.rs"
                    )
                    valid = any(
                        end > w.clock.now and (s.endswith(wanted) or s == "patient/*.rs")
                        for s, end in expiry.items()
                    )
                    assert bool(result.read_ids) == valid, (ops, result.decisions)
                    assert all("pat-other" not in r for r in result.read_ids)
        finally:
            await db.dispose()

    asyncio.run(run())
