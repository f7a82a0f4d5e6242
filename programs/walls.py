"""What an enrollment may not cross, checked before anything is locked, charged or queued.

- A customer checks, enrolls in and leaves only their own utility's programs: another
  utility's program would be paid by that utility's sponsor and custodial wallet
  (``require_own_utility``, ``OtherUtility``).
- A device has at most one enrollment in a program awaiting its fee, connecting, active or
  unenrolling: a second would only revert on chain at the operator's or sponsor's cost
  (``refuse_second_enrollment``, ``AlreadyEnrolled``, which says what the customer can do
  about the first). The device's row lock settles two concurrent enrollments of it: the
  second waits, then sees the first.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from identity.service import CustomerAccount
from programs import repository
from programs.catalog import program_by_id
from programs.deps import ProgramServices
from programs.errors import AlreadyEnrolled, OtherUtility
from programs.models import EnrollmentStatus, Program
from programs.status import refresh_status


def require_own_utility(account: CustomerAccount, tenant_id: str, *, field: str) -> None:
    """``OtherUtility`` unless ``tenant_id`` is the customer's utility."""
    if tenant_id != account.customer.tenant_id:
        raise OtherUtility(
            "this program is another utility's: you can enroll only in your own utility's programs",
            field=field,
        )


async def program_of_own_utility(
    session: AsyncSession, *, account: CustomerAccount, program_row_id: str
) -> Program:
    """The program, if it is the customer's utility's."""
    program = await program_by_id(session, program_row_id)
    require_own_utility(account, program.tenant_id, field="programId")
    return program


async def lock_device(
    session: AsyncSession, *, account: CustomerAccount, device_row_id: str
) -> None:
    """Hold the customer's device until commit: taken before the wallet (the order of every
    enrollment), so enrollments of one device run one after the other."""
    await repository.lock_device(
        session, customer_id=account.customer.id, device_row_id=device_row_id
    )


async def refuse_second_enrollment(
    session: AsyncSession,
    *,
    services: ProgramServices,
    account: CustomerAccount,
    device_row_id: str,
    program_row_id: str,
) -> None:
    """``AlreadyEnrolled`` when the device (locked by ``lock_device``) has a live enrollment
    in the program; each one is first moved along with its job, so a failed connect or a
    finished disconnect does not count."""
    for row in await repository.live_enrollments(
        session,
        customer_id=account.customer.id,
        device_row_id=device_row_id,
        program_row_id=program_row_id,
    ):
        row = await refresh_status(session, services=services, enrollment=row)
        if row.status in repository.LIVE_STATUSES:
            raise AlreadyEnrolled(
                f"this device already has an enrollment in this program ({row.status}): "
                + _what_to_do(row.status, services=services),
                field="deviceId",
            )


def _what_to_do(status: str, *, services: ProgramServices) -> str:
    """What the customer can do about their live enrollment, by its status."""
    if status == EnrollmentStatus.FEE_PENDING:
        minutes = services.settings.card_enrollment_payment_minutes
        return (
            "pay its fee with the card payment it opened (it then connects by itself), or "
            "unenroll it to cancel that payment; unpaid, it is canceled by itself "
            f"{minutes} minutes after it was opened"
        )
    if status == EnrollmentStatus.CONNECTING:
        return "it is connecting: wait until it is ACTIVE (or FAILED), then unenroll it to leave"
    if status == EnrollmentStatus.UNENROLLING:
        return "it is being unenrolled: enroll again once it is UNENROLLED"
    return "unenroll it first"
