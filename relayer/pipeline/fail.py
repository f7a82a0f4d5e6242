"""Jobs the node refused before accepting any copy: they fail, and a zero-value filler takes
each one's relayer nonce so the key's later transactions do not stall behind a gap."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from core.db import utc_now
from core.idempotency import NONCE_FILL_KEY_PREFIX
from relayer import repository, sponsorship
from relayer.errors import SponsorRefused
from relayer.models import JobKind, RelayAttempt, RelayerKey, RelayStatus, RelayTransaction
from relayer.notices import transactions_final
from relayer.pipeline.context import PipelineWorker
from wallet.keys import sealed_key_of, unlocked_account

logger = logging.getLogger(__name__)
JOBS = repository.JOBS


async def fail_refused(
    worker: PipelineWorker,
    session: AsyncSession,
    refused: list[tuple[str, str]],
    *,
    gas_price: tuple[int, int] | None,
) -> list[str]:
    """Fails each (job id, error) and fills its nonce (``fail_and_fill``). Returns the failed
    sponsored jobs' ids: their reservations are the caller's to settle at 0 (nothing of them
    was mined), in its round's one pass over sponsors."""
    sponsored: list[str] = []
    ended: list[str] = []
    for job_id, error in refused:
        assert gas_price is not None
        failed = await fail_and_fill(worker, session, job_id, error, gas_price=gas_price)
        if failed is not None:
            ended.append(failed.id)
            # Its nonce unused, the wallet's later requests would revert: they wait for
            # the next round's resync.
            worker.wallets_to_resync.add(failed.wallet_id)
            if failed.sponsor_id is not None:
                sponsored.append(failed.id)
    await transactions_final(session, ended, tokens=worker.services.chain.tokens)
    return sponsored


async def fail_unfunded(
    worker: PipelineWorker,
    unfunded: list[tuple[str, str, SponsorRefused]],
    *,
    gas_price: tuple[int, int],
) -> None:
    """Fails sponsored jobs refused as underpriced before any copy was accepted, whose
    sponsors cannot fund a price the node would take ((job id, refused copy's hash, refusal)):
    FAILED with the sponsor's refusal, settled at 0, nonce filled, wallet resynchronised.
    A transaction of its own, jobs locked before sponsors (docs/relayer.md, "Locks")."""
    async with worker.services.db.session() as session:
        refused: list[tuple[str, str]] = []
        for job_id, tx_hash, refusal in sorted(unfunded, key=lambda item: item[0]):
            job = await repository.lock_job(
                session,
                job_id,
                JOBS.c.status == RelayStatus.SIGNED,
                JOBS.c.tx_hash == tx_hash,
                JOBS.c.submitted_at.is_(None),
            )
            if job is None:
                continue
            logger.error(
                "%s: job %s fails, never accepted by the node: %s",
                worker.name,
                job_id,
                refusal.message,
            )
            refused.append(
                (job_id, f"refused by its sponsor ({refusal.reason}): {refusal.message}")
            )
        sponsored = await fail_refused(worker, session, refused, gas_price=gas_price)
        await sponsorship.settle_charges(session, dict.fromkeys(sponsored, 0))


async def fail_and_fill(
    worker: PipelineWorker,
    session: AsyncSession,
    job_id: str,
    error: str,
    *,
    gas_price: tuple[int, int],
) -> RelayTransaction | None:
    """The node refused the job's transaction: the job fails, and a zero-value transaction
    to the relayer itself, signed at ``gas_price`` (read before the transaction), takes its
    nonce. Returns the failed job; its sponsor's reservation is the caller's to settle."""
    job = await session.get(RelayTransaction, job_id)
    if job is None or job.status != RelayStatus.SIGNED or job.relayer_nonce is None:
        return None
    nonce = job.relayer_nonce
    await repository.fail_job(session, job_id, error=error, now=utc_now())
    key = await session.get(RelayerKey, job.relayer_key_id)
    assert key is not None
    filler = _signed_filler(worker, key, job, nonce=nonce, gas_price=gas_price)
    session.add(filler)
    await session.flush()
    session.add(RelayAttempt(**repository.attempt_row(filler, at=utc_now())))
    logger.warning(
        "%s: nonce %d of key %s filled after a rejection", worker.name, nonce, key.address
    )
    return job


def _signed_filler(
    worker: PipelineWorker,
    key: RelayerKey,
    job: RelayTransaction,
    *,
    nonce: int,
    gas_price: tuple[int, int],
) -> RelayTransaction:
    """The filler job taking ``nonce`` of ``key`` in place of the failed ``job``."""
    max_fee, tip = gas_price
    with unlocked_account(sealed_key_of(key), keyring=worker.services.keyring) as signer:
        signed = signer.sign_transaction(
            {
                "to": key.address,
                "value": 0,
                "gas": 21_000,
                "maxFeePerGas": max_fee,
                "maxPriorityFeePerGas": tip,
                "nonce": nonce,
                "chainId": worker.chain_id,
                "type": 2,
            }
        )
    return RelayTransaction(
        wallet_id=job.wallet_id,
        customer_id=job.customer_id,
        idempotency_key=f"{NONCE_FILL_KEY_PREFIX}{job.id}",
        request_fingerprint="nonce-fill",
        kind=JobKind.NONCE_FILL,
        status=RelayStatus.SIGNED,
        token="NATIVE",  # noqa: S106 (a token symbol, not a secret)
        token_address="",
        to_address=key.address,
        amount=0,
        forwarder_nonce=-1 - nonce,  # fills no forwarder nonce
        forward_requests=[],
        gas_limit=21_000,
        relayer_key_id=key.id,
        relayer_nonce=nonce,
        raw_transaction=bytes(signed.raw_transaction),
        tx_hash="0x" + bytes(signed.hash).hex(),
        max_fee_per_gas=max_fee,
        max_priority_fee_per_gas=tip,
        attempts=1,
    )
