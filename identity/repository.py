"""SQL of the identity domain, and nothing else."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from core.db import insert_if_absent, new_id, utc_now
from identity.models import Customer, CustomerKind, Tenant


async def tenant_by_issuer(session: AsyncSession, issuer: str) -> Tenant | None:
    return (
        await session.execute(select(Tenant).where(Tenant.issuer == issuer))
    ).scalar_one_or_none()


async def enabled_tenants(session: AsyncSession) -> list[Tenant]:
    statement = select(Tenant).where(Tenant.enabled).order_by(Tenant.slug)
    return list((await session.execute(statement)).scalars())


async def upsert_tenant(
    session: AsyncSession,
    *,
    slug: str,
    name: str,
    issuer: str,
    audience: str,
    admin_client_ids: Sequence[str] = (),
    enabled: bool = True,
) -> Tenant:
    values = {
        "name": name,
        "issuer": issuer,
        "audience": audience,
        "admin_client_ids": list(admin_client_ids),
        "enabled": enabled,
    }
    existing = (
        await session.execute(select(Tenant).where(Tenant.slug == slug))
    ).scalar_one_or_none()
    if existing is None:
        await insert_if_absent(
            session,
            Tenant.__table__,
            {"id": new_id(), "slug": slug, "created_at": utc_now(), **values},
        )
        existing = (await session.execute(select(Tenant).where(Tenant.slug == slug))).scalar_one()
    else:
        for field, value in values.items():
            setattr(existing, field, value)
        session.add(existing)
        await session.flush()
    return existing


async def disable_tenants_except(
    session: AsyncSession, *, slugs: Sequence[str], issuer_prefix_kept: str
) -> None:
    """Untrust every utility not in ``slugs``; tenants whose issuer starts with
    ``issuer_prefix_kept`` (system tenants, never issuers of tokens) are left as they are."""
    await session.execute(
        update(Tenant)
        .where(Tenant.slug.not_in(list(slugs)), Tenant.issuer.not_like(issuer_prefix_kept + "%"))  # type: ignore[attr-defined]
        .values(enabled=False)
    )


async def customer_by_subject(
    session: AsyncSession, *, tenant_id: str, subject: str, kind: CustomerKind
) -> Customer | None:
    statement = select(Customer).where(
        Customer.tenant_id == tenant_id, Customer.kind == kind, Customer.subject == subject
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def insert_customer_if_absent(
    session: AsyncSession,
    *,
    tenant_id: str,
    subject: str,
    email: str | None,
    kind: CustomerKind,
) -> None:
    await insert_if_absent(
        session,
        Customer.__table__,
        {
            "id": new_id(),
            "tenant_id": tenant_id,
            "kind": kind.value,
            "subject": subject,
            "email": email,
            "created_at": utc_now(),
        },
    )
