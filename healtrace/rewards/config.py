"""Settings of health-behaviour rewards (``HEALTRACE_REWARDS__*``)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class RewardsConfig(BaseModel):
    """Reward rules, caps and the minting of HealthToken."""

    #: Accept reward claims at all. Off: claims are refused with ``reward_disabled``.
    enabled: bool = True
    #: A rules YAML file replacing the bundled ``healtrace/rewards/data/rules.yaml``.
    rules_path: str = ""
    #: The time zone whose calendar days the daily caps and streaks count in.
    timezone: str = "UTC"
    #: Claims for activities older than this are refused (backfilling streaks is abuse) …
    max_event_age_s: float = Field(default=172_800.0, gt=0)
    #: … and so are activities further in the future than this (a client's clock may run fast).
    max_clock_skew_s: float = Field(default=300.0, ge=0)
    #: Burst check: more than ``burst_max_events`` claims of one type by one patient within
    #: ``burst_window_s`` seconds (counted when received, paid or not) are denied.
    burst_window_s: float = Field(default=600.0, gt=0)
    burst_max_events: int = Field(default=10, ge=1)
    #: Largest claim body accepted over REST, in bytes.
    max_claim_bytes: int = Field(default=16_384, ge=256)
    #: Mint awards as HealthToken from this process. Off: awards stay pending in the ledger.
    minting: bool = True
    #: A mint batch is sent when this many awards wait …
    mint_batch_size: int = Field(default=100, ge=1)
    #: … or when the oldest waiting award is this old.
    mint_interval_s: float = Field(default=60.0, gt=0)
    #: Most awards in one ``mintBatch`` transaction (bounded by the block's gas).
    mint_max_batch: int = Field(default=200, ge=1)
    #: Retries when the node is unreachable: exponential backoff between these bounds.
    retry_base_s: float = Field(default=1.0, gt=0)
    retry_max_s: float = Field(default=60.0, gt=0)
