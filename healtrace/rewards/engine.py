"""The rule engine: one claim, one decision, one transaction.

``await engine.claim(event)`` judges a :class:`RewardEvent` against its rule and the
ledger and records the decision — awarded, denied with a reason, or (streak rules) recorded
as a day of progress — in a single transaction:

* **Idempotent.** ``(tenant_id, event_id)`` is unique. A repeated event id returns the
  first decision (``replayed``) and pays nothing more; the same id with different content
  is refused (``reward_event_conflict``).
* **Caps hold under concurrency.** Every claim first takes its patient's row in
  ``reward_accounts`` (inserted if missing, then ``SELECT … FOR UPDATE``), and only then reads
  the ledger for caps, cool-downs, bursts, duplicates and streaks. On PostgreSQL this
  serialises one patient's claims across the pool's connections (and across API workers),
  while different patients proceed in parallel; two claims with the same event id for
  *different* patients meet at the unique index instead, and the loser is re-read. On
  SQLite the single writer thread already serialises transactions; the insert makes each
  claim a write transaction from its first statement, so a second process sharing the file
  waits on the write lock instead of deciding from a stale read.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from healtrace.errors import ConfigurationError, localized
from healtrace.rewards.checks import READING_TYPES, CheckedPayload, check_payload
from healtrace.rewards.config import RewardsConfig
from healtrace.rewards.errors import RewardConflict, RewardInputError
from healtrace.rewards.models import RewardAccount, RewardClaim, RewardLedgerEntry
from healtrace.rewards.rules import EventType, RewardRule, RuleSet, format_amount
from healtrace.storage import Database
from healtrace.storage.models import iso_utc, utcnow

__all__ = ["ClaimResult", "ClaimStatus", "RewardEngine", "RewardEvent"]

ClaimStatus = Literal["awarded", "denied", "recorded"]


class RewardEvent(BaseModel):
    """A claim that an activity happened. ``event_id`` is chosen by the client and is the
    idempotency key within the tenant: send the same id again after a time-out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")
    tenant_id: str = Field(min_length=1, max_length=64)
    patient_id: str = Field(min_length=1, max_length=64)
    type: str = Field(min_length=1, max_length=64)
    occurred_at: AwareDatetime
    payload: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """The decision on one claim (as first made, also when replayed)."""

    claim_id: str
    event_id: str
    patient_id: str
    event_type: str
    rule_id: str
    status: ClaimStatus
    #: Message code: ``reward_awarded``, ``reward_streak_progress`` or the denial reason.
    reason: str
    #: Paid amount in the token's smallest unit (0 unless awarded).
    amount: int
    occurred_at: datetime
    received_at: datetime
    #: True when this is the earlier decision on the same event id (nothing new was paid).
    replayed: bool = False
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def awarded(self) -> bool:
        return self.status == "awarded"

    def title(self, locale: str) -> str:
        zh = locale.lower().startswith("zh")
        return str(self.params.get("title_zh" if zh else "title_en", self.rule_id))

    def message(self, locale: str) -> str:
        params = {k: v for k, v in self.params.items() if not k.startswith("title_")}
        params.setdefault("detail", "")
        return localized(self.reason, locale, title=self.title(locale), **params)

    def to_json(self, locale: str) -> dict[str, Any]:
        details = {k: v for k, v in self.params.items() if not k.startswith("title_")}
        return {
            "claim_id": self.claim_id,
            "event_id": self.event_id,
            "patient_id": self.patient_id,
            "type": self.event_type,
            "rule_id": self.rule_id,
            "status": self.status,
            "reason": self.reason,
            "message": self.message(locale),
            "title": self.title(locale),
            "amount": format_amount(self.amount),
            "amount_units": str(self.amount),
            "occurred_at": iso_utc(self.occurred_at),
            "received_at": iso_utc(self.received_at),
            "replayed": self.replayed,
            "details": details,
        }


