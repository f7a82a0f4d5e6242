"""The OpenVPP routing logic: from the routing inputs and the registry's records to a
``RoutingResult`` — every capability check with pass or fail and a reason, and, when ready,
the endpoints, fingerprints and connection parameters both servers need.

Pure: it reads nothing itself, so it is the same whether the records come from the on-chain
registry or a remote routing service.
"""

from __future__ import annotations

from eth_abi import encode
from eth_hash.auto import keccak

from chain.tokens import format_units
from registry_client.types import (
    CapabilityCheck,
    DeviceModelRecord,
    ProgramRecord,
    RoutingRequest,
    RoutingResult,
    SiteAddress,
    UtilityRecord,
)


def device_id_of(make: str, model: str, serial: str) -> bytes:
    """Same as ``OVPPRegistry.deviceIdOf``: keccak256(abi.encode(make, model, serial))."""
    return keccak(encode(["string", "string", "string"], [make, model, serial]))


def model_id_of(make: str, model: str) -> bytes:
    return keccak(encode(["string", "string"], [make, model]))


def postal_code_in(code: str, entries: tuple[str, ...]) -> bool:
    """Entries are single codes or inclusive numeric ranges like "94102-94110". Only ASCII
    digits count as numbers: ``str.isdigit`` also says yes to "²", which ``int`` refuses, and a
    code no range can hold is simply outside the territory."""
    code = code.strip()
    for entry in entries:
        low, dash, high = (part.strip() for part in entry.partition("-"))
        if not dash:
            if code == low:
                return True
        elif _ascii_number(code) and _ascii_number(low) and _ascii_number(high):
            if len(code) == len(low) and int(low) <= int(code) <= int(high):
                return True
    return False


def _ascii_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


class _Checks(list[CapabilityCheck]):
    def add(self, name: str, passed: bool, reason: str) -> None:
        self.append(CapabilityCheck(name=name, passed=passed, reason=reason))


def route(
    request: RoutingRequest,
    *,
    utility: UtilityRecord | None,
    program: ProgramRecord | None,
    model: DeviceModelRecord | None,
    already_connected: bool,
) -> RoutingResult:
    """Every capability check, in a fixed order; the connection details when all pass."""
    checks = _Checks()
    checks.add(
        "DEVICE_MODEL_REGISTERED",
        model is not None,
        f"{request.make} {request.model} is registered"
        if model
        else f"{request.make} {request.model} is not a registered device model",
    )
    checks.add(
        "PROGRAM_OPEN",
        program is not None and program.active and program.utility_id == request.utility_id,
        "the program is open"
        if program and program.active
        else "the program does not exist, is closed, or belongs to another utility",
    )
    _check_territory(checks, request, utility)
    if model is not None and program is not None:
        _check_pairing(checks, request, utility=utility, program=program, model=model)
    checks.add(
        "NOT_ALREADY_CONNECTED",
        not already_connected,
        "the device is free to connect"
        if not already_connected
        else "this device is already actively connected to this program",
    )
    if request.payer_available_ovpp is not None and program is not None:
        can_pay = request.payer_available_ovpp >= program.connection_fee
        checks.add(
            "PAYER_CAN_PAY",
            can_pay,
            "the payer can pay the connection fee"
            if can_pay
            else f"the payer holds {format_units(request.payer_available_ovpp, 18)} OVPP, "
            f"the fee is {format_units(program.connection_fee, 18)} OVPP",
        )
    return _result(checks, request, utility=utility, program=program, model=model)


def _check_territory(
    checks: _Checks, request: RoutingRequest, utility: UtilityRecord | None
) -> None:
    if utility is None:
        checks.add("SITE_IN_TERRITORY", False, "the utility is not in the registry")
        return
    site = request.site
    in_territory = (
        site.country.upper() == utility.country.upper()
        and region_matches(site, utility.region)
        and postal_code_in(site.postal_code, utility.postal_codes)
    )
    checks.add(
        "SITE_IN_TERRITORY",
        in_territory,
        f"{site.postal_code} is served by {utility.name}"
        if in_territory
        else f"the site ({site.country}-{site.region} "
        f"{site.postal_code}) is outside {utility.name}'s territory",
    )


