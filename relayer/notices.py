"""``transaction.final`` app webhooks: a relayed job that ends CONFIRMED or FAILED is told to its
customer's utility, in the transaction that ends it (``appwebhooks.service.emit_many``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from appwebhooks.models import EventType
from appwebhooks.service import Emission, emit_many
from chain.tokens import TokenInfo, format_units
from identity.models import Customer, CustomerKind
from relayer.models import JobKind, RelayStatus, RelayTransaction
from wallet.models import Wallet

_FINAL = (RelayStatus.CONFIRMED, RelayStatus.FAILED)


async def transactions_final(
    session: AsyncSession, job_ids: Sequence[str], *, tokens: Sequence[TokenInfo]
) -> None:
    """Emits ``transaction.final`` for those of these jobs that are now CONFIRMED or FAILED
    (nonce fillers aside). Once per job whoever calls: the event's dedupe key is the job's."""
    if not job_ids:
        return
    statement = (
        select(
            RelayTransaction, Customer.tenant_id, Customer.kind, Customer.subject, Wallet.address
        )
        .join(Customer, Customer.id == RelayTransaction.customer_id)
        .join(Wallet, Wallet.id == RelayTransaction.wallet_id)
        .where(
            RelayTransaction.id.in_(sorted(set(job_ids))),
            RelayTransaction.status.in_(_FINAL),
            RelayTransaction.kind != JobKind.NONCE_FILL,
        )
        # The caller may hold these jobs as they were before it ended them.
        .execution_options(populate_existing=True)
    )
    rows = (await session.execute(statement)).all()
    await emit_many(
        session,
        [
            Emission(
                tenant_id=tenant_id,
                type=EventType.TRANSACTION_FINAL,
                payload=final_payload(
                    job,
                    tokens=tokens,
                    wallet_address=address,
                    customer_subject=subject if kind == CustomerKind.CUSTOMER else None,
                ),
                dedupe_key=f"{EventType.TRANSACTION_FINAL.value}:{job.id}",
            )
            for job, tenant_id, kind, subject, address in rows
        ],
    )


def final_payload(
    job: RelayTransaction,
    *,
    tokens: Sequence[TokenInfo],
    wallet_address: str,
    customer_subject: str | None,
) -> dict[str, Any]:
    """What a utility's backend is told of a final transaction: no key, no signed request."""
    decimals = {token.kind.value: token.decimals for token in tokens}
    symbols = {token.kind.value: token.symbol for token in tokens}
    fee_token = job.fee_token
    return {
        "transactionId": job.id,
        "kind": job.kind,
        "status": job.status,
        "txHash": job.tx_hash,
        "blockNumber": job.block_number,
        "token": symbols.get(job.token, job.token),
        "tokenAddress": job.token_address or None,
        "amount": format_units(job.amount, decimals.get(job.token, 18)),
        "amountRaw": str(job.amount),
        "to": job.to_address,
        "feeToken": symbols.get(fee_token, fee_token) if fee_token else None,
        "feeAmount": format_units(job.fee_amount, decimals.get(fee_token or "", 18)),
        "feeAmountRaw": str(job.fee_amount),
        "sponsored": job.sponsored,
        "walletAddress": wallet_address,
        "customerSubject": customer_subject,
        "error": job.error,
        "confirmedAt": job.confirmed_at.isoformat() if job.confirmed_at else None,
    }
