"""SUBMITTED → MINED → CONFIRMED: receipts of every hash sent for each submitted job at its
current relayer nonce (one batch), then the outcome in one transaction: mined, confirmed once
deep enough, bumped when stuck, reverted (FAILED), or queued again when it could not have
executed. A sponsor's charge is settled by the transaction that ends its job, and a sponsor
funding is credited by the transaction that confirms its job."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import utc_now
from relayer import repository, sponsorship
from relayer.forwarder import nonces_call, word_answer
from relayer.models import JobKind, RelayStatus
from relayer.notices import transactions_final
from relayer.pipeline.bump import bump
from relayer.pipeline.context import PipelineWorker

logger = logging.getLogger(__name__)
JOBS = repository.JOBS


@dataclass
class _Outcome:
    """What one round's receipts make of a key's jobs (judged at ``now``); rows are
    executemany parameters."""

    now: datetime
    landed: list[dict[str, object]] = field(default_factory=list)
    requeued: list[dict[str, object]] = field(default_factory=list)
    charges: list[dict[str, Any]] = field(default_factory=list)
    confirmed: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    # SPONSOR_FUNDING jobs this round confirms: their pending fundings are credited.
    fundings: list[str] = field(default_factory=list)
    reverted_wallets: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.landed or self.requeued or self.confirmed or self.stuck)


async def track_submitted(worker: PipelineWorker, key_id: str) -> bool:
    async with worker.services.db.session() as session:
        jobs = await repository.open_jobs_to_track(session, key_id)
        if not jobs:
            return False
        hashes_by_job = await _hashes_by_job(session, jobs)
    head, receipts = await _receipts(worker, jobs, hashes_by_job)
    # Read after the receipts, so that a forwarder nonce is never older than a revert.
    ahead, unread = await requests_ahead_of_the_forwarder(
        worker,
        [
            job
            for job in jobs
            if job.status == RelayStatus.SUBMITTED
            and job.kind != JobKind.NONCE_FILL
            and job.id in receipts
            and int(receipts[job.id]["status"], 16) != 1
        ],
    )
    outcome = _judge(worker, jobs, receipts, head=head, ahead=ahead, unread=unread)
    if not outcome:
        return False
    # Rows in one order for every worker, so two workers' updates cannot deadlock.
    outcome.landed.sort(key=lambda row: str(row["b_id"]))
    outcome.requeued.sort(key=lambda row: str(row["b_id"]))
    outcome.confirmed.sort()
    stuck_gas_price = await worker.read_gas_price() if outcome.stuck else None
    relayer_nonce_of = {job.id: job.relayer_nonce for job in jobs}
    await _record(worker, outcome, relayer_nonce_of, gas_price=stuck_gas_price)
    # Their later requests would revert: held until resynchronised (next round).
    worker.wallets_to_resync.update(outcome.reverted_wallets)
    return True


async def _hashes_by_job(session: AsyncSession, jobs: Sequence[Row[Any]]) -> dict[str, list[str]]:
    """Every hash sent for each job at its current relayer nonce, its latest first."""
    hashes_by_job: dict[str, list[str]] = {job.id: [job.tx_hash or ""] for job in jobs}
    relayer_nonce_of = {job.id: job.relayer_nonce for job in jobs}
    multi = [job.id for job in jobs if job.attempts > 1]
    if not multi:
        return hashes_by_job
    for job_id, tx_hash, relayer_nonce in await repository.attempts_of(session, multi):
        # An attempt at another relayer nonce was sent before the job went back to the
        # queue: its receipt (a revert) is not this transaction's outcome.
        if relayer_nonce is not None and relayer_nonce != relayer_nonce_of[job_id]:
            continue
        if tx_hash not in hashes_by_job[job_id]:
            hashes_by_job[job_id].append(tx_hash)
    return hashes_by_job


async def _receipts(
    worker: PipelineWorker, jobs: Sequence[Row[Any]], hashes_by_job: dict[str, list[str]]
) -> tuple[int | None, dict[str, dict[str, str]]]:
    """The chain's head (``None`` if unread) and the receipt found for each SUBMITTED job."""
    calls: list[tuple[str, list[object]]] = [("eth_blockNumber", [])]
    index: list[str] = []
    for job in jobs:
        if job.status == RelayStatus.SUBMITTED:
            for tx_hash in hashes_by_job[job.id]:
                calls.append(("eth_getTransactionReceipt", [tx_hash]))
                index.append(job.id)
    results = await worker.rpc.batch(calls)
    head = int(results[0], 16) if isinstance(results[0], str) else None
    receipts: dict[str, dict[str, str]] = {}
    for job_id, receipt in zip(index, results[1:], strict=True):
        if isinstance(receipt, dict):
            receipts[job_id] = receipt
    return head, receipts


