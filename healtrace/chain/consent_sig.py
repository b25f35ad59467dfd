"""EIP-712 consent messages for ``ConsentRegistry.grantBySig`` / ``revokeBySig``.

A patient's decision to grant or revoke access is signed off chain (by the patient's own
wallet, or by HealTrace's custodial key store on the patient's behalf) and submitted by a
relayer that pays the gas. The contract recomputes the same EIP-712 digest, so the relayer can
neither alter the message nor replay it: each message carries the patient's current
``nonces(patient)`` value, which the contract then increments, and a ``deadline`` (unix
seconds) after which it is refused.

Domain: name ``"HealTrace ConsentRegistry"``, version ``"1"``, the chain id, and the registry's
address. The two message types are :data:`GRANT_TYPE` and :data:`REVOKE_TYPE`.

:func:`typed_data` gives the JSON-serialisable structure a browser wallet's
``eth_signTypedData_v4`` takes; :func:`sign` signs it locally with eth-account; and
``message.contract_args(signature)`` are the arguments of the matching contract call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Final

from eth_abi.abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.types import PrivateKeyType
from eth_hash.auto import keccak
from eth_typing import ChecksumAddress
from eth_utils.address import is_address, to_checksum_address

__all__ = [
    "DOMAIN_NAME",
    "DOMAIN_VERSION",
    "GRANT_TYPE",
    "REVOKE_TYPE",
    "ConsentDomain",
    "ConsentMessage",
    "GrantConsent",
    "RevokeConsent",
    "digest",
    "grant_id",
    "sign",
    "typed_data",
]

DOMAIN_NAME: Final = "HealTrace ConsentRegistry"
DOMAIN_VERSION: Final = "1"
#: EIP-712 type strings, exactly as ``ConsentRegistry.GRANT_TYPEHASH`` / ``REVOKE_TYPEHASH``.
GRANT_TYPE: Final = (
    "Grant(address patient,address grantee,bytes32 scopeHash,uint64 expiresAt,"
    "uint256 nonce,uint256 deadline)"
)
REVOKE_TYPE: Final = (
    "Revoke(address patient,address grantee,bytes32 scopeHash,uint256 nonce,uint256 deadline)"
)

_UINT64_MAX = 2**64 - 1
_UINT256_MAX = 2**256 - 1

_DOMAIN_FIELDS = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]


def _fields(type_string: str) -> list[dict[str, str]]:
    """``Name(type a,type b)`` → ``[{"name": "a", "type": "type"}, …]``."""
    inner = type_string[type_string.index("(") + 1 : -1]
    return [
        {"name": name, "type": kind}
        for kind, name in (item.split(" ") for item in inner.split(","))
    ]


def _address(value: str, what: str) -> ChecksumAddress:
    if not isinstance(value, str) or not is_address(value):
        raise ValueError(f"{what} must be a 0x-prefixed 20-byte address")
    return to_checksum_address(value)


def _uint(value: int, maximum: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise ValueError(f"{what} must be an integer from 0 to {maximum}")
    return value


def _bytes32(value: bytes, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != 32:
        raise ValueError(f"{what} must be exactly 32 bytes")
    return bytes(value)


@dataclass(frozen=True)
class ConsentDomain:
    """The EIP-712 domain: which chain and which ConsentRegistry a signature is valid for."""

    chain_id: int
    verifying_contract: str

    def __post_init__(self) -> None:
        _uint(self.chain_id, _UINT256_MAX, "chain_id")
        address = _address(self.verifying_contract, "verifying_contract")
        object.__setattr__(self, "verifying_contract", address)

    def to_json_value(self) -> dict[str, Any]:
        return {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": self.chain_id,
            "verifyingContract": self.verifying_contract,
        }


@dataclass(frozen=True)
class GrantConsent:
    """``patient`` grants ``grantee`` access to ``scope_hash`` until ``expires_at`` (unix s)."""

    patient: str
    grantee: str
    scope_hash: bytes
    expires_at: int
    nonce: int
    deadline: int

    PRIMARY_TYPE: ClassVar[str] = "Grant"
    TYPE_STRING: ClassVar[str] = GRANT_TYPE

    def __post_init__(self) -> None:
        object.__setattr__(self, "patient", _address(self.patient, "patient"))
        object.__setattr__(self, "grantee", _address(self.grantee, "grantee"))
        object.__setattr__(self, "scope_hash", _bytes32(self.scope_hash, "scope_hash"))
        _uint(self.expires_at, _UINT64_MAX, "expires_at")
        _uint(self.nonce, _UINT256_MAX, "nonce")
        _uint(self.deadline, _UINT256_MAX, "deadline")

    def to_json_value(self) -> dict[str, Any]:
        return {
            "patient": self.patient,
            "grantee": self.grantee,
            "scopeHash": "0x" + self.scope_hash.hex(),
            "expiresAt": self.expires_at,
            "nonce": self.nonce,
            "deadline": self.deadline,
        }

    def contract_args(self, signature: bytes) -> tuple[Any, ...]:
        """Arguments of ``grantBySig`` in the contract's order."""
        return (
            self.patient,
            self.grantee,
            self.scope_hash,
            self.expires_at,
            self.nonce,
            self.deadline,
            bytes(signature),
        )


