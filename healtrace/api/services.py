"""Everything a running service holds, built once from settings and closed on shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from healtrace.agent.citations import KnowledgeSearch
from healtrace.agent.events import EvidenceAnchored
from healtrace.agent.memory import ChatStore
from healtrace.agent.models.base import ModelBackend
from healtrace.agent.models.router import build_router
from healtrace.agent.orchestrator import Orchestrator
from healtrace.agent.sessions import EventHub, TurnRunner
from healtrace.audit import AuditLog
from healtrace.chain.outbox import AnchoredRecord, EvidenceOutbox
from healtrace.config import Settings
from healtrace.handoff import ClinicianStore, HandoffDesk
from healtrace.safety.policy import SafetyPolicy
from healtrace.speech.engines import SpeechEngines
from healtrace.storage import Database
from healtrace.tools.core import ToolRegistry, load_tools

if TYPE_CHECKING:
    from healtrace.chain.client import RegistryChain
    from healtrace.chain.service import ChainService
    from healtrace.knowledge import KnowledgeBase
    from healtrace.mcp.client import McpMounts
    from healtrace.records.fhir_store import FhirStore
    from healtrace.records.ledger import ConsentLedger
    from healtrace.records.service import RecordsService
    from healtrace.rewards.minter import TokenMinter
    from healtrace.rewards.service import RewardsService

log = logging.getLogger(__name__)

DEV_KEY_FILE = "dev-api-key"


@dataclass
class Services:
    settings: Settings
    db: Database
    store: ChatStore
    model: ModelBackend
    tools: ToolRegistry
    orchestrator: Orchestrator
    hub: EventHub
    runner: TurnRunner
    audit: AuditLog
    clinicians: ClinicianStore
    handoffs: HandoffDesk
    safety: SafetyPolicy
    #: Speech engines (ASR, TTS), loaded on first use.
    speech: SpeechEngines
    #: Evidence records and receipts (always readable, also with anchoring off).
    evidence: EvidenceOutbox
    #: The chain side: node, registry, anchoring batcher (None with HEALTRACE_CHAIN__ENABLED off).
    chain: ChainService | None = None
    #: Patients, consent and gated record lookups (None with the chain off: no consent,
    #: no records).
    records: RecordsService | None = None
    #: Health-behaviour rewards (None with HEALTRACE_REWARDS__ENABLED off).
    rewards: RewardsService | None = None
    #: The knowledge base the service opened itself (None if disabled or passed in).
    knowledge: KnowledgeBase | None = None
    #: Connections to the external MCP servers whose tools are mounted (None: none set).
    mcp: McpMounts | None = None

    async def aclose(self) -> None:
        await self.runner.aclose()
        if self.mcp is not None:
            await self.mcp.aclose()
        if self.rewards is not None:
            await self.rewards.aclose()
            if self.rewards.minter is not None:
                await self.rewards.minter.aclose()
        if self.records is not None:
            await self.records.consent.ledger.aclose()
        if self.chain is not None:
            await self.chain.aclose()
        self.handoffs.close()
        self.hub.close()
        await self.orchestrator.aclose()
        await self.model.aclose()
        if self.knowledge is not None:
            await asyncio.to_thread(self.knowledge.close)
        await self.db.dispose()


async def build_services(
    settings: Settings,
    *,
    model: ModelBackend | None = None,
    tools: ToolRegistry | None = None,
    knowledge: KnowledgeSearch | None = None,
    speech: SpeechEngines | None = None,
    registry: RegistryChain | None = None,
    consent_ledger: ConsentLedger | None = None,
    fhir: FhirStore | None = None,
    minter: TokenMinter | None = None,
) -> Services:
    """Open the database (migrating it), load tools and the model backends, and start the
    chain side (``registry`` replaces the configured chain: tests, embedding)."""
    db = Database(settings.resolved_database_url)
    await db.migrate()
    store = ChatStore(db)
    interrupted = await store.mark_interrupted()
    if interrupted:
        log.warning("%d answer(s) were cut off by the previous shutdown", interrupted)
    if model is None:
        router = build_router(settings)
        await router.load()
        model = router
    tools = tools if tools is not None else load_tools(settings)
    mcp = None
    if settings.mcp_servers:
        from healtrace.mcp.client import mount_servers

        mcp = await mount_servers(settings, tools)
    owned_kb = None
    if knowledge is None and settings.knowledge.enabled:
        owned_kb = await asyncio.to_thread(open_knowledge, settings)
        knowledge = owned_kb
    if knowledge is None:
        tools = tools.without("knowledge")
    hub = EventHub(store, buffer_events=settings.replay_buffer_events)
    audit = AuditLog(db)
    safety = SafetyPolicy.from_settings(settings.safety, model)
    handoffs = HandoffDesk(store=store, hub=hub, model=model)
    orchestrator = Orchestrator(
        model=model,
        tools=tools,
        store=store,
        settings=settings,
        knowledge=knowledge,
        safety=safety,
        handoffs=handoffs,
        audit=audit,
    )
    runner = TurnRunner(orchestrator, hub)
    handoffs.cancel_turn = runner.cancel
    chain = None
    if settings.chain.enabled:
        from healtrace.chain.service import ChainService

        anchor = settings.chain.anchoring or registry is not None
        chain = ChainService(
            settings, db, registry=registry, on_anchored=_announcer(hub), anchor=anchor
        )
        orchestrator.on_evidence = chain.notify
        if anchor:
            await chain.start()
    records = _records(settings, db, audit, chain, consent_ledger, fhir)
    if records is not None:
        orchestrator.stores["records"] = records
    rewards = _rewards(settings, db, chain, records, minter)
    if rewards is not None:
        orchestrator.stores["rewards"] = rewards
        rewards.start()
    return Services(
        records=records,
        rewards=rewards,
        evidence=EvidenceOutbox(db),
        chain=chain,
        knowledge=owned_kb,
        mcp=mcp,
        settings=settings,
        db=db,
        store=store,
        model=model,
        tools=tools,
        orchestrator=orchestrator,
        hub=hub,
        runner=runner,
        audit=audit,
        clinicians=ClinicianStore(db, login_hours=settings.safety.console_session_hours),
        handoffs=handoffs,
        safety=safety,
        speech=speech or SpeechEngines(settings.speech, settings.models_dir),
    )


def _records(
    settings: Settings,
    db: Database,
    audit: AuditLog,
    chain: ChainService | None,
    ledger: ConsentLedger | None,
    fhir: FhirStore | None,
) -> RecordsService | None:
    """Patients, consent and gated lookups; the consent ledger is the chain's registry
    (connected on first use) unless one is passed in."""
    from healtrace.records.consent import ConsentGate, ConsentService
    from healtrace.records.custody import Custody, load_custody_secret
    from healtrace.records.fhir_store import open_fhir_store
    from healtrace.records.ledger import DeferredLedger, Web3ConsentLedger
    from healtrace.records.patients import PatientStore
    from healtrace.records.service import RecordsService

    if ledger is None:
        if chain is None:
            return None
        owner = chain

        async def connect() -> ConsentLedger:
            deployment = await owner.connected()
            return Web3ConsentLedger(
                owner.rpc_url,
                deployment.consent,
                owner.signing_key(),
                chain_id=deployment.chain_id,
                timeout_s=owner.config.rpc_timeout_s,
            )

        ledger = DeferredLedger(connect)
    secret = load_custody_secret(
        settings.records.custody_secret.get_secret_value(), settings.data_dir / "custody.key"
    )
    patients = PatientStore(db, Custody(secret))
    store = fhir if fhir is not None else open_fhir_store(settings, db)
    consent = ConsentService(settings, db, patients, ledger, audit, fhir=store)
    return RecordsService(
        patients=patients,
        consent=consent,
        gate=ConsentGate(ledger),
        fhir=store,
        audit=audit,
        lookup_limit=settings.records.lookup_limit,
    )


def _rewards(
    settings: Settings,
    db: Database,
    chain: ChainService | None,
    records: RecordsService | None,
    minter: TokenMinter | None,
) -> RewardsService | None:
    """The rule engine and ledger; awards are minted to patients' addresses on the chain's
    HealthToken (connected when the first batch is due) unless a minter is passed in."""
    from healtrace.rewards.minter import DeferredMinter, Web3TokenMinter
    from healtrace.rewards.service import RewardsService

    if not settings.rewards.enabled:
        return None
    if minter is None and chain is not None:
        owner = chain

        async def connect() -> TokenMinter:
            deployment = await owner.connected()
            return Web3TokenMinter(
                owner.rpc_url,
                deployment.token,
                owner.signing_key(),
                timeout_s=owner.config.rpc_timeout_s,
                receipt_timeout_s=owner.config.receipt_timeout_s,
            )

        minter = DeferredMinter(connect)
    addresses = records.patients if records is not None else None
    return RewardsService(settings, db, minter, addresses)


def _announcer(hub: EventHub) -> Callable[[Sequence[AnchoredRecord]], Awaitable[None]]:
    """Tell sessions that are live in this process that their answers were anchored.

    Sessions nobody follows right now are not woken up for it: their receipts are one
    request away (``GET /v1/evidence/{hash}``).
    """

    async def announce(records: Sequence[AnchoredRecord]) -> None:
        for r in records:
            if not hub.is_live(r.session_id):
                continue
            await hub.publish(
                EvidenceAnchored(
                    session_id=r.session_id,
                    message_id=r.message_id,
                    evidence_hash=r.record_hash,
                    root=r.root,
                    tx_hash=r.tx_hash,
                    block_number=r.block_number,
                    chain_id=r.chain_id,
                    contract=r.contract,
                    receipt_url=f"/v1/evidence/{r.record_hash}",
                )
            )

    return announce


def open_knowledge(settings: Settings) -> KnowledgeBase:
    """Open the knowledge base and bring the starter pack up to date (seconds the first
    time, from the shipped vectors; milliseconds when it is current)."""
    from healtrace.knowledge import KnowledgeBase, load_starter_pack

    kb = KnowledgeBase.open(settings.knowledge, settings.data_dir)
    report = load_starter_pack(kb)
    if not report.skipped:
        log.info(
            "starter knowledge pack loaded: %d chunks (%d embedded)", report.chunks, report.embedded
        )
    return kb


async def ensure_dev_key(services: Services) -> str | None:
    """On a fresh database, create a development key, store it for the user, and return it."""
    if not services.settings.dev_key or await services.store.count_api_keys():
        return None
    _key_id, plaintext = await services.store.create_api_key("dev")
    path = dev_key_path(services.settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(plaintext + "\n")
    return plaintext


def dev_key_path(settings: Settings) -> Path:
    return settings.data_dir / DEV_KEY_FILE
