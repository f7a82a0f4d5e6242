"""Keeping the worker's view in step with the chain: the keys' nonces, balances and
authorization (``reconcile``), and a wallet's forward requests re-signed from the forwarder's
nonce after one of its jobs failed without executing (``resync_wallet``)."""

from __future__ import annotations

import logging

from relayer import repository
from relayer.forwarder import ForwardRequest, nonces_call, sign_request, word_answer
from relayer.keys import is_relayer_call
from relayer.models import RelayerKey, RelayTransaction
from relayer.pipeline.context import PipelineWorker
from wallet.keys import sealed_key_of, unlocked_account
from wallet.models import Wallet

logger = logging.getLogger(__name__)


async def reconcile(worker: PipelineWorker, keys: list[RelayerKey]) -> None:
    """The chain's pending nonce is a floor for ``next_nonce``; watch native balances and
    whether the forwarder accepts each key, and so whether it checks relayers at all
    (``forwarder_refuses_outsiders``: an older forwarder without ``isRelayer`` answers the
    probe with an error)."""
    calls: list[tuple[str, list[object]]] = []
    for key in keys:
        calls.append(("eth_getTransactionCount", [key.address, "pending"]))
        calls.append(("eth_getBalance", [key.address, "latest"]))
        calls.append(is_relayer_call(worker.forwarder, key.address))
    results = await worker.rpc.batch(calls)
    answers = [word_answer(results[3 * position + 2]) for position in range(len(keys))]
    if any(answer is not None for answer in answers):
        # Once seen, kept: a forwarder's code does not change, and a round of failed probes
        # (a rate limit, say) must not turn requeues back into failures.
        worker.forwarder_refuses_outsiders = True
    async with worker.services.db.session() as session:
        for position, key in enumerate(keys):
            pending, balance = results[3 * position : 3 * position + 2]
            _watch_key(worker, key, accepted=answers[position], balance=balance)
            if not isinstance(pending, str):
                continue
            chain_nonce = int(pending, 16)
            locked = await repository.claim_key(session, key.id, is_postgres=worker.is_postgres)
            if locked is not None and locked.next_nonce < chain_nonce:
                logger.warning(
                    "relayer key %s: nonce %d raised to the chain's %d",
                    key.address,
                    locked.next_nonce,
                    chain_nonce,
                )
                locked.next_nonce = chain_nonce
                session.add(locked)


def _watch_key(
    worker: PipelineWorker, key: RelayerKey, *, accepted: int | None, balance: object
) -> None:
    """Whether the forwarder accepts the key (``accepted``: its ``isRelayer`` answer) and
    whether its native balance is low, each logged once when it changes."""
    if accepted is not None:
        if accepted == 0:
            if key.id not in worker.unauthorized_keys:
                logger.error(
                    "relayer key %s is not authorized in the forwarder %s: its "
                    "transactions wait; run `ovpp-wallet relayer-authorize`",
                    key.address,
                    worker.forwarder,
                )
            worker.unauthorized_keys.add(key.id)
        else:
            worker.unauthorized_keys.discard(key.id)
    if isinstance(balance, str):
        if int(balance, 16) < worker.settings.relayer_low_balance_wei:
            if key.id not in worker.low_balance_keys:
                logger.error(
                    "relayer key %s is low on native funds: %d wei",
                    key.address,
                    int(balance, 16),
                )
            worker.low_balance_keys.add(key.id)
        else:
            worker.low_balance_keys.discard(key.id)


async def resync_wallet(worker: PipelineWorker, wallet_id: str) -> None:
    """Once none of the wallet's jobs is in flight, re-sign its queued jobs in forwarder-nonce
    order from the forwarder's on-chain nonce, under the wallet's lock, and release the wallet
    (``wallets_to_resync``); returns early, the wallet still held, while one is in flight."""
    async with worker.services.db.session() as session:
        await repository.lock_wallet(session, wallet_id)
        if await repository.wallet_has_job_in_flight(session, wallet_id):
            return  # they land or revert first; the wallet stays held, tried next round
        wallet = await session.get(Wallet, wallet_id, populate_existing=True)
        assert wallet is not None
        method, params = nonces_call(worker.forwarder, wallet.address)
        next_nonce = int(await worker.rpc.call(method, *params), 16)
        # On PostgreSQL this waits for a worker signing some of them (sign_queued locks what
        # it signs); those are SIGNED by then and drop out of this read.
        queued = await repository.queued_of_wallet(
            session, wallet_id, for_update=worker.is_postgres
        )
        with unlocked_account(sealed_key_of(wallet), keyring=worker.services.keyring) as signer:
            for job in queued:
                next_nonce = _resign(worker, job, private_key=signer.key, first_nonce=next_nonce)
                session.add(job)
        if wallet.next_forwarder_nonce != next_nonce:
            logger.warning(
                "%s: wallet %s forwarder nonce resynchronised %d -> %d",
                worker.name,
                wallet.address,
                wallet.next_forwarder_nonce,
                next_nonce,
            )
        wallet.next_forwarder_nonce = next_nonce
        session.add(wallet)
    worker.wallets_to_resync.discard(wallet_id)  # committed: its jobs may be signed


def _resign(
    worker: PipelineWorker, job: RelayTransaction, *, private_key: bytes, first_nonce: int
) -> int:
    """The job's forward requests signed again from ``first_nonce``; returns the next nonce."""
    requests = [ForwardRequest.from_json(item) for item in job.forward_requests]
    resigned = [
        sign_request(
            ForwardRequest(**{**r.__dict__, "nonce": first_nonce + index, "signature": b""}),
            private_key=private_key,
            separator=worker.services.forwarder_domain_separator,
        )
        for index, r in enumerate(requests)
    ]
    job.forward_requests = [r.to_json() for r in resigned]
    job.forwarder_nonce = first_nonce
    return first_nonce + len(resigned)
