"""QUEUED → SIGNED: a key's queued jobs get its next nonces, signed and stored in one
transaction before anything is broadcast."""

from __future__ import annotations

from core.db import utc_now
from relayer import repository
from relayer.forwarder import ForwardRequest, forwarder_calldata
from relayer.models import RelayStatus, RelayTransaction
from relayer.pipeline.context import PipelineWorker
from relayer.transactions import SignedTransaction, TransactionSigner
from wallet.keys import sealed_key_of, unlocked_account

SIGN_BATCH = 200


async def sign_queued(worker: PipelineWorker, key_id: str, gas_price: tuple[int, int]) -> bool:
    """Signs the key's queued jobs at its next nonces, except those of wallets waiting for
    ``resync_wallet``; a sponsored job never above its reservation (``within_reservation``).
    Why the reservations need no sponsor lock here: docs/relayer.md, "Signing"."""
    async with worker.services.db.session() as session:
        key = await repository.claim_key(session, key_id, is_postgres=worker.is_postgres)
        if key is None:
            return False
        # On PostgreSQL, jobs another worker's resync_wallet is re-signing are skipped this
        # round: the transaction built here must carry the requests stored with it.
        rows = await repository.queued_to_sign(
            session,
            key_id,
            skip_wallets=worker.wallets_to_resync,
            is_postgres=worker.is_postgres,
            limit=SIGN_BATCH,
        )
        if not rows:
            return False
        now = utc_now()
        attempts: list[dict[str, object]] = []
        # Signed inside the block: the plaintext key lives only while it is unlocked.
        with unlocked_account(sealed_key_of(key), keyring=worker.services.keyring) as account:
            signer = TransactionSigner(account.key)
            for job, reserved_wei in rows:
                max_fee, priority_fee = within_reservation(
                    gas_price,
                    gas_limit=job.gas_limit,
                    reserved_wei=reserved_wei if job.sponsor_id is not None else None,
                )
                signed = sign_job(
                    worker, signer, job, nonce=key.next_nonce, max_fee=max_fee, tip=priority_fee
                )
                job.relayer_nonce = key.next_nonce
                job.raw_transaction = signed.raw_transaction
                job.tx_hash = "0x" + signed.hash.hex()
                job.max_fee_per_gas, job.max_priority_fee_per_gas = max_fee, priority_fee
                job.status = RelayStatus.SIGNED
                job.attempts = 1
                job.updated_at = now
                key.next_nonce += 1
                session.add(job)
                attempts.append(repository.attempt_row(job, at=now))
        await repository.insert_attempts(session, attempts)
        session.add(key)
    return True


def sign_job(
    worker: PipelineWorker,
    signer: TransactionSigner,
    job: RelayTransaction,
    *,
    nonce: int,
    max_fee: int,
    tip: int,
) -> SignedTransaction:
    """The relayer's transaction carrying the job's forward requests to the forwarder."""
    requests = [ForwardRequest.from_json(item) for item in job.forward_requests]
    return signer.sign_eip1559(
        chain_id=worker.chain_id,
        nonce=nonce,
        max_priority_fee_per_gas=tip,
        max_fee_per_gas=max_fee,
        gas=job.gas_limit,
        to=worker.forwarder,
        value=0,
        data=forwarder_calldata(requests),
    )


def within_reservation(
    gas_price: tuple[int, int], *, gas_limit: int, reserved_wei: int | None
) -> tuple[int, int]:
    """The fees (max fee, tip) to first sign a job at: ``gas_price``, with the max fee capped
    at what the job's reservation covers for its gas limit and the tip at the max fee, so the
    transaction's worst case never exceeds the reservation. ``reserved_wei`` is ``None`` for a
    job with no open reservation (its gas is the operator's): signed at ``gas_price``."""
    if reserved_wei is None:
        return gas_price
    max_fee = min(gas_price[0], reserved_wei // gas_limit)
    return max_fee, min(gas_price[1], max_fee)
