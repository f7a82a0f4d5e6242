"""SIGNED → SUBMITTED: a key's stored raw transactions are sent in relayer-nonce order, in one
JSON-RPC batch; each node answer decides the job's next state."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from chain.rpc import RpcError
from core.db import utc_now
from relayer import repository, sponsorship
from relayer.errors import SponsorRefused
from relayer.models import RelayStatus, RelayTransaction
from relayer.pipeline.bump import bump
from relayer.pipeline.context import PipelineWorker
from relayer.pipeline.fail import fail_refused, fail_unfunded
from relayer.rpc_errors import SendOutcome, classify

logger = logging.getLogger(__name__)
JOBS = repository.JOBS


@dataclass
class _Sends:
    """The node's answers to one batch, by what they make of each job."""

    submitted: list[str] = field(default_factory=list)
    too_low: list[str] = field(default_factory=list)  # receipts to follow, maybe ours
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (job id, node's message)
    underpriced: list[str] = field(default_factory=list)


async def broadcast_signed(worker: PipelineWorker, key_id: str) -> bool:
    async with worker.services.db.session() as session:
        jobs = await repository.signed_to_send(session, key_id)
    if not jobs:
        return False
    results = await worker.rpc.batch(
        [("eth_sendRawTransaction", ["0x" + bytes(raw).hex()]) for _job_id, raw, _at in jobs]
    )
    sends = _classify(worker, key_id, jobs, results)
    # Read before the transaction: a refused job's filler and an underpriced job's new copy
    # are signed at it, and the node call must not run while their rows (and the refused
    # jobs' sponsors) are locked.
    gas_price = await worker.read_gas_price() if sends.rejected or sends.underpriced else None
    now = utc_now()
    async with worker.services.db.session() as session:
        if sends.submitted:
            await repository.mark_submitted(session, sends.submitted, now=now)
        refused_sponsored = await fail_refused(
            worker,
            session,
            [(job_id, f"rejected by the node: {message}") for job_id, message in sends.rejected],
            gas_price=gas_price,
        )
        # Nonce too low (maybe ours landed: a crash between send and commit) or an answer not
        # understood: the receipt step looks up every hash of these jobs (and bumps them once
        # stuck); mark them submitted so it does.
        if sends.too_low:
            await repository.mark_to_follow(session, sends.too_low, now=now)
        unfunded = await _reprice(
            worker, session, sends.underpriced, refused_sponsored, gas_price=gas_price
        )
    if unfunded:
        assert gas_price is not None
        await fail_unfunded(worker, unfunded, gas_price=gas_price)
    return True


def _classify(
    worker: PipelineWorker, key_id: str, jobs: list[Row], results: list[object]
) -> _Sends:
    """What each answer makes of its job; the first answer that holds back later nonces ends
    the batch (they cannot go before it)."""
    sends = _Sends()
    for (job_id, _raw, submitted_at), result in zip(jobs, results, strict=True):
        outcome = classify(result)
        if outcome in (SendOutcome.ACCEPTED, SendOutcome.ALREADY_KNOWN):
            sends.submitted.append(job_id)
        elif outcome == SendOutcome.NONCE_TOO_LOW:
            sends.too_low.append(job_id)
        elif outcome == SendOutcome.INSUFFICIENT_FUNDS:
            logger.error(
                "%s: relayer key %s lacks native funds; transactions wait", worker.name, key_id
            )
            worker.low_balance_keys.add(key_id)
            break
        elif outcome == SendOutcome.UNDERPRICED:
            # Never accepted, so the stored bytes can be replaced: re-sign at today's fees
            # (same nonce); the next round broadcasts it. Later nonces wait behind it.
            logger.warning("%s: job %s underpriced; re-pricing", worker.name, job_id)
            sends.underpriced.append(job_id)
            break
        elif outcome in (SendOutcome.NONCE_TOO_HIGH, SendOutcome.TEMPORARY):
            logger.warning("%s: %s for job %s; will retry", worker.name, outcome.value, job_id)
            break
        elif outcome == SendOutcome.MAYBE_SENT:
            # Not understood: the transaction may be in a pool all the same (a proxy's
            # timeout, a node's own wording). Its hash is followed like any submitted job's:
            # its receipt, or a fee bump once stuck. Later nonces go next round.
            assert isinstance(result, RpcError)
            logger.warning(
                "%s: job %s: unrecognised answer to its broadcast (%s); following its hash",
                worker.name,
                job_id,
                result.message,
            )
            sends.too_low.append(job_id)
            break
        elif submitted_at is not None:
            # A fee bump refused, but an earlier copy was accepted and may still be mined:
            # the receipts of every attempt at its nonce are followed instead of failing it.
            # A copy never accepted (say, re-priced after "underpriced") fails as below.
            assert isinstance(result, RpcError)
            logger.error(
                "%s: bumped job %s refused (%s); following its earlier attempts",
                worker.name,
                job_id,
                result.message,
            )
            sends.too_low.append(job_id)
        else:
            assert isinstance(result, RpcError)
            sends.rejected.append((job_id, result.message))
    return sends


async def _reprice(
    worker: PipelineWorker,
    session: AsyncSession,
    underpriced: list[str],
    refused_sponsored: list[str],
    *,
    gas_price: tuple[int, int] | None,
) -> list[tuple[str, str, SponsorRefused]]:
    """Settles the refused sponsored jobs at 0 (nothing of them was mined), then re-signs the
    underpriced jobs at ``gas_price``. Returns (job id, refused hash, refusal) of those whose
    sponsor cannot fund a price the node would take and no copy of which was ever accepted:
    they are to fail (``fail_unfunded``). Locks: docs/relayer.md, "Locks"."""
    repricing: list[RelayTransaction] = [
        job
        for job_id in underpriced
        if (job := await repository.lock_job(session, job_id, JOBS.c.status == RelayStatus.SIGNED))
        is not None
    ]
    # One call for the round, after every job row it locks: it locks the sponsors, the refused
    # jobs' and the re-priced ones' (whose reservation may grow), in sorted order.
    await sponsorship.settle_charges(
        session,
        dict.fromkeys(refused_sponsored, 0),
        lock_also=[job.sponsor_id for job in repricing if job.sponsor_id is not None],
    )
    unfunded: list[tuple[str, str, SponsorRefused]] = []
    for job in repricing:
        refused_tx_hash = job.tx_hash
        refusal = await bump(worker, session, job, gas_price=gas_price)
        session.add(job)
        # A job that was accepted once (SUBMITTED before a bump) is never failed here: that
        # copy may still be mined at this nonce (docs/relayer.md, "Fee bumps").
        if refusal is not None and job.submitted_at is None:
            assert refused_tx_hash is not None
            unfunded.append((job.id, refused_tx_hash, refusal))
    return unfunded
