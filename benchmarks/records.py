"""Consent-checked record lookups against the embedded chain and store.

python benchmarks/records.py [--runs 200] [--write BENCHMARKS.md]

Starts anvil, deploys the contracts, stores a synthetic patient's records in the embedded
FHIR store (SQLite) and times `RecordsService.lookup` — the gate's reads of the grant from
the ConsentRegistry, the store search, the summary and the audit entry — beside the bare
store search as the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import tempfile
import time
from pathlib import Path

from _report import pct, write_block

from healtrace.audit import AuditLog
from healtrace.chain.client import ANVIL_DEV_KEY
from healtrace.chain.node import AnvilNode, ensure_contracts, find_anvil
from healtrace.config import ChainConfig, Settings
from healtrace.records.consent import ConsentGate, ConsentService
from healtrace.records.custody import Custody
from healtrace.records.fhir_store import SqlFhirStore
from healtrace.records.ledger import Web3ConsentLedger
from healtrace.records.patients import PatientStore, grantee_address
from healtrace.records.service import RecordsService
from healtrace.storage import Database


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _lab(i: int) -> dict[str, object]:
    return {
        "resourceType": "Observation",
        "id": f"lab-{i}",
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
        "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}], "text": "K"},
        "subject": {"reference": "Patient/pat-1"},
        "effectiveDateTime": f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T08:00:00Z",
        "valueQuantity": {"value": 3.5 + (i % 20) / 10, "unit": "mmol/L"},
    }


async def run(runs: int) -> str:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        node = AnvilNode(find_anvil(), _free_port(), tmp / "anvil.json")
        await node.start()
        db = Database(f"sqlite:///{tmp / 'bench.db'}")
        await db.migrate()
        deployment = await ensure_contracts(
            ChainConfig(rpc_url=node.url), node.url, ANVIL_DEV_KEY, tmp / "chain.json"
        )
        ledger = Web3ConsentLedger(
            node.url, deployment.consent, ANVIL_DEV_KEY, chain_id=deployment.chain_id
        )
        try:
            settings = Settings(data_dir=tmp)
            audit = AuditLog(db)
            patients = PatientStore(db, Custody(b"b" * 64))
            fhir = SqlFhirStore(db)
            consent = ConsentService(settings, db, patients, ledger, audit, fhir=fhir)
            records = RecordsService(
                patients=patients,
                consent=consent,
                gate=ConsentGate(ledger),
                fhir=fhir,
                audit=audit,
            )
            me = await patients.create("bench", "pat-1")
            for i in range(200):
                await fhir.put(_lab(i), tenant_id="bench")
            grantee = grantee_address("assistant", "bench")
            # Denied first (no grant yet), then allowed.
            denied = []
            for _ in range(runs // 4):
                start = time.perf_counter()
                result = await records.lookup(me, ["labs"], locale="en")
                denied.append((time.perf_counter() - start) * 1000)
                assert not result.read_ids
            await consent.grant(me, ["patient/Observation.rs?category=laboratory"])
            allowed, gate_only, bare = [], [], []
            for _ in range(runs):
                start = time.perf_counter()
                result = await records.lookup(me, ["labs"], locale="en")
                allowed.append((time.perf_counter() - start) * 1000)
                assert len(result.read_ids) == 20
                start = time.perf_counter()
                decision = await records.gate.check(me, grantee, "Observation", "laboratory")
                gate_only.append((time.perf_counter() - start) * 1000)
                assert decision.allowed
                start = time.perf_counter()
                await fhir.search(
                    tenant_id="bench",
                    patient="pat-1",
                    resource_type="Observation",
                    category="laboratory",
                    limit=20,
                )
                bare.append((time.perf_counter() - start) * 1000)
        finally:
            await ledger.aclose()
            await db.dispose()
            node.stop()
    return "\n".join(
        [
            f"One patient with 200 lab results in the embedded store (SQLite), the grant read "
            f"from the ConsentRegistry on anvil for every lookup (no cache: a revocation "
            f"holds from the next call), 20 results summarised, one audit entry per lookup. "
            f"{runs} runs.",
            "",
            "| path | p50 (ms) | p95 (ms) |",
            "|---|---|---|",
            f"| lookup, allowed (gate + search + summary + audit) | {pct(allowed, 50):.1f} | "
            f"{pct(allowed, 95):.1f} |",
            f"| lookup, denied (gate reads all candidate scopes + audit) | "
            f"{pct(denied, 50):.1f} | {pct(denied, 95):.1f} |",
            f"| the gate alone (grant read from the chain) | {pct(gate_only, 50):.1f} | "
            f"{pct(gate_only, 95):.1f} |",
            f"| bare store search (the floor) | {pct(bare, 50):.1f} | {pct(bare, 95):.1f} |",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    body = asyncio.run(run(args.runs))
    print(body)
    if args.write:
        write_block(args.write, "records", body)


if __name__ == "__main__":
    main()
