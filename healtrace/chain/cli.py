"""``healtrace verify RECEIPT.json`` and ``healtrace chain status | node | flush``."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from healtrace.config import Settings
from healtrace.errors import HealTraceError, InputError, localized

__all__ = ["chain_app", "verify_command"]

chain_app = typer.Typer(no_args_is_help=True, help="The evidence chain (anchoring, receipts)")


def verify_command(
    receipt_file: Annotated[str, typer.Argument(help="A receipt JSON file, or - for stdin")],
    rpc: Annotated[
        str | None,
        typer.Option(help="EVM JSON-RPC URL to check the root on (default: the receipt's rpc_url)"),
    ] = None,
    offline: Annotated[
        bool, typer.Option(help="Only check the record hash and Merkle proof; no network")
    ] = False,
    locale: Annotated[str, typer.Option(help="en or zh-CN")] = "en",
    json_: Annotated[bool, typer.Option("--json", help="Print the checks as JSON")] = False,
) -> None:
    """Verify a receipt: the record hashes to record_hash, the proof leads to the root, and
    the root is anchored in the registry on the receipt's chain. Exit 0 only if all pass."""
    from healtrace.chain.receipt import parse_receipt, verify_offline, verify_onchain

    try:
        raw = sys.stdin.buffer.read() if receipt_file == "-" else Path(receipt_file).read_bytes()
    except OSError as exc:
        typer.echo(f"cannot read {receipt_file}: {exc.strerror}", err=True)
        raise typer.Exit(2) from exc
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        error = InputError(f"not JSON ({exc})", code="receipt_malformed")
        typer.echo(error.message(locale), err=True)
        raise typer.Exit(2) from exc
    rpc_url = rpc
    if isinstance(data, dict):
        # The service's receipt endpoint adds where to check it; it is not part of the proof.
        hinted = data.pop("rpc_url", None)
        rpc_url = rpc_url or (hinted if isinstance(hinted, str) and hinted else None)
    try:
        receipt = parse_receipt(data)
    except InputError as exc:
        typer.echo(exc.message(locale), err=True)
        raise typer.Exit(2) from exc
    if offline:
        result = verify_offline(receipt)
    elif not rpc_url:
        typer.echo("give --rpc URL (or --offline to check only the proof)", err=True)
        raise typer.Exit(2)
    else:
        result = asyncio.run(verify_onchain(receipt, rpc_url))
    if json_:
        typer.echo(
            json.dumps(
                {
                    "ok": result.ok,
                    "code": result.code,
                    "checks": [c._asdict() for c in result.checks],
                },
                indent=2,
            )
        )
    else:
        for check in result.checks:
            typer.echo(f"{'ok  ' if check.passed else 'FAIL'} {check.name:14} {check.detail}")
        if result.ok:
            typer.echo("verified" if not offline else "proof verified (root not checked on chain)")
        else:
            params = {"detail": "", **result.params}
            typer.echo(
                localized(result.code or "receipt_proof_invalid", locale, **params), err=True
            )
    raise typer.Exit(0 if result.ok else 1)


@chain_app.command("status")
def chain_status() -> None:
    """Anchoring status: batches, pending records, where they are anchored."""
    from sqlalchemy import func, select

    from healtrace.storage import AnchorBatch, Database, EvidenceRow

    settings = Settings()

    async def run() -> None:
        db = Database(settings.resolved_database_url)
        try:
            await db.migrate()

            def query(s: object) -> tuple[int, int, int, int]:
                from sqlalchemy.orm import Session

                assert isinstance(s, Session)
                records = int(s.scalar(select(func.count()).select_from(EvidenceRow)) or 0)
                waiting = int(
                    s.scalar(
                        select(func.count())
                        .select_from(EvidenceRow)
                        .where(EvidenceRow.batch_id.is_(None))
                    )
                    or 0
                )
                anchored = int(
                    s.scalar(
                        select(func.count())
                        .select_from(AnchorBatch)
                        .where(AnchorBatch.status == "anchored")
                    )
                    or 0
                )
                gas = int(s.scalar(select(func.sum(AnchorBatch.gas_used))) or 0)
                return records, waiting, anchored, gas

            records, waiting, anchored, gas = await db.run(query)
        finally:
            await db.dispose()
        typer.echo(f"evidence records: {records} ({waiting} waiting for a batch)")
        typer.echo(f"anchored batches: {anchored}, gas used in total: {gas}")
        if records - waiting:
            typer.echo(f"gas per anchored record: {gas / max(records - waiting, 1):.0f}")

    asyncio.run(run())


@chain_app.command("flush")
def chain_flush() -> None:
    """Anchor every waiting evidence record now (starting the embedded node if needed)."""
    from healtrace.chain.service import ChainService
    from healtrace.storage import Database

    settings = Settings()

    async def run() -> int:
        db = Database(settings.resolved_database_url)
        await db.migrate()
        chain = ChainService(settings, db)
        try:
            registry = await chain._connect()
            chain.registry = registry
            from healtrace.chain.anchoring import AnchorBatcher

            batcher = AnchorBatcher(chain.outbox, registry, settings.chain)
            return await batcher.run_once(force=True)
        finally:
            await chain.aclose()
            await db.dispose()

    try:
        batches = asyncio.run(run())
    except HealTraceError as exc:
        typer.echo(exc.message("en"), err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"anchored {batches} batch(es)")
