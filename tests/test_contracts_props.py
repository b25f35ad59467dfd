"""Random operation sequences against the token and consent contracts, checked against models.

Each example starts from the freshly deployed chain (a snapshot revert). Examples are few and
short on purpose: every step is a real EVM transaction.

Invariants:
* token: total supply equals the sum of balances (and the model's), and never exceeds the cap;
  a batch id mints at most once.
* consent: ``isGranted`` is exactly "granted, not revoked since, and ``expiresAt`` > now", so a
  revoked grant is never valid until granted again and no grant is valid after its expiry.
"""

from __future__ import annotations

from functools import cache

from eth_tester.exceptions import TransactionFailed
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule

from healtrace.chain.consent_sig import ConsentDomain, GrantConsent, RevokeConsent, sign
from tests._evm import Chain, decode_error, new_chain, revert_data

CAP = 10_000
SETTINGS = settings(max_examples=8, stateful_step_count=10, deadline=None)


@cache
def shared_chain() -> Chain:
    """One chain for all examples, with a small-cap token of its own, reset per example."""
    chain = new_chain()
    chain.token = chain.deploy("HealthToken", "Small", "SML", CAP, chain.admin)
    token = chain.token.functions
    chain.send(token.grantRole(token.MINTER_ROLE().call(), chain.minter), chain.admin)
    chain.send(token.grantRole(token.PAUSER_ROLE().call(), chain.pauser), chain.admin)
    chain.snapshot = chain.tester.take_snapshot()
    return chain


def error_of(chain: Chain, exc: TransactionFailed, contract_name: str) -> str:
    contract = chain.token if contract_name == "token" else chain.consent
    return decode_error(contract, revert_data(exc))[0]


HOLDERS = st.integers(min_value=0, max_value=3)
AMOUNTS = st.integers(min_value=0, max_value=4_000)


class TokenMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.chain = shared_chain()
        self.chain.reset()
        self.holders = self.chain.others[:4]
        self.balances = dict.fromkeys(self.holders, 0)
        self.paused = False
        self.used_batches: set[bytes] = set()

    @property
    def supply(self) -> int:
        return sum(self.balances.values())

    def expect(self, error: str | None, fn: object, sender: str) -> None:
        """Send ``fn`` and check it succeeds (error None) or reverts with ``error``."""
        try:
            self.chain.send(fn, sender)  # type: ignore[arg-type]
        except TransactionFailed as exc:
            assert error is not None, f"unexpected revert {error_of(self.chain, exc, 'token')}"
            assert error_of(self.chain, exc, "token") == error
        else:
            assert error is None, f"expected {error}"

    @rule(to=HOLDERS, amount=AMOUNTS)
    def mint(self, to: int, amount: int) -> None:
        fn = self.chain.token.functions.mint(self.holders[to], amount)
        error = "EnforcedPause" if self.paused else None
        if error is None and self.supply + amount > CAP:
            error = "ERC20ExceededCap"
        self.expect(error, fn, self.chain.minter)
        if error is None:
            self.balances[self.holders[to]] += amount

    @rule(
        batch=st.integers(min_value=1, max_value=4),
        mints=st.lists(st.tuples(HOLDERS, AMOUNTS), max_size=3),
    )
    def mint_batch(self, batch: int, mints: list[tuple[int, int]]) -> None:
        batch_id = batch.to_bytes(32, "big")
        recipients = [self.holders[i] for i, _ in mints]
        amounts = [a for _, a in mints]
        fn = self.chain.token.functions.mintBatch(batch_id, recipients, amounts)
        if batch_id in self.used_batches:
            error: str | None = "BatchAlreadyMinted"
        elif self.paused and mints:
            error = "EnforcedPause"
        elif self.supply + sum(amounts) > CAP:
            error = "ERC20ExceededCap"
        else:
            error = None
        self.expect(error, fn, self.chain.minter)
        if error is None:
            self.used_batches.add(batch_id)
            for to, amount in zip(recipients, amounts, strict=True):
                self.balances[to] += amount
        assert self.chain.token.functions.batchMinted(batch_id).call() == (
            batch_id in self.used_batches
        )

    @rule(src=HOLDERS, dst=HOLDERS, amount=AMOUNTS)
    def transfer(self, src: int, dst: int, amount: int) -> None:
        sender, receiver = self.holders[src], self.holders[dst]
        fn = self.chain.token.functions.transfer(receiver, amount)
        if self.paused:
            error: str | None = "EnforcedPause"
        elif self.balances[sender] < amount:
            error = "ERC20InsufficientBalance"
        else:
            error = None
        self.expect(error, fn, sender)
        if error is None:
            self.balances[sender] -= amount
            self.balances[receiver] += amount

    @rule()
    def toggle_pause(self) -> None:
        token = self.chain.token.functions
        self.chain.send(token.unpause() if self.paused else token.pause(), self.chain.pauser)
        self.paused = not self.paused

    @invariant()
    def supply_is_the_sum_of_balances_and_within_the_cap(self) -> None:
        token = self.chain.token.functions
        total = token.totalSupply().call()
        on_chain = {h: token.balanceOf(h).call() for h in self.holders}
        assert on_chain == self.balances
        assert total == sum(on_chain.values()) == self.supply
        assert total <= CAP
        assert token.paused().call() == self.paused


