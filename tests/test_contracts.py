"""HealTrace's contracts, executed for real on an in-process EVM (eth-tester + py-evm).

Covers the evidence registry (roles, anchor-once, OpenZeppelin-compatible Merkle proofs built
by ``healtrace.chain.merkle``), the reward token (roles, cap, pause, batch idempotency), the
consent registry (direct and EIP-712 signed grants and revocations, expiry), and the committed
artifacts (compiler settings, the members the receipt verifier relies on).
Random operation sequences are in ``test_contracts_props.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address
from web3.logs import DISCARD

from healtrace.chain.consent_sig import (
    DOMAIN_NAME,
    DOMAIN_VERSION,
    GRANT_TYPE,
    REVOKE_TYPE,
    ConsentDomain,
    GrantConsent,
    RevokeConsent,
    digest,
    grant_id,
    sign,
    typed_data,
)
from healtrace.chain.contracts import CONTRACT_NAMES, load_artifact
from healtrace.chain.merkle import MerkleTree
from healtrace.chain.receipt import ANCHORED_EVENT_TOPIC, REGISTRY_ABI
from tests._evm import TOKEN_CAP, Chain, new_chain, reverts

ZERO32 = b"\x00" * 32
SCOPE = keccak(b"healtrace:scope:observations:read")


@pytest.fixture(scope="module")
def _deployed() -> Chain:
    return new_chain()


@pytest.fixture
def chain(_deployed: Chain) -> Iterator[Chain]:
    _deployed.reset()
    yield _deployed


def leaf(i: int) -> bytes:
    return keccak(f"evidence-{i}".encode())


# --- EvidenceRegistry -------------------------------------------------------------------------


def test_anchor_stores_block_time_and_emits_the_verifier_event(chain: Chain) -> None:
    root = leaf(1)
    registry = chain.registry.functions
    assert registry.anchoredAt(root).call() == 0
    receipt = chain.send(registry.anchor(root, 3, "healtrace://batches/1"), chain.anchorer)

    block_time = chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"]
    assert registry.anchoredAt(root).call() == block_time
    (log,) = receipt["logs"]
    assert bytes(log["topics"][0]) == ANCHORED_EVENT_TOPIC
    assert bytes(log["topics"][1]) == root
    (event,) = chain.registry.events.Anchored().process_receipt(receipt)
    assert dict(event["args"]) == {
        "root": root,
        "leafCount": 3,
        "batchUri": "healtrace://batches/1",
        "timestamp": block_time,
    }
    # Gas is deterministic for a given input; bound regressions (measured here: 50,404).
    assert receipt["gasUsed"] < 60_000


def test_only_the_anchorer_may_anchor(chain: Chain) -> None:
    registry = chain.registry.functions
    role = registry.ANCHORER_ROLE().call()
    assert role == keccak(b"ANCHORER_ROLE")
    for account in (chain.admin, chain.others[0]):
        with reverts(chain.registry, "AccessControlUnauthorizedAccount", account, role):
            registry.anchor(leaf(1), 1, "").transact({"from": account})
    chain.send(registry.grantRole(role, chain.others[0]), chain.admin)
    chain.send(registry.anchor(leaf(1), 1, ""), chain.others[0])
    assert registry.anchoredAt(leaf(1)).call() > 0


def test_only_the_admin_may_grant_the_anchorer_role(chain: Chain) -> None:
    registry = chain.registry.functions
    role = registry.ANCHORER_ROLE().call()
    admin_role = registry.DEFAULT_ADMIN_ROLE().call()
    with reverts(chain.registry, "AccessControlUnauthorizedAccount", chain.anchorer, admin_role):
        registry.grantRole(role, chain.others[0]).transact({"from": chain.anchorer})


def test_zero_root_and_zero_leaf_count_are_rejected(chain: Chain) -> None:
    registry = chain.registry.functions
    with reverts(chain.registry, "ZeroRoot"):
        registry.anchor(ZERO32, 1, "").transact({"from": chain.anchorer})
    with reverts(chain.registry, "ZeroLeafCount"):
        registry.anchor(leaf(1), 0, "").transact({"from": chain.anchorer})


def test_a_root_is_anchored_once_and_never_changed(chain: Chain) -> None:
    registry = chain.registry.functions
    chain.send(registry.anchor(leaf(1), 2, "first"), chain.anchorer)
    first = registry.anchoredAt(leaf(1)).call()
    chain.travel(3_600)
    with reverts(chain.registry, "AlreadyAnchored", leaf(1), first):
        registry.anchor(leaf(1), 5, "second").transact({"from": chain.anchorer})
    assert registry.anchoredAt(leaf(1)).call() == first


def test_constructor_rejects_zero_addresses(chain: Chain) -> None:
    zero = "0x" + "00" * 20
    for args in ((zero, chain.anchorer), (chain.admin, zero)):
        with reverts(chain.registry, "ZeroAddress"):
            chain.deploy("EvidenceRegistry", *args)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_verify_accepts_python_merkle_proofs(chain: Chain, size: int) -> None:
    leaves = [leaf(i) for i in range(size)]
    tree = MerkleTree(leaves)
    registry = chain.registry.functions
    assert not registry.verify(tree.root, tree.proof(0), leaves[0]).call(), "not anchored yet"
    chain.send(registry.anchor(tree.root, size, f"batch-{size}"), chain.anchorer)

    for i in range(size):
        assert registry.verify(tree.root, tree.proof(i), leaves[i]).call(), f"leaf {i}"
    assert not registry.verify(tree.root, tree.proof(0), leaf(size + 1)).call()
    if size > 1:
        assert not registry.verify(tree.root, tree.proof(0), leaves[1]).call()
        tampered = [bytes(32 - 1) + b"\x01", *tree.proof(0)[1:]]
        assert not registry.verify(tree.root, tampered, leaves[0]).call()
        assert not registry.verify(tree.root, [], leaves[0]).call()


def test_verify_rejects_a_valid_proof_against_an_unanchored_root(chain: Chain) -> None:
    tree = MerkleTree([leaf(0), leaf(1)])
    other = MerkleTree([leaf(2), leaf(3)])
    chain.send(chain.registry.functions.anchor(other.root, 2, ""), chain.anchorer)
    assert not chain.registry.functions.verify(tree.root, tree.proof(0), leaf(0)).call()


def test_deployed_code_is_the_committed_runtime_bytecode(chain: Chain) -> None:
    # EvidenceRegistry has no immutables, so its on-chain code equals the artifact exactly.
    code = chain.w3.eth.get_code(chain.registry.address)
    assert "0x" + bytes(code).hex() == load_artifact("EvidenceRegistry").deployed_bytecode


# --- HealthToken ------------------------------------------------------------------------------


def test_token_metadata_and_roles(chain: Chain) -> None:
    token = chain.token.functions
    assert token.name().call() == "HealTrace Health"
    assert token.symbol().call() == "HEAL"
    assert token.decimals().call() == 18
    assert token.cap().call() == TOKEN_CAP
    assert token.MINTER_ROLE().call() == keccak(b"MINTER_ROLE")
    assert token.PAUSER_ROLE().call() == keccak(b"PAUSER_ROLE")
    assert token.hasRole(token.DEFAULT_ADMIN_ROLE().call(), chain.admin).call()
    assert not token.hasRole(token.MINTER_ROLE().call(), chain.admin).call()


def test_only_minters_mint(chain: Chain) -> None:
    token = chain.token.functions
    role = token.MINTER_ROLE().call()
    user = chain.others[0]
    for account in (chain.admin, chain.pauser, user):
        with reverts(chain.token, "AccessControlUnauthorizedAccount", account, role):
            token.mint(user, 1).transact({"from": account})
        with reverts(chain.token, "AccessControlUnauthorizedAccount", account, role):
            token.mintBatch(leaf(1), [user], [1]).transact({"from": account})
    chain.send(token.mint(user, 5), chain.minter)
    assert token.balanceOf(user).call() == 5


def test_supply_cap(chain: Chain) -> None:
    token = chain.token.functions
    user = chain.others[0]
    chain.send(token.mint(user, TOKEN_CAP - 10), chain.minter)
    with reverts(chain.token, "ERC20ExceededCap", TOKEN_CAP + 1, TOKEN_CAP):
        token.mint(user, 11).transact({"from": chain.minter})
    # A batch that would pass the cap fails whole and leaves its id unused.
    with reverts(chain.token, "ERC20ExceededCap"):
        token.mintBatch(leaf(1), [user, user], [5, 6]).transact({"from": chain.minter})
    assert not token.batchMinted(leaf(1)).call()
    chain.send(token.mint(user, 10), chain.minter)
    assert token.totalSupply().call() == TOKEN_CAP


def test_cap_must_be_positive_and_admin_set(chain: Chain) -> None:
    with reverts(chain.token, "ERC20InvalidCap", 0):
        chain.deploy("HealthToken", "T", "T", 0, chain.admin)
    with reverts(chain.token, "ZeroAddress"):
        chain.deploy("HealthToken", "T", "T", 1, "0x" + "00" * 20)


def test_pause_blocks_transfers_and_mints(chain: Chain) -> None:
    token = chain.token.functions
    alice, bob = chain.others[:2]
    chain.send(token.mint(alice, 100), chain.minter)
    with reverts(chain.token, "AccessControlUnauthorizedAccount"):
        token.pause().transact({"from": chain.minter})
    chain.send(token.pause(), chain.pauser)
    assert token.paused().call()
    with reverts(chain.token, "EnforcedPause"):
        token.transfer(bob, 1).transact({"from": alice})
    chain.send(token.approve(bob, 10), alice)  # approvals move no tokens
    with reverts(chain.token, "EnforcedPause"):
        token.transferFrom(alice, bob, 1).transact({"from": bob})
    with reverts(chain.token, "EnforcedPause"):
        token.mint(bob, 1).transact({"from": chain.minter})
    with reverts(chain.token, "EnforcedPause"):
        token.mintBatch(leaf(1), [bob], [1]).transact({"from": chain.minter})
    assert not token.batchMinted(leaf(1)).call()
    with reverts(chain.token, "AccessControlUnauthorizedAccount"):
        token.unpause().transact({"from": chain.admin})

    chain.send(token.unpause(), chain.pauser)
    chain.send(token.transfer(bob, 1), alice)
    chain.send(token.mintBatch(leaf(1), [bob], [1]), chain.minter)
    assert token.balanceOf(bob).call() == 2


def test_mint_batch_mints_once_per_batch_id(chain: Chain) -> None:
    token = chain.token.functions
    alice, bob = chain.others[:2]
    batch = keccak(b"rewards-batch-2026-01-01")
    assert not token.batchMinted(batch).call()
    receipt = chain.send(token.mintBatch(batch, [alice, bob, alice], [1, 2, 3]), chain.minter)
    (event,) = chain.token.events.BatchMinted().process_receipt(receipt, errors=DISCARD)
    assert dict(event["args"]) == {"batchId": batch, "recipients": 3, "total": 6}
    assert token.batchMinted(batch).call()
    assert (token.balanceOf(alice).call(), token.balanceOf(bob).call()) == (4, 2)

    # A batcher restarted mid-flight resubmits: nothing is minted twice, whatever the content.
    for recipients, amounts in (([alice, bob, alice], [1, 2, 3]), ([bob], [100])):
        with reverts(chain.token, "BatchAlreadyMinted", batch):
            token.mintBatch(batch, recipients, amounts).transact({"from": chain.minter})
    assert token.totalSupply().call() == 6


def test_mint_batch_rejects_bad_input(chain: Chain) -> None:
    token = chain.token.functions
    alice = chain.others[0]
    with reverts(chain.token, "LengthMismatch", 2, 1):
        token.mintBatch(leaf(1), [alice, alice], [1]).transact({"from": chain.minter})
    with reverts(chain.token, "ZeroBatchId"):
        token.mintBatch(ZERO32, [alice], [1]).transact({"from": chain.minter})
    assert not token.batchMinted(leaf(1)).call()
    with reverts(chain.token, "ERC20InvalidReceiver", "0x" + "00" * 20):
        token.mintBatch(leaf(1), ["0x" + "00" * 20], [1]).transact({"from": chain.minter})


# --- ConsentRegistry --------------------------------------------------------------------------


def domain(chain: Chain) -> ConsentDomain:
    return ConsentDomain(chain_id=chain.w3.eth.chain_id, verifying_contract=chain.consent.address)


def test_grant_and_revoke_by_the_patient(chain: Chain) -> None:
    consent = chain.consent.functions
    patient, grantee = chain.others[:2]
    gid = grant_id(patient, grantee, SCOPE)
    assert consent.grantIdOf(patient, grantee, SCOPE).call() == gid
    assert not consent.isGranted(patient, grantee, SCOPE).call()
    expires = chain.now() + 3_600

    receipt = chain.send(consent.grant(grantee, SCOPE, expires), patient)
    (event,) = chain.consent.events.Granted().process_receipt(receipt)
    assert dict(event["args"]) == {
        "grantId": gid,
        "patient": patient,
        "grantee": grantee,
        "scopeHash": SCOPE,
        "expiresAt": expires,
    }
    assert consent.isGranted(patient, grantee, SCOPE).call()
    assert consent.grants(gid).call() == (patient, grantee, expires, False, SCOPE)
    assert not consent.isGranted(grantee, patient, SCOPE).call(), "grants are directional"

    receipt = chain.send(consent.revoke(grantee, SCOPE), patient)
    (event,) = chain.consent.events.Revoked().process_receipt(receipt)
    assert dict(event["args"]) == {
        "grantId": gid,
        "patient": patient,
        "grantee": grantee,
        "scopeHash": SCOPE,
    }
    assert not consent.isGranted(patient, grantee, SCOPE).call()
    assert consent.grants(gid).call() == (patient, grantee, expires, True, SCOPE)
    with reverts(chain.consent, "AlreadyRevoked", gid):
        consent.revoke(grantee, SCOPE).transact({"from": patient})

    chain.send(consent.grant(grantee, SCOPE, expires), patient)  # granting again restores it
    assert consent.isGranted(patient, grantee, SCOPE).call()


def test_only_the_patient_revokes_their_grant(chain: Chain) -> None:
    consent = chain.consent.functions
    patient, grantee = chain.others[:2]
    chain.send(consent.grant(grantee, SCOPE, chain.now() + 100), patient)
    # Anyone else's revoke addresses their own (non-existent) grant.
    for account in (grantee, chain.relayer):
        with reverts(chain.consent, "GrantNotFound", grant_id(account, grantee, SCOPE)):
            consent.revoke(grantee, SCOPE).transact({"from": account})
    assert consent.isGranted(patient, grantee, SCOPE).call()


def test_grant_expires(chain: Chain) -> None:
    consent = chain.consent.functions
    patient, grantee = chain.others[:2]
    expires = chain.now() + 100
    chain.send(consent.grant(grantee, SCOPE, expires), patient)
    chain.travel(expires - 1 - chain.now())
    assert consent.isGranted(patient, grantee, SCOPE).call()
    chain.travel(1)
    assert chain.now() == expires
    assert not consent.isGranted(patient, grantee, SCOPE).call(), "valid while expiresAt > now"
    chain.travel(86_400)
    assert not consent.isGranted(patient, grantee, SCOPE).call()
    # An expired grant can still be revoked (recorded) and renewed.
    chain.send(consent.revoke(grantee, SCOPE), patient)
    chain.send(consent.grant(grantee, SCOPE, chain.now() + 100), patient)
    assert consent.isGranted(patient, grantee, SCOPE).call()


def test_grant_rejects_bad_input(chain: Chain) -> None:
    consent = chain.consent.functions
    patient, grantee = chain.others[:2]
    zero = "0x" + "00" * 20
    with reverts(chain.consent, "ZeroGrantee"):
        consent.grant(zero, SCOPE, chain.now() + 100).transact({"from": patient})
    with reverts(chain.consent, "ZeroScope"):
        consent.grant(grantee, ZERO32, chain.now() + 100).transact({"from": patient})
    next_block = chain.now() + 1
    with reverts(chain.consent, "ExpiryNotInFuture", next_block):
        consent.grant(grantee, SCOPE, next_block).transact({"from": patient})
    with reverts(chain.consent, "GrantNotFound"):
        consent.revoke(grantee, SCOPE).transact({"from": patient})


def test_domain_and_type_hashes_match_python(chain: Chain) -> None:
    consent = chain.consent.functions
    assert consent.GRANT_TYPEHASH().call() == keccak(GRANT_TYPE.encode())
    assert consent.REVOKE_TYPEHASH().call() == keccak(REVOKE_TYPE.encode())
    fields = consent.eip712Domain().call()
    assert tuple(fields[1:5]) == (
        DOMAIN_NAME,
        DOMAIN_VERSION,
        chain.w3.eth.chain_id,
        chain.consent.address,
    )
    message = GrantConsent(chain.others[0], chain.others[1], SCOPE, 1, 0, 1)
    signable = encode_typed_data(full_message=typed_data(domain(chain), message))
    assert consent.DOMAIN_SEPARATOR().call() == signable.header
    json.dumps(typed_data(domain(chain), message))  # plain JSON, for a browser wallet


def signed_grant(chain: Chain, patient: str, **changes: int) -> tuple[GrantConsent, bytes]:
    fields = {
        "expires_at": chain.now() + 3_600,
        "nonce": chain.consent.functions.nonces(patient).call(),
        "deadline": chain.now() + 600,
        **changes,
    }
    message = GrantConsent(patient, chain.others[1], SCOPE, **fields)
    return message, sign(chain.key(patient), domain(chain), message)


def test_grant_by_signature_submitted_by_a_relayer(chain: Chain) -> None:
    consent = chain.consent.functions
    patient = chain.others[0]
    message, signature = signed_grant(chain, patient)
    receipt = chain.send(consent.grantBySig(*message.contract_args(signature)), chain.relayer)
    (event,) = chain.consent.events.Granted().process_receipt(receipt)
    assert event["args"]["patient"] == patient
    assert consent.isGranted(patient, message.grantee, SCOPE).call()
    assert consent.nonces(patient).call() == 1
    assert not consent.isGranted(chain.relayer, message.grantee, SCOPE).call()


def test_replayed_signature_is_rejected(chain: Chain) -> None:
    consent = chain.consent.functions
    patient = chain.others[0]
    message, signature = signed_grant(chain, patient)
    chain.send(consent.grantBySig(*message.contract_args(signature)), chain.relayer)
    chain.send(consent.revoke(message.grantee, SCOPE), patient)
    with reverts(chain.consent, "InvalidAccountNonce", patient, 1):
        consent.grantBySig(*message.contract_args(signature)).transact({"from": chain.relayer})
    assert not consent.isGranted(patient, message.grantee, SCOPE).call()


def test_signature_by_another_key_is_rejected(chain: Chain) -> None:
    consent = chain.consent.functions
    patient, grantee, forger = chain.others[0], chain.others[1], chain.relayer
    message, _ = signed_grant(chain, patient)
    with pytest.raises(ValueError, match="not the patient"):
        sign(chain.key(forger), domain(chain), message)
    signable = encode_typed_data(full_message=typed_data(domain(chain), message))
    forged = bytes(Account.sign_message(signable, chain.key(forger)).signature)
    with reverts(chain.consent, "InvalidSignature", patient):
        consent.grantBySig(*message.contract_args(forged)).transact({"from": forger})
    assert not consent.isGranted(patient, grantee, SCOPE).call()
    assert consent.nonces(patient).call() == 0


def test_relayer_cannot_alter_a_signed_message(chain: Chain) -> None:
    consent = chain.consent.functions
    patient = chain.others[0]
    message, signature = signed_grant(chain, patient)
    args = list(message.contract_args(signature))
    args[3] += 365 * 86_400  # a longer expiry than the patient signed
    with reverts(chain.consent, "InvalidSignature", patient):
        consent.grantBySig(*args).transact({"from": chain.relayer})
    args = list(message.contract_args(signature))
    args[1] = chain.relayer  # another grantee
    with reverts(chain.consent, "InvalidSignature", patient):
        consent.grantBySig(*args).transact({"from": chain.relayer})


def test_signature_for_another_chain_or_contract_is_rejected(chain: Chain) -> None:
    consent = chain.consent.functions
    patient = chain.others[0]
    message, _ = signed_grant(chain, patient)
    for other in (
        ConsentDomain(chain.w3.eth.chain_id + 1, chain.consent.address),
        ConsentDomain(chain.w3.eth.chain_id, chain.registry.address),
    ):
        signature = sign(chain.key(patient), other, message)
        with reverts(chain.consent, "InvalidSignature", patient):
            consent.grantBySig(*message.contract_args(signature)).transact({"from": chain.relayer})


def test_expired_deadline_is_rejected(chain: Chain) -> None:
    consent = chain.consent.functions
    patient = chain.others[0]
    deadline = chain.now() + 10
    message, signature = signed_grant(chain, patient, deadline=deadline)
    chain.travel(10)  # the next block is one second past the deadline
    with reverts(chain.consent, "ExpiredSignature", deadline):
        consent.grantBySig(*message.contract_args(signature)).transact({"from": chain.relayer})


def test_revoke_by_signature(chain: Chain) -> None:
    consent = chain.consent.functions
    patient = chain.others[0]
    message, signature = signed_grant(chain, patient)
    chain.send(consent.grantBySig(*message.contract_args(signature)), chain.relayer)

    revoke = RevokeConsent(patient, message.grantee, SCOPE, nonce=1, deadline=chain.now() + 60)
    revoke_sig = sign(chain.key(patient), domain(chain), revoke)
    receipt = chain.send(consent.revokeBySig(*revoke.contract_args(revoke_sig)), chain.relayer)
    (event,) = chain.consent.events.Revoked().process_receipt(receipt)
    assert event["args"]["grantId"] == grant_id(patient, message.grantee, SCOPE)
    assert not consent.isGranted(patient, message.grantee, SCOPE).call()
    with reverts(chain.consent, "InvalidAccountNonce", patient, 2):
        consent.revokeBySig(*revoke.contract_args(revoke_sig)).transact({"from": chain.relayer})
    # A grant signature is no revoke signature (the types differ).
    grant2, grant_sig = signed_grant(chain, patient)
    forged = RevokeConsent(patient, message.grantee, SCOPE, grant2.nonce, grant2.deadline)
    with reverts(chain.consent, "InvalidSignature", patient):
        consent.revokeBySig(*forged.contract_args(grant_sig)).transact({"from": chain.relayer})


def test_digest_is_what_the_patient_key_signs(chain: Chain) -> None:
    patient = chain.others[0]
    message, signature = signed_grant(chain, patient)
    recovered = Account._recover_hash(digest(domain(chain), message), signature=signature)
    assert recovered == patient


def test_consent_messages_validate_their_fields() -> None:
    address = to_checksum_address("0x" + "11" * 20)
    with pytest.raises(ValueError, match="scope_hash"):
        GrantConsent(address, address, b"short", 1, 0, 1)
    with pytest.raises(ValueError, match="expires_at"):
        GrantConsent(address, address, SCOPE, 2**64, 0, 1)
    with pytest.raises(ValueError, match="grantee"):
        RevokeConsent(address, "not an address", SCOPE, 0, 1)
    lower = GrantConsent(address.lower(), address.lower(), SCOPE, 1, 0, 1)
    assert lower.patient == address, "addresses are checksummed"


# --- Artifacts --------------------------------------------------------------------------------


def test_artifacts_load_with_the_pinned_compiler_settings() -> None:
    assert set(CONTRACT_NAMES) == {"ConsentRegistry", "EvidenceRegistry", "HealthToken"}
    for name in CONTRACT_NAMES:
        artifact = load_artifact(name)
        assert artifact.name == name
        # solc appends CBOR metadata ending in its version: "solc" 0x000825 (0.8.37).
        assert artifact.bytecode.endswith("64736f6c63430008250033")
        assert artifact.deployed_bytecode.endswith("64736f6c63430008250033")
        assert artifact.compiler_version.startswith("0.8.37+")
        assert artifact == load_artifact(name) and hash(artifact) == hash(load_artifact(name))
    raw = json.loads(
        resources.files("healtrace.chain")
        .joinpath("artifacts", "EvidenceRegistry.json")
        .read_text()
    )
    assert raw["settings"] == {"evmVersion": "cancun", "optimizer": {"enabled": True, "runs": 200}}
    with pytest.raises(ValueError, match="unknown contract"):
        load_artifact("Nope")  # type: ignore[arg-type]


def test_registry_abi_has_exactly_what_the_receipt_verifier_uses() -> None:
    abi = load_artifact("EvidenceRegistry").abi
    (anchored_at,) = [e for e in abi if e.get("name") == "anchoredAt"]
    assert anchored_at["type"] == "function" and anchored_at["stateMutability"] == "view"
    assert [i["type"] for i in anchored_at["inputs"]] == ["bytes32"]
    assert [o["type"] for o in anchored_at["outputs"]] == ["uint64"]
    (event,) = [e for e in abi if e.get("type") == "event" and e.get("name") == "Anchored"]
    signature = f"Anchored({','.join(i['type'] for i in event['inputs'])})"
    assert keccak(signature.encode()) == ANCHORED_EVENT_TOPIC
    assert [i["indexed"] for i in event["inputs"]] == [True, False, False, False]
    # The verifier's hand-written ABI is the compiled one, less solc's internalType notes.
    for entry in REGISTRY_ABI:
        (compiled,) = [e for e in abi if e.get("name") == entry["name"]]
        assert without_internal_types(compiled) == entry


def without_internal_types(value: Any) -> Any:
    if isinstance(value, list):
        return [without_internal_types(v) for v in value]
    if isinstance(value, dict):
        return {k: without_internal_types(v) for k, v in value.items() if k != "internalType"}
    return value
