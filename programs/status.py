"""Following an enrollment after its job is queued: CONNECTING to ACTIVE (or FAILED) with the
connect job and the registry, UNENROLLING to UNENROLLED (or back to ACTIVE) with the disconnect
job. The program server's provisioning follows: ACTIVE provisions an OpenADR 2.0b enrollment's
VEN, UNENROLLED de-provisions it (``programs.vtn.service``)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from core.db import utc_now
from programs.deps import ProgramServices
from programs.models import ERROR_LENGTH, Device, Enrollment, EnrollmentStatus, Program
from programs.notices import enrollment_changed
from programs.registry import registry_of
from programs.vtn.service import deprovision, provision
from relayer.models import RelayStatus, RelayTransaction

BOUGHT_FEE_KEPT = (
    "the OVPP bought with the card for the fee stays in your wallet: enroll again paying from "
    "the wallet, or send it"
)
"""Told when a card-paid enrollment fails after its OVPP arrived: the card payment is not
refunded (the tokens were delivered and are the customer's), so say where the value is."""


def with_bought_fee_kept(reason: str) -> str:
    """``reason`` and :data:`BOUGHT_FEE_KEPT`, within the 500 characters of ``error``, the
    reason cut if it must be so the sentence about the OVPP is never lost."""
    room = ERROR_LENGTH - len(BOUGHT_FEE_KEPT) - 2
    return f"{reason[:room]}; {BOUGHT_FEE_KEPT}"


async def _follow_connect(
    session: AsyncSession, *, services: ProgramServices, enrollment: Enrollment
) -> None:
    """CONNECTING → ACTIVE once the job is confirmed and the registry shows the connection,
    or FAILED."""
    assert enrollment.relay_transaction_id is not None
    job = await session.get(RelayTransaction, enrollment.relay_transaction_id)
    if job is not None and job.status == RelayStatus.CONFIRMED:
        registry = registry_of(services.chain)
        device = await session.get(Device, enrollment.device_row_id)
        program = await session.get(Program, enrollment.program_row_id)
        assert device is not None and program is not None
        connection_id = await registry.active_connection(
            bytes.fromhex(device.device_id[2:]), bytes.fromhex(program.program_id[2:])
        )
        if connection_id is not None:
            enrollment.connection_id = "0x" + connection_id.hex()
            enrollment.connection_parameters = enrollment.routing.get("connectionParameters") or {}
            enrollment.status = EnrollmentStatus.ACTIVE
            await provision(session, enrollment)
        else:
            enrollment.status = EnrollmentStatus.FAILED
            enrollment.error = "the registry shows no active connection"
    elif job is not None and job.status in (RelayStatus.FAILED, RelayStatus.REPLACED):
        enrollment.status = EnrollmentStatus.FAILED
        enrollment.error = job.error or "the connection transaction failed"
        if enrollment.payment_method == "CARD":
            # The connection and its fees are one call: nothing of the OVPP was spent.
            enrollment.error = with_bought_fee_kept(enrollment.error)


async def refresh_status(
    session: AsyncSession, *, services: ProgramServices, enrollment: Enrollment
) -> Enrollment:
    """Move the enrollment along with its relayed transaction and the registry (idempotent);
    a new status is told to the utility's webhooks in the same transaction."""
    before = enrollment.status
    if enrollment.status == EnrollmentStatus.CONNECTING and enrollment.relay_transaction_id:
        await _follow_connect(session, services=services, enrollment=enrollment)
    elif (
        enrollment.status == EnrollmentStatus.UNENROLLING
        and enrollment.unenroll_relay_transaction_id
    ):
        job = await session.get(RelayTransaction, enrollment.unenroll_relay_transaction_id)
        if job is not None and job.status == RelayStatus.CONFIRMED:
            enrollment.status = EnrollmentStatus.UNENROLLED
            await deprovision(session, enrollment)
        elif job is not None and job.status in (RelayStatus.FAILED, RelayStatus.REPLACED):
            enrollment.status = EnrollmentStatus.ACTIVE
            enrollment.unenroll_idempotency_key = None
            enrollment.error = job.error or "the disconnection failed"
    if enrollment in session.dirty:
        enrollment.updated_at = utc_now()
        session.add(enrollment)
        await session.flush()
    if enrollment.status != before:
        await enrollment_changed(session, enrollment.id)
    return enrollment
