"""Properties of the parsers that read untrusted input: pasted lab text, WeChat callback XML
and its safe-mode AES, and evidence receipts with their Merkle proofs.

Each parser may refuse input only with its documented error (``InputError`` with a
``labs_*`` or ``receipt_malformed`` code, ``XmlError``, ``SignatureError``); well-formed input
round-trips. ``HEALTRACE_FUZZ_EXAMPLES`` sets the examples per property (docs/fuzzing.md).
"""

from __future__ import annotations

import base64
import json
import os
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healtrace.chain.evidence import build_record
from healtrace.chain.merkle import MerkleTree, verify_proof
from healtrace.chain.receipt import Receipt, make_receipt, parse_receipt, verify_offline
from healtrace.errors import InputError
from healtrace.labs.parse_text import parse_lab_text
from healtrace.labs.service import MAX_TEXT_CHARS, interpret_input, read_results
from healtrace.wechat import WechatConfig
from healtrace.wechat._xml import XmlError, parse_xml, text_reply
from healtrace.wechat.crypto import MessageCrypto, SignatureError, signature, signature_ok

EXAMPLES = max(1, int(os.environ.get("HEALTRACE_FUZZ_EXAMPLES", "150")))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: Properties whose examples cost more (a whole lab interpretation, AES, a Merkle tree).
FUZZ_SLOW = settings(FUZZ, max_examples=max(1, EXAMPLES // 3))

# --------------------------------------------------------------------------- labs

_FULL_WIDTH = str.maketrans("0123456789.-()", "０１２３４５６７８９．－（）")
LAB_WORDS = [
    "血红蛋白",
    "HGB",
    "Glucose",
    "葡萄糖",
    "K+",
    "钾",
    "Na",
    "钠",
    "肌酐",
    "Creatinine",
    "ALT",
    "AST",
    "TSH",
    "eGFR",
    "HbA1c",
    "WBC",
    "白细胞",
    "PLT",
    "血小板",
    "CRP",
    "尿蛋白",
    "mmol/L",
    "mg/dL",
    "g/L",
    "U/L",
    "×10^9/L",
    "x10⁹/L",
    "10*9/L",
    "%",
    "μmol/L",
    "mIU/L",
    "参考值",
    "参考范围",
    "Ref range:",
    "(",
    ")",
    "[",
    "]",
    "-",
    "~",
    "–",
    "至",
    "to",
    "↑",
    "↓",
    "H",
    "L",
    "HH",
    "偏高",
    "偏低",
    "*",
    "<",
    ">",
    "≤",
    "≥",
    "+",
    "++",
    "阴性",
    "阳性",
    "negative",
    "trace",
    "1+",
    "男",
    "女",
    "M",
    "F",
    ":",
    "：",
    ",",
    ";",
    "\t",
    "\n",
    "６．８",
    "１２３",
    "1e400",
    "NaN",
    "inf",
    "-0",
    "0.000000000001",
    "999999999999.999999999999",
]
lab_numbers = st.builds(
    lambda whole, frac: f"{whole}.{frac}" if frac else str(whole),
    st.integers(0, 10**13),
    st.none() | st.integers(0, 10**13).map(str),
)
lab_text = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(LAB_WORDS) | lab_numbers | st.just(" "), max_size=60).map(" ".join),
    st.lists(st.sampled_from(LAB_WORDS) | lab_numbers, max_size=60).map("".join),
)
LAB_REFUSALS = {"labs_no_results", "labs_input_too_large"}


@FUZZ
@given(text=lab_text)
def test_lab_text_parser_never_raises(text: str) -> None:
    results, warnings = parse_lab_text(text)
    for r in results:
        assert r.value == r.value and r.value >= 0, r
        assert r.line >= 1 and r.source == "text"
    assert all(w.line >= 1 for w in warnings)


@FUZZ_SLOW
@given(text=lab_text, locale=st.sampled_from(["en", "zh-CN"]))
def test_lab_interpretation_refuses_only_with_labs_codes(text: str, locale: str) -> None:
    """What ``POST /v1/labs/interpret`` runs: a report, or a documented refusal."""
    try:
        _report, out = interpret_input(text=text, locale=locale)
    except InputError as exc:
        assert exc.code in LAB_REFUSALS, exc.code
        return
    json.dumps(out)  # the API serialises it as is


