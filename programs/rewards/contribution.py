"""A device's contribution to one event, by a rule a utility can read (docs/rewards.md): pure
functions over its telemetry, so the same figures come out wherever they are computed.

Power readings are site power in kW, positive when the site draws from the grid: what a
device delivers is the reduction below its baseline. Each reading holds until the next one,
for at most ``2 × interval`` (beyond that the device was not reporting: a gap, and nothing
counts); the reduction of a reading is capped at what the device's model can physically
discharge, and the event's energy at the model's storage (both flagged). Energy is never
negative, so a rebound does not take a reward below zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from programs.rewards.models import BaselineMethod, Response

MISSING_HOLD_FACTOR = 2
"""A reading counts for at most this many reporting intervals."""
SCALES = {None: 1.0, "": 1.0, "none": 1.0, "k": 1e3, "M": 1e6, "m": 1e-3}


@dataclass(frozen=True)
class Sample:
    at: datetime
    kw: float


def kilowatts(value: float, *, unit: str | None, scale: str | None) -> float:
    """A reading's value in kW from the unit and scale the VEN declared (``W`` unless said)."""
    factor = SCALES.get(scale, 1.0)
    if unit and unit.lower() == "kw":
        return value * factor
    return value * factor / 1000.0


@dataclass(frozen=True)
class Rule:
    baseline_method: str
    baseline_window: timedelta
    high_x: int
    high_y: int
    performance_floor_bps: int
    per_event_reward: int


@dataclass(frozen=True)
class Dispatch:
    """The event as one device saw it."""

    start: datetime
    end: datetime
    asked_kw: float
    interval_seconds: float
    max_discharge_kw: float
    energy_wh: int


@dataclass(frozen=True)
class Baseline:
    kw: float
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Contribution:
    baseline_kw: float
    asked_kw: float
    average_kw: float
    delivered_wh: int
    performance_bps: int
    expected_readings: int
    received_readings: int
    quality_bps: int
    gaps: int
    longest_gap_seconds: int
    online_seconds: int
    flags: list[str] = field(default_factory=list)


def _mean(samples: Sequence[Sample], since: datetime, until: datetime) -> float | None:
    values = [s.kw for s in samples if since <= s.at < until]
    return sum(values) / len(values) if values else None


def meter_before_after(
    samples: Sequence[Sample], dispatch: Dispatch, window: timedelta
) -> Baseline:
    """The average load over ``window`` before the event; when the device sent nothing then,
    over ``window`` after it (flagged); else 0 (flagged)."""
    before = _mean(samples, dispatch.start - window, dispatch.start)
    if before is not None:
        return Baseline(before)
    after = _mean(samples, dispatch.end, dispatch.end + window)
    if after is not None:
        return Baseline(after, ("BASELINE_AFTER",))
    return Baseline(0.0, ("NO_BASELINE_DATA",))


def high_x_of_y(samples: Sequence[Sample], dispatch: Dispatch, rule: Rule) -> Baseline:
    """The mean of the ``x`` highest of the last ``y`` days' average load over the event's
    hours (days with no readings are left out); with fewer than ``x`` such days, those there
    are (flagged); with none, the meter-before/after baseline (flagged)."""
    days = []
    for back in range(1, rule.high_y + 1):
        shift = timedelta(days=back)
        mean = _mean(samples, dispatch.start - shift, dispatch.end - shift)
        if mean is not None:
            days.append(mean)
    if not days:
        fallback = meter_before_after(samples, dispatch, rule.baseline_window)
        return Baseline(fallback.kw, ("BASELINE_FALLBACK", *fallback.flags))
    highest = sorted(days, reverse=True)[: rule.high_x]
    flags = ("BASELINE_FEW_DAYS",) if len(highest) < rule.high_x else ()
    return Baseline(sum(highest) / len(highest), flags)


def baseline_of(samples: Sequence[Sample], dispatch: Dispatch, rule: Rule) -> Baseline:
    if rule.baseline_method == BaselineMethod.HIGH_X_OF_Y:
        return high_x_of_y(samples, dispatch, rule)
    return meter_before_after(samples, dispatch, rule.baseline_window)


