"""REST: receipts for answers' evidence records, and the anchoring status.

``GET /v1/evidence/{hash}`` needs no API key: a receipt holds identifiers and hashes only
(no patient text), and the 256-bit hash itself is what a holder shows to be entitled to it.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request

from healtrace.api._http import KEY_ERRORS, KeyId, error_responses, services_of
from healtrace.errors import InputError

router = APIRouter(tags=["evidence"])

_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")


@router.get("/v1/evidence/{record_hash}", responses=error_responses(400, 404, 409, 422))
async def get_receipt(request: Request, record_hash: str) -> dict[str, Any]:
    """The receipt of an answer's evidence record, to keep and verify with
    ``healtrace verify RECEIPT.json --rpc URL``.

    404 ``evidence_not_found`` for an unknown hash; 409 ``evidence_pending`` while the
    record waits for its batch to be anchored (``answer_done`` carries the hash at once,
    ``evidence_anchored`` says when the receipt is ready)."""
    if not _HASH.match(record_hash):
        raise InputError("not a 0x-prefixed 32-byte hash", code="evidence_hash_invalid")
    services = services_of(request)
    receipt = await services.evidence.receipt(record_hash.lower())
    out: dict[str, Any] = receipt.model_dump(mode="json")
    chain = services.chain
    out["rpc_url"] = chain.public_rpc_url if chain is not None else ""
    return out


@router.get("/v1/chain", responses=error_responses(*KEY_ERRORS))
async def chain_status(request: Request, _key: KeyId) -> dict[str, Any]:
    """Where evidence is anchored, how much waits, and the last anchoring problem."""
    services = services_of(request)
    pending, oldest = await services.evidence.pending()
    chain = services.chain
    batcher = chain.batcher if chain is not None else None
    registry = chain.registry if chain is not None else None
    return {
        "enabled": chain is not None,
        "status": "disabled" if chain is None else (chain.status or "running"),
        "rpc_url": chain.public_rpc_url if chain is not None else "",
        "chain_id": registry.chain_id if registry is not None else None,
        "contract": registry.contract if registry is not None else None,
        "pending_records": pending,
        "oldest_pending_at": oldest.isoformat() if oldest is not None else None,
        "batches_anchored": batcher.batches_anchored if batcher is not None else 0,
        "records_anchored": batcher.records_anchored if batcher is not None else 0,
        "retries": batcher.retries if batcher is not None else 0,
        "last_error": batcher.last_error if batcher is not None else "",
    }