def _check_pairing(
    checks: _Checks,
    request: RoutingRequest,
    *,
    utility: UtilityRecord | None,
    program: ProgramRecord,
    model: DeviceModelRecord,
) -> None:
    """What the device and the program must have in common."""
    protocol_ok = request.protocol in model.protocols and request.protocol in program.protocols
    checks.add(
        "PROTOCOL_SUPPORTED",
        protocol_ok,
        f"both sides speak {request.protocol}"
        if protocol_ok
        else f"{request.protocol} is not supported by both the device "
        f"({', '.join(model.protocols) or 'none'}) and the program "
        f"({', '.join(program.protocols) or 'none'})",
    )
    endpoint_ok = utility is not None and request.protocol in utility.control_endpoints
    checks.add(
        "UTILITY_ENDPOINT",
        endpoint_ok,
        "the utility's control server accepts this protocol"
        if endpoint_ok
        else f"the utility has no control server for {request.protocol}",
    )
    type_ok = model.device_type in program.eligible_device_types
    kind = model.device_type.name.lower().replace("_", " ")
    checks.add(
        "DEVICE_TYPE_ELIGIBLE",
        type_ok,
        f"{kind}s are eligible" if type_ok else f"the program does not accept {kind}s",
    )
    shortfalls = [
        f"{label} {have} < {need}"
        for label, have, need in (
            ("max charge W", model.max_charge_w, program.min_charge_w),
            ("max discharge W", model.max_discharge_w, program.min_discharge_w),
            ("energy Wh", model.energy_wh, program.min_energy_wh),
        )
        if have < need
    ]
    checks.add(
        "CAPABILITY_MINIMUMS",
        not shortfalls,
        "the device meets the program's minimums"
        if not shortfalls
        else "below the program's minimums: " + ", ".join(shortfalls),
    )


def _result(
    checks: _Checks,
    request: RoutingRequest,
    *,
    utility: UtilityRecord | None,
    program: ProgramRecord | None,
    model: DeviceModelRecord | None,
) -> RoutingResult:
    device_id = device_id_of(request.make, request.model, request.serial)
    ready = all(c.passed for c in checks)
    result = RoutingResult(
        ready=ready,
        checks=tuple(checks),
        device_id=device_id,
        model_id=model_id_of(request.make, request.model),
        program_id=request.program_id,
        protocol=request.protocol,
        connection_fee=program.connection_fee if program else 0,
    )
    if not ready or utility is None or model is None:
        return result
    endpoint = utility.control_endpoints[request.protocol]
    return RoutingResult(
        **{
            **result.__dict__,
            "utility_endpoint": endpoint,
            "device_endpoint": model.vendor_endpoint,
            "utility_ca_fingerprint": "0x" + utility.ca_cert_fingerprint.hex(),
            "vendor_cert_fingerprint": "0x" + model.vendor_cert_fingerprint.hex(),
            "connection_parameters": connection_parameters(
                request.protocol, endpoint, device_id, program_id=request.program_id
            ),
        }
    )


def connection_parameters(
    protocol: str, endpoint: str, device_id: bytes, *, program_id: bytes = b""
) -> dict[str, str]:
    """What the device's server needs to reach the utility's server (the out-of-band step
    OpenADR 3 leaves out of scope), derived deterministically from the device id. An OpenADR
    2.0b ``venName`` is the device's in one program (a VTN serves several programs, and a VEN
    registers with its name alone)."""
    short = device_id.hex()[:16]
    if protocol == "OPENADR_2_0B":
        return {
            "vtnUrl": endpoint,
            "venName": f"ven-{keccak(device_id + program_id).hex()[:16]}",
            "profile": "2.0b",
            "transport": "simpleHttp",
        }
    if protocol == "OPENADR_3":
        return {"vtnUrl": endpoint, "clientId": f"ovpp-{short}"}
    if protocol == "IEEE_2030_5":
        return {"serverUrl": endpoint, "lfdi": device_id.hex()[:40]}
    if protocol.startswith("OCPP"):
        return {"csmsUrl": endpoint, "chargingStationId": f"cs-{short}"}
    return {"endpoint": endpoint, "deviceRef": short}


def region_matches(site: SiteAddress, region: str) -> bool:
    """A territory's region is the site's subdivision code, with or without its country."""
    site_region, wanted = site.region.upper(), region.upper()
    return site_region == wanted or f"{site.country.upper()}-{site_region}" == wanted