def test_lab_text_over_the_limit_is_refused() -> None:
    with pytest.raises(InputError) as refused:
        read_results(text="K 4.2 mmol/L\n" * (MAX_TEXT_CHARS // 13 + 1))
    assert refused.value.code == "labs_input_too_large"


#: Analytes whose printed name comes back unchanged, with a unit they are reported in.
LAB_LINES = [
    ("Creatinine", "mg/dL"),
    ("ALT", "U/L"),
    ("K", "mmol/L"),
    ("钾", "mmol/L"),
    ("Glucose", "mmol/L"),
    ("总胆固醇", "mmol/L"),
    ("血红蛋白 HGB", "g/L"),
    ("TSH", "mIU/L"),
    ("Potassium (serum)", "mmol/L"),
]
decimal = st.builds(
    lambda whole, frac: f"{whole}.{frac}" if frac else str(whole),
    st.integers(0, 9999),
    st.sampled_from(["", "0", "1", "25", "5", "75", "05"]),
)
LAYOUTS = [
    "{name} {value} {unit} ({low}-{high})",
    "{name}: {value} {unit} [{low} - {high}]",
    "{name} {value} {unit} 参考值 {low}-{high}",
    "{name} {value} {unit} Ref range: {low}-{high}",
    "{name}\t{value}\t{unit}\t{low}~{high}",
    "{name} {value} {unit} {low}–{high}",
]


@FUZZ
@given(
    analyte=st.sampled_from(LAB_LINES),
    value=decimal,
    bounds=st.tuples(decimal, decimal).filter(lambda b: float(b[0]) < float(b[1])),
    layout=st.sampled_from(LAYOUTS),
    full_width=st.booleans(),
)
def test_well_formed_lab_lines_round_trip(
    analyte: tuple[str, str],
    value: str,
    bounds: tuple[str, str],
    layout: str,
    full_width: bool,
) -> None:
    name, unit = analyte
    low, high = bounds
    line = layout.format(name=name, value=value, unit=unit, low=low, high=high)
    if full_width:
        # Patients paste from Chinese reports: full-width digits, points and brackets.
        line = line.translate(_FULL_WIDTH)
    results, warnings = parse_lab_text(line)
    assert warnings == [], (line, warnings)
    assert len(results) == 1, (line, results)
    got = results[0]
    assert (got.name, got.value, got.unit) == (name, float(value), unit), line
    assert (got.ref_low, got.ref_high) == (float(low), float(high)), line


# --------------------------------------------------------------------------- WeChat XML

xml_chars = st.characters(
    codec="utf-8", exclude_categories=["Cs", "Cc"], exclude_characters="\ufffe\uffff"
)
xml_value = st.text(xml_chars, max_size=60)
TAGS = ["ToUserName", "FromUserName", "CreateTime", "MsgType", "Content", "MsgId", "MediaId"]
xmlish_token = st.one_of(
    st.sampled_from(
        [
            "<xml>",
            "</xml>",
            "<xml/>",
            "<![CDATA[",
            "]]>",
            "<!--",
            "-->",
            "&amp;",
            "&lt;",
            "&#0;",
            "&#x110000;",
            "&unknown;",
            "<?xml version='1.0'?>",
            '<?xml version="1.0" encoding="UTF-16"?>',
            '<?xml version="1.0" encoding="nope"?>',
            "<!DOCTYPE x>",
            "<!ENTITY e 'x'>",
            "<a b='1' b='2'>",
            "<",
            ">",
            "/",
            "\x00",
        ]
    ),
    st.sampled_from(TAGS).map(lambda t: f"<{t}>"),
    st.sampled_from(TAGS).map(lambda t: f"</{t}>"),
    xml_value,
)
xmlish = st.lists(xmlish_token, max_size=30).map("".join)


def _xml_bytes() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=300),
        xmlish.map(lambda s: s.encode("utf-8", "surrogatepass")),
        xmlish.map(lambda s: s.encode("utf-16", "surrogatepass")),
    )


