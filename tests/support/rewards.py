"""An ended demand-response event of a fresh program of the demo utility, with the program
server's rows (VENs, deliveries and their answers, telemetry) written as the program server
writes them, for settlement tests; and following a settlement to its end."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import httpx
from eth_hash.auto import keccak
from sqlmodel import select

from api.container import Services
from chain.address_book import AddressBook
from chain.deploy import Deployer
from core.db import new_id, utc_now
from identity.models import Tenant
from programs.models import Device, Enrollment, FeePayer, Program
from programs.rewards.models import ContributionRecord, RewardSettlement, SettlementStatus
from programs.rewards.settlement import advance
from programs.vtn.models import DeviceReading, DrEvent, EventDelivery, Ven
from registry_client.routing import device_id_of, model_id_of
from tests.support.issuer import TestIssuer
from tests.support.wallets import new_customer
from wallet.models import Wallet

OVPP = 10**18
MAKE, MODEL = "Voltstack", "VS-13.5"  # the demo vendor's battery: 5 kW, 13.5 kWh
EVENT_MINUTES = 2
BASELINE_KW = 0.5


@dataclass(frozen=True)
class DeviceSpec:
    response: str | None  # OPT_IN, OPT_OUT or None (no answer)
    event_kw: float | None  # site power during the event; None: no telemetry at all


@dataclass(frozen=True)
class Participant:
    address: str
    customer_id: str
    enrollment_id: str
    device_id: str
    spec: DeviceSpec
    token: str = ""  # the customer's access token


@dataclass(frozen=True)
class EndedEvent:
    event_id: str
    tenant_id: str
    program_row_id: str
    participants: list[Participant]


async def fresh_program(
    services: Services, tenant: Tenant, *, per_event_reward: int, enrollment_bonus: int = 0
) -> Program:
    """A catalog row of the demo utility (settlement reads the catalog's incentives)."""
    program = Program(
        tenant_id=tenant.id,
        program_id="0x" + keccak(uuid.uuid4().bytes).hex(),
        external_id=f"rewards-{uuid.uuid4().hex[:8]}",
        name="Rewards test program",
        fee_payer=FeePayer.SPONSOR,
        connection_fee=0,
        enrollment_bonus=enrollment_bonus,
        per_event_reward=per_event_reward,
        protocols=["OPENADR_2_0B"],
        eligible_device_types=["BATTERY"],
    )
    async with services.db.session() as session:
        session.add(program)
    return program


async def ended_event(
    services: Services,
    *,
    client: httpx.AsyncClient,
    issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
    tenant: Tenant,
    program: Program,
    devices: list[DeviceSpec],
    target_kw: float = 3.5,
) -> EndedEvent:
    """An event of ``program`` that ended a minute ago, sent to one new customer's battery per
    spec: a reading every 10 s for the hour before (``BASELINE_KW``) and, for a spec with
    ``event_kw``, every second during the event."""
    start = utc_now().replace(microsecond=0) - timedelta(minutes=EVENT_MINUTES + 1)
    event = DrEvent(
        tenant_id=tenant.id, program_row_id=program.id, start=start,
        duration_minutes=EVENT_MINUTES, signal_type="LOAD_DISPATCH", level=0.0,
        target_kw=target_kw, idempotency_key=new_id(), request_fingerprint="test",
    )  # fmt: skip
    participants = []
    async with services.db.session() as session:
        session.add(event)
    for spec in devices:
        customer = await new_customer(client, issuer, deployer, contracts)
        participant = await _participant(
            services, event=event, program=program, spec=spec, address=customer.address
        )
        participants.append(replace(participant, token=customer.token))
    return EndedEvent(event.id, tenant.id, program.id, participants)


async def _participant(
    services: Services, *, event: DrEvent, program: Program, spec: DeviceSpec, address: str
) -> Participant:
    serial = uuid.uuid4().hex[:10]
    async with services.db.session() as session:
        wallet = (
            await session.execute(select(Wallet).where(Wallet.address == address))
        ).scalar_one()
        device = Device(
            customer_id=wallet.customer_id,
            device_id="0x" + device_id_of(MAKE, MODEL, serial).hex(),
            model_id="0x" + model_id_of(MAKE, MODEL).hex(), make=MAKE, model=MODEL, serial=serial,
            device_type="BATTERY", site_line1="1 Market St", site_city="San Francisco",
            site_region="CA", site_postal_code="94105", site_country="US",
        )  # fmt: skip
        session.add(device)
        await session.flush()
        enrollment = Enrollment(
            customer_id=wallet.customer_id, device_row_id=device.id, program_row_id=program.id,
            tenant_id=program.tenant_id, protocol="OPENADR_2_0B", payment_method="SPONSOR",
            status="ACTIVE", idempotency_key=new_id(), request_fingerprint="test", fee_amount=0,
        )  # fmt: skip
        session.add(enrollment)
        await session.flush()
        ven = Ven(
            ven_name=f"ven-{serial}", enrollment_id=enrollment.id, program_row_id=program.id,
            tenant_id=program.tenant_id,
        )  # fmt: skip
        session.add(ven)
        await session.flush()
        session.add(
            EventDelivery(
                event_id=event.id, ven_row_id=ven.id, delivered_modification=0,
                delivered_at=event.start, response=spec.response,
                responded_at=event.start if spec.response else None,
            )
        )  # fmt: skip
        session.add_all(_readings(enrollment.id, event.start, spec))
    return Participant(address, wallet.customer_id, enrollment.id, device.device_id, spec)


def _readings(enrollment_id: str, start: datetime, spec: DeviceSpec) -> list[DeviceReading]:
    if spec.event_kw is None:
        return []
    before = [(start - timedelta(seconds=s), BASELINE_KW) for s in range(10, 3601, 10)]
    during = [(start + timedelta(seconds=s), spec.event_kw) for s in range(EVENT_MINUTES * 60)]
    return [
        DeviceReading(
            enrollment_id=enrollment_id,
            resource_id="battery-1",
            measurement="power_real",
            timestamp=at,
            value=kw,
            unit="W",
            scale="k",
        )
        for at, kw in before + during
    ]


async def settled(
    services: Services, settlement_id: str, *, timeout: float = 90
) -> RewardSettlement:
    """Advance the settlement (the relayer worker sends its jobs) until it is no longer open."""
    deadline = time.monotonic() + timeout
    while True:
        await advance(services, settlement_id)
        async with services.db.session() as session:
            settlement = await session.get_one(RewardSettlement, settlement_id)
        if settlement.status in (SettlementStatus.SETTLED, SettlementStatus.FAILED):
            return settlement
        assert time.monotonic() < deadline, (
            f"settlement still {settlement.status}: {settlement.error}"
        )
        await asyncio.sleep(0.2)


async def records(services: Services, settlement_id: str) -> dict[str, ContributionRecord]:
    """By enrollment id."""
    async with services.db.session() as session:
        rows = await session.execute(
            select(ContributionRecord).where(ContributionRecord.settlement_id == settlement_id)
        )
        return {r.enrollment_id: r for r in rows.scalars()}


async def another_event(services: Services, first: EndedEvent) -> EndedEvent:
    """A second ended event of the same program, sent to the same VENs, same telemetry."""
    async with services.db.session() as session:
        previous = await session.get_one(DrEvent, first.event_id)
        event = DrEvent(
            tenant_id=previous.tenant_id, program_row_id=previous.program_row_id,
            start=previous.start - timedelta(hours=3), duration_minutes=EVENT_MINUTES,
            signal_type=previous.signal_type, level=previous.level, target_kw=previous.target_kw,
            idempotency_key=new_id(), request_fingerprint="test",
        )  # fmt: skip
        session.add(event)
        await session.flush()
        for participant in first.participants:
            ven = (
                await session.execute(
                    select(Ven).where(Ven.enrollment_id == participant.enrollment_id)
                )
            ).scalar_one()
            session.add(
                EventDelivery(
                    event_id=event.id, ven_row_id=ven.id, delivered_modification=0,
                    response=participant.spec.response,
                )
            )  # fmt: skip
            session.add_all(_readings(participant.enrollment_id, event.start, participant.spec))
    return EndedEvent(event.id, first.tenant_id, first.program_row_id, first.participants)
