"""Custodial keys: an Ethereum key per patient who has no wallet, encrypted at rest.

Each patient's key is kept as an Ethereum keystore (v3: AES-128-CTR with a MAC) whose
password is derived from the service's custody secret and the patient's tenant and id, so a
row copied to another patient or tenant does not decrypt. The custody secret is 256 random
bits, so the keystore's key derivation is PBKDF2 with few rounds: stretching protects weak
passwords, and this one is not. A patient can export their key as a keystore under a
password of their own (scrypt), and import it into any wallet.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

from eth_account import Account

from healtrace.errors import ConfigurationError, InputError

__all__ = ["Custody", "load_custody_secret"]

_AT_REST_ITERATIONS = 1000
_MIN_EXPORT_PASSWORD = 10


def load_custody_secret(configured: str, path: Path) -> bytes:
    """The configured secret, or the one in ``path`` (created, mode 0600, if missing)."""
    if configured:
        if len(configured) < 32:
            raise ConfigurationError(
                "HEALTRACE_RECORDS__CUSTODY_SECRET must be at least 32 characters"
            )
        return configured.encode("utf-8")
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32).encode("ascii")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(value + b"\n")
    return value


class Custody:
    """Creates, opens and exports patients' custodial keys."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _password(self, tenant_id: str, patient_id: str) -> str:
        label = f"healtrace.custody.v1\x00{tenant_id}\x00{patient_id}".encode()
        return hmac.new(self._secret, label, hashlib.sha256).hexdigest()

    def create(self, tenant_id: str, patient_id: str) -> tuple[str, str]:
        """A new key for the patient: ``(address, encrypted keystore JSON)``."""
        account = Account.create()
        sealed = Account.encrypt(
            account.key,
            self._password(tenant_id, patient_id),
            kdf="pbkdf2",
            iterations=_AT_REST_ITERATIONS,
        )
        return str(account.address), json.dumps(sealed)

    def open(self, tenant_id: str, patient_id: str, sealed: str) -> bytes:
        """The patient's private key (raises ConfigurationError if the secret changed)."""
        try:
            return bytes(Account.decrypt(json.loads(sealed), self._password(tenant_id, patient_id)))
        except ValueError as exc:
            raise ConfigurationError(
                "a custodial key does not decrypt: HEALTRACE_RECORDS__CUSTODY_SECRET (or "
                "DATA_DIR/custody.key) is not the one it was created with"
            ) from exc

    def export(self, tenant_id: str, patient_id: str, sealed: str, password: str) -> dict[str, Any]:
        """The key as a standard keystore under the patient's own password (scrypt)."""
        if len(password) < _MIN_EXPORT_PASSWORD:
            raise InputError("export password too short", code="key_export_password_weak", min=10)
        exported: dict[str, Any] = Account.encrypt(
            self.open(tenant_id, patient_id, sealed), password
        )
        return exported