def _judge(
    worker: PipelineWorker,
    jobs: Sequence[Row[Any]],
    receipts: dict[str, dict[str, str]],
    *,
    head: int | None,
    ahead: dict[str, int],
    unread: set[str],
) -> _Outcome:
    now = utc_now()
    confirmations = worker.settings.relayer_confirmations
    stuck_after = timedelta(seconds=worker.settings.relayer_stuck_seconds)
    outcome = _Outcome(now=now)
    for job in jobs:
        receipt = receipts.get(job.id)
        if job.status == RelayStatus.SUBMITTED and receipt is not None:
            _judge_receipt(worker, job, receipt, outcome, head=head, ahead=ahead, unread=unread)
        elif job.status == RelayStatus.MINED and _deep_enough(
            head, job.block_number, confirmations
        ):
            outcome.confirmed.append(job.id)
            if job.kind == JobKind.SPONSOR_FUNDING:
                outcome.fundings.append(job.id)
        elif job.status == RelayStatus.SUBMITTED and job.submitted_at is not None:
            if now - job.submitted_at > stuck_after:
                outcome.stuck.append(job.id)
    return outcome


def _deep_enough(head: int | None, block_number: int | None, confirmations: int) -> bool:
    return (
        head is not None and block_number is not None and head - block_number + 1 >= confirmations
    )


def _judge_receipt(
    worker: PipelineWorker,
    job: Row[Any],
    receipt: dict[str, str],
    outcome: _Outcome,
    *,
    head: int | None,
    ahead: dict[str, int],
    unread: set[str],
) -> None:
    """Adds a SUBMITTED job's receipt to ``outcome``: landed (mined, confirmed or reverted), or
    queued again if its request was ahead of the forwarder's nonce."""
    block_number = int(receipt["blockNumber"], 16)
    gas_used = int(receipt["gasUsed"], 16)
    gas_price = int(receipt["effectiveGasPrice"], 16)
    succeeded = int(receipt["status"], 16) == 1
    final = succeeded and _deep_enough(head, block_number, worker.settings.relayer_confirmations)
    if not succeeded and job.id in unread:
        return  # judged next round, when the forwarder's nonce can be read
    if not succeeded:
        outcome.reverted_wallets.add(job.wallet_id)
    tx_hash = receipt["transactionHash"]
    if job.id in ahead:
        logger.warning(
            "%s: job %s reverted without executing (its forward request's nonce %d "
            "is ahead of the forwarder's %d): queued again; the reverted transaction "
            "%s used %d gas (%d wei)",
            worker.name,
            job.id,
            job.forwarder_nonce,
            ahead[job.id],
            tx_hash,
            gas_used,
            gas_used * gas_price,
        )
        outcome.requeued.append({"b_id": job.id, "b_relayer_nonce": job.relayer_nonce})
        return
    if not succeeded:
        logger.warning(
            "%s: job %s failed: transaction %s reverted on chain (%d gas)",
            worker.name,
            job.id,
            tx_hash,
            gas_used,
        )
    status = (
        RelayStatus.CONFIRMED if final else RelayStatus.MINED if succeeded else RelayStatus.FAILED
    )
    outcome.landed.append(
        {
            "b_id": job.id,
            "b_relayer_nonce": job.relayer_nonce,
            "b_status": status,
            "b_error": None if succeeded else "the transaction reverted on chain",
            "b_block_number": block_number,
            "b_gas_used": gas_used,
            "b_effective_gas_price": gas_price,
            "b_tx_hash": tx_hash,
            "b_confirmed_at": outcome.now if final else None,
        }
    )
    if final and job.kind == JobKind.SPONSOR_FUNDING:
        outcome.fundings.append(job.id)
    if job.sponsor_id is not None:
        outcome.charges.append(
            {"b_job_id": job.id, "b_tx_hash": tx_hash, "b_amount_wei": gas_used * gas_price}
        )