def _aware(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _result(row: RewardClaim, *, replayed: bool) -> ClaimResult:
    return ClaimResult(
        claim_id=row.id,
        event_id=row.event_id,
        patient_id=row.patient_id,
        event_type=row.event_type,
        rule_id=row.rule_id,
        status=cast(ClaimStatus, row.status),
        reason=row.reason,
        amount=int(row.amount),
        occurred_at=_aware(row.occurred_at),
        received_at=_aware(row.received_at),
        replayed=replayed,
        params=dict(row.params or {}),
    )


def request_hash(event: RewardEvent) -> str:
    """What the event id stands for: the same id must always mean this claim."""
    body = {
        "patient_id": event.patient_id,
        "type": event.type,
        "occurred_at": iso_utc(event.occurred_at),
        "payload": event.payload,
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class _Verdict:
    status: ClaimStatus
    reason: str
    valid: bool
    params: dict[str, Any] = field(default_factory=dict)


class RewardEngine:
    """Judges claims against ``rules`` and records them in ``db``."""

    def __init__(
        self,
        db: Database,
        rules: RuleSet,
        config: RewardsConfig,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.rules = rules
        self.config = config
        self.clock = clock
        try:
            self.zone = ZoneInfo(config.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigurationError(
                f"HEALTRACE_REWARDS__TIMEZONE: {config.timezone!r} is not a known time zone"
            ) from exc

    def rule_for(self, event_type: str) -> RewardRule:
        """The rule rewarding ``event_type``; RewardInputError(reward_unknown_type) if none."""
        rule = self.rules.get(event_type)
        if rule is None:
            raise RewardInputError(
                f"no rule rewards {event_type!r}",
                code="reward_unknown_type",
                event_type=event_type[:64],
                known=", ".join(sorted(self.rules)),
            )
        return rule

    def day_of(self, at: datetime) -> date:
        return at.astimezone(self.zone).date()

    async def claim(self, event: RewardEvent) -> ClaimResult:
        """Judge and record ``event``; see the module docstring for the guarantees.

        Raises RewardInputError for claims that cannot be judged (nothing is stored) and
        RewardConflict when the event id was used for a different claim.
        """
        if not self.config.enabled:
            raise RewardInputError("rewards are disabled", code="reward_disabled")
        rule = self.rule_for(event.type)
        now = _aware(self.clock())
        occurred = _aware(event.occurred_at)
        max_age = timedelta(seconds=self.config.max_event_age_s)
        if occurred > now + timedelta(seconds=self.config.max_clock_skew_s) or (
            occurred < now - max_age
        ):
            raise RewardInputError(
                f"occurred_at {iso_utc(occurred)} is outside the accepted window",
                code="reward_event_time_invalid",
                max_age_h=round(self.config.max_event_age_s / 3600, 1),
            )
        checked = check_payload(cast(EventType, event.type), event.payload, occurred)
        digest = request_hash(event)
        decide = self._decision(event, rule, checked, digest, occurred, now)
        for _attempt in range(3):
            try:
                return await self.db.run(decide)
            except IntegrityError:
                # The event id (or the reading) was recorded by a transaction we did not
                # wait for (another patient's lock): the next attempt sees it and replays.
                continue
        return await self.db.run(decide)

    def _decision(
        self,
        event: RewardEvent,
        rule: RewardRule,
        checked: CheckedPayload,
        digest: str,
        occurred: datetime,
        now: datetime,
    ) -> Callable[[Session], ClaimResult]:
        tenant, patient = event.tenant_id, event.patient_id
        today = self.day_of(occurred)

        def decide(s: Session) -> ClaimResult:
            self._lock_patient(s, tenant, patient, now)
            existing = s.scalar(
                select(RewardClaim).where(
                    RewardClaim.tenant_id == tenant, RewardClaim.event_id == event.event_id
                )
            )
            if existing is not None:
                if existing.request_hash != digest:
                    raise RewardConflict(
                        f"event id {event.event_id} was used for another claim",
                        event_id=event.event_id,
                    )
                return _result(existing, replayed=True)
            verdict = self._judge(s, event, rule, checked, occurred, today, now)
            params = {"title_en": rule.title.en, "title_zh": rule.title.zh, **verdict.params}
            amount = rule.amount if verdict.status == "awarded" else 0
            if verdict.status == "awarded":
                params["amount"] = format_amount(amount)
            row = RewardClaim(
                id=uuid.uuid4().hex,
                tenant_id=tenant,
                event_id=event.event_id,
                patient_id=patient,
                event_type=event.type,
                rule_id=rule.id,
                status=verdict.status,
                reason=verdict.reason,
                params=params,
                amount=str(amount),
                occurred_at=occurred,
                day=today.isoformat(),
                received_at=now,
                request_hash=digest,
                fingerprint=checked.fingerprint if verdict.valid else None,
                valid=verdict.valid,
                payload=checked.payload,
            )
            s.add(row)
            if verdict.status == "awarded":
                s.add(
                    RewardLedgerEntry(
                        kind="award",
                        tenant_id=tenant,
                        patient_id=patient,
                        claim_id=row.id,
                        rule_id=rule.id,
                        amount=str(amount),
                        created_at=now,
                    )
                )
            s.flush()
            return _result(row, replayed=False)

        return decide

    @staticmethod
    def _lock_patient(s: Session, tenant: str, patient: str, now: datetime) -> None:
        dialect = s.get_bind().dialect.name
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        s.execute(
            insert(RewardAccount)
            .values(tenant_id=tenant, patient_id=patient, created_at=now)
            .on_conflict_do_nothing()
        )
        s.execute(
            select(RewardAccount.patient_id)
            .where(RewardAccount.tenant_id == tenant, RewardAccount.patient_id == patient)
            .with_for_update()
        )

    def _judge(
        self,
        s: Session,
        event: RewardEvent,
        rule: RewardRule,
        checked: CheckedPayload,
        occurred: datetime,
        today: date,
        now: datetime,
    ) -> _Verdict:
        mine = (
            RewardClaim.tenant_id == event.tenant_id,
            RewardClaim.patient_id == event.patient_id,
        )
        if checked.denial:
            return _Verdict("denied", checked.denial, False, {"detail": checked.detail})
        window_start = now - timedelta(seconds=self.config.burst_window_s)
        recent = s.scalar(
            select(func.count()).where(
                *mine, RewardClaim.event_type == event.type, RewardClaim.received_at > window_start
            )
        )
        if int(recent or 0) >= self.config.burst_max_events:
            return _Verdict(
                "denied",
                "reward_burst",
                False,
                {
                    "limit": self.config.burst_max_events,
                    "window_min": round(self.config.burst_window_s / 60, 1),
                },
            )
        if checked.fingerprint is not None:
            seen = s.scalar(
                select(RewardClaim.id).where(*mine, RewardClaim.fingerprint == checked.fingerprint)
            )
            if seen is not None:
                code = (
                    "reward_duplicate_reading"
                    if event.type in READING_TYPES
                    else "reward_duplicate_submission"
                )
                return _Verdict("denied", code, False, {"original_claim_id": seen})
        awards = (*mine, RewardClaim.rule_id == rule.id, RewardClaim.status == "awarded")
        if rule.streak_days:
            days_in_row = self._streak(s, event, rule, today)
            if days_in_row < rule.streak_days:
                return _Verdict(
                    "recorded",
                    "reward_streak_progress",
                    True,
                    {
                        "days": days_in_row,
                        "streak_days": rule.streak_days,
                        "amount": format_amount(rule.amount),
                    },
                )
        if rule.cooldown_s:
            cooldown = timedelta(seconds=rule.cooldown_s)
            last = s.scalar(
                select(func.max(RewardClaim.occurred_at)).where(
                    *awards,
                    RewardClaim.occurred_at > occurred - cooldown,
                    RewardClaim.occurred_at < occurred + cooldown,
                )
            )
            if last is not None:
                again = _aware(last) + cooldown
                return _Verdict(
                    "denied",
                    "reward_cooldown",
                    True,
                    {"available_at": iso_utc(again, "minutes")},
                )
        if rule.daily_cap is not None:
            on_day = s.scalar(
                select(func.count()).where(*awards, RewardClaim.day == today.isoformat())
            )
            if int(on_day or 0) >= rule.daily_cap:
                return _Verdict(
                    "denied", "reward_cap_reached", True, {"cap": "daily", "limit": rule.daily_cap}
                )
        if rule.lifetime_cap is not None:
            ever = s.scalar(select(func.count()).where(*awards))
            if int(ever or 0) >= rule.lifetime_cap:
                return _Verdict(
                    "denied",
                    "reward_cap_reached",
                    True,
                    {"cap": "lifetime", "limit": rule.lifetime_cap},
                )
        return _Verdict("awarded", "reward_awarded", True)

    def _streak(self, s: Session, event: RewardEvent, rule: RewardRule, today: date) -> int:
        """Consecutive days up to ``today`` with a valid claim of this type, counting only
        days after the rule last paid (each award starts a new streak)."""
        mine = (
            RewardClaim.tenant_id == event.tenant_id,
            RewardClaim.patient_id == event.patient_id,
        )
        last_paid = s.scalar(
            select(func.max(RewardClaim.day)).where(
                *mine, RewardClaim.rule_id == rule.id, RewardClaim.status == "awarded"
            )
        )
        earliest = (today - timedelta(days=rule.streak_days - 1)).isoformat()
        floor = max(earliest, last_paid) if last_paid else earliest
        if last_paid and today.isoformat() <= last_paid:
            return 0
        logged = set(
            s.scalars(
                select(RewardClaim.day)
                .where(
                    *mine,
                    RewardClaim.event_type == event.type,
                    RewardClaim.valid.is_(True),
                    RewardClaim.day >= floor,
                    RewardClaim.day <= today.isoformat(),
                )
                .distinct()
            )
        )
        if last_paid:
            logged.discard(last_paid)
        logged.add(today.isoformat())
        run = 0
        day = today
        while day.isoformat() in logged:
            run += 1
            day -= timedelta(days=1)
        return run
