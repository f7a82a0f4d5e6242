"""Read what the API stored, the way an auditor would: straight from the tables."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import select

from core.db import Database
from identity.models import Customer, Tenant
from wallet.models import Wallet


async def customers_with_subject(db: Database, subject: str) -> list[Customer]:
    """Every customer row with this ``sub``, in any tenant."""
    async with db.session() as session:
        statement = select(Customer).where(Customer.subject == subject)
        return list((await session.execute(statement)).scalars())


async def wallets_of_subject(db: Database, subject: str) -> list[Wallet]:
    """Every wallet whose customer has this ``sub``, in any tenant."""
    async with db.session() as session:
        statement = (
            select(Wallet)
            .join(Customer, Customer.id == Wallet.customer_id)
            .where(Customer.subject == subject)
        )
        return list((await session.execute(statement)).scalars())


async def tenant_slug(db: Database, tenant_id: str) -> str:
    async with db.session() as session:
        statement = select(Tenant.slug).where(Tenant.id == tenant_id)
        return (await session.execute(statement)).scalar_one()


async def customer_count(db: Database) -> int:
    async with db.session() as session:
        statement = select(func.count()).select_from(Customer)
        return int((await session.execute(statement)).scalar_one())
