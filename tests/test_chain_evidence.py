"""Evidence records: golden canonical bytes, key-order independence, Unicode, rejected types,
no patient text in the record, and the domain-separated leaf hash."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from healtrace.chain.evidence import (
    RECORD_HASH_PREFIX,
    EvidenceRecord,
    build_record,
    canonical_json,
    format_timestamp,
    parse_record,
    record_hash,
    sha256_text,
)
from healtrace.chain.merkle import MerkleTree
from healtrace.errors import InputError

QUESTION = "我头痛，发烧38.5度"
ANSWER = "Rest and drink fluids."

GOLDEN = (
    '{"answer_sha256":"cc6f4328bca7b1a655d2fbc0d54b261900b3a2c1adbdda6368e00484b9ca44f9",'
    '"citations":[{"chunk_id":"c1","content_sha256":"'
    + "a"
    * 64
    + '","doc_id":"d1"}],"consent_ref":null,"created_at":"2026-11-22T11:00:00.123Z",'
    '"message_id":"m1","model":"qwen2.5-7b","prompt_version":"2026-11-01",'
    '"question_sha256":"cca66f917ad592c53c00eb549888da19ee19ca36b28c4fa4433f10cab46c9665",'
    '"safety":{"output_actions":["disclaimer"],"triage_level":"routine"},'
    '"session_id":"s1","tenant_id":"acme","tool_calls":[{"arguments_sha256":"'
    + "b" * 64
    + '","name":"labs","ok":true,"result_sha256":"'
    + "c" * 64
    + '"}],"turn_id":"t1","version":1}'
)


def golden_record(**overrides: Any) -> EvidenceRecord:
    values: dict[str, Any] = {
        "session_id": "s1",
        "message_id": "m1",
        "turn_id": "t1",
        "tenant_id": "acme",
        "model": "qwen2.5-7b",
        "prompt_version": "2026-11-01",
        "question": QUESTION,
        "answer": ANSWER,
        "created_at": "2026-11-22T11:00:00.123Z",
        "citations": [{"chunk_id": "c1", "doc_id": "d1", "content_sha256": "a" * 64}],
        "tool_calls": [
            {"name": "labs", "arguments_sha256": "b" * 64, "result_sha256": "c" * 64, "ok": True}
        ],
        "triage_level": "routine",
        "output_actions": ["disclaimer"],
        **overrides,
    }
    return build_record(**values)


def test_golden_canonical_bytes_and_hash() -> None:
    record = golden_record()
    assert record.question_sha256 == hashlib.sha256(QUESTION.encode()).hexdigest()
    assert canonical_json(record) == GOLDEN.encode("utf-8")
    assert record_hash(record) == keccak(b"healtrace.evidence.v1\x00" + GOLDEN.encode())
    assert record_hash(record).hex() == (
        "cabe15ec61b78c098442c77b11ef234b17c0a252ab8df9dfef6e2aa1ca74f5c6"
    )
    assert record.hash == record_hash(record) and len(record.hash) == 32


def test_key_order_does_not_matter() -> None:
    value = json.loads(GOLDEN)
    reversed_value = dict(reversed(list(value.items())))
    reversed_value["safety"] = dict(reversed(list(value["safety"].items())))
    assert canonical_json(reversed_value) == GOLDEN.encode()
    assert record_hash(reversed_value) == record_hash(golden_record())
    assert parse_record(json.dumps(reversed_value, indent=2)) == golden_record()


def test_unicode_is_raw_utf8_and_keys_sort_by_utf16() -> None:
    out = canonical_json({"问题": '头痛 "x"\n\x01\u2028', "a": "é"})
    assert out == '{"a":"é","问题":"头痛 \\"x\\"\\n\\u0001\u2028"}'.encode()
    # U+1F600 is a surrogate pair (D83D…) in UTF-16, so it sorts before U+FFFF (JCS rule).
    assert canonical_json({"\uffff": 1, "\U0001f600": 2}) == '{"😀":2,"\uffff":1}'.encode()
    with pytest.raises(ValueError, match="surrogate"):
        canonical_json({"a": "\ud800"})


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**53) + 1, 2**53 - 1)
        | st.text(st.characters(max_codepoint=0xFFFF, exclude_categories=["Cs"])),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.text(st.characters(max_codepoint=0xFFFF, exclude_categories=["Cs"])),
                inner,
                max_size=4,
            )
        ),
        max_leaves=15,
    )
)
def test_matches_python_json_for_bmp_values(value: Any) -> None:
    # For BMP-only keys, UTF-16 order equals code point order, so json.dumps must agree.
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json({"v": value}) == ('{"v":' + expected + "}").encode()


@pytest.mark.parametrize(
    "bad",
    [1.5, 1.0, float("nan"), b"bytes", {1: "x"}, {"a": {1, 2}}, 2**53, datetime.now(UTC)],
)
def test_other_types_are_rejected(bad: object) -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": bad})


def test_record_holds_no_patient_text() -> None:
    fields = set(EvidenceRecord.model_fields)
    assert fields == {
        "version",
        "session_id",
        "message_id",
        "turn_id",
        "tenant_id",
        "created_at",
        "model",
        "prompt_version",
        "question_sha256",
        "answer_sha256",
        "citations",
        "tool_calls",
        "consent_ref",
        "safety",
    }
    record = golden_record(
        tool_calls=[{"name": "labs", "arguments": {"text": "ALT 88 U/L"}, "result": "高"}]
    )
    blob = canonical_json(record).decode()
    for secret in (QUESTION, ANSWER, "ALT 88", "高"):
        assert secret not in blob
    with pytest.raises(InputError) as err:
        parse_record({**json.loads(GOLDEN), "question": QUESTION})
    assert err.value.code == "receipt_malformed" and "question" in err.value.detail


def test_record_validation() -> None:
    value = json.loads(GOLDEN)
    for key, bad in [
        ("answer_sha256", "A" * 64),
        ("created_at", "2026-11-22T11:00:00Z"),
        ("version", 2),
        ("tool_calls", [{"name": "x", "arguments_sha256": "b" * 64}]),
    ]:
        with pytest.raises(InputError) as err:
            parse_record({**value, key: bad})
        assert err.value.code == "receipt_malformed" and key in err.value.detail
    with pytest.raises(InputError):
        parse_record(b"not json")
    with pytest.raises(InputError):
        build_record(
            session_id="s",
            message_id="m",
            turn_id="t",
            tenant_id="x",
            model="m",
            prompt_version="p",
        )


def test_timestamps_are_utc_milliseconds() -> None:
    cst = timezone(timedelta(hours=8))
    moment = datetime(2026, 11, 22, 19, 0, 0, 123456, tzinfo=cst)
    assert format_timestamp(moment) == "2026-11-22T11:00:00.123Z"
    assert format_timestamp(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05.000Z"
    assert golden_record(created_at=moment).created_at == "2026-11-22T11:00:00.123Z"


def test_sha256_text_is_exact_utf8() -> None:
    assert sha256_text("abc") == hashlib.sha256(b"abc").hexdigest()
    assert sha256_text("abc ") != sha256_text("abc")
    assert sha256_text("头痛") == hashlib.sha256("头痛".encode()).hexdigest()


def test_leaf_preimage_is_domain_separated_from_internal_nodes() -> None:
    record = golden_record()
    preimage = RECORD_HASH_PREFIX + canonical_json(record)
    assert record_hash(record) == keccak(preimage)
    assert record_hash(record) != keccak(canonical_json(record))
    # An internal node's preimage is two 32-byte hashes; none of ours starts with the prefix,
    # and a leaf preimage is never 64 bytes of hash: it is the prefix and a JSON object.
    assert preimage.startswith(b"healtrace.evidence.v1\x00{") and preimage.endswith(b"}")
    leaves = [golden_record(message_id=f"m{i}").hash for i in range(9)]
    tree = MerkleTree(leaves)
    for level_nodes in (leaves, [tree.root]):
        for node in level_nodes:
            assert not node.startswith(RECORD_HASH_PREFIX[:4])
