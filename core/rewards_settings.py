"""Rewards settlement's settings (``programs/rewards``, docs/rewards.md): a part of the one
settings object (``core.settings.Settings`` inherits them). Read from the environment with the
prefix ``OVPP_`` like every other setting."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class RewardsSettings(BaseSettings):
    rewards_auto_settle: bool = Field(
        True,
        description="Settle each demand-response event by itself once it has ended and the "
        "grace period has passed (else only `settleEvent`).",
    )
    rewards_grace_minutes: int = Field(
        15,
        ge=0,
        description="Minutes after an event ends before its contributions are computed: late "
        "telemetry still counts.",
    )
    rewards_claims_per_transaction: int = Field(
        50,
        ge=1,
        le=400,
        description="Rewards paid per claim transaction (`claimMany`) when an event settles.",
    )
    rewards_baseline_window_minutes: int = Field(
        60,
        ge=5,
        description="Default window of the meter-before/after baseline: the average load over "
        "this many minutes before the event (docs/rewards.md).",
    )
    rewards_performance_floor_bps: int = Field(
        2_000,
        ge=0,
        le=10_000,
        description="Default floor of the reward rule: below this performance (basis points "
        "of what was asked) an event earns nothing.",
    )
