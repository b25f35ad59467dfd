"""The evidence record kept for every answer, and how its hash (the Merkle leaf) is computed.

The record holds identifiers and SHA-256 hashes only — never question, answer, document or
tool text — so it can be shown to anyone who holds a receipt without disclosing patient data.

Recomputing a record hash (everything a third party needs)
----------------------------------------------------------
1. Take the record as a JSON object with exactly these keys (version 1)::

     version         1 (integer)
     session_id, message_id, turn_id, tenant_id      strings
     created_at      UTC time, ISO 8601, millisecond precision, "Z": "2026-01-02T03:04:05.678Z"
     model, prompt_version                           strings
     question_sha256, answer_sha256                  64 lowercase hex chars: SHA-256 of the
                                                     UTF-8 bytes of the text exactly as stored
     citations       list of {"chunk_id", "doc_id", "content_sha256"}
     tool_calls      list of {"name", "arguments_sha256", "result_sha256", "ok" (boolean)}
     consent_ref     string or null
     safety          {"triage_level": string, "output_actions": list of strings}

   List order is significant (citations and tool calls in the order they happened).
2. Serialise it as canonical JSON (RFC 8785 / JCS for the value types used here): object keys
   sorted by their UTF-16 code units, no whitespace, strings as UTF-8 with only ``"``, ``\\``
   and control characters below U+0020 escaped (``\\b \\t \\n \\f \\r`` by name, the rest as
   ``\\u00xx`` lowercase), integers in plain decimal (no floats anywhere; integers must fit in
   ±(2^53 − 1) so every JCS implementation prints them identically), ``true``/``false``/``null``.
3. ``record_hash = keccak256(b"healtrace.evidence.v1\\x00" ‖ canonical_json)`` — 32 bytes, the
   Merkle leaf (see :mod:`healtrace.chain.merkle`).

Why the prefix (leaf/node domain separation)
--------------------------------------------
OpenZeppelin warns that if a leaf's preimage could be 64 bytes, an internal node
``keccak256(a ‖ b)`` could be presented as a leaf (a second-preimage attack); its
``StandardMerkleTree`` avoids this by double-hashing leaves. We use a distinct leaf encoding
instead, and verifiers always compute the leaf from the record, never accept a bare hash as a
leaf: a leaf preimage always begins with the 22 bytes ``healtrace.evidence.v1\\x00`` followed by
a JSON object (``{``…``}``). An internal node's preimage is two 32-byte keccak outputs; for it to
also be a leaf preimage, the first 22 bytes of a keccak output would have to equal the fixed
prefix (a 2^-176 event per node, not something an attacker can grind for) *and* the remaining
bytes would have to form a valid canonical record. The ``v1`` and the NUL also keep this hash
apart from any other keccak the project computes and let a future format change its prefix.
Receipt verification additionally checks the proof length against ``leaf_index``/``leaf_count``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from eth_hash.auto import keccak
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from healtrace.errors import InputError

__all__ = [
    "RECORD_HASH_PREFIX",
    "Citation",
    "EvidenceRecord",
    "SafetySummary",
    "ToolCallSummary",
    "build_record",
    "canonical_json",
    "format_timestamp",
    "parse_record",
    "record_hash",
    "sha256_text",
]

RECORD_HASH_PREFIX = b"healtrace.evidence.v1\x00"
MAX_SAFE_INTEGER = 2**53 - 1

Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Timestamp = Annotated[
    str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
]


class _Frozen(BaseModel):
    # Strict and closed: a record that hashes must be exactly the documented shape.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Citation(_Frozen):
    """A knowledge chunk the answer cited, by id and the hash of the chunk text."""

    chunk_id: Identifier
    doc_id: Identifier
    content_sha256: Sha256Hex


class ToolCallSummary(_Frozen):
    """A tool the turn ran: its name, and hashes of the JSON arguments and the result."""

    name: Identifier
    arguments_sha256: Sha256Hex
    result_sha256: Sha256Hex
    ok: bool


class SafetySummary(_Frozen):
    """What the safety layer decided: triage level and the output actions it applied."""

    triage_level: Identifier
    output_actions: tuple[str, ...] = ()


class EvidenceRecord(_Frozen):
    """One answer's evidence: identifiers and hashes only, no patient text."""

    version: Literal[1] = 1
    session_id: Identifier
    message_id: Identifier
    turn_id: Identifier
    tenant_id: Identifier
    created_at: Timestamp
    model: Identifier
    prompt_version: Identifier
    question_sha256: Sha256Hex
    answer_sha256: Sha256Hex
    citations: tuple[Citation, ...] = ()
    tool_calls: tuple[ToolCallSummary, ...] = ()
    consent_ref: str | None = None
    safety: SafetySummary = Field(default_factory=lambda: SafetySummary(triage_level="none"))

    def to_json_value(self) -> dict[str, Any]:
        """The record as plain JSON values (lists, dicts, str, int, bool, None)."""
        plain: dict[str, Any] = _plain(self.model_dump(mode="python"))
        return plain

    @property
    def hash(self) -> bytes:
        return record_hash(self)

    @property
    def hash_hex(self) -> str:
        """The record hash as 0x-prefixed lowercase hex (how APIs and receipts show it)."""
        return "0x" + record_hash(self).hex()


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def sha256_text(text: str) -> str:
    """Lowercase hex SHA-256 of ``text`` encoded as UTF-8 (no normalisation, no trimming)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def format_timestamp(moment: datetime) -> str:
    """``moment`` as UTC ISO 8601 with millisecond precision and ``Z``; naive means UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# --- canonical JSON ---------------------------------------------------------------------------

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f]')


