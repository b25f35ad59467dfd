"""Reward claims per second on SQLite: sequential, and 100 patients claiming at once.

    .venv/bin/python benchmarks/rewards.py [--claims 2000] [--write BENCHMARKS.md]

Each claim is one transaction (patient lock, ledger reads for caps, cool-down, burst,
duplicates, then the decision and the award).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from _report import pct, write_block

from healtrace.config import Settings
from healtrace.rewards import RewardEvent, RewardsConfig, RewardsService
from healtrace.storage import Database


def _event(patient: str, value: float, now: datetime) -> RewardEvent:
    return RewardEvent(
        event_id=uuid.uuid4().hex,
        tenant_id="bench",
        patient_id=patient,
        type="glucose_reading",
        occurred_at=now,
        payload={"value": value},
    )


async def main(claims: int) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            rewards=RewardsConfig(burst_max_events=10**9, minting=False),
        )
        db = Database(settings.resolved_database_url)
        await db.migrate()
        svc = RewardsService(settings, db)
        now = datetime.now(UTC)
        latencies: list[float] = []
        start = time.perf_counter()
        for i in range(claims):
            t0 = time.perf_counter()
            await svc.claim(_event(f"p{i % 50}", 4 + i / claims, now))
            latencies.append((time.perf_counter() - t0) * 1000)
        sequential = claims / (time.perf_counter() - start)
        start = time.perf_counter()
        await asyncio.gather(
            *(svc.claim(_event(f"q{i % 100}", 4 + i / claims, now)) for i in range(claims))
        )
        concurrent = claims / (time.perf_counter() - start)
        await db.dispose()
    return (
        f"{claims} glucose-reading claims on SQLite with the bundled rules (each one "
        f"transaction: patient lock, ledger reads for caps, cool-down, burst and duplicates, "
        f"then the decision): sequential {sequential:.0f} claims/s (p50 "
        f"{pct(latencies, 50):.2f} ms, p95 {pct(latencies, 95):.2f} ms); 100 patients "
        f"claiming at once {concurrent:.0f} claims/s."
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--claims", type=int, default=2000)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    body = asyncio.run(main(args.claims))
    print(body)
    if args.write:
        write_block(args.write, "rewards", body)