async def _record(
    worker: PipelineWorker,
    outcome: _Outcome,
    relayer_nonce_of: dict[str, int | None],
    *,
    gas_price: tuple[int, int] | None,
) -> None:
    """The round's outcome in one transaction: jobs' rows first (one executemany each, guarded
    so a second writer is a no-op), then sponsors in one sorted pass, then the bumps, then the
    ``transaction.final`` webhooks of the jobs it ended."""
    now = outcome.now
    async with worker.services.db.session() as session:
        if outcome.landed:
            await repository.record_landed(session, outcome.landed, now=now)
        if outcome.requeued:
            await repository.requeue(session, outcome.requeued, now=now)
        if outcome.confirmed:
            await repository.confirm(session, outcome.confirmed, now=now)
        # Locked and checked again, in one lock order for every worker: another worker may
        # have requeued or landed a job since it was read, and a bump must not overwrite it.
        bumping = [
            job
            for job_id in sorted(outcome.stuck)
            if (
                job := await repository.lock_job(
                    session,
                    job_id,
                    JOBS.c.status == RelayStatus.SUBMITTED,
                    JOBS.c.relayer_nonce == relayer_nonce_of[job_id],
                )
            )
            is not None
        ]
        # Sponsors last, in one sorted pass: those whose charges this round settles and those
        # of the jobs it bumps (a bump may grow a reservation). docs/relayer.md, "Locks".
        # With the sponsors of the fundings it confirms, credited after the pass.
        lock_also = [job.sponsor_id for job in bumping if job.sponsor_id is not None]
        lock_also += await sponsorship.pending_funding_sponsors(session, outcome.fundings)
        if outcome.charges:
            await _settle(session, outcome.charges, lock_also=lock_also)
        else:
            await sponsorship.lock_in_order(session, lock_also)
        if outcome.fundings:
            await sponsorship.credit_confirmed_fundings(session, outcome.fundings)
        for job in bumping:
            # A bump its sponsor cannot fund leaves the job as it is: it was accepted, and
            # that copy may still be mined.
            await bump(worker, session, job, gas_price=gas_price, resend_at_cap=True)
            session.add(job)
        await transactions_final(
            session,
            [str(row["b_id"]) for row in outcome.landed if row["b_status"] != RelayStatus.MINED]
            + outcome.confirmed,
            tokens=worker.services.chain.tokens,
        )


async def _settle(
    session: AsyncSession, charges: list[dict[str, Any]], *, lock_also: list[str]
) -> None:
    """Settles the charges of jobs this transaction ended, and only those: a receipt read
    before another worker queued the job again must not settle what its next one owes."""
    ended_by = await repository.tx_hash_of_ended(
        session, [charge["b_job_id"] for charge in charges]
    )
    await sponsorship.settle_charges(
        session,
        {
            charge["b_job_id"]: charge["b_amount_wei"]
            for charge in charges
            if ended_by.get(charge["b_job_id"]) == charge["b_tx_hash"]
        },
        lock_also=lock_also,
    )


async def requests_ahead_of_the_forwarder(
    worker: PipelineWorker, reverted: Sequence[Row[Any]]
) -> tuple[dict[str, int], set[str]]:
    """Of these reverted jobs, those whose first forward request's nonce is above the
    forwarder's nonce for their wallet (with that nonce): they could not have executed; and
    those whose wallet's nonce the node did not give, judged next round. Empty unless the
    forwarder refuses outsiders (docs/relayer.md, "Reverted jobs")."""
    if not reverted or not worker.forwarder_refuses_outsiders:
        return {}, set()
    async with worker.services.db.session() as session:
        address_of = await repository.wallet_addresses(session, {job.wallet_id for job in reverted})
    wallet_ids = sorted(address_of)
    answers = await worker.rpc.batch(
        [nonces_call(worker.forwarder, address_of[wallet_id]) for wallet_id in wallet_ids]
    )
    on_chain = {
        wallet_id: nonce
        for wallet_id, answer in zip(wallet_ids, answers, strict=True)
        if (nonce := word_answer(answer)) is not None
    }
    ahead = {
        job.id: on_chain[job.wallet_id]
        for job in reverted
        if job.wallet_id in on_chain and job.forwarder_nonce > on_chain[job.wallet_id]
    }
    return ahead, {job.id for job in reverted if job.wallet_id not in on_chain}