def history_since(dispatch: Dispatch, rule: Rule) -> datetime:
    """The earliest reading the rule reads."""
    if rule.baseline_method == BaselineMethod.HIGH_X_OF_Y:
        return dispatch.start - timedelta(days=rule.high_y)
    return dispatch.start - rule.baseline_window


def history_until(dispatch: Dispatch, rule: Rule) -> datetime:
    return dispatch.end + rule.baseline_window


def measure(
    samples: Sequence[Sample], dispatch: Dispatch, baseline: Baseline, response: str
) -> Contribution:
    """The device's contribution to the event against ``baseline``. An opt-out, or no reading
    during the event, delivers nothing."""
    inside = sorted((s for s in samples if dispatch.start <= s.at < dispatch.end), key=_at)
    duration = (dispatch.end - dispatch.start).total_seconds()
    interval = dispatch.interval_seconds
    expected = max(1, round(duration / interval))
    hold = MISSING_HOLD_FACTOR * interval
    flags = list(baseline.flags)
    energy_kws, online, gaps, longest, capped = 0.0, 0.0, 0, 0.0, False
    cursor = dispatch.start
    for i, sample in enumerate(inside):
        silent = (sample.at - cursor).total_seconds()
        if silent > hold:
            gaps += 1
        longest = max(longest, silent)
        following = inside[i + 1].at if i + 1 < len(inside) else dispatch.end
        held = min((following - sample.at).total_seconds(), hold)
        reduction = baseline.kw - sample.kw
        if reduction > dispatch.max_discharge_kw:
            reduction, capped = dispatch.max_discharge_kw, True
        energy_kws += reduction * held
        online += held
        cursor = sample.at + timedelta(seconds=held)
    tail = (dispatch.end - cursor).total_seconds()
    if tail > hold or not inside:
        gaps += 1
    longest = max(longest, tail)
    if capped:
        flags.append("CAPPED_AT_MODEL")
    delivered_wh = max(0, int(energy_kws * 1000 // 3600))
    if dispatch.energy_wh and delivered_wh > dispatch.energy_wh:
        delivered_wh = dispatch.energy_wh
        flags.append("CAPPED_AT_CAPACITY")
    if response == Response.OPT_OUT:
        flags.append("OPTED_OUT")
        delivered_wh = 0
    if not inside:
        flags.append("NO_DATA")
    average_kw = delivered_wh / (duration / 3600) / 1000
    return Contribution(
        baseline_kw=round(baseline.kw, 4),
        asked_kw=round(dispatch.asked_kw, 4),
        average_kw=round(average_kw, 4),
        delivered_wh=delivered_wh,
        performance_bps=_performance_bps(average_kw, dispatch.asked_kw),
        expected_readings=expected,
        received_readings=len(inside),
        quality_bps=min(10_000, len(inside) * 10_000 // expected),
        gaps=gaps,
        longest_gap_seconds=int(longest),
        online_seconds=int(online),
        flags=flags,
    )


def _at(sample: Sample) -> datetime:
    return sample.at


def _performance_bps(average_kw: float, asked_kw: float) -> int:
    if asked_kw <= 0:
        return 0
    return min(10_000, int(average_kw / asked_kw * 10_000))


def event_reward(contribution: Contribution, rule: Rule, *, response: str) -> int:
    """``perEventReward`` scaled by performance, nothing below the floor, for an opt-out or
    without data."""
    if response == Response.OPT_OUT or contribution.received_readings == 0:
        return 0
    if contribution.performance_bps < max(rule.performance_floor_bps, 1):
        return 0
    return rule.per_event_reward * contribution.performance_bps // 10_000


def asked_kw(*, target_kw: float | None, level: float, max_discharge_kw: float) -> float:
    """What the event asked of the device: its ``targetKw``, or for a SIMPLE level (0–3) that
    share of the model's discharge, never more than the model can do."""
    wanted = target_kw if target_kw is not None else max_discharge_kw * level / 3
    return max(0.0, min(wanted, max_discharge_kw))