@FUZZ
@given(data=_xml_bytes())
def test_callback_xml_refuses_only_with_xml_error(data: bytes) -> None:
    try:
        fields = parse_xml(data)
    except XmlError:
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())


def _bomb(levels: int, fanout: int) -> str:
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "' + f"&lol{i - 1};" * fanout + '">' for i in range(1, levels)
    ]
    return (
        '<?xml version="1.0"?><!DOCTYPE xml [' + "".join(entities) + "]>"
        f"<xml><Content>&lol{levels - 1};</Content><MsgType>text</MsgType></xml>"
    )


EXTERNAL = (
    '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    "<xml><Content>&xxe;</Content><MsgType>text</MsgType></xml>"
)
PARAMETER = (
    '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]>'
    "<xml><Content>x</Content></xml>"
)


@FUZZ
@given(
    document=st.one_of(
        st.builds(_bomb, st.integers(2, 12), st.integers(2, 12)),
        st.sampled_from([EXTERNAL, PARAMETER]),
    ),
    spelling=st.sampled_from(["<!DOCTYPE", "<!doctype", "<! DOCTYPE", "<!\tDocType"]),
    encoding=st.sampled_from(["utf-8", "utf-16", "utf-16-le", "utf-32"]),
)
def test_xml_bombs_and_external_entities_are_refused_unexpanded(
    document: str, spelling: str, encoding: str
) -> None:
    data = document.replace("<!DOCTYPE", spelling).encode(encoding)
    try:
        fields = parse_xml(data)
    except XmlError:
        return
    # Not refused (an encoding the byte check cannot read): nothing may have been expanded
    # or fetched, so no field holds more than the document itself said.
    assert "lol" not in fields.get("Content", ""), fields
    assert "root:" not in json.dumps(fields), fields
    assert sum(len(v) for v in fields.values()) <= len(document), fields


message_value = st.text(xml_chars.filter(lambda c: c != "\r"), min_size=1, max_size=80).filter(
    lambda v: v.strip() != ""
)


def _cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


@FUZZ
@given(
    fields=st.dictionaries(
        st.sampled_from([*TAGS, "Event", "EventKey", "Recognition", "PicUrl"]),
        message_value,
        min_size=1,
    ),
    wrap=st.sampled_from(["cdata", "escaped"]),
)
def test_valid_callback_messages_round_trip(fields: dict[str, str], wrap: str) -> None:
    def encode(value: str) -> str:
        if wrap == "cdata":
            return _cdata(value)
        return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    body = "".join(f"<{k}>{encode(v)}</{k}>" for k, v in fields.items())
    parsed = parse_xml(f"<xml>{body}</xml>".encode())
    # xmltodict strips the whitespace around text, as WeChat's own parsers do.
    assert parsed == {k: v.strip() for k, v in fields.items()}


@FUZZ
@given(content=message_value, to_user=message_value, from_user=message_value)
def test_passive_replies_round_trip(content: str, to_user: str, from_user: str) -> None:
    reply = parse_xml(text_reply(to_user=to_user, from_user=from_user, content=content).encode())
    assert reply["Content"] == content.strip()
    assert (reply["ToUserName"], reply["FromUserName"]) == (to_user.strip(), from_user.strip())
    assert reply["MsgType"] == "text"


# --------------------------------------------------------------------------- WeChat AES

token_text = st.text(string.ascii_letters + string.digits, min_size=1, max_size=32)
aes_keys = st.binary(min_size=32, max_size=32).map(
    lambda raw: base64.b64encode(raw).decode().rstrip("=")
)


def _crypto(aes_key: str, token: str, app_id: str = "wx0123456789abcdef") -> MessageCrypto:
    return MessageCrypto(WechatConfig(token=token, encoding_aes_key=aes_key, app_id=app_id))


def _envelope(xml: str) -> tuple[str, str, str, str]:
    fields = parse_xml(xml.encode())
    return fields["MsgSignature"], fields["TimeStamp"], fields["Nonce"], fields["Encrypt"]


