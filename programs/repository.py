"""SQL of programs and enrollment, and nothing else."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import insert_if_absent, utc_now
from identity.models import Tenant
from onramp.models import AWAITING_PAYMENT, OnrampPayment, PaymentStatus
from programs.models import (
    ERROR_LENGTH,
    OPEN_REGISTRY_CHANGES,
    Device,
    Enrollment,
    EnrollmentStatus,
    Program,
    RegistryChange,
    UtilityAccount,
)
from relayer.models import RelayStatus, RelayTransaction

# -- utilities and the catalog -------------------------------------------------------------------


async def utility_of_tenant(session: AsyncSession, tenant_id: str) -> UtilityAccount | None:
    statement = select(UtilityAccount).where(UtilityAccount.tenant_id == tenant_id)
    return (await session.execute(statement)).scalar_one_or_none()


async def tenant_by_slug(session: AsyncSession, slug: str) -> Tenant | None:
    return (await session.execute(select(Tenant).where(Tenant.slug == slug))).scalar_one_or_none()


async def active_programs_with_utilities(
    session: AsyncSession,
) -> list[tuple[Program, Tenant, UtilityAccount]]:
    """Every active program with its tenant and utility account, by name."""
    statement = (
        select(Program, Tenant, UtilityAccount)
        .join(Tenant, Tenant.id == Program.tenant_id)
        .join(UtilityAccount, UtilityAccount.tenant_id == Program.tenant_id)
        .where(Program.active.is_(True))
        .order_by(Program.name)
    )
    return [tuple(row) for row in (await session.execute(statement)).all()]  # type: ignore[misc]


async def program_by_registry_id(session: AsyncSession, program_id: str) -> Program | None:
    statement = select(Program).where(Program.program_id == program_id)
    return (await session.execute(statement)).scalar_one_or_none()


async def programs_of_tenant(session: AsyncSession, tenant_id: str) -> list[Program]:
    statement = select(Program).where(Program.tenant_id == tenant_id).order_by(Program.name)
    return list((await session.execute(statement)).scalars())


async def active_enrollment_counts(session: AsyncSession, tenant_id: str) -> dict[str, int]:
    """ACTIVE enrollments per program row id of the tenant's programs."""
    statement = (
        select(Enrollment.program_row_id, func.count())
        .where(Enrollment.tenant_id == tenant_id, Enrollment.status == "ACTIVE")
        .group_by(Enrollment.program_row_id)
    )
    return dict((await session.execute(statement)).all())  # type: ignore[arg-type]


# -- devices -------------------------------------------------------------------------------------


