"""The routing's capability check as pure logic: each check passes and fails for its reason."""

from __future__ import annotations

import pytest

from registry_client.routing import connection_parameters, device_id_of, postal_code_in, route
from registry_client.types import (
    DeviceModelRecord,
    DeviceType,
    ProgramRecord,
    RoutingRequest,
    SiteAddress,
    UtilityRecord,
)

UTILITY_ID = b"\x01" * 32
PROGRAM_ID = b"\x02" * 32
UTILITY = UtilityRecord(
    utility_id=UTILITY_ID,
    admin="0x" + "11" * 20,
    name="Bay Power",
    country="US",
    region="US-CA",
    postal_codes=("94102-94110", "94117"),
    fee_recipient="0x" + "22" * 20,
    ca_cert_fingerprint=b"\xaa" * 32,
    control_endpoints={"OPENADR_3": "https://vtn.example/openadr3"},
)
PROGRAM = ProgramRecord(
    program_id=PROGRAM_ID,
    utility_id=UTILITY_ID,
    external_id="dr",
    protocols=("OPENADR_3",),
    eligible_device_types=frozenset({DeviceType.BATTERY}),
    min_charge_w=0,
    min_discharge_w=3_000,
    min_energy_wh=5_000,
    connection_fee=5 * 10**18,
    sponsor=None,
    active=True,
    active_connections=0,
)
BATTERY = DeviceModelRecord(
    model_id=b"\x03" * 32,
    vendor="0x" + "33" * 20,
    make="Voltstack",
    model="VS-13.5",
    device_type=DeviceType.BATTERY,
    max_charge_w=5_000,
    max_discharge_w=5_000,
    energy_wh=13_500,
    nominal_voltage_v=240,
    protocols=("OPENADR_3", "IEEE_2030_5"),
    vendor_endpoint="https://cloud.voltstack.example",
    vendor_cert_fingerprint=b"\xbb" * 32,
)
SITE = SiteAddress("1 Market St", "San Francisco", "CA", "94105", "US")


def request(**changes: object) -> RoutingRequest:
    base = {
        "site": SITE,
        "utility_id": UTILITY_ID,
        "make": "Voltstack",
        "model": "VS-13.5",
        "serial": "SN-1",
        "protocol": "OPENADR_3",
        "program_id": PROGRAM_ID,
        "payer_available_ovpp": 10 * 10**18,
    }
    base.update(changes)
    return RoutingRequest(**base)  # type: ignore[arg-type]


def failing(result) -> set[str]:  # type: ignore[no-untyped-def]
    return {check.name for check in result.failing}


def test_a_matching_device_is_ready_with_endpoints_and_parameters() -> None:
    result = route(
        request(), utility=UTILITY, program=PROGRAM, model=BATTERY, already_connected=False
    )
    assert result.ready and failing(result) == set()
    assert result.utility_endpoint == "https://vtn.example/openadr3"
    assert result.device_endpoint == "https://cloud.voltstack.example"
    assert result.utility_ca_fingerprint == "0x" + "aa" * 32
    assert result.connection_parameters["vtnUrl"] == "https://vtn.example/openadr3"
    assert result.device_id == device_id_of("Voltstack", "VS-13.5", "SN-1")


@pytest.mark.parametrize(
    ("changes", "model", "program", "connected", "expected"),
    [
        (
            {"protocol": "IEEE_2030_5"},
            BATTERY,
            PROGRAM,
            False,
            {"PROTOCOL_SUPPORTED", "UTILITY_ENDPOINT"},
        ),
        (
            {"site": SiteAddress("1 Main", "NYC", "NY", "10001", "US")},
            BATTERY,
            PROGRAM,
            False,
            {"SITE_IN_TERRITORY"},
        ),
        (
            {"site": SiteAddress("1 Main", "SF", "CA", "94111", "US")},
            BATTERY,
            PROGRAM,
            False,
            {"SITE_IN_TERRITORY"},
        ),
        ({"payer_available_ovpp": 10**18}, BATTERY, PROGRAM, False, {"PAYER_CAN_PAY"}),
        ({}, BATTERY, PROGRAM, True, {"NOT_ALREADY_CONNECTED"}),
        ({}, None, PROGRAM, False, {"DEVICE_MODEL_REGISTERED"}),
        ({}, BATTERY, None, False, {"PROGRAM_OPEN"}),
        (
            {},
            BATTERY,
            ProgramRecord(**{**PROGRAM.__dict__, "active": False}),
            False,
            {"PROGRAM_OPEN"},
        ),
        (
            {},
            DeviceModelRecord(**{**BATTERY.__dict__, "energy_wh": 4_000, "max_discharge_w": 1_000}),
            PROGRAM,
            False,
            {"CAPABILITY_MINIMUMS"},
        ),
        (
            {},
            DeviceModelRecord(**{**BATTERY.__dict__, "device_type": DeviceType.THERMOSTAT}),
            PROGRAM,
            False,
            {"DEVICE_TYPE_ELIGIBLE"},
        ),
    ],
)
def test_each_check_fails_for_its_own_reason(changes, model, program, connected, expected) -> None:  # type: ignore[no-untyped-def]
    result = route(
        request(**changes),
        utility=UTILITY,
        program=program,
        model=model,
        already_connected=connected,
    )
    assert not result.ready
    assert failing(result) == expected
    assert all(check.reason for check in result.checks)
    assert result.connection_parameters == {}


def test_capability_shortfalls_are_named() -> None:
    weak = DeviceModelRecord(**{**BATTERY.__dict__, "energy_wh": 4_000})
    result = route(request(), utility=UTILITY, program=PROGRAM, model=weak, already_connected=False)
    (check,) = result.failing
    assert "energy Wh 4000 < 5000" in check.reason


@pytest.mark.parametrize(
    ("code", "inside"),
    [
        ("94102", True),
        ("94110", True),
        ("94106", True),
        ("94117", True),
        ("94101", False),
        ("94111", False),
        ("9410", False),
        ("941050", False),
        ("ABC", False),
        (" 94105 ", True),
        ("9410\u00b2", False),  # "²": a digit to str.isdigit, not to int()
        ("\u0669\u0664\u0661\u0660\u0665", False),  # Arabic-Indic 94105: not ASCII
    ],
)
def test_postal_codes_and_ranges(code: str, inside: bool) -> None:
    assert postal_code_in(code, ("94102-94110", "94117")) is inside


def test_connection_parameters_per_protocol() -> None:
    device = device_id_of("a", "b", "c")
    assert connection_parameters("OPENADR_2_0B", "https://vtn", device)["venName"].startswith(
        "ven-"
    )
    # One VEN per device and program: the program server tells programs apart by the name.
    names = {
        connection_parameters("OPENADR_2_0B", "https://vtn", device, program_id=program)["venName"]
        for program in (b"\x01" * 32, b"\x02" * 32)
    }
    assert len(names) == 2
    assert connection_parameters("OPENADR_3", "https://vtn", device)["clientId"].startswith("ovpp-")
    assert set(connection_parameters("IEEE_2030_5", "https://s", device)) == {"serverUrl", "lfdi"}
    assert set(connection_parameters("OCPP_2_0_1", "wss://c", device)) == {
        "csmsUrl",
        "chargingStationId",
    }
