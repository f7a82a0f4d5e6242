"""Tables of the identity domain: utilities (tenants) and their customers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.db import UTCDateTime, new_id, utc_now


class Tenant(SQLModel, table=True):
    """A utility. Its OpenID Provider (``issuer``) signs its customers' access tokens."""

    __tablename__ = "tenants"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    slug: str = Field(unique=True, max_length=63)
    name: str = Field(max_length=200)
    issuer: str = Field(unique=True, max_length=500)
    audience: str = Field(max_length=500)
    created_at: datetime = Field(
        default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False)
    )


class Customer(SQLModel, table=True):
    """A utility customer, known by the ``sub`` of their utility's tokens."""

    __tablename__ = "customers"
    __table_args__ = (UniqueConstraint("tenant_id", "subject", name="uq_customers_tenant_subject"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=36)
    subject: str = Field(max_length=255)
    email: str | None = Field(default=None, max_length=320)
    created_at: datetime = Field(
        default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False)
    )