PATIENTS = st.integers(min_value=0, max_value=1)
GRANTEES = st.integers(min_value=0, max_value=1)
SCOPES = st.sampled_from([b"\x01" * 32, b"\x02" * 32])
LIFETIMES = st.integers(min_value=-3, max_value=400)
BOOLS = st.booleans()
Key = tuple[str, str, bytes]


class ConsentMachine(RuleBasedStateMachine):
    granted = Bundle("granted")

    def __init__(self) -> None:
        super().__init__()
        self.chain = shared_chain()
        self.chain.reset()
        self.patients = self.chain.others[:2]
        self.grantees = self.chain.others[2:4]
        self.domain = ConsentDomain(self.chain.w3.eth.chain_id, self.chain.consent.address)
        # (patient, grantee, scope) -> (expiresAt, revoked)
        self.model: dict[Key, tuple[int, bool]] = {}
        self.nonces = dict.fromkeys(self.patients, 0)

    def submit(self, direct: bool, patient: str, fn: object) -> str | None:
        """Send ``fn`` (from the patient, or from the relayer); the error name or None."""
        sender = patient if direct else self.chain.relayer
        try:
            self.chain.send(fn, sender)  # type: ignore[arg-type]
        except TransactionFailed as exc:
            return error_of(self.chain, exc, "consent")
        if not direct:
            self.nonces[patient] += 1
        return None

    def do_grant(self, key: Key, lifetime: int, direct: bool) -> bool:
        patient, grantee, scope = key
        expires = self.chain.now() + lifetime
        consent = self.chain.consent.functions
        if direct:
            fn = consent.grant(grantee, scope, expires)
        else:
            message = GrantConsent(
                patient, grantee, scope, expires, self.nonces[patient], self.chain.now() + 60
            )
            signature = sign(self.chain.key(patient), self.domain, message)
            fn = consent.grantBySig(*message.contract_args(signature))
        tx_time = self.chain.now() + 1  # chain time runs ahead of the clock: parent + 1
        error = self.submit(direct, patient, fn)
        if expires <= tx_time:
            assert error == "ExpiryNotInFuture"
            return False
        assert error is None
        self.model[key] = (expires, False)
        return True

    def do_revoke(self, key: Key, direct: bool) -> None:
        patient, grantee, scope = key
        consent = self.chain.consent.functions
        if direct:
            fn = consent.revoke(grantee, scope)
        else:
            message = RevokeConsent(
                patient, grantee, scope, self.nonces[patient], self.chain.now() + 60
            )
            signature = sign(self.chain.key(patient), self.domain, message)
            fn = consent.revokeBySig(*message.contract_args(signature))
        error = self.submit(direct, patient, fn)
        known = self.model.get(key)
        if known is None:
            assert error == "GrantNotFound"
        elif known[1]:
            assert error == "AlreadyRevoked"
        else:
            assert error is None
            self.model[key] = (known[0], True)

    def key(self, p: int, g: int, scope: bytes) -> Key:
        return (self.patients[p], self.grantees[g], scope)

    @rule(target=granted, p=PATIENTS, g=GRANTEES, scope=SCOPES, lifetime=LIFETIMES, direct=BOOLS)
    def grant(self, p: int, g: int, scope: bytes, lifetime: int, direct: bool) -> object:
        key = self.key(p, g, scope)
        return key if self.do_grant(key, lifetime, direct) else multiple()

    @rule(key=granted, lifetime=LIFETIMES, direct=BOOLS)
    def regrant(self, key: Key, lifetime: int, direct: bool) -> None:
        self.do_grant(key, lifetime, direct)

    @rule(key=granted, direct=BOOLS)
    def revoke(self, key: Key, direct: bool) -> None:
        self.do_revoke(key, direct)

    @rule(p=PATIENTS, g=GRANTEES, scope=SCOPES, direct=BOOLS)
    def revoke_any(self, p: int, g: int, scope: bytes, direct: bool) -> None:
        self.do_revoke(self.key(p, g, scope), direct)

    @rule(seconds=st.integers(min_value=1, max_value=300))
    def wait(self, seconds: int) -> None:
        self.chain.travel(seconds)

    @rule(p=PATIENTS)
    def replayed_signature_fails(self, p: int) -> None:
        patient = self.patients[p]
        if self.nonces[patient] == 0 or not self.model:
            return  # nothing was signed yet
        key = next(iter(self.model))
        message = RevokeConsent(
            patient, key[1], key[2], self.nonces[patient] - 1, self.chain.now() + 60
        )
        signature = sign(self.chain.key(patient), self.domain, message)
        fn = self.chain.consent.functions.revokeBySig(*message.contract_args(signature))
        assert self.submit(False, patient, fn) == "InvalidAccountNonce"

    @invariant()
    def is_granted_matches_the_model(self) -> None:
        now = self.chain.now()
        consent = self.chain.consent.functions
        for (patient, grantee, scope), (expires, revoked) in self.model.items():
            valid = consent.isGranted(patient, grantee, scope).call()
            if revoked:
                assert not valid, "a revoked grant is valid"
            if expires <= now:
                assert not valid, "an expired grant is valid"
            assert valid == (not revoked and expires > now)


TestTokenMachine = TokenMachine.TestCase
TestTokenMachine.settings = SETTINGS
TestConsentMachine = ConsentMachine.TestCase
TestConsentMachine.settings = SETTINGS
