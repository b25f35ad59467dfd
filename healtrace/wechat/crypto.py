"""Callback signatures and safe-mode AES, behind our own functions.

Signatures are SHA-1 over the sorted, concatenated strings (the Token, the timestamp, the
nonce and, in safe mode, the ciphertext), compared in constant time. The AES part
(AES-256-CBC, PKCS#7 to 32 bytes, random 16-byte prefix, length, receiver id) is wechatpy's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
from typing import Any, cast

from wechatpy.crypto import PrpCrypto
from wechatpy.exceptions import InvalidAppIdException

from healtrace.wechat.config import WechatConfig

__all__ = ["MessageCrypto", "SignatureError", "signature", "signature_ok"]


class SignatureError(Exception):
    """The signature does not match, or the ciphertext does not decrypt for us."""


def signature(*parts: str) -> str:
    """WeChat's callback signature: SHA-1 of the sorted parts joined."""
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def signature_ok(given: str | None, *parts: str) -> bool:
    if not given:
        return False
    return hmac.compare_digest(signature(*parts).encode(), given.strip().lower().encode())


class MessageCrypto:
    """Encrypts and decrypts safe-mode payloads for one account (AppID or CorpID)."""

    def __init__(self, config: WechatConfig) -> None:
        raw = config.encoding_aes_key.get_secret_value()
        self.token = config.token
        self.receiver_id = config.receiver_id
        try:
            self.key = base64.b64decode(raw + "=", validate=True)
        except ValueError as exc:
            raise ValueError("HEALTRACE_WECHAT__ENCODING_AES_KEY is not valid base64") from exc
        if len(self.key) != 32:
            raise ValueError("HEALTRACE_WECHAT__ENCODING_AES_KEY must be 43 characters")
        self._prp: Any = PrpCrypto(self.key)

    def decrypt(self, msg_signature: str | None, timestamp: str, nonce: str, encrypted: str) -> str:
        """The plaintext of ``encrypted`` once its ``msg_signature`` checks out."""
        if not signature_ok(msg_signature, self.token, timestamp, nonce, encrypted):
            raise SignatureError("msg_signature does not match")
        try:
            plain = self._prp.decrypt(encrypted, self.receiver_id)
        except InvalidAppIdException as exc:
            raise SignatureError("encrypted for another account") from exc
        except (ValueError, TypeError, IndexError, struct.error) as exc:
            raise SignatureError(f"undecryptable: {type(exc).__name__}") from exc
        return cast(str, plain if isinstance(plain, str) else plain.decode("utf-8"))

    def encrypt(self, plaintext: str, *, nonce: str | None = None) -> str:
        """``plaintext`` as the signed ``<xml><Encrypt>…`` envelope WeChat expects."""
        nonce = nonce or secrets.token_hex(8)
        timestamp = str(int(time.time()))
        encrypted = self._prp.encrypt(plaintext, self.receiver_id)
        encrypted = encrypted if isinstance(encrypted, str) else encrypted.decode("ascii")
        sig = signature(self.token, timestamp, nonce, encrypted)
        return (
            f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt>"
            f"<MsgSignature><![CDATA[{sig}]]></MsgSignature>"
            f"<TimeStamp>{timestamp}</TimeStamp><Nonce><![CDATA[{nonce}]]></Nonce></xml>"
        )
