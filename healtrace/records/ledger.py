"""The ConsentRegistry as the records part sees it: submit signed grants and revocations,
read a grant's state. One interface; a web3 implementation for any EVM node and a scripted
in-memory one with the same rules (real EIP-712 signatures, nonces, deadlines, expiry).

Signatures are always the patient's (their wallet's, or their custodial key's): the service
relays them and pays the gas, but cannot forge or replay one — the contract checks the
signer and the patient's nonce, and so does the fake.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from eth_account import Account
from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import ContractCustomError, ContractLogicError, TimeExhausted

from healtrace.chain.client import ChainUnavailable, send_lock
from healtrace.chain.consent_sig import (
    ConsentDomain,
    GrantConsent,
    RevokeConsent,
    digest,
    grant_id,
)
from healtrace.chain.contracts import load_artifact
from healtrace.errors import InputError

__all__ = [
    "ConsentLedger",
    "DeferredLedger",
    "FakeConsentLedger",
    "GrantState",
    "Web3ConsentLedger",
]

_NETWORK_ERRORS = (OSError, TimeoutError, aiohttp.ClientError)

#: Contract errors → what the patient is told.
_REVERT_CODES = {
    "InvalidSignature": "consent_signature_invalid",
    "InvalidAccountNonce": "consent_signature_replayed",
    "ExpiredSignature": "consent_signature_expired",
    "ExpiryNotInFuture": "consent_expiry_invalid",
    "GrantNotFound": "consent_not_found",
    "AlreadyRevoked": "consent_not_found",
    "ZeroScope": "consent_scope_invalid",
    "ZeroGrantee": "consent_scope_invalid",
}


@dataclass(frozen=True, slots=True)
class GrantState:
    expires_at: int
    revoked: bool

    def valid_at(self, now: int) -> bool:
        return not self.revoked and self.expires_at > now


class ConsentLedger(Protocol):
    @property
    def domain(self) -> ConsentDomain: ...

    async def nonce(self, patient: str) -> int: ...

    async def submit_grant(self, message: GrantConsent, signature: bytes) -> str:
        """Relay ``grantBySig``; the mined transaction's hash. InputError on a refusal."""

    async def submit_revoke(self, message: RevokeConsent, signature: bytes) -> str:
        """Relay ``revokeBySig``; the mined transaction's hash. InputError on a refusal."""

    async def grant_state(
        self, patient: str, grantee: str, scope_hash: bytes
    ) -> GrantState | None: ...

    async def aclose(self) -> None: ...


def _selectors(abi: list[dict[str, Any]]) -> dict[str, str]:
    out = {}
    for item in abi:
        if item.get("type") == "error":
            types = ",".join(i["type"] for i in item.get("inputs", []))
            out["0x" + keccak(f"{item['name']}({types})".encode()).hex()[:8]] = item["name"]
    return out


class Web3ConsentLedger:
    """The ConsentRegistry at ``contract`` on the node at ``rpc_url``; ``relayer_key`` pays."""

    def __init__(
        self,
        rpc_url: str,
        contract: str,
        relayer_key: str,
        *,
        chain_id: int,
        timeout_s: float = 10.0,
        receipt_timeout_s: float = 60.0,
    ) -> None:
        self.rpc_url = rpc_url
        self._contract = to_checksum_address(contract)
        self._relayer = Account.from_key(relayer_key)
        self._timeout_s = timeout_s
        self._receipt_timeout_s = receipt_timeout_s
        self._provider = AsyncHTTPProvider(
            rpc_url,
            request_kwargs={"timeout": aiohttp.ClientTimeout(total=timeout_s)},
            exception_retry_configuration=None,
        )
        self._w3: AsyncWeb3[Any] = AsyncWeb3(self._provider)
        abi = load_artifact("ConsentRegistry").abi
        self._registry = self._w3.eth.contract(address=self._contract, abi=abi)
        self._errors = _selectors(list(abi))  # type: ignore[arg-type]
        self._domain = ConsentDomain(chain_id, str(self._contract))

    @property
    def domain(self) -> ConsentDomain:
        return self._domain

    async def nonce(self, patient: str) -> int:
        try:
            return int(await self._registry.functions.nonces(to_checksum_address(patient)).call())
        except _NETWORK_ERRORS as exc:
            raise ChainUnavailable(f"nonces: {type(exc).__name__}") from exc

    async def grant_state(self, patient: str, grantee: str, scope_hash: bytes) -> GrantState | None:
        gid = grant_id(patient, grantee, scope_hash)
        try:
            grant = await self._registry.functions.grants(gid).call()
        except _NETWORK_ERRORS as exc:
            raise ChainUnavailable(f"grants: {type(exc).__name__}") from exc
        # (patient, grantee, expiresAt, revoked, scopeHash); an unknown id is all zeros.
        if int(str(grant[0]), 16) == 0:
            return None
        return GrantState(expires_at=int(grant[2]), revoked=bool(grant[3]))

    def _refusal(self, exc: Exception) -> InputError:
        data = getattr(exc, "data", None)
        name = self._errors.get(str(data)[:10]) if isinstance(data, str) else None
        code = _REVERT_CODES.get(name or "", "consent_rejected")
        return InputError(f"ConsentRegistry refused: {name or exc}", code=code)

    async def _relay(self, function: Any) -> str:
        sender = self._relayer.address
        try:
            async with send_lock(self.rpc_url, str(sender)):
                tx = await function.build_transaction(
                    {
                        "from": sender,
                        "nonce": await self._w3.eth.get_transaction_count(sender, "pending"),
                        "chainId": self._domain.chain_id,
                    }
                )
                signed = self._relayer.sign_transaction(tx)
                tx_hash = await self._w3.eth.send_raw_transaction(signed.raw_transaction)
            receipt = await self._w3.eth.wait_for_transaction_receipt(
                tx_hash, timeout=self._receipt_timeout_s, poll_latency=0.1
            )
        except (ContractCustomError, ContractLogicError) as exc:
            raise self._refusal(exc) from exc
        except TimeExhausted as exc:
            raise ChainUnavailable("consent transaction not mined in time") from exc
        except _NETWORK_ERRORS as exc:
            raise ChainUnavailable(f"consent relay: {type(exc).__name__}") from exc
        if receipt["status"] != 1:
            raise InputError("consent transaction reverted", code="consent_rejected")
        return "0x" + bytes(tx_hash).hex()

    async def submit_grant(self, message: GrantConsent, signature: bytes) -> str:
        call = self._registry.functions.grantBySig(*message.contract_args(signature))
        return await self._relay(call)

    async def submit_revoke(self, message: RevokeConsent, signature: bytes) -> str:
        call = self._registry.functions.revokeBySig(*message.contract_args(signature))
        return await self._relay(call)

    async def aclose(self) -> None:
        await self._provider.disconnect()


