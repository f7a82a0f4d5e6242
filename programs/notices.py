"""``enrollment.changed`` app webhooks: every status an enrollment takes is told to its
utility, in the transaction that writes it (``appwebhooks.service.emit``).

The dedupe key is the enrollment, its status and the job that caused it (the disconnect job
for UNENROLLING, UNENROLLED and an ACTIVE after a failed disconnect, else the connect job):
two requests refreshing one enrollment at once emit it once, and a status taken again later
for another reason (ACTIVE again after a failed unenroll) is a new event."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from appwebhooks.models import EventType
from appwebhooks.service import emit
from identity.models import Customer
from programs.models import Enrollment, Program


async def enrollment_changed(session: AsyncSession, enrollment_id: str) -> None:
    """Emits the enrollment as it now is (read again: the caller may have written it with a
    guarded UPDATE its objects do not see)."""
    statement = (
        select(Enrollment, Program.external_id, Program.program_id, Customer.subject)
        .join(Program, Program.id == Enrollment.program_row_id)
        .join(Customer, Customer.id == Enrollment.customer_id)
        .where(Enrollment.id == enrollment_id)
        .execution_options(populate_existing=True)
    )
    row = (await session.execute(statement)).one_or_none()
    if row is None:
        return
    enrollment, external_id, registry_program_id, subject = row
    cause = enrollment.unenroll_relay_transaction_id or enrollment.relay_transaction_id or ""
    await emit(
        session,
        enrollment.tenant_id,
        EventType.ENROLLMENT_CHANGED,
        changed_payload(
            enrollment,
            program_external_id=external_id,
            registry_program_id=registry_program_id,
            customer_subject=subject,
        ),
        dedupe_key=f"{EventType.ENROLLMENT_CHANGED.value}:{enrollment.id}:{enrollment.status}:"
        f"{cause}",
    )


def changed_payload(
    enrollment: Enrollment,
    *,
    program_external_id: str,
    registry_program_id: str,
    customer_subject: str,
) -> dict[str, Any]:
    return {
        "enrollmentId": enrollment.id,
        "status": enrollment.status,
        "programId": enrollment.program_row_id,
        "programExternalId": program_external_id,
        "registryProgramId": registry_program_id,
        "deviceId": enrollment.device_row_id,
        "customerSubject": customer_subject,
        "paymentMethod": enrollment.payment_method,
        "protocol": enrollment.protocol,
        "connectionId": enrollment.connection_id,
        "transactionId": enrollment.unenroll_relay_transaction_id
        or enrollment.relay_transaction_id,
        "error": enrollment.error,
        "updatedAt": enrollment.updated_at.isoformat(),
    }
