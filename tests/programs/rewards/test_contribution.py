"""The contribution rule's arithmetic (programs/rewards/contribution.py), per baseline, with
figures worked out by hand (docs/rewards.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from programs.rewards.contribution import (
    Baseline,
    Dispatch,
    Rule,
    Sample,
    asked_kw,
    baseline_of,
    event_reward,
    kilowatts,
    measure,
)

START = datetime(2026, 7, 15, 17, 0, tzinfo=UTC)
END = START + timedelta(hours=1)
OVPP = 10**18


def rule(**changes: object) -> Rule:
    values: dict = {
        "baseline_method": "METER_BEFORE_AFTER",
        "baseline_window": timedelta(minutes=60),
        "high_x": 4,
        "high_y": 5,
        "performance_floor_bps": 2_000,
        "per_event_reward": 10 * OVPP,
    }
    values.update(changes)
    return Rule(**values)


def dispatch(*, asked: float = 4.0, max_kw: float = 5.0, energy_wh: int = 13_500) -> Dispatch:
    return Dispatch(START, END, asked, 60, max_kw, energy_wh)


def every_minute(since: datetime, until: datetime, kw: float) -> list[Sample]:
    minutes = int((until - since).total_seconds() // 60)
    return [Sample(since + timedelta(minutes=m), kw) for m in range(minutes)]


def test_meter_before_is_the_average_over_the_window_before_the_event() -> None:
    samples = every_minute(START - timedelta(minutes=60), START - timedelta(minutes=30), 1.0)
    samples += every_minute(START - timedelta(minutes=30), START, 2.0)
    samples += every_minute(START, END, -3.0)  # the event itself never counts in the baseline
    baseline = baseline_of(samples, dispatch(), rule())
    assert baseline.kw == 1.5 and baseline.flags == ()


def test_meter_after_when_nothing_came_before() -> None:
    samples = every_minute(END, END + timedelta(minutes=60), 0.8)
    baseline = baseline_of(samples, dispatch(), rule())
    assert round(baseline.kw, 9) == 0.8 and baseline.flags == ("BASELINE_AFTER",)
    assert baseline_of([], dispatch(), rule()).flags == ("NO_BASELINE_DATA",)


def test_high_4_of_5_takes_the_four_highest_days() -> None:
    samples: list[Sample] = []
    for back, kw in zip(range(1, 6), [1.0, 3.0, 2.0, 5.0, 4.0], strict=True):
        day = timedelta(days=back)
        samples += every_minute(START - day, END - day, kw)
    samples += every_minute(START - timedelta(days=6), END - timedelta(days=6), 99.0)  # day 6
    baseline = baseline_of(samples, dispatch(), rule(baseline_method="HIGH_X_OF_Y"))
    assert baseline.kw == (5.0 + 4.0 + 3.0 + 2.0) / 4 and baseline.flags == ()


def test_high_x_of_y_with_few_days_or_none() -> None:
    samples = every_minute(START - timedelta(days=2), END - timedelta(days=2), 2.0)
    few = baseline_of(samples, dispatch(), rule(baseline_method="HIGH_X_OF_Y"))
    assert few.kw == 2.0 and few.flags == ("BASELINE_FEW_DAYS",)
    samples = every_minute(START - timedelta(minutes=60), START, 1.2)
    none = baseline_of(samples, dispatch(), rule(baseline_method="HIGH_X_OF_Y"))
    assert round(none.kw, 9) == 1.2 and none.flags == ("BASELINE_FALLBACK",)


def test_delivered_energy_performance_and_quality() -> None:
    """Baseline 1 kW, the battery exports 2 kW for an hour: 3 kW below baseline, 3,000 Wh;
    asked 4 kW: performance 75 %; a reading every minute: quality 100 %, online the hour."""
    samples = every_minute(START, END, -2.0)
    result = measure(samples, dispatch(), Baseline(1.0), "OPT_IN")
    assert result.delivered_wh == 3_000
    assert result.average_kw == 3.0
    assert result.performance_bps == 7_500
    assert (result.expected_readings, result.received_readings, result.quality_bps) == (
        60,
        60,
        10_000,
    )
    assert (result.gaps, result.online_seconds) == (0, 3_600)
    assert event_reward(result, rule(), response="OPT_IN") == 7_500 * 10 * OVPP // 10_000


def test_a_gap_counts_nothing_and_lowers_quality() -> None:
    """Silent for the second half hour: a reading holds two intervals at most."""
    samples = every_minute(START, START + timedelta(minutes=30), -2.0)
    result = measure(samples, dispatch(), Baseline(1.0), "OPT_IN")
    assert result.received_readings == 30 and result.quality_bps == 5_000
    assert result.online_seconds == 29 * 60 + 120
    assert result.delivered_wh == 3 * (29 * 60 + 120) * 1000 // 3600
    assert result.gaps == 1 and result.longest_gap_seconds == 29 * 60


def test_never_negative_and_never_above_the_model() -> None:
    rebound = measure(every_minute(START, END, 4.0), dispatch(), Baseline(1.0), "OPT_IN")
    assert rebound.delivered_wh == 0 and rebound.performance_bps == 0
    claimed = measure(every_minute(START, END, -50.0), dispatch(), Baseline(0.0), "OPT_IN")
    assert claimed.delivered_wh == 5_000 and "CAPPED_AT_MODEL" in claimed.flags
    small = measure(
        every_minute(START, END, -5.0), dispatch(energy_wh=2_000), Baseline(0.0), "OPT_IN"
    )
    assert small.delivered_wh == 2_000 and "CAPPED_AT_CAPACITY" in small.flags


def test_the_reward_rule_floor_opt_out_and_no_data() -> None:
    low = measure(every_minute(START, END, 0.5), dispatch(), Baseline(1.0), "OPT_IN")
    assert low.performance_bps == 1_250
    assert event_reward(low, rule(), response="OPT_IN") == 0  # below the 20 % floor
    assert event_reward(low, rule(performance_floor_bps=1_000), response="OPT_IN") == (
        1_250 * 10 * OVPP // 10_000
    )
    opted_out = measure(every_minute(START, END, -2.0), dispatch(), Baseline(1.0), "OPT_OUT")
    assert opted_out.delivered_wh == 0 and "OPTED_OUT" in opted_out.flags
    assert event_reward(opted_out, rule(), response="OPT_OUT") == 0
    silent = measure([], dispatch(), Baseline(1.0), "OPT_IN")
    assert "NO_DATA" in silent.flags and event_reward(silent, rule(), response="OPT_IN") == 0


def test_asked_and_units() -> None:
    assert asked_kw(target_kw=3.5, level=2, max_discharge_kw=5.0) == 3.5
    assert asked_kw(target_kw=9.0, level=2, max_discharge_kw=5.0) == 5.0
    assert asked_kw(target_kw=None, level=3, max_discharge_kw=5.0) == 5.0
    assert kilowatts(-2.5, unit="W", scale="k") == -2.5
    assert kilowatts(1500, unit="W", scale=None) == 1.5
    assert kilowatts(2.0, unit="kW", scale=None) == 2.0
