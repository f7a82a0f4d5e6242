"""Every table of every domain, imported in one place for Alembic and the tests."""

from __future__ import annotations

from sqlmodel import SQLModel

from identity.models import Customer, Tenant
from wallet.models import Wallet

metadata = SQLModel.metadata

__all__ = ["Customer", "Tenant", "Wallet", "metadata"]
