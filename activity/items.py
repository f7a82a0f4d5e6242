"""What an activity item is, and how an indexed transfer or a relayed job becomes one.

An indexed transfer sent by a job of the wallet is that job's item (``transaction``): its
token transfer ``SENT`` (``ENROLLMENT_FEE`` for an enrollment), its gas fee to the fee treasury
``FEE``. A job not indexed yet is one ``PENDING`` item, a failed one a ``FAILED`` item; both
keep the id the indexed transfer takes later (``<job>:OUT``), so the app sees one item change.
Received tokens are ``RECEIVED``, or ``PURCHASE`` when an onramp delivery brought them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Row

from activity.repository import CHAIN_RANK, JOB_RANK, Owner, Position
from identity.models import CustomerKind
from identity.service import PLATFORM_ISSUER
from indexer.models import TransferStatus
from onramp.treasury import TREASURY_SUBJECT
from relayer.models import JobKind, RelayStatus

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
CARD_PURCHASE_LABEL = "Card purchase"
NETWORK_FEES_LABEL = "Network fees"
REWARDS_LABEL = "Program rewards"
MINTED_LABEL = "Token issuer"
REGISTRY_LABEL = "OpenVPP registry"


class ActivityKind(StrEnum):
    SENT = "SENT"
    RECEIVED = "RECEIVED"
    FEE = "FEE"
    PURCHASE = "PURCHASE"
    ENROLLMENT_FEE = "ENROLLMENT_FEE"
    REWARD = "REWARD"


INCOMING_KINDS = frozenset({ActivityKind.RECEIVED, ActivityKind.PURCHASE, ActivityKind.REWARD})
OUTGOING_KINDS = frozenset({ActivityKind.SENT, ActivityKind.FEE, ActivityKind.ENROLLMENT_FEE})


class ActivityStatus(StrEnum):
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    FAILED = "FAILED"


@dataclass(frozen=True)
class ActivityItem:
    id: str
    kind: ActivityKind
    token_address: str
    raw: int
    counterparty: str
    status: ActivityStatus
    transaction_id: str | None
    block_number: int | None
    tx_hash: str | None
    timestamp: datetime
    position: Position
    counterparty_label: str | None = None


def from_transfer(
    row: Row[Any],
    *,
    address: str,
    wallet_id: str,
    job: Row[Any] | None,
    fee_log: int | None,
    fee_treasury: str,
) -> ActivityItem:
    """The item ``row`` (an indexed transfer) is for the wallet at ``address``; ``job``: the
    relayed job whose transaction it is, ``fee_log``: the last log that transaction sent from
    ``address``."""
    incoming = row.to_address == address
    own_job = job if job is not None and job.wallet_id == wallet_id else None
    if incoming:
        kind, role = _incoming_kind(job), "IN"
    elif own_job is not None and _is_fee(row, own_job, fee_log=fee_log, treasury=fee_treasury):
        kind, role = ActivityKind.FEE, "FEE"
    else:
        enrolling = own_job is not None and own_job.kind == JobKind.ENROLL
        kind = ActivityKind.ENROLLMENT_FEE if enrolling else ActivityKind.SENT
        role = "OUT"
    return ActivityItem(
        id=f"{job.id}:{role}" if job is not None else f"{row.tx_hash}:{row.log_index}",
        kind=kind,
        token_address=row.token_address,
        raw=int(row.value),
        counterparty=row.from_address if incoming else row.to_address,
        status=ActivityStatus.CONFIRMED
        if row.status == TransferStatus.CONFIRMED
        else ActivityStatus.PENDING,
        transaction_id=own_job.id if own_job is not None else None,
        block_number=int(row.block_number),
        tx_hash=row.tx_hash,
        timestamp=row.block_timestamp,
        position=Position(at=row.block_timestamp, rank=CHAIN_RANK, key=str(row.id)),
    )


def _incoming_kind(job: Row[Any] | None) -> ActivityKind:
    """What brought tokens in: a card purchase's delivery, a reward's claim (the rewards
    distributor pays it in a claims job of the program's utility), or anything else."""
    if job is not None and job.kind == JobKind.ONRAMP_DELIVERY:
        return ActivityKind.PURCHASE
    if job is not None and job.kind == JobKind.REWARD_SETTLEMENT:
        return ActivityKind.REWARD
    return ActivityKind.RECEIVED


def _is_fee(row: Row[Any], job: Row[Any], *, fee_log: int | None, treasury: str) -> bool:
    return (
        int(job.fee_amount) > 0
        and row.to_address.lower() == treasury.lower()
        and int(row.value) == int(job.fee_amount)
        and fee_log == int(row.log_index)
    )


def from_job(
    job: Row[Any], *, wallet_id: str, token_addresses: dict[str, str]
) -> ActivityItem | None:
    """The item of a job not in the index: in flight (``PENDING``) or ``FAILED``; ``None`` for
    one that moves nothing. ``token_addresses``: token kind → address."""
    own = job.wallet_id == wallet_id
    status = ActivityStatus.FAILED if job.status == RelayStatus.FAILED else ActivityStatus.PENDING
    token_address, raw, kind = job.token_address, int(job.amount), _job_kind(job, own=own)
    if raw == 0 and own and int(job.fee_amount) > 0:
        kind, raw = ActivityKind.FEE, int(job.fee_amount)
        token_address = token_addresses.get(job.fee_token or "")
    if raw == 0 or not token_address:
        return None
    role = "FEE" if kind == ActivityKind.FEE else "OUT" if own else "IN"
    return ActivityItem(
        id=f"{job.id}:{role}",
        kind=kind,
        token_address=token_address,
        raw=raw,
        counterparty=job.to_address if own else job.sender,
        status=status,
        transaction_id=job.id if own else None,
        block_number=None,
        tx_hash=job.tx_hash,
        timestamp=job.created_at,
        position=Position(at=job.created_at, rank=JOB_RANK, key=job.id),
    )


def _job_kind(job: Row[Any], *, own: bool) -> ActivityKind:
    if not own:
        return _incoming_kind(job)
    return ActivityKind.ENROLLMENT_FEE if job.kind == JobKind.ENROLL else ActivityKind.SENT


def label_of(
    address: str,
    *,
    owners: dict[str, Owner],
    fee_treasury: str,
    rewards_distributor: str | None = None,
) -> str | None:
    """A name for a counterparty: another wallet here (a utility's, the card treasury, a
    customer, named by their utility only) or a known address; ``None`` for any other."""
    if address.lower() == fee_treasury.lower():
        return NETWORK_FEES_LABEL
    if rewards_distributor is not None and address.lower() == rewards_distributor.lower():
        return REWARDS_LABEL
    if address == ZERO_ADDRESS:
        return MINTED_LABEL
    owner = owners.get(address)
    if owner is None:
        return None
    if owner.kind == CustomerKind.CUSTOMER:
        return f"{owner.tenant_name} customer"
    if owner.tenant_issuer == PLATFORM_ISSUER:
        return CARD_PURCHASE_LABEL if owner.subject == TREASURY_SUBJECT else REGISTRY_LABEL
    return owner.tenant_name
