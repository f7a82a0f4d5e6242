"""Tables of the identity domain: utilities (tenants) and their customers."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Column, UniqueConstraint, true
from sqlmodel import Field, SQLModel

from core.db import UTCDateTime, new_id, utc_now


class CustomerKind(StrEnum):
    CUSTOMER = "CUSTOMER"
    """A person, known by the ``sub`` of their utility's tokens: signs in."""
    SYSTEM = "SYSTEM"
    """A wallet of the system (a utility's registry and sponsor wallet, the onramp treasury):
    named by the code, never by a token. No sign-in ever finds one."""


class Tenant(SQLModel, table=True):
    """A utility. Its OpenID Provider (``issuer``) signs its customers' access tokens, while the
    configuration lists it (``enabled``, set at every start); its rows stay when it leaves."""

    __tablename__ = "tenants"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    slug: str = Field(unique=True, max_length=63)
    name: str = Field(max_length=200)
    issuer: str = Field(unique=True, max_length=500)
    audience: str = Field(max_length=500)
    enabled: bool = Field(default=True, sa_column_kwargs={"server_default": true()}, nullable=False)
    admin_client_ids: list = Field(
        default_factory=list,
        sa_column=Column(JSON, nullable=False, server_default="[]"),
        description="OAuth clients whose tokens may use utility:admin",
    )
    created_at: datetime = Field(
        default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False)
    )


class Customer(SQLModel, table=True):
    """A wallet's owner: a utility customer (``CUSTOMER``, known by the ``sub`` of their
    utility's tokens) or a system wallet (``SYSTEM``, known by a name the code gives). The two
    kinds never share a row: a token's subject only ever finds a ``CUSTOMER``."""

    __tablename__ = "customers"
    __table_args__ = (
        UniqueConstraint("tenant_id", "kind", "subject", name="uq_customers_tenant_kind_subject"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=36)
    kind: str = Field(
        default=CustomerKind.CUSTOMER,
        max_length=16,
        sa_column_kwargs={"server_default": CustomerKind.CUSTOMER.value},
    )
    subject: str = Field(max_length=255)
    email: str | None = Field(default=None, max_length=320)
    created_at: datetime = Field(
        default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False)
    )