@dataclass(frozen=True)
class RevokeConsent:
    """``patient`` revokes the grant to ``grantee`` for ``scope_hash``."""

    patient: str
    grantee: str
    scope_hash: bytes
    nonce: int
    deadline: int

    PRIMARY_TYPE: ClassVar[str] = "Revoke"
    TYPE_STRING: ClassVar[str] = REVOKE_TYPE

    def __post_init__(self) -> None:
        object.__setattr__(self, "patient", _address(self.patient, "patient"))
        object.__setattr__(self, "grantee", _address(self.grantee, "grantee"))
        object.__setattr__(self, "scope_hash", _bytes32(self.scope_hash, "scope_hash"))
        _uint(self.nonce, _UINT256_MAX, "nonce")
        _uint(self.deadline, _UINT256_MAX, "deadline")

    def to_json_value(self) -> dict[str, Any]:
        return {
            "patient": self.patient,
            "grantee": self.grantee,
            "scopeHash": "0x" + self.scope_hash.hex(),
            "nonce": self.nonce,
            "deadline": self.deadline,
        }

    def contract_args(self, signature: bytes) -> tuple[Any, ...]:
        """Arguments of ``revokeBySig`` in the contract's order."""
        return (
            self.patient,
            self.grantee,
            self.scope_hash,
            self.nonce,
            self.deadline,
            bytes(signature),
        )


ConsentMessage = GrantConsent | RevokeConsent


def typed_data(domain: ConsentDomain, message: ConsentMessage) -> dict[str, Any]:
    """The full EIP-712 structure (``types``, ``primaryType``, ``domain``, ``message``).

    Plain JSON values only (bytes32 as ``0x`` hex), so it can be sent to a browser wallet.
    """
    return {
        "types": {
            "EIP712Domain": [dict(f) for f in _DOMAIN_FIELDS],
            message.PRIMARY_TYPE: _fields(message.TYPE_STRING),
        },
        "primaryType": message.PRIMARY_TYPE,
        "domain": domain.to_json_value(),
        "message": message.to_json_value(),
    }


def digest(domain: ConsentDomain, message: ConsentMessage) -> bytes:
    """The 32-byte EIP-712 digest the contract checks the signature against."""
    signable = encode_typed_data(full_message=typed_data(domain, message))
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


def sign(private_key: PrivateKeyType, domain: ConsentDomain, message: ConsentMessage) -> bytes:
    """Sign ``message`` for ``domain``; returns the 65-byte ``r ‖ s ‖ v`` signature.

    Raises ValueError when the key is not the patient's (the contract would reject it).
    """
    account = Account.from_key(private_key)
    if account.address != message.patient:
        raise ValueError(
            f"the signing key belongs to {account.address}, not the patient {message.patient}"
        )
    signable = encode_typed_data(full_message=typed_data(domain, message))
    return bytes(account.sign_message(signable).signature)


def grant_id(patient: str, grantee: str, scope_hash: bytes) -> bytes:
    """``keccak256(abi.encode(patient, grantee, scopeHash))``, the registry's grant id."""
    encoded = encode(
        ["address", "address", "bytes32"],
        [
            _address(patient, "patient"),
            _address(grantee, "grantee"),
            _bytes32(scope_hash, "scope_hash"),
        ],
    )
    return keccak(encoded)
