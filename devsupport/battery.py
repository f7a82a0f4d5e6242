"""A simulated home battery as an OpenLEADR VEN (development only: ``ovpp-wallet dev device``).

It is configured from nothing but an enrollment's ``connectionParameters`` (``vtnUrl``,
``venName``) and its model's limits: it registers, reports real power (``power_real``, kW,
negative while it exports) and state of charge every ``REPORT_SECONDS``, opts in to an event
while it is above the floor the event's ``CHARGE_STATE`` signal sets (its customer's limits),
and during the event discharges at the event's level within its model's limits (LOAD_DISPATCH:
the setpoint in kW; SIMPLE: level/3 of its maximum), down to that floor; its state of charge
follows. Outside events it idles.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from openleadr import OpenADRClient

from devsupport.demo import DEMO_MODELS

REPORT_SECONDS = 5
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatteryModel:
    max_discharge_kw: float
    energy_kwh: float

    @classmethod
    def of(cls, make: str, model: str) -> BatteryModel:
        """The demo registry's limits for the model; a 5 kW, 13.5 kWh battery otherwise."""
        for spec in DEMO_MODELS:
            if (spec.make, spec.model) == (make, model) and spec.energy_wh:
                return cls(spec.max_discharge_w / 1000, spec.energy_wh / 1000)
        return cls(5.0, 13.5)


def _signals(event: dict[str, Any]) -> dict[str, float]:
    return {s["signal_name"]: s["intervals"][0]["signal_payload"] for s in event["event_signals"]}


@dataclass
class SimulatedBattery:
    model: BatteryModel
    soc_percent: float = 80.0
    power_kw: float = 0.0
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    answers: dict[str, str] = field(default_factory=dict)

    def on_event(self, event: dict[str, Any]) -> str:
        """optIn while above the event's floor; a cancelled event is forgotten."""
        event_id = event["event_descriptor"]["event_id"]
        if event["event_descriptor"]["event_status"] == "cancelled":
            self.events.pop(event_id, None)
            self.answers[event_id] = "optOut"
            return "optOut"
        self.events[event_id] = event
        floor = _signals(event).get("CHARGE_STATE", 0.0)
        self.answers[event_id] = "optIn" if self.soc_percent > floor else "optOut"
        return self.answers[event_id]

    def _active(self, now: dt.datetime) -> dict[str, Any] | None:
        """The opted-in event under way that asks the most of it (events may overlap)."""
        running = []
        for event_id, event in self.events.items():
            period = event["active_period"]
            start = period["dtstart"]
            if self.answers.get(event_id) == "optIn" and start <= now < start + period["duration"]:
                running.append(event)
        return max(running, key=self.discharge_kw, default=None)

    def discharge_kw(self, event: dict[str, Any]) -> float:
        signals = _signals(event)
        if "LOAD_DISPATCH" in signals:
            wanted = signals["LOAD_DISPATCH"]
        else:
            wanted = signals.get("SIMPLE", 0.0) / 3 * self.model.max_discharge_kw
        return max(0.0, min(wanted, self.model.max_discharge_kw))

    def step(self, seconds: float, now: dt.datetime) -> None:
        """Advance ``seconds``: discharge during an opted-in event, down to its floor."""
        event = self._active(now)
        discharge = 0.0
        if event is not None and self.soc_percent > _signals(event).get("CHARGE_STATE", 0.0):
            discharge = self.discharge_kw(event)
        self.power_kw = -discharge
        used = discharge * seconds / 3600 / self.model.energy_kwh * 100
        floor = _signals(event).get("CHARGE_STATE", 0.0) if event is not None else 0.0
        self.soc_percent = max(floor, self.soc_percent - used) if discharge else self.soc_percent


def battery_ven(parameters: dict[str, str], battery: SimulatedBattery) -> OpenADRClient:
    """The VEN of an ACTIVE OpenADR 2.0b enrollment, from its connection parameters only."""
    client = OpenADRClient(
        ven_name=parameters["venName"],
        vtn_url=parameters["vtnUrl"],
        show_fingerprint=False,
        allow_jitter=False,
    )
    every = dt.timedelta(seconds=REPORT_SECONDS)
    for measurement, extra, read in (
        ("power_real", {"unit": "W", "scale": "k"}, lambda: round(battery.power_kw, 3)),
        ("state_of_charge", {"unit": "%"}, lambda: round(battery.soc_percent, 2)),
    ):
        client.add_report(
            callback=read,
            resource_id="battery-1",
            measurement=measurement,
            sampling_rate=every,
            report_duration=dt.timedelta(hours=24),
            **extra,
        )
    client.add_handler("on_event", battery.on_event)
    client.add_handler("on_update_event", battery.on_event)
    return client


async def run_battery(
    parameters: dict[str, str],
    battery: SimulatedBattery,
    *,
    stop: asyncio.Event,
    tick_seconds: float = 1.0,
    speed: float = 1.0,
) -> None:
    """Run the VEN until ``stop``; the battery's clock runs ``speed`` times real time."""
    client = battery_ven(parameters, battery)
    await client.run()
    try:
        if client.registration_id is None:
            raise RuntimeError(f"the program server refused {parameters['venName']!r}")
        while not stop.is_set():
            battery.step(tick_seconds * speed, dt.datetime.now(dt.UTC))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=tick_seconds)
    finally:
        with contextlib.suppress(Exception):
            await client.stop()
