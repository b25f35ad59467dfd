"""Health-behaviour rewards: rules, an idempotent ledger, and HealthToken minting (issue #9).

Names load lazily: :mod:`healtrace.config` imports ``healtrace.rewards.config``, and the
service modules import the settings back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from healtrace._lazy import lazy_getattr as _lazy_getattr

if TYPE_CHECKING:
    from healtrace.rewards.addresses import DictAddresses, PatientAddresses
    from healtrace.rewards.batcher import MintBatcher
    from healtrace.rewards.config import RewardsConfig
    from healtrace.rewards.engine import ClaimResult, ClaimStatus, RewardEngine, RewardEvent
    from healtrace.rewards.errors import RewardConflict, RewardInputError
    from healtrace.rewards.ledger import Balance, HistoryItem, HistoryPage, RewardsLedger
    from healtrace.rewards.minter import FakeTokenMinter, MintTx, TokenMinter, Web3TokenMinter
    from healtrace.rewards.rules import (
        EVENT_TYPES,
        EventType,
        RewardRule,
        RuleSet,
        format_amount,
        load_rules,
        parse_amount,
    )
    from healtrace.rewards.service import RewardsService

_WHERE = {
    "Balance": "ledger",
    "ClaimResult": "engine",
    "ClaimStatus": "engine",
    "DictAddresses": "addresses",
    "EVENT_TYPES": "rules",
    "EventType": "rules",
    "FakeTokenMinter": "minter",
    "HistoryItem": "ledger",
    "HistoryPage": "ledger",
    "MintBatcher": "batcher",
    "MintTx": "minter",
    "PatientAddresses": "addresses",
    "RewardConflict": "errors",
    "RewardEngine": "engine",
    "RewardEvent": "engine",
    "RewardInputError": "errors",
    "RewardRule": "rules",
    "RewardsConfig": "config",
    "RewardsLedger": "ledger",
    "RewardsService": "service",
    "RuleSet": "rules",
    "TokenMinter": "minter",
    "Web3TokenMinter": "minter",
    "format_amount": "rules",
    "load_rules": "rules",
    "parse_amount": "rules",
}

__all__ = [
    "EVENT_TYPES",
    "Balance",
    "ClaimResult",
    "ClaimStatus",
    "DictAddresses",
    "EventType",
    "FakeTokenMinter",
    "HistoryItem",
    "HistoryPage",
    "MintBatcher",
    "MintTx",
    "PatientAddresses",
    "RewardConflict",
    "RewardEngine",
    "RewardEvent",
    "RewardInputError",
    "RewardRule",
    "RewardsConfig",
    "RewardsLedger",
    "RewardsService",
    "RuleSet",
    "TokenMinter",
    "Web3TokenMinter",
    "format_amount",
    "load_rules",
    "parse_amount",
]

__getattr__ = _lazy_getattr(__name__, _WHERE, globals())
