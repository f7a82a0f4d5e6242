"""Provisioning follows enrollment, and registration follows provisioning.

An enrollment that becomes ACTIVE with OpenADR 2.0b connection parameters provisions its VEN
(the ``venName`` of those parameters) for its program, with the program's events that have not
ended; UNENROLLED de-provisions it. Only a
provisioned VEN may register (oadrCreatePartyRegistration); its ``ven_id`` stays the same
across registrations and restarts, and over TLS its client certificate's fingerprint is pinned
at the first registration and required afterwards.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from core.db import utc_now
from programs.models import Enrollment
from programs.vtn import repository
from programs.vtn.errors import RegistrationRefused
from programs.vtn.models import Ven, VenStatus

OPENADR_2_0B = "OPENADR_2_0B"


def ven_name_of(enrollment: Enrollment) -> str | None:
    """The VEN name an OpenADR 2.0b enrollment's device registers with, else ``None``."""
    if enrollment.protocol != OPENADR_2_0B:
        return None
    name = (enrollment.connection_parameters or {}).get("venName")
    return name if isinstance(name, str) and name else None


async def provision(session: AsyncSession, enrollment: Enrollment) -> Ven | None:
    """Let the enrollment's VEN register for its program (idempotent). A VEN that was
    de-provisioned keeps its row (its ``ven_id`` and pinned fingerprint) and is provisioned
    again only by an enrollment of its own."""
    ven_name = ven_name_of(enrollment)
    if ven_name is None:
        return None
    ven = await repository.ven_of_enrollment(session, enrollment.id)
    if ven is None:
        earlier = await repository.ven_by_name(session, ven_name)
        if earlier is not None:
            # The same device in the same program again (its venName is derived from both):
            # the new enrollment takes the VEN over, as a new device credential.
            earlier.enrollment_id = enrollment.id
            earlier.cert_fingerprint = None
            earlier.registration_id = None
            ven = earlier
        else:
            ven = Ven(
                ven_name=ven_name,
                enrollment_id=enrollment.id,
                program_row_id=enrollment.program_row_id,
                tenant_id=enrollment.tenant_id,
            )
    ven.status = VenStatus.PROVISIONED
    ven.program_row_id = enrollment.program_row_id
    ven.provisioned_at = utc_now()
    ven.deprovisioned_at = None
    session.add(ven)
    await session.flush()
    # A device that joins while an event is announced or running gets it too.
    current = await repository.events_not_ended(session, ven.program_row_id, now=utc_now())
    await repository.add_deliveries(session, ven.id, [event.id for event in current])
    return ven


async def deprovision(session: AsyncSession, enrollment: Enrollment) -> None:
    """The enrollment ended: its VEN's registration is dropped and it may not register again."""
    ven = await repository.ven_of_enrollment(session, enrollment.id)
    if ven is None or ven.status == VenStatus.DEPROVISIONED:
        return
    ven.status = VenStatus.DEPROVISIONED
    ven.registration_id = None
    ven.deprovisioned_at = utc_now()
    session.add(ven)
    await session.flush()


@dataclass(frozen=True)
class Registration:
    ven_id: str
    registration_id: str


async def register(
    session: AsyncSession,
    *,
    ven_name: str,
    ven_id: str | None,
    fingerprint: str | None,
    tls: bool,
) -> Registration:
    """oadrCreatePartyRegistration: accepted only for a provisioned VEN, under the ``ven_id``
    it was given before (a VEN may not claim another's), with the certificate it registered
    with first (over TLS). Raises ``RegistrationRefused``."""
    ven = await repository.ven_by_name(session, ven_name)
    if ven is None or ven.status != VenStatus.PROVISIONED:
        raise RegistrationRefused(f"the VEN {ven_name!r} is not provisioned on this server")
    if ven_id and ven_id != ven.ven_id:
        raise RegistrationRefused(f"the venID {ven_id!r} is not the one of {ven_name!r}")
    if tls:
        if fingerprint is None:
            raise RegistrationRefused("a client certificate is required")
        if ven.cert_fingerprint is None:
            ven.cert_fingerprint = fingerprint
        elif ven.cert_fingerprint != fingerprint:
            raise RegistrationRefused(f"the VEN {ven_name!r} registered with another certificate")
    ven.ven_id = ven.ven_id or f"VEN-{uuid.uuid4().hex}"
    ven.registration_id = f"REG-{uuid.uuid4().hex}"
    ven.registered_at = utc_now()
    session.add(ven)
    await session.flush()
    return Registration(ven_id=ven.ven_id, registration_id=ven.registration_id)


async def cancel_registration(session: AsyncSession, ven_id: str) -> str | None:
    """oadrCancelPartyRegistration: the VEN leaves; it may register again while provisioned.
    Returns the registration id it had."""
    ven = await repository.ven_by_ven_id(session, ven_id)
    if ven is None or ven.registration_id is None:
        return None
    registration_id = ven.registration_id
    ven.registration_id = None
    session.add(ven)
    await session.flush()
    return registration_id


async def registered_ven(session: AsyncSession, ven_id: str) -> Ven | None:
    """The VEN behind a ``ven_id`` if it is provisioned and registered; otherwise OpenLEADR
    asks it to register again (and a de-provisioned one is then refused)."""
    ven = await repository.ven_by_ven_id(session, ven_id)
    if ven is None or ven.status != VenStatus.PROVISIONED or ven.registration_id is None:
        return None
    return ven


@dataclass(frozen=True)
class VenIdentity:
    """What a message's lookup finds of a provisioned, registered VEN."""

    row_id: str
    ven_id: str
    ven_name: str
    enrollment_id: str
    registration_id: str
    cert_fingerprint: str | None


async def registered_identity(connection: AsyncConnection, ven_id: str) -> VenIdentity | None:
    """``registered_ven`` in one Core statement, for the lookup of every message."""
    row = await repository.ven_identity(connection, ven_id)
    if row is None or row.status != VenStatus.PROVISIONED or row.registration_id is None:
        return None
    return VenIdentity(
        row_id=row.id,
        ven_id=row.ven_id,
        ven_name=row.ven_name,
        enrollment_id=row.enrollment_id,
        registration_id=row.registration_id,
        cert_fingerprint=row.cert_fingerprint,
    )
