"""Tables of the wallet domain."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, LargeBinary
from sqlmodel import Field, SQLModel

from core.db import UTCDateTime, new_id, utc_now


class Wallet(SQLModel, table=True):
    """A custodial wallet: one per customer.

    The private key is stored only as ``encrypted_private_key`` (AES-256-GCM under a per-wallet
    data key, the address bound in as associated data); the data key is stored only wrapped by
    the key-encryption key named by ``kek_id``.
    """

    __tablename__ = "wallets"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    customer_id: str = Field(foreign_key="customers.id", unique=True, max_length=36)
    address: str = Field(unique=True, max_length=42)
    encrypted_private_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    wrapped_data_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    kek_id: str = Field(max_length=64, index=True)
    next_forwarder_nonce: int = Field(
        default=0,
        sa_column=Column(BigInteger, nullable=False, default=0, server_default="0"),
        description="The next ERC-2771 forwarder nonce this wallet signs with; taking one is "
        "the first write of a transfer's transaction, so it also serialises a wallet's transfers.",
    )
    created_at: datetime = Field(
        default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False)
    )