def _escape_char(match: re.Match[str]) -> str:
    ch = match.group(0)
    return _ESCAPES.get(ch) or f"\\u{ord(ch):04x}"


def _encode_string(value: str, out: list[str]) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates have no UTF-8 form
        raise ValueError("strings must be valid Unicode (no lone surrogates)") from exc
    out.append('"' + _NEEDS_ESCAPE.sub(_escape_char, value) + '"')


def _encode(value: object, out: list[str]) -> None:
    # Order matters: bool is a subclass of int.
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif type(value) is int:
        if abs(value) > MAX_SAFE_INTEGER:
            raise ValueError(f"integer {value} is outside ±(2^53 - 1)")
        out.append(str(value))
    elif type(value) is str:
        _encode_string(value, out)
    elif type(value) is list or type(value) is tuple:
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    elif type(value) is dict:
        for key in value:
            if type(key) is not str:
                raise ValueError(f"object keys must be strings, not {type(key).__name__}")
        out.append("{")
        # JCS sorts keys by UTF-16 code units (differs from code points above U+FFFF).
        for i, key in enumerate(sorted(value, key=lambda k: k.encode("utf-16-be"))):
            if i:
                out.append(",")
            _encode_string(key, out)
            out.append(":")
            _encode(value[key], out)
        out.append("}")
    else:
        raise ValueError(
            f"{type(value).__name__} cannot be canonicalised (allowed: str, int, bool, None, "
            "list, dict; floats are not allowed)"
        )


def canonical_json(record: EvidenceRecord | Mapping[str, Any]) -> bytes:
    """RFC 8785-style canonical JSON bytes of ``record`` (an EvidenceRecord or a JSON object).

    Raises ValueError for anything outside str/int/bool/None/list/dict (floats included).
    """
    value = record.to_json_value() if isinstance(record, EvidenceRecord) else record
    if isinstance(value, Mapping) and type(value) is not dict:
        value = dict(value)
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode("utf-8")


def record_hash(record: EvidenceRecord | Mapping[str, Any]) -> bytes:
    """keccak256(``RECORD_HASH_PREFIX`` ‖ canonical JSON) — the record's 32-byte Merkle leaf."""
    return keccak(RECORD_HASH_PREFIX + canonical_json(record))


# --- construction and parsing -----------------------------------------------------------------


def parse_record(data: bytes | str | Mapping[str, Any]) -> EvidenceRecord:
    """Validate a record from JSON text or a parsed object; InputError(receipt_malformed)."""
    try:
        value = json.loads(data) if isinstance(data, bytes | str) else data
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"evidence record is not JSON: {exc}", code="receipt_malformed") from exc
    if not isinstance(value, Mapping):
        raise InputError("evidence record must be a JSON object", code="receipt_malformed")
    try:
        return EvidenceRecord.model_validate(_tuples(dict(value)))
    except ValidationError as exc:
        raise InputError(
            f"evidence record is invalid: {_first_error(exc)}", code="receipt_malformed"
        ) from exc


def _tuples(value: Any) -> Any:
    # Strict mode wants tuples for tuple fields; JSON gives lists.
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "record"
    return f"{where}: {err['msg']}"


def build_record(
    *,
    session_id: str,
    message_id: str,
    turn_id: str,
    tenant_id: str,
    model: str,
    prompt_version: str,
    question: str | None = None,
    answer: str | None = None,
    question_sha256: str | None = None,
    answer_sha256: str | None = None,
    created_at: datetime | str | None = None,
    citations: Iterable[Mapping[str, str]] = (),
    tool_calls: Iterable[Mapping[str, Any]] = (),
    consent_ref: str | None = None,
    triage_level: str = "none",
    output_actions: Iterable[str] = (),
) -> EvidenceRecord:
    """Build a record from plain values; texts are hashed here and never stored.

    Pass either ``question``/``answer`` (hashed with :func:`sha256_text`) or their hashes.
    Tool calls may give ``arguments``/``result`` (a string is hashed as is; any other JSON value
    as ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)``, which unlike
    the record itself allows floats) or ``arguments_sha256``/``result_sha256``.
    Raises InputError(receipt_malformed) on bad values.
    """
    q_hash = question_sha256 if question is None else sha256_text(question)
    a_hash = answer_sha256 if answer is None else sha256_text(answer)
    if q_hash is None or a_hash is None:
        raise InputError("give the question and answer or their sha256", code="receipt_malformed")
    if created_at is None:
        created_at = datetime.now(UTC)
    stamp = format_timestamp(created_at) if isinstance(created_at, datetime) else created_at
    calls: list[dict[str, Any]] = []
    for call in tool_calls:
        item: dict[str, Any] = {"name": call["name"], "ok": bool(call.get("ok", True))}
        for part in ("arguments", "result"):
            if f"{part}_sha256" in call:
                item[f"{part}_sha256"] = call[f"{part}_sha256"]
            else:
                raw = call.get(part)
                text = raw if isinstance(raw, str) else _dumps(raw)
                item[f"{part}_sha256"] = sha256_text(text)
        calls.append(item)
    return parse_record(
        {
            "version": 1,
            "session_id": session_id,
            "message_id": message_id,
            "turn_id": turn_id,
            "tenant_id": tenant_id,
            "created_at": stamp,
            "model": model,
            "prompt_version": prompt_version,
            "question_sha256": q_hash,
            "answer_sha256": a_hash,
            "citations": [dict(c) for c in citations],
            "tool_calls": calls,
            "consent_ref": consent_ref,
            "safety": {"triage_level": triage_level, "output_actions": list(output_actions)},
        }
    )


def _dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
