"""SQL of the identity domain, and nothing else."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from core.db import insert_if_absent, new_id, utc_now
from identity.models import Customer, Tenant


async def tenant_by_issuer(session: AsyncSession, issuer: str) -> Tenant | None:
    return (
        await session.execute(select(Tenant).where(Tenant.issuer == issuer))
    ).scalar_one_or_none()


async def all_tenants(session: AsyncSession) -> list[Tenant]:
    return list((await session.execute(select(Tenant).order_by(Tenant.slug))).scalars())


async def upsert_tenant(
    session: AsyncSession, *, slug: str, name: str, issuer: str, audience: str
) -> Tenant:
    existing = (
        await session.execute(select(Tenant).where(Tenant.slug == slug))
    ).scalar_one_or_none()
    if existing is None:
        await insert_if_absent(
            session,
            Tenant.__table__,
            {
                "id": new_id(),
                "slug": slug,
                "name": name,
                "issuer": issuer,
                "audience": audience,
                "created_at": utc_now(),
            },
        )
        existing = (await session.execute(select(Tenant).where(Tenant.slug == slug))).scalar_one()
    else:
        existing.name, existing.issuer, existing.audience = name, issuer, audience
        session.add(existing)
        await session.flush()
    return existing


async def customer_by_subject(
    session: AsyncSession, *, tenant_id: str, subject: str
) -> Customer | None:
    statement = select(Customer).where(Customer.tenant_id == tenant_id, Customer.subject == subject)
    return (await session.execute(statement)).scalar_one_or_none()


async def insert_customer_if_absent(
    session: AsyncSession, *, tenant_id: str, subject: str, email: str | None
) -> None:
    await insert_if_absent(
        session,
        Customer.__table__,
        {
            "id": new_id(),
            "tenant_id": tenant_id,
            "subject": subject,
            "email": email,
            "created_at": utc_now(),
        },
    )
