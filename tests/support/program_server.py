"""The program server in a test's event loop, a real OpenLEADR VEN built from nothing but an
enrollment's ``connectionParameters``, and the certificates of the TLS path (``cryptography``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from openleadr import OpenADRClient
from openleadr.utils import certificate_fingerprint
from sqlmodel import select

from api.container import Services
from core.db import Database
from core.defaults import DEV_OIDC_CLIENT_ID
from core.settings import Settings
from programs.vtn.models import DeviceReading
from programs.vtn.server import RunningProgramServer, start_program_server
from tests.support.enrollment import UNENROLL, add_device, enroll, program_id, wait_enrollment
from tests.support.graphql import gql
from tests.support.issuer import TestIssuer
from tests.support.wallets import new_customer

logging.getLogger("openleadr").setLevel(logging.CRITICAL)  # refusals are expected here


@contextlib.asynccontextmanager
async def program_server(db: Database, settings: Settings) -> AsyncIterator[RunningProgramServer]:
    running = await start_program_server(db=db, settings=settings)
    try:
        yield running
    finally:
        await running.shutdown()


@dataclass(frozen=True)
class VenCredentials:
    cert: Path
    key: Path
    ca_file: Path  # the CA the program server's certificate chains to

    @property
    def fingerprint(self) -> str:
        return certificate_fingerprint(self.cert.read_text())


@dataclass
class SimulatedVen:
    """An OpenLEADR VEN that reports real power and state of charge every second and answers
    every event with ``answer``; ``events`` holds each event (and each change) it received."""

    client: OpenADRClient
    answer: str = "optIn"
    events: list[dict[str, Any]] = field(default_factory=list)

    async def _on_event(self, event: dict[str, Any]) -> str:
        self.events.append(event)
        return self.answer

    async def start(self) -> None:
        self.client.add_handler("on_event", self._on_event)
        self.client.add_handler("on_update_event", self._on_event)
        await self.client.run()

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.stop()

    @property
    def registered(self) -> bool:
        return self.client.registration_id is not None


def ven_of(
    parameters: dict[str, str],
    *,
    credentials: VenCredentials | None = None,
    answer: str = "optIn",
    power_kw: Callable[[], float] = lambda: -2.5,
) -> SimulatedVen:
    """The VEN of an ACTIVE enrollment: its name and the VTN's URL come from the enrollment's
    connection parameters, nothing else."""
    client = OpenADRClient(
        ven_name=parameters["venName"],
        vtn_url=parameters["vtnUrl"],
        cert=str(credentials.cert) if credentials else None,
        key=str(credentials.key) if credentials else None,
        ca_file=str(credentials.ca_file) if credentials else None,
        show_fingerprint=False,
        allow_jitter=False,
    )
    every_second = dt.timedelta(seconds=1)
    client.add_report(
        callback=power_kw,
        resource_id="battery-1",
        measurement="power_real",
        unit="W",
        scale="k",
        sampling_rate=every_second,
        report_duration=dt.timedelta(hours=1),
    )
    client.add_report(
        callback=lambda: 64.0,
        resource_id="battery-1",
        measurement="state_of_charge",
        unit="%",
        sampling_rate=every_second,
        report_duration=dt.timedelta(hours=1),
    )
    return SimulatedVen(client=client, answer=answer)


@contextlib.asynccontextmanager
async def running_ven(ven: SimulatedVen) -> AsyncIterator[SimulatedVen]:
    await ven.start()
    try:
        yield ven
    finally:
        await ven.stop()


async def eventually(
    check: Callable[[], Awaitable[Any]], *, timeout: float, interval: float = 0.1
) -> tuple[Any, float]:
    """Wait until ``check()`` returns something truthy; that and how long it took."""
    started = time.monotonic()
    while True:
        result = await check()
        if result:
            return result, time.monotonic() - started
        assert time.monotonic() - started < timeout, "timed out"
        await asyncio.sleep(interval)


# The journey: an ACTIVE OpenADR 2.0b enrollment, events, readings

OVPP = 10**18

EVENTS = """
query($program: ID!) { utilityAdmin { events(programId: $program) {
  id status start end durationMinutes signal { type level targetKw }
  responses { enrollmentId venName response respondedAt deliveredAt } } } }
"""
CREATE_EVENT = """
mutation($input: CreateEventInput!) { createEvent(input: $input) {
  __typename ... on DemandResponseEvent { id status signal { type level targetKw }
    responses { venName response } }
  ... on InvalidInput { message field } } }
"""
CANCEL_EVENT = """
mutation($id: ID!) { cancelEvent(eventId: $id) {
  __typename ... on DemandResponseEvent { id status } ... on InvalidInput { message field } } }