@FUZZ_SLOW
@given(
    aes_key=aes_keys,
    token=token_text,
    plaintext=st.text(xml_chars, max_size=400),
    nonce=token_text,
)
def test_encrypt_then_decrypt_round_trips(
    aes_key: str, token: str, plaintext: str, nonce: str
) -> None:
    crypto = _crypto(aes_key, token)
    sig, timestamp, got_nonce, encrypted = _envelope(crypto.encrypt(plaintext, nonce=nonce))
    assert got_nonce == nonce
    assert crypto.decrypt(sig, timestamp, nonce, encrypted) == plaintext


def _flip(text: str, index: int, alphabet: str) -> str:
    """``text`` with the character at ``index`` replaced by a different one of ``alphabet``."""
    i = index % len(text)
    replacement = next(c for c in alphabet if c != text[i])
    return text[:i] + replacement + text[i + 1 :]


@FUZZ_SLOW
@given(
    aes_key=aes_keys,
    token=token_text,
    plaintext=st.text(xml_chars, max_size=100),
    where=st.sampled_from(["signature", "ciphertext", "timestamp", "nonce"]),
    index=st.integers(min_value=0),
)
def test_any_modified_character_is_refused(
    aes_key: str, token: str, plaintext: str, where: str, index: int
) -> None:
    crypto = _crypto(aes_key, token)
    sig, timestamp, nonce, encrypted = _envelope(crypto.encrypt(plaintext, nonce="n0nce"))
    parts = {"signature": sig, "ciphertext": encrypted, "timestamp": timestamp, "nonce": nonce}
    alphabet = {
        "signature": "0123456789abcdef",
        "ciphertext": string.ascii_letters + string.digits + "+/",
    }.get(where, string.ascii_letters + string.digits)
    parts[where] = _flip(parts[where], index, alphabet)
    with pytest.raises(SignatureError):
        crypto.decrypt(parts["signature"], parts["timestamp"], parts["nonce"], parts["ciphertext"])


@FUZZ
@given(parts=st.lists(st.text(max_size=20), min_size=1, max_size=5), index=st.integers(0))
def test_signature_check_rejects_any_modified_character(parts: list[str], index: int) -> None:
    good = signature(*parts)
    assert signature_ok(good, *parts)
    assert signature_ok(good.upper(), *parts)  # hex compares case-insensitively
    assert not signature_ok(_flip(good, index, "0123456789abcdef"), *parts)
    assert not signature_ok(good[:-1], *parts)
    assert not signature_ok("", *parts) and not signature_ok(None, *parts)


@FUZZ_SLOW
@given(
    aes_key=aes_keys,
    token=token_text,
    ciphertext=st.text(max_size=200)
    | st.binary(max_size=150).map(lambda b: base64.b64encode(b).decode()),
)
def test_signed_garbage_ciphertext_is_refused(aes_key: str, token: str, ciphertext: str) -> None:
    """A ciphertext that is correctly signed (the Token leaked, say) but not ours."""
    crypto = _crypto(aes_key, token)
    sig = signature(token, "1700000000", "nonce", ciphertext)
    with pytest.raises(SignatureError):
        crypto.decrypt(sig, "1700000000", "nonce", ciphertext)


# --------------------------------------------------------------------------- Merkle proofs

leaves = st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=70)


@FUZZ
@given(batch=leaves)
def test_every_leaf_proof_verifies(batch: list[bytes]) -> None:
    tree = MerkleTree(batch)
    for i, leaf in enumerate(batch):
        assert verify_proof(leaf, tree.proof(i), tree.root), i


def _change_byte(value: bytes, index: int, delta: int) -> bytes:
    i = index % len(value)
    return value[:i] + bytes([value[i] ^ delta]) + value[i + 1 :]