@dataclass
class FakeConsentLedger:
    """The registry's rules in memory, with a settable clock (``now``) and outages."""

    domain: ConsentDomain = field(default_factory=lambda: ConsentDomain(31337, "0x" + "c0" * 20))
    clock: Callable[[], float] = time.time
    down: bool = False
    grants: dict[bytes, GrantState] = field(default_factory=dict)
    nonces: dict[str, int] = field(default_factory=dict)
    transactions: int = 0

    def _check(self) -> None:
        if self.down:
            raise ChainUnavailable("fake consent node down")

    async def nonce(self, patient: str) -> int:
        self._check()
        return self.nonces.get(to_checksum_address(patient), 0)

    def _verify(self, message: GrantConsent | RevokeConsent, signature: bytes) -> None:
        if self.clock() > message.deadline:
            raise InputError("signature deadline passed", code="consent_signature_expired")
        if message.nonce != self.nonces.get(message.patient, 0):
            raise InputError("nonce already used", code="consent_signature_replayed")
        try:
            signer = Account._recover_hash(digest(self.domain, message), signature=signature)
        except (ValueError, TypeError) as exc:
            raise InputError("bad signature", code="consent_signature_invalid") from exc
        if signer != message.patient:
            raise InputError("not the patient's signature", code="consent_signature_invalid")

    async def submit_grant(self, message: GrantConsent, signature: bytes) -> str:
        self._check()
        self._verify(message, signature)
        if message.expires_at <= self.clock():
            raise InputError("expiry is not in the future", code="consent_expiry_invalid")
        self.nonces[message.patient] = message.nonce + 1
        gid = grant_id(message.patient, message.grantee, message.scope_hash)
        self.grants[gid] = GrantState(message.expires_at, revoked=False)
        self.transactions += 1
        return "0x" + self.transactions.to_bytes(32, "big").hex()

    async def submit_revoke(self, message: RevokeConsent, signature: bytes) -> str:
        self._check()
        self._verify(message, signature)
        gid = grant_id(message.patient, message.grantee, message.scope_hash)
        state = self.grants.get(gid)
        if state is None or state.revoked:
            raise InputError("no such grant", code="consent_not_found")
        self.nonces[message.patient] = message.nonce + 1
        self.grants[gid] = GrantState(state.expires_at, revoked=True)
        self.transactions += 1
        return "0x" + self.transactions.to_bytes(32, "big").hex()

    async def grant_state(self, patient: str, grantee: str, scope_hash: bytes) -> GrantState | None:
        self._check()
        return self.grants.get(grant_id(patient, grantee, scope_hash))

    async def aclose(self) -> None:
        return None


class DeferredLedger:
    """A ledger that connects on first use (the chain starts in the background)."""

    def __init__(self, connect: Callable[[], Awaitable[ConsentLedger]]) -> None:
        self._connect = connect
        self._ledger: ConsentLedger | None = None

    async def _get(self) -> ConsentLedger:
        if self._ledger is None:
            self._ledger = await self._connect()
        return self._ledger

    @property
    def domain(self) -> ConsentDomain:
        if self._ledger is None:
            raise ChainUnavailable("the consent registry is not connected yet")
        return self._ledger.domain

    async def nonce(self, patient: str) -> int:
        return await (await self._get()).nonce(patient)

    async def submit_grant(self, message: GrantConsent, signature: bytes) -> str:
        return await (await self._get()).submit_grant(message, signature)

    async def submit_revoke(self, message: RevokeConsent, signature: bytes) -> str:
        return await (await self._get()).submit_revoke(message, signature)

    async def grant_state(self, patient: str, grantee: str, scope_hash: bytes) -> GrantState | None:
        return await (await self._get()).grant_state(patient, grantee, scope_hash)

    async def aclose(self) -> None:
        if self._ledger is not None:
            await self._ledger.aclose()
