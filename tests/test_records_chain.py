"""Consent against the real ConsentRegistry on an anvil node: grants signed by the patient's
custodial key and relayed, revocation holding from the next read, forged and replayed
signatures refused by the contract, and the service wired to the chain end to end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account

from healtrace.agent.models.testing import DemoModel
from healtrace.api.app import create_app
from healtrace.api.testing import LiveServer
from healtrace.audit import AuditLog
from healtrace.chain.client import ANVIL_DEV_KEY
from healtrace.chain.consent_sig import GrantConsent, digest
from healtrace.chain.node import AnvilNode, ensure_contracts, find_anvil
from healtrace.config import ChainConfig, Settings
from healtrace.errors import InputError
from healtrace.records.consent import ConsentGate, ConsentService
from healtrace.records.custody import Custody
from healtrace.records.fhir_store import SqlFhirStore
from healtrace.records.ledger import Web3ConsentLedger
from healtrace.records.patients import PatientStore, grantee_address
from healtrace.records.scopes import parse_scope
from healtrace.records.service import RecordsService
from healtrace.storage import Database
from tests.test_e2e_serve import _free_port
from tests.test_records_consent import LAB

pytestmark = pytest.mark.e2e


@pytest.fixture
async def anvil(tmp_path: Path) -> AsyncIterator[AnvilNode]:
    node = AnvilNode(find_anvil(), _free_port(), tmp_path / "anvil" / "state.json")
    await node.start()
    try:
        yield node
    finally:
        node.stop()


async def test_grant_revoke_and_refusals_on_the_real_registry(
    anvil: AnvilNode, settings: Settings, tmp_path: Path
) -> None:
    deployment = await ensure_contracts(
        ChainConfig(rpc_url=anvil.url), anvil.url, ANVIL_DEV_KEY, tmp_path / "chain.json"
    )
    ledger = Web3ConsentLedger(
        anvil.url, deployment.consent, ANVIL_DEV_KEY, chain_id=deployment.chain_id
    )
    db = Database(settings.resolved_database_url)
    await db.migrate()
    try:
        audit = AuditLog(db)
        patients = PatientStore(db, Custody(b"k" * 64))
        fhir = SqlFhirStore(db)
        consent = ConsentService(settings, db, patients, ledger, audit, fhir=fhir)
        records = RecordsService(
            patients=patients, consent=consent, gate=ConsentGate(ledger), fhir=fhir, audit=audit
        )
        me = await patients.create("clinic", "pat-a")
        await fhir.put(
            {**LAB, "id": "k1", "subject": {"reference": "Patient/pat-a"}}, tenant_id="clinic"
        )
        assert (await records.lookup(me, ["labs"], locale="en")).read_ids == []

        (grant,) = await consent.grant(me, ["patient/Observation.rs"], days=1)
        assert grant.tx_hash.startswith("0x")
        assert (await records.lookup(me, ["labs"], locale="en")).read_ids == ["Observation/k1"]
        # The FHIR Consent resource is kept in step with the grant.
        mirrored = await fhir.get("Consent", "ht-" + grant.grant_id[2:34], tenant_id="clinic")
        assert mirrored["status"] == "active"

        await consent.revoke(me, grant.grant_id)
        after = await records.lookup(me, ["labs"], locale="en")
        assert after.read_ids == [] and after.decisions[0].reason == "revoked"
        mirrored = await fhir.get("Consent", "ht-" + grant.grant_id[2:34], tenant_id="clinic")
        assert mirrored["status"] == "inactive"

        # The contract, not just our code, refuses what the patient did not sign.
        scope = parse_scope("patient/Condition.rs")
        message = GrantConsent(
            patient=me.address,
            grantee=grantee_address("assistant", "clinic"),
            scope_hash=scope.hash,
            expires_at=2_000_000_000,
            nonce=await ledger.nonce(me.address),
            deadline=2_000_000_000,
        )
        forged = Account.unsafe_sign_hash(digest(ledger.domain, message), Account.create().key)
        with pytest.raises(InputError) as err:
            await ledger.submit_grant(message, bytes(forged.signature))
        assert err.value.code == "consent_signature_invalid"
        key = await patients.private_key("clinic", me.id)
        good = Account.unsafe_sign_hash(digest(ledger.domain, message), key)
        await ledger.submit_grant(message, bytes(good.signature))
        with pytest.raises(InputError) as replay:
            await ledger.submit_grant(message, bytes(good.signature))
        assert replay.value.code == "consent_signature_replayed"
    finally:
        await ledger.aclose()
        await db.dispose()


async def test_the_service_grants_through_the_chain_it_started(
    anvil: AnvilNode, settings: Settings
) -> None:
    chain = ChainConfig(rpc_url=anvil.url, private_key=ANVIL_DEV_KEY, anchoring=False)  # type: ignore[arg-type]
    settings = settings.model_copy(update={"chain": chain})
    app = create_app(settings, model=DemoModel(tool_rounds=0))
    async with LiveServer(app) as live:
        services: Any = app.state.services
        _kid, tenant_key = await services.store.create_api_key("backend", tenant_id="clinic")
        async with httpx.AsyncClient(base_url=live.http, timeout=30) as http:
            made = await http.post(
                "/v1/patients",
                json={"fhir_patient_id": "pat-a"},
                headers={"Authorization": f"Bearer {tenant_key}"},
            )
            me = {"Authorization": f"Bearer {made.json()['api_key']}"}
            grant = await http.post(
                "/v1/me/consents", json={"scopes": ["patient/*.rs"], "days": 7}, headers=me
            )
            assert grant.status_code == 201, grant.text
            listed = (await http.get("/v1/me/consents", headers=me)).json()["grants"]
            assert listed[0]["status"] == "active" and listed[0]["tx_hash"].startswith("0x")


async def test_a_patients_rewards_are_minted_to_their_address_by_the_service(
    anvil: AnvilNode, settings: Settings
) -> None:
    from healtrace.rewards.config import RewardsConfig

    chain = ChainConfig(rpc_url=anvil.url, private_key=ANVIL_DEV_KEY, anchoring=True)  # type: ignore[arg-type]
    rewards = RewardsConfig(mint_batch_size=2, mint_interval_s=0.2)
    settings = settings.model_copy(update={"chain": chain, "rewards": rewards})
    app = create_app(settings, model=DemoModel(tool_rounds=0))
    async with LiveServer(app) as live:
        services: Any = app.state.services
        _kid, tenant_key = await services.store.create_api_key("backend", tenant_id="clinic")
        async with httpx.AsyncClient(base_url=live.http, timeout=30) as http:
            made = (
                await http.post(
                    "/v1/patients",
                    json={"fhir_patient_id": "pat-a"},
                    headers={"Authorization": f"Bearer {tenant_key}"},
                )
            ).json()
            me = {"Authorization": f"Bearer {made['api_key']}"}
            claims = [
                {
                    "event_id": f"e{i}",
                    "type": "daily_checkin",
                    # Today and yesterday: one check-in a day pays.
                    "occurred_at": (datetime.now(UTC) - timedelta(days=i)).isoformat(),
                    "payload": {},
                }
                for i in range(2)
            ]
            for claim in [*claims, claims[0]]:  # the repeat pays nothing more
                got = await http.post("/v1/rewards/events", json=claim, headers=me)
                assert got.status_code == 200, got.text
            for _ in range(300):
                balance = (await http.get("/v1/rewards/balance", headers=me)).json()
                if balance["minted"] == balance["awarded"] != "0":
                    break
                await asyncio.sleep(0.1)
        assert balance["awarded"] == balance["minted"], balance
        minter = services.rewards.minter
        on_chain = await minter.balance_of(made["address"])
        assert on_chain == 2 * 10**18  # two check-ins of 1 HEAL, minted once