@FUZZ
@given(
    batch=leaves,
    which=st.integers(min_value=0),
    part=st.sampled_from(["leaf", "proof", "root"]),
    index=st.integers(min_value=0),
    delta=st.integers(1, 255),
)
def test_any_changed_byte_fails_verification(
    batch: list[bytes], which: int, part: str, index: int, delta: int
) -> None:
    tree = MerkleTree(batch)
    i = which % len(batch)
    leaf, proof, root = batch[i], tree.proof(i), tree.root
    if part == "leaf":
        leaf = _change_byte(leaf, index, delta)
    elif part == "root":
        root = _change_byte(root, index, delta)
    elif proof:
        k = index % len(proof)
        proof = [*proof[:k], _change_byte(proof[k], index // len(proof), delta), *proof[k + 1 :]]
    else:
        # A one-leaf tree has no proof to change: any element added must fail instead.
        proof = [_change_byte(leaf, index, delta)]
    assert not verify_proof(leaf, proof, root)


# --------------------------------------------------------------------------- receipts

CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def _receipt(count: int, index: int) -> Receipt:
    records = [
        build_record(
            session_id="s1",
            message_id=f"m{i}",
            turn_id=f"t{i}",
            tenant_id="acme",
            model="scripted",
            prompt_version="v1",
            question=f"问题 {i}",
            answer=f"answer {i}",
            created_at="2026-11-22T11:00:00.000Z",
        )
        for i in range(count)
    ]
    tree = MerkleTree([r.hash for r in records])
    return make_receipt(
        records[index],
        tree,
        index,
        chain_id=31337,
        contract=CONTRACT,
        tx_hash="0x" + "ab" * 32,
        block_number=7,
        anchored_at="2026-11-22T11:05:00Z",
    )


RECEIPTS = [_receipt(n, i) for n, i in ((1, 0), (2, 1), (5, 2), (11, 10))]


def _parse_or_refuse(data: bytes | str | dict[str, Any]) -> Receipt | None:
    try:
        return parse_receipt(data)
    except InputError as exc:
        assert exc.code == "receipt_malformed", exc.code
        return None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=15,
)


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200),
        json_values.map(json.dumps),
        st.integers(1, 5000).map(lambda d: "[" * d + "]" * d),
        st.integers(4000, 5000).map(lambda n: '{"leaf_index": ' + "9" * n + "}"),
    )
)
def test_arbitrary_receipt_json_is_refused_as_malformed(data: bytes | str) -> None:
    _parse_or_refuse(data)


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


@FUZZ
@given(
    receipt=st.sampled_from(RECEIPTS),
    field=st.sampled_from(sorted(Receipt.model_fields)),
    value=json_values
    | st.integers(1, 3000).map(lambda d: {"session_id": _nested(d)})
    | st.integers(1, 3000).map(_nested),
    action=st.sampled_from(["replace", "delete", "add"]),
)
def test_mutated_receipts_parse_or_refuse_and_verify_without_raising(
    receipt: Receipt, field: str, value: Any, action: str
) -> None:
    raw = json.loads(receipt.to_json())
    if action == "replace":
        raw[field] = value
    elif action == "delete":
        raw.pop(field, None)
    else:
        raw[f"x_{field}"] = value
    parsed = _parse_or_refuse(raw)
    if parsed is not None:
        _assert_tampering_detected(parsed, receipt)


def _assert_tampering_detected(parsed: Receipt, original: Receipt) -> None:
    """A receipt that still parses verifies offline without raising, and fails when what it
    proves changed: the record hash, the proof, the root, or an included record."""
    result = verify_offline(parsed)
    changed = (parsed.record_hash, parsed.proof, parsed.root) != (
        original.record_hash,
        original.proof,
        original.root,
    ) or (parsed.record is not None and parsed.record != original.record)
    if changed:
        assert not result.ok, (parsed, result)


@FUZZ
@given(
    receipt=st.sampled_from(RECEIPTS),
    index=st.integers(min_value=0),
    edit=st.sampled_from(["replace", "delete", "insert"]),
    char=st.characters(codec="utf-8"),
)
def test_receipt_text_edits_never_raise_and_never_verify_a_changed_proof(
    receipt: Receipt, index: int, edit: str, char: str
) -> None:
    text = receipt.to_json()
    i = index % len(text)
    if edit == "replace":
        text = text[:i] + char + text[i + 1 :]
    elif edit == "delete":
        text = text[:i] + text[i + 1 :]
    else:
        text = text[:i] + char + text[i:]
    parsed = _parse_or_refuse(text.encode("utf-8", "surrogatepass"))
    if parsed is not None:
        _assert_tampering_detected(parsed, receipt)
