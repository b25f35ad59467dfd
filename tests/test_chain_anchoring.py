"""Evidence records written with answers, and the batcher that anchors them (fake registry).

The real registry on a real anvil node is exercised in test_chain_anvil.py; here the
scripted FakeRegistry (same rules: a root anchors once; outages on demand) lets the
batcher's decisions be checked one by one: when it batches, what it does after a crash or
an outage, and that nothing is anchored twice or lost.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy import delete, func, select

from healtrace.agent.memory import ChatStore
from healtrace.agent.models.testing import DemoModel
from healtrace.agent.orchestrator import Orchestrator, UserTurn, turn_id
from healtrace.api.app import create_app
from healtrace.api.testing import LiveServer
from healtrace.chain.anchoring import AnchorBatcher
from healtrace.chain.client import FakeRegistry
from healtrace.chain.evidence import record_hash, sha256_text
from healtrace.chain.outbox import EvidenceOutbox
from healtrace.chain.receipt import verify_offline
from healtrace.config import ChainConfig, Settings
from healtrace.errors import ConflictError, NotFoundError
from healtrace.prompts import PROMPT_VERSION
from healtrace.storage import AnchorBatch, Database, EvidenceRow
from healtrace.tools.core import ToolRegistry
from tests.test_api import hello, until


async def _turns(
    store: ChatStore, settings: Settings, n: int, *, model: Any = None
) -> list[dict[str, Any]]:
    """Run ``n`` real turns through the orchestrator; return their answer_done events."""
    orchestrator = Orchestrator(
        model=model or DemoModel(token_interval_ms=0, tool_rounds=0),
        tools=ToolRegistry(),
        store=store,
        settings=settings,
    )
    key_id, _ = await store.create_api_key("t")
    session = await store.create_session(key_id, locale="en")
    done = []
    for i in range(n):
        turn = UserTurn(session_id=session.id, turn_id=turn_id(), text=f"question {i}", locale="en")
        async for event in orchestrator.run_turn(turn):
            if event.type == "answer_done":
                done.append(event.model_dump())
    return done


@pytest.fixture
async def db(database_url: str) -> Any:
    """SQLite and PostgreSQL (the outbox must hold on both)."""
    database = Database(database_url)
    await database.migrate()

    def empty_outbox(s: Any) -> None:
        # The PostgreSQL server is shared by the whole run; these tests count rows.
        s.execute(delete(EvidenceRow))
        s.execute(delete(AnchorBatch))

    await database.run(empty_outbox)
    yield database
    await database.dispose()


def _config(**kw: Any) -> ChainConfig:
    return ChainConfig(retry_base_s=0.01, retry_max_s=0.05, **kw)


async def test_every_answer_has_a_record_written_with_it(db: Database, settings: Settings) -> None:
    store = ChatStore(db)
    done = await _turns(store, settings, 3)
    outbox = EvidenceOutbox(db)
    for event in done:
        status = await outbox.status(event["evidence_hash"])
        assert status.message_id == event["message_id"] and status.status == "pending"
        record = status.record
        assert "0x" + record_hash(record).hex() == event["evidence_hash"]
        # The record hashes the texts exactly as stored, and names the stored message.
        assert record.answer_sha256 == sha256_text(event["text"])
        assert record.model == event["model"]
        assert record.prompt_version.startswith(PROMPT_VERSION + "/")
    messages = await store.messages(status.session_id)
    assert messages[0].role == "user"
    assert status.record.question_sha256 == sha256_text("question 2")
    assert status.record.question_sha256 != done[0]["evidence_hash"]


async def test_records_hold_hashes_not_text(db: Database, settings: Settings) -> None:
    store = ChatStore(db)
    (event,) = await _turns(store, settings, 1)

    def raw(s: Any) -> str:
        return str(s.scalar(select(EvidenceRow.record)))

    text = await db.run(raw)
    assert "question 0" not in text and event["text"][:20] not in text
    assert json.loads(text)["question_sha256"] == sha256_text("question 0")


async def test_no_record_when_evidence_is_off(db: Database, settings: Settings) -> None:
    off = settings.model_copy(update={"chain": ChainConfig(enabled=False)})
    (event,) = await _turns(ChatStore(db), off, 1)
    assert event["evidence_hash"] is None
    with pytest.raises(NotFoundError):
        await EvidenceOutbox(db).receipt("0x" + "00" * 32)


async def test_batches_by_count_and_receipts_verify(db: Database, settings: Settings) -> None:
    done = await _turns(ChatStore(db), settings, 25)
    registry = FakeRegistry()
    outbox = EvidenceOutbox(db)
    batcher = AnchorBatcher(outbox, registry, _config(batch_size=30, batch_interval_s=3600))
    assert await batcher.run_once() == 0  # 25 < 30 and none old enough: not due yet
    assert registry.transactions == 0
    pending, _oldest = await outbox.pending()
    assert pending == 25
    with pytest.raises(ConflictError) as waiting:
        await outbox.receipt(done[-1]["evidence_hash"])
    assert waiting.value.code == "evidence_pending"
    done += await _turns(ChatStore(db), settings, 5)
    # The 30th record makes a batch due; it takes everything waiting, in one transaction.
    assert await batcher.run_once() == 1
    assert list(registry.anchors.values()) == [30]
    done += await _turns(ChatStore(db), settings, 2)
    assert await batcher.run_once(force=True) == 1
    assert sorted(registry.anchors.values()) == [2, 30]
    for event in done:
        receipt = await outbox.receipt(event["evidence_hash"])
        assert verify_offline(receipt).ok
        assert receipt.record is not None and receipt.record["message_id"] == event["message_id"]


async def test_batches_by_age(db: Database, settings: Settings) -> None:
    await _turns(ChatStore(db), settings, 3)
    registry = FakeRegistry()
    batcher = AnchorBatcher(
        EvidenceOutbox(db), registry, _config(batch_size=1000, batch_interval_s=0)
    )
    assert await batcher.run_once() == 1 and registry.anchors and registry.transactions == 1


async def test_max_batch_splits_a_backlog(db: Database, settings: Settings) -> None:
    await _turns(ChatStore(db), settings, 7)
    registry = FakeRegistry()
    batcher = AnchorBatcher(EvidenceOutbox(db), registry, _config(batch_size=1, max_batch=3))
    assert await batcher.run_once() == 3
    assert sorted(registry.anchors.values()) == [1, 3, 3]


async def test_node_down_then_back_nothing_lost_or_doubled(
    db: Database, settings: Settings
) -> None:
    store = ChatStore(db)
    await _turns(store, settings, 4)
    registry = FakeRegistry(down=True)
    outbox = EvidenceOutbox(db)
    events: list[Any] = []

    async def on_anchored(records: Any) -> None:
        events.extend(records)

    batcher = AnchorBatcher(
        outbox, registry, _config(batch_size=1, batch_interval_s=0.05), on_anchored=on_anchored
    )
    batcher.start()
    try:
        await asyncio.sleep(0.2)  # several retries against the dead node
        assert registry.transactions == 0 and "unavailable" in batcher.last_error
        # Answers keep being written while the node is down.
        await _turns(store, settings, 2)
        registry.down = False
        for _ in range(400):
            if (await outbox.pending())[0] == 0 and not await outbox.unfinished():
                break
            await asyncio.sleep(0.01)
    finally:
        await batcher.aclose()
    assert len(events) == 6 and len({e.record_hash for e in events}) == 6
    assert sum(registry.anchors.values()) == 6
    assert registry.transactions == len(registry.anchors)  # one transaction per batch


async def test_a_lost_transaction_is_sent_again_once(db: Database, settings: Settings) -> None:
    (event,) = await _turns(ChatStore(db), settings, 1)
    registry = FakeRegistry(drop_next=1)
    outbox = EvidenceOutbox(db)
    batcher = AnchorBatcher(outbox, registry, _config(batch_size=1))
    with pytest.raises(Exception, match="not mined"):
        await batcher.run_once()
    (batch,) = await outbox.unfinished()
    assert batch.status == "sent" and batch.tx_hash
    # A restarted batcher (new object, same tables) finds the batch and sends it again.
    again = AnchorBatcher(outbox, registry, _config(batch_size=1))
    assert await again.run_once() == 1
    assert registry.transactions == 2 and len(registry.anchors) == 1
    assert verify_offline(await outbox.receipt(event["evidence_hash"])).ok


async def test_crash_after_anchoring_before_recording_does_not_anchor_twice(
    db: Database, settings: Settings
) -> None:
    await _turns(ChatStore(db), settings, 5)
    registry = FakeRegistry()
    outbox = EvidenceOutbox(db)
    batch = await outbox.form_batch(100)
    assert batch is not None
    # The process anchored the root, then died before writing that down.
    await registry.anchor(bytes.fromhex(batch.root[2:]), batch.leaf_count, "x")
    batcher = AnchorBatcher(outbox, registry, _config(batch_size=1))
    assert await batcher.run_once() == 1
    assert registry.transactions == 1

    def statuses(s: Any) -> list[str]:
        return list(s.scalars(select(AnchorBatch.status)))

    assert await db.run(statuses) == ["anchored"]


async def test_a_batch_never_changes_members(db: Database, settings: Settings) -> None:
    await _turns(ChatStore(db), settings, 4)
    outbox = EvidenceOutbox(db)
    first = await outbox.form_batch(3)
    second = await outbox.form_batch(3)
    third = await outbox.form_batch(3)
    assert first is not None and second is not None and third is None
    assert (first.leaf_count, second.leaf_count) == (3, 1)

    def per_batch(s: Any) -> dict[str, int]:
        rows = s.execute(
            select(EvidenceRow.batch_id, func.count()).group_by(EvidenceRow.batch_id)
        ).all()
        return {b: int(n) for b, n in rows}

    assert await db.run(per_batch) == {first.id: 3, second.id: 1}


# --- over the API --------------------------------------------------------------------------


async def test_receipt_endpoint_and_evidence_anchored_event(settings: Settings) -> None:
    settings = settings.model_copy(
        update={"chain": ChainConfig(batch_size=1, batch_interval_s=0.05)}
    )
    registry = FakeRegistry()
    app = create_app(
        settings, model=DemoModel(token_interval_ms=0, tool_rounds=0), registry=registry
    )
    async with LiveServer(app) as live:
        store: ChatStore = app.state.services.store
        _key_id, key = await store.create_api_key("t")
        async with websockets.connect(live.ws) as ws:
            await hello(ws, key)
            await ws.send(json.dumps({"type": "user_message", "text": "what is a fever?"}))
            frames = await until(ws, "answer_done")
            done = frames[-1]
            assert done["evidence_hash"].startswith("0x") and len(done["evidence_hash"]) == 66
            anchored = (await until(ws, "evidence_anchored"))[-1]
        assert anchored["message_id"] == done["message_id"]
        assert anchored["evidence_hash"] == done["evidence_hash"]
        assert anchored["seq"] == done["seq"] + 1
        async with httpx.AsyncClient(base_url=live.http) as http:
            got = await http.get(anchored["receipt_url"])
            assert got.status_code == 200, got.text
            body = got.json()
            assert body["tx_hash"] == anchored["tx_hash"] and body["chain_id"] == 31337
            missing = await http.get("/v1/evidence/0x" + "ab" * 32)
            assert missing.status_code == 404
            assert missing.json()["error"]["code"] == "evidence_not_found"
            bad = await http.get("/v1/evidence/nothex", headers={"Accept-Language": "zh-CN"})
            assert bad.status_code == 400
            assert bad.json()["error"]["code"] == "evidence_hash_invalid"
            assert "十六进制" in bad.json()["error"]["message"]
            status = await http.get("/v1/chain", headers={"Authorization": f"Bearer {key}"})
            assert status.json()["records_anchored"] == 1
            assert status.json()["pending_records"] == 0


async def test_pending_receipt_is_409(settings: Settings) -> None:
    app = create_app(settings, model=DemoModel(token_interval_ms=0, tool_rounds=0))
    async with LiveServer(app) as live:
        store: ChatStore = app.state.services.store
        _key_id, key = await store.create_api_key("t")
        async with websockets.connect(live.ws) as ws:
            await hello(ws, key)
            await ws.send(json.dumps({"type": "user_message", "text": "hello"}))
            done = (await until(ws, "answer_done"))[-1]
        async with httpx.AsyncClient(base_url=live.http) as http:
            got = await http.get(f"/v1/evidence/{done['evidence_hash']}")
        assert got.status_code == 409 and got.json()["error"]["code"] == "evidence_pending"