"""


def demo_admin(demo_issuer: TestIssuer) -> str:
    return demo_issuer.mint(
        sub=f"admin-{uuid.uuid4().hex[:6]}", scope="utility:admin", client_id=DEV_OIDC_CLIENT_ID
    )


async def active_openadr_enrollment(client, demo_issuer, deployer, contracts, services) -> tuple:
    customer = await new_customer(client, demo_issuer, deployer, contracts, ovpp=100 * OVPP)
    device = await add_device(client, customer.token, "Voltstack", "VS-13.5")
    program = await program_id(services, "dr-battery-2026")
    started = await enroll(
        client,
        customer.token,
        deviceId=device,
        programId=program,
        protocol="OPENADR_2_0B",
        paymentMethod="WALLET",
    )
    assert started["__typename"] == "Enrollment", started
    active = await wait_enrollment(client, customer.token, started["id"])
    assert active["status"] == "ACTIVE", active
    return customer, program, active


async def event_starting_soon(client, admin: str, program: str, *, key: str) -> dict:
    body = await gql(
        client,
        CREATE_EVENT,
        {
            "input": {
                "programId": program,
                "start": (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)).isoformat(),
                "durationMinutes": 30,
                "signal": {"level": 2, "targetKw": 3.5},
                "idempotencyKey": key,
            }
        },
        token=admin,
    )
    assert "errors" not in body, body
    return body["data"]["createEvent"]


def response_of(event: dict, ven_name: str) -> dict:
    """The answer of one VEN in an event of ``EVENTS`` (other tests' VENs may be there too)."""
    return next(r for r in event["responses"] if r["venName"] == ven_name)


async def readings(services: Services, enrollment_id: str) -> list[DeviceReading]:
    async with services.db.session() as session:
        statement = select(DeviceReading).where(DeviceReading.enrollment_id == enrollment_id)
        return list((await session.execute(statement)).scalars())


async def both_measurements(services: Services, enrollment_id: str) -> list[DeviceReading]:
    rows = await readings(services, enrollment_id)
    return rows if {r.measurement for r in rows} == {"power_real", "state_of_charge"} else []


async def more_readings(services: Services, enrollment_id: str, before: int) -> bool:
    return len(await readings(services, enrollment_id)) > before


async def cancelled_seen(ven) -> bool:
    return any(e["event_descriptor"]["event_status"] == "cancelled" for e in ven.events)


async def unenroll(client, token: str, enrollment_id: str) -> None:
    body = await gql(
        client,
        UNENROLL,
        {"input": {"enrollmentId": enrollment_id, "idempotencyKey": f"leave-{enrollment_id}"}},
        token=token,
    )
    assert body["data"]["unenroll"]["status"] == "UNENROLLING", body
    done = await wait_enrollment(client, token, enrollment_id)
    assert done["status"] == "UNENROLLED"


# Certificates


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write(
    directory: Path, name: str, certificate: x509.Certificate, key: Any
) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass(frozen=True)
class Authority:
    name: str
    certificate: x509.Certificate
    key: rsa.RSAPrivateKey

    @classmethod
    def create(cls, name: str) -> Authority:
        key = _key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(name=name, certificate=certificate, key=key)

    def write(self, directory: Path) -> Path:
        return _write(directory, self.name, self.certificate, self.key)[0]

    def issue(self, directory: Path, name: str, *, server: bool = False) -> tuple[Path, Path]:
        key = _key()
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return _write(directory, name, builder.sign(self.key, hashes.SHA256()), key)


@dataclass(frozen=True)
class Pki:
    """A utility CA that issued the program server's certificate, and a device CA that issues
    VEN certificates (the program server's client CA)."""

    directory: Path
    utility_ca: Path
    device_authority: Authority
    device_ca: Path
    server_cert: Path
    server_key: Path

    @classmethod
    def create(cls, directory: Path) -> Pki:
        utility = Authority.create("utility-ca")
        devices = Authority.create("device-ca")
        server_cert, server_key = utility.issue(directory, "program-server", server=True)
        return cls(
            directory=directory,
            utility_ca=utility.write(directory),
            device_authority=devices,
            device_ca=devices.write(directory),
            server_cert=server_cert,
            server_key=server_key,
        )

    def device(self, name: str, *, authority: Authority | None = None) -> VenCredentials:
        cert, key = (authority or self.device_authority).issue(self.directory, name)
        return VenCredentials(cert=cert, key=key, ca_file=self.utility_ca)


# The customer's side

CUSTOMER_EVENTS = """
{ viewer { enrollments { id preferences { reserveSocPercent readyBy targetSocPercent }
  events { id enrollmentId start end status signal level targetKw socFloorPercent response
    optedOutBy } } } }
"""
SET_PREFERENCES = """
mutation($input: SetEnrollmentPreferencesInput!) { setEnrollmentPreferences(input: $input) {
  __typename ... on EnrollmentPreferences { reserveSocPercent readyBy targetSocPercent }
  ... on InvalidInput { message field } } }
"""
OPT_OUT = """
mutation($id: ID!) { optOut(input: {eventId: $id}) {
  __typename ... on OptedOut { eventId events { id response optedOutBy status } }
  ... on EventAlreadyStarted { message start } ... on InvalidInput { message field } } }
"""


async def create_event_at(
    client, admin: str, program: str, *, start: dt.datetime, minutes: int = 30, **signal: Any
) -> dict:
    body = await gql(
        client,
        CREATE_EVENT,
        {
            "input": {
                "programId": program,
                "start": start.isoformat(),
                "durationMinutes": minutes,
                "signal": signal or {"level": 2, "targetKw": 3.5},
                "idempotencyKey": f"event-{uuid.uuid4().hex[:10]}",
            }
        },
        token=admin,
    )
    created = body["data"]["createEvent"]
    assert created["__typename"] == "DemandResponseEvent", body
    return created


def signals_of(event: dict) -> dict[str, float]:
    """An OpenLEADR event's signals, by name, their first interval's payload."""
    return {s["signal_name"]: s["intervals"][0]["signal_payload"] for s in event["event_signals"]}


def received(ven: SimulatedVen, event_id: str) -> list[dict]:
    """Each copy of the event the VEN received (a change is a new copy)."""
    return [e for e in ven.events if e["event_descriptor"]["event_id"] == event_id]


CAPACITY = """
query($program: ID!) { utilityAdmin { programCapacity(programId: $program) {
  devices onlineDevices availableKw availableKwh } } }
"""
EVENT_PERFORMANCE = """
query($program: ID!) { utilityAdmin { events(programId: $program) {
  id requestedKw deliveredKw responses { venName response } } } }
"""
