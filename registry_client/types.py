"""Typed records of the OpenVPP registry and of a routing request and its result."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from eth_hash.auto import keccak


class DeviceType(IntEnum):
    """Order matches ``OVPPRegistry.DeviceType``; a program's eligibility is a bitmask over it."""

    BATTERY = 0
    EV_CHARGER = 1
    SOLAR_INVERTER = 2
    THERMOSTAT = 3
    HEAT_PUMP = 4
    EV = 5


PROTOCOLS = ("OPENADR_2_0B", "OPENADR_3", "IEEE_2030_5", "OCPP_2_0_1", "OCPP_1_6J", "MATTER")


def protocol_id(name: str) -> bytes:
    return keccak(name.encode())


PROTOCOL_BY_ID = {protocol_id(name): name for name in PROTOCOLS}


@dataclass(frozen=True)
class SiteAddress:
    line1: str
    city: str
    region: str  # ISO 3166-2 subdivision code without country, e.g. "CA"
    postal_code: str
    country: str  # ISO 3166-1 alpha-2


@dataclass(frozen=True)
class UtilityRecord:
    utility_id: bytes
    admin: str
    name: str
    country: str
    region: str
    postal_codes: tuple[str, ...]
    fee_recipient: str
    ca_cert_fingerprint: bytes
    control_endpoints: dict[str, str]  # protocol name -> endpoint


@dataclass(frozen=True)
class ProgramRecord:
    program_id: bytes
    utility_id: bytes
    external_id: str
    protocols: tuple[str, ...]
    eligible_device_types: frozenset[DeviceType]
    min_charge_w: int
    min_discharge_w: int
    min_energy_wh: int
    connection_fee: int
    sponsor: str | None
    active: bool
    active_connections: int


@dataclass(frozen=True)
class DeviceModelRecord:
    model_id: bytes
    vendor: str
    make: str
    model: str
    device_type: DeviceType
    max_charge_w: int
    max_discharge_w: int
    energy_wh: int
    nominal_voltage_v: int
    protocols: tuple[str, ...]
    vendor_endpoint: str
    vendor_cert_fingerprint: bytes


@dataclass(frozen=True)
class RoutingRequest:
    site: SiteAddress
    utility_id: bytes
    make: str
    model: str
    serial: str
    protocol: str
    program_id: bytes
    payer: str | None = None  # who pays the fee; checked for funds when given
    payer_available_ovpp: int | None = None


@dataclass(frozen=True)
class CapabilityCheck:
    name: str
    passed: bool
    reason: str


@dataclass(frozen=True)
class RoutingResult:
    ready: bool
    checks: tuple[CapabilityCheck, ...]
    device_id: bytes
    model_id: bytes
    program_id: bytes
    protocol: str
    connection_fee: int
    utility_endpoint: str | None = None
    device_endpoint: str | None = None
    utility_ca_fingerprint: str | None = None
    vendor_cert_fingerprint: str | None = None
    connection_parameters: dict[str, str] = field(default_factory=dict)

    @property
    def failing(self) -> tuple[CapabilityCheck, ...]:
        return tuple(check for check in self.checks if not check.passed)
