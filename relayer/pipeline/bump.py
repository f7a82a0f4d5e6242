"""Fee bumps: a stuck or underpriced transaction signed again at the same nonce with higher
fees, within what its sponsor's reservation and funds cover."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from core.db import utc_now
from relayer import repository, sponsorship
from relayer.errors import SponsorRefused
from relayer.models import RelayAttempt, RelayerKey, RelayStatus, RelayTransaction, Sponsor
from relayer.pipeline.context import PipelineWorker
from relayer.pipeline.sign import sign_job
from relayer.transactions import TransactionSigner
from wallet.keys import sealed_key_of, unlocked_account

logger = logging.getLogger(__name__)

# The least a replacement must raise both fees by for a node to take it (geth's price bump).
MIN_REPLACEMENT_BUMP_PERCENT = 10


async def bump(
    worker: PipelineWorker,
    session: AsyncSession,
    job: RelayTransaction,
    *,
    gas_price: tuple[int, int] | None = None,
    resend_at_cap: bool = False,
) -> SponsorRefused | None:
    """Replace a stuck transaction: same nonce, fees up by the bump percentage (capped), stored
    SIGNED for the next round to broadcast. ``gas_price`` read beforehand keeps the network
    call out of a transaction holding row locks. Returns the sponsor's refusal when its funds
    cannot pay the smallest replacement (docs/relayer.md, "Fee bumps")."""
    key = await session.get(RelayerKey, job.relayer_key_id)
    assert key is not None and job.relayer_nonce is not None
    percent = 100 + max(worker.settings.relayer_fee_bump_percent, MIN_REPLACEMENT_BUMP_PERCENT)
    cap = worker.settings.relayer_max_fee_per_gas_wei
    current_max, current_tip = gas_price or await worker.read_gas_price()
    max_fee = min(max(job.max_fee_per_gas * percent // 100 + 1, current_max), cap)
    if max_fee <= job.max_fee_per_gas:
        if resend_at_cap and job.raw_transaction is not None:
            # Maybe never reached a node (an unrecognised send error): the same bytes again;
            # a node that has them answers "already known".
            job.status = RelayStatus.SIGNED
            logger.warning("%s: job %s at the fee cap: sending it again", worker.name, job.id)
            return None
        logger.error("%s: job %s is stuck at the fee cap", worker.name, job.id)
        return None
    if job.sponsor_id is not None:
        covered = await _sponsored_max_fee(worker, session, job, wanted=max_fee)
        if isinstance(covered, SponsorRefused):
            return covered
        max_fee = covered
    tip = min(max(job.max_priority_fee_per_gas * percent // 100 + 1, current_tip), max_fee)
    with unlocked_account(sealed_key_of(key), keyring=worker.services.keyring) as account:
        signed = sign_job(
            worker,
            TransactionSigner(account.key),
            job,
            nonce=job.relayer_nonce,
            max_fee=max_fee,
            tip=tip,
        )
    job.raw_transaction = signed.raw_transaction
    job.tx_hash = "0x" + signed.hash.hex()
    job.max_fee_per_gas, job.max_priority_fee_per_gas = max_fee, tip
    job.attempts += 1
    job.status = RelayStatus.SIGNED  # stored first, broadcast by the next round
    session.add(RelayAttempt(**repository.attempt_row(job, at=utc_now())))
    logger.info(
        "%s: bumped job %s to %d wei/gas (attempt %d)", worker.name, job.id, max_fee, job.attempts
    )
    return None


async def _sponsored_max_fee(
    worker: PipelineWorker, session: AsyncSession, job: RelayTransaction, *, wanted: int
) -> int | SponsorRefused:
    """The max fee up to ``wanted`` that the sponsored job's reservation, grown within its
    sponsor's funds (``reserve_fee_bump``), covers; the sponsor's refusal if not even the
    smallest replacement. The caller has locked the sponsor in its round's one pass."""
    assert job.sponsor_id is not None
    smallest = job.max_fee_per_gas * (100 + MIN_REPLACEMENT_BUMP_PERCENT) // 100 + 1
    # The transaction's gas limit is the job's (``sign_job``), its reservation's too.
    covered = await sponsorship.reserve_fee_bump(
        session,
        sponsor_id=job.sponsor_id,
        relay_transaction_id=job.id,
        gas_limit=job.gas_limit,
        max_fee_per_gas=wanted,
        min_max_fee_per_gas=min(smallest, wanted),
    )
    sponsor = await session.get(Sponsor, job.sponsor_id)  # locked above: no query
    sponsor_name = sponsor.name if sponsor is not None else job.sponsor_id
    if covered is None:
        logger.error(
            "%s: job %s not bumped: its sponsor %s (%s) lacks the funds for a fee bump",
            worker.name,
            job.id,
            sponsor_name,
            job.sponsor_id,
        )
        return SponsorRefused(
            f"{sponsor_name}'s funds do not cover the network's current gas price",
            reason="BUDGET_EXHAUSTED",
            sponsor_name=sponsor_name,
        )
    if covered < wanted:
        logger.warning(
            "%s: job %s bumped to %d wei/gas, not %d: all its sponsor %s (%s) can fund",
            worker.name,
            job.id,
            covered,
            wanted,
            sponsor_name,
            job.sponsor_id,
        )
    return covered
