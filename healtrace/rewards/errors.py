"""The rewards part's errors: bad claims (refused, nothing stored) and clashing event ids."""

from __future__ import annotations

from healtrace.errors import ConflictError, InputError

__all__ = ["RewardConflict", "RewardInputError"]


class RewardInputError(InputError):
    """A claim that cannot be judged (unknown type, malformed payload, impossible time)."""

    code = "reward_invalid_event"


class RewardConflict(ConflictError):
    """An event id reused for a different claim: the id is the claim's idempotency key."""

    code = "reward_event_conflict"