async def device_of_customer_by_device_id(
    session: AsyncSession, *, customer_id: str, device_id: str
) -> Device | None:
    statement = select(Device).where(
        Device.customer_id == customer_id, Device.device_id == device_id
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def devices_of_customer(session: AsyncSession, customer_id: str) -> list[Device]:
    statement = select(Device).where(Device.customer_id == customer_id).order_by(Device.created_at)
    return list((await session.execute(statement)).scalars())


# -- enrollments ---------------------------------------------------------------------------------


async def enrollment_by_key(
    session: AsyncSession, *, customer_id: str, idempotency_key: str
) -> Enrollment | None:
    statement = select(Enrollment).where(
        Enrollment.customer_id == customer_id,
        Enrollment.idempotency_key == idempotency_key,
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def enrollments_of_customer(session: AsyncSession, customer_id: str) -> list[Enrollment]:
    statement = (
        select(Enrollment)
        .where(Enrollment.customer_id == customer_id)
        .order_by(Enrollment.created_at)
    )
    return list((await session.execute(statement)).scalars())


async def enrollments_of_tenant(
    session: AsyncSession, *, tenant_id: str, program_row_id: str | None, first: int
) -> list[Enrollment]:
    """The tenant's newest ``first`` enrollments, of one program when ``program_row_id``."""
    statement = select(Enrollment).where(Enrollment.tenant_id == tenant_id)
    if program_row_id is not None:
        statement = statement.where(Enrollment.program_row_id == program_row_id)
    statement = statement.order_by(Enrollment.created_at.desc()).limit(first)
    return list((await session.execute(statement)).scalars())


async def insert_fee_pending_enrollment(
    session: AsyncSession,
    *,
    enrollment_id: str,
    customer_id: str,
    device_row_id: str,
    program: Program,
    protocol: str,
    idempotency_key: str,
    request_fingerprint: str,
    fee_amount: int,
    routing: dict,
) -> bool:
    """A card-paid enrollment awaiting its fee; false when a twin request inserted this id
    first (``INSERT … ON CONFLICT DO NOTHING``)."""
    now = utc_now()
    return await insert_if_absent(
        session,
        Enrollment.__table__,
        {
            "id": enrollment_id,
            "customer_id": customer_id,
            "device_row_id": device_row_id,
            "program_row_id": program.id,
            "tenant_id": program.tenant_id,
            "protocol": protocol,
            "payment_method": "CARD",
            "status": EnrollmentStatus.FEE_PENDING.value,
            "idempotency_key": idempotency_key,
            "request_fingerprint": request_fingerprint,
            "fee_amount": fee_amount,
            "routing": routing,
            "created_at": now,
            "updated_at": now,
        },
    )


async def claim_fee_pending_for_connect(session: AsyncSession, enrollment_id: str) -> bool:
    """FEE_PENDING → CONNECTING; false when a concurrent step moved the enrollment first."""
    claimed = await session.execute(
        update(Enrollment)
        .where(Enrollment.id == enrollment_id, Enrollment.status == EnrollmentStatus.FEE_PENDING)
        .values(status=EnrollmentStatus.CONNECTING.value, updated_at=utc_now())
    )
    return bool(claimed.rowcount)  # type: ignore[attr-defined]


async def set_connect_job(
    session: AsyncSession, *, enrollment_id: str, relay_transaction_id: str, routing: dict
) -> None:
    await session.execute(
        update(Enrollment)
        .where(Enrollment.id == enrollment_id)
        .values(relay_transaction_id=relay_transaction_id, routing=routing)
    )


async def end_fee_pending(
    session: AsyncSession,
    *,
    enrollment_id: str,
    reason: str,
    status: EnrollmentStatus = EnrollmentStatus.FAILED,
    unenroll_idempotency_key: str | None = None,
) -> bool:
    """FEE_PENDING → ``status`` (FAILED, or UNENROLLED at the customer's ``unenroll``) with
    ``reason``; false when the enrollment had moved on."""
    result = await session.execute(
        update(Enrollment)
        .where(Enrollment.id == enrollment_id, Enrollment.status == EnrollmentStatus.FEE_PENDING)
        .values(
            status=status.value,
            error=reason[:ERROR_LENGTH],
            unenroll_idempotency_key=unenroll_idempotency_key,
            updated_at=utc_now(),
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def unpaid_card_enrollments(
    session: AsyncSession, *, opened_before: datetime, limit: int
) -> list[str]:
    """FEE_PENDING enrollments whose card payment, opened before ``opened_before``, still
    awaits a card; the payment least recently looked at (``updated_at``) first."""
    statement = (
        select(Enrollment.id)
        .join(OnrampPayment, OnrampPayment.enrollment_id == Enrollment.id)
        .where(
            Enrollment.status == EnrollmentStatus.FEE_PENDING,
            OnrampPayment.status.in_([status.value for status in AWAITING_PAYMENT]),
            OnrampPayment.created_at <= opened_before,
        )
        .order_by(OnrampPayment.updated_at, Enrollment.id)
        .limit(limit)
    )
    return list((await session.execute(statement)).scalars())


async def card_enrollments_to_advance(
    session: AsyncSession, *, limit: int = 100
) -> list[tuple[str, str, str]]:
    """(enrollment id, enrollment status, payment status) of card-paid enrollments the
    processor still has to move: fee paid and delivered, payment given up, or connecting."""
    statement = (
        select(Enrollment.id, Enrollment.status, OnrampPayment.status)
        .join(OnrampPayment, OnrampPayment.enrollment_id == Enrollment.id)
        .where(
            or_(
                and_(
                    Enrollment.status == EnrollmentStatus.FEE_PENDING,
                    OnrampPayment.status.in_(
                        (
                            PaymentStatus.DELIVERED,
                            PaymentStatus.DELIVERY_FAILED,
                            PaymentStatus.CANCELED,
                            PaymentStatus.REFUNDED,
                            PaymentStatus.DISPUTED,
                            PaymentStatus.REFUND_FAILED,
                        )
                    ),
                ),
                Enrollment.status == EnrollmentStatus.CONNECTING,
            )
        )
        .limit(limit)
    )
    return [tuple(row) for row in (await session.execute(statement)).all()]  # type: ignore[misc]


# -- one enrollment per device and program --------------------------------------------------------

LIVE_STATUSES = (
    EnrollmentStatus.FEE_PENDING,
    EnrollmentStatus.CONNECTING,
    EnrollmentStatus.ACTIVE,
    EnrollmentStatus.UNENROLLING,
)
"""An enrollment in one of these holds (or is about to hold) its device's connection."""


async def lock_device(session: AsyncSession, *, customer_id: str, device_row_id: str) -> None:
    """The customer's device's lock until commit (a no-op UPDATE of its row: a row lock in
    PostgreSQL, the write lock in SQLite); nothing when the device is not theirs."""
    await session.execute(
        update(Device)
        .where(Device.id == device_row_id, Device.customer_id == customer_id)
        .values(device_id=Device.device_id)
    )


async def live_enrollments(
    session: AsyncSession, *, customer_id: str, device_row_id: str, program_row_id: str
) -> list[Enrollment]:
    """The device's enrollments in the program whose status is one of ``LIVE_STATUSES``."""
    statement = select(Enrollment).where(
        Enrollment.customer_id == customer_id,
        Enrollment.device_row_id == device_row_id,
        Enrollment.program_row_id == program_row_id,
        Enrollment.status.in_(LIVE_STATUSES),
    )
    return list((await session.execute(statement)).scalars())


# -- registry changes ----------------------------------------------------------------------------

_OPEN = [status.value for status in OPEN_REGISTRY_CHANGES]
_ENDED_JOB = [RelayStatus.CONFIRMED, RelayStatus.FAILED, RelayStatus.REPLACED]


async def open_registry_change(session: AsyncSession, tenant_id: str) -> RegistryChange | None:
    statement = select(RegistryChange).where(
        RegistryChange.tenant_id == tenant_id, RegistryChange.status.in_(_OPEN)
    )
    return (await session.execute(statement)).scalars().first()


async def registry_changes_since(
    session: AsyncSession, tenant_id: str, *, since: datetime
) -> list[datetime]:
    """When the utility asked its changes since ``since`` (indexed by tenant and time)."""
    statement = select(RegistryChange.created_at).where(
        RegistryChange.tenant_id == tenant_id, RegistryChange.created_at >= since
    )
    return list((await session.execute(statement)).scalars())


async def registry_changes_with_ended_jobs(session: AsyncSession) -> list[str]:
    """The open changes whose current job has ended, oldest first."""
    statement = (
        select(RegistryChange.id)
        .join(RelayTransaction, RelayTransaction.id == RegistryChange.relay_transaction_id)
        .where(RegistryChange.status.in_(_OPEN), RelayTransaction.status.in_(_ENDED_JOB))
        .order_by(RegistryChange.created_at)
        .limit(100)
    )
    return list((await session.execute(statement)).scalars())


async def lock_registry_change(
    session: AsyncSession, change_id: str, *, job_id: str
) -> RegistryChange | None:
    """The change, locked, if it is still open at the job ``job_id`` (else another process
    moved it on)."""
    statement = (
        select(RegistryChange)
        .where(
            RegistryChange.id == change_id,
            RegistryChange.status.in_(_OPEN),
            RegistryChange.relay_transaction_id == job_id,
        )
        .with_for_update()
    )
    return (await session.execute(statement)).scalars().first()


async def registry_changes_of_tenant(
    session: AsyncSession, tenant_id: str, *, first: int, external_id: str | None = None
) -> list[tuple[RegistryChange, str | None]]:
    """The utility's newest changes (of one program when ``external_id``), each with its
    current job's transaction hash."""
    statement = (
        select(RegistryChange, RelayTransaction.tx_hash)
        .outerjoin(RelayTransaction, RelayTransaction.id == RegistryChange.relay_transaction_id)
        .where(RegistryChange.tenant_id == tenant_id)
        .order_by(RegistryChange.created_at.desc())
        .limit(first)
    )
    if external_id is not None:
        statement = statement.where(RegistryChange.external_id == external_id)
    return [(change, tx_hash) for change, tx_hash in (await session.execute(statement)).all()]
