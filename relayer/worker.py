"""The relayer worker: moves transactions through QUEUED → SIGNED → SUBMITTED → MINED →
CONFIRMED | FAILED, one relayer key at a time.

Invariants that make a crash at any point lose nothing and send nothing twice:
- a relayer nonce is assigned and the raw transaction signed and **stored** in one database
  transaction, before anything is broadcast; broadcasting a stored raw transaction again is
  harmless (same hash: "already known", or mined);
- after a restart, SIGNED transactions are broadcast again in nonce order;
- "nonce too low" is never retried blindly: the receipts of every hash sent for that job are
  looked up first;
- two workers on one PostgreSQL never assign the same nonce: a key's signing step holds its
  row lock (``FOR NO KEY UPDATE SKIP LOCKED``; the other worker skips the key for that round);
- a job whose transaction reverted while its forward request's nonce was still ahead of the
  forwarder's (an earlier job of the wallet failed without executing) could not have executed:
  it goes back to QUEUED and is signed again, never FAILED for another job's failure.

Throughput (docs/benchmarks.md): per key, each stage is a constant number of statements and
one JSON-RPC batch whatever the number of jobs (updates go out as one executemany); keys are
worked concurrently on PostgreSQL (independent nonce sequences, separate row locks) and one
after another on SQLite (one writer: concurrent writers would only wait on each other).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from eth_account import Account
from sqlalchemy import ColumnElement, Row, and_, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from chain.rpc import JsonRpc, RpcError, RpcUnavailable
from core.db import new_id, utc_now
from core.idempotency import NONCE_FILL_KEY_PREFIX
from relayer import sponsorship
from relayer.deps import RelayerServices
from relayer.errors import SponsorRefused
from relayer.forwarder import ForwardRequest, forwarder_calldata, nonces_call, sign_request
from relayer.keys import enabled_keys, is_relayer_call
from relayer.models import (
    JobKind,
    RelayAttempt,
    RelayerKey,
    RelayStatus,
    RelayTransaction,
    Sponsor,
    SponsorCharge,
)
from relayer.rpc_errors import SendOutcome, classify
from relayer.transactions import TransactionSigner
from wallet.keys import sealed_key_of, unlocked_account
from wallet.models import Wallet

logger = logging.getLogger(__name__)

SIGN_BATCH = 200
PIPELINE_STATUSES = (
    RelayStatus.QUEUED,
    RelayStatus.SIGNED,
    RelayStatus.SUBMITTED,
    RelayStatus.MINED,
)
RECONCILE_EVERY_SECONDS = 10.0
# The least a replacement must raise both fees by for a node to take it (geth's price bump).
MIN_REPLACEMENT_BUMP_PERCENT = 10

_JOBS = RelayTransaction.__table__
# A job's open reservation, if it has one: a sponsored job's unsettled charge (one at most: a
# charge is unique per job). Joined to the jobs a signing round reads, so that capping their
# fees (``within_reservation``) adds no statement to the round.
_OPEN_RESERVATION = and_(
    SponsorCharge.relay_transaction_id == RelayTransaction.id,
    SponsorCharge.settled.is_(False),
)
# A job as its receipt was read: still SUBMITTED at the relayer nonce it was read with. Both
# outcomes of a receipt (landed, or queued again) update through this guard, so a second
# writer, or a receipt read before another worker queued the job again, changes nothing.
_STILL_AS_READ = update(_JOBS).where(
    _JOBS.c.id == bindparam("b_id"),
    _JOBS.c.status == RelayStatus.SUBMITTED,
    _JOBS.c.relayer_nonce == bindparam("b_relayer_nonce"),
)


class RelayerWorker:
    def __init__(self, services: RelayerServices, *, name: str = "relayer") -> None:
        self.services = services
        self.settings = services.settings
        self.name = name
        self.rpc = JsonRpc(
            self.settings.resolved_rpc_url, timeout_seconds=self.settings.rpc_timeout_seconds
        )
        self.chain_id = services.chain.profile.chain_id
        self.forwarder = services.chain.addresses.forwarder if services.chain.addresses else ""
        self._last_reconcile: float | None = None  # the first round reconciles
        self._is_postgres = not services.db.is_sqlite
        self.low_balance_keys: set[str] = set()
        # Keys the forwarder does not accept (`ovpp-wallet relayer-authorize`): nothing is
        # signed with them, since every transaction they sent would revert and cost gas.
        self.unauthorized_keys: set[str] = set()
        # Whether the forwarder answered the ``isRelayer`` probe (``reconcile``): only then is
        # a request published in a reverted transaction out of everyone else's reach, which is
        # what makes it safe to sign that job again (``track_submitted``). Until the first
        # reconcile, and on an older forwarder, a reverted job fails as it always did.
        self.forwarder_refuses_outsiders = False
        # Wallets one of whose jobs failed without executing: their later forward requests
        # carry nonces the forwarder will refuse, so none is signed until ``resync_wallet``
        # has re-signed them from the forwarder's nonce. In memory only: after a restart a job
        # signed with a stale nonce just reverts and goes back to the queue (one wasted
        # transaction), so correctness never depends on this set, only the gas it saves.
        self.wallets_to_resync: set[str] = set()

    async def run(self, stop: asyncio.Event) -> None:
        logger.info("%s: started", self.name)
        while not stop.is_set():
            try:
                busy = await self.tick()
            except RpcUnavailable as error:
                logger.warning("%s: chain unreachable: %s", self.name, error)
                busy = False
            except Exception:
                logger.exception("%s: tick failed", self.name)
                busy = False
            # A busy worker pauses too: a round's cost is mostly per round, not per job, and
            # rounds back to back under a steady trickle of jobs each take a few (tripling the
            # relayer's CPU per transaction on two cores, docs/benchmarks.md "Seventh session").
            pause = (
                self.settings.relayer_round_pause_seconds
                if busy
                else self.settings.relayer_poll_seconds
            )
            if pause > 0:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=pause)
                except TimeoutError:
                    pass
        await self.rpc.close()
        logger.info("%s: stopped", self.name)

    async def tick(self) -> bool:
        """One round over every key with work. Returns whether there was anything to do.

        One grouped count says which keys have jobs in which stage, so an idle round is a
        single query (the worker polls every ``relayer_poll_seconds``). Keys are chosen by
        their jobs, not by ``enabled``: a disabled key still finishes its transactions."""
        if (
            self._last_reconcile is None
            or time.monotonic() - self._last_reconcile > RECONCILE_EVERY_SECONDS
        ):
            async with self.services.db.session() as session:
                keys = await enabled_keys(session)
            await self.reconcile(keys)
            self._last_reconcile = time.monotonic()
        for wallet_id in sorted(self.wallets_to_resync):
            try:
                await self.resync_wallet(wallet_id)  # returns early while one is in flight
            except RpcUnavailable:
                raise
            except Exception:  # one wallet's trouble must not stop every key's work
                logger.exception("%s: resync of wallet %s failed; retried", self.name, wallet_id)
        work = await self._work_by_key()
        if not work:
            return False
        gas_price = (
            await self._gas_price()
            if any(RelayStatus.QUEUED in stages for stages in work.values())
            else None
        )
        if self._is_postgres:
            results = await asyncio.gather(
                *(self._advance(key_id, stages, gas_price) for key_id, stages in work.items())
            )
            return any(results)
        busy = False
        for key_id, stages in work.items():
            busy |= await self._advance(key_id, stages, gas_price)
        return busy

    async def _work_by_key(self) -> dict[str, set[str]]:
        """Relayer key id → the open stages it has jobs in."""
        async with self.services.db.session() as session:
            rows = (
                await session.execute(
                    select(RelayTransaction.relayer_key_id, RelayTransaction.status)
                    .where(RelayTransaction.status.in_(PIPELINE_STATUSES))
                    .group_by(RelayTransaction.relayer_key_id, RelayTransaction.status)
                )
            ).all()
        work: dict[str, set[str]] = {}
        for key_id, status in rows:
            work.setdefault(key_id, set()).add(status)
        return work

    async def _advance(
        self, key_id: str, stages: set[str], gas_price: tuple[int, int] | None
    ) -> bool:
        """One key's stages in order: its nonces are only ever assigned and sent in order.
        A stage runs when it had jobs at the start of the round or the one before it just
        made some."""
        signed = (
            gas_price is not None
            and RelayStatus.QUEUED in stages
            and key_id not in self.unauthorized_keys
        )
        if signed:
            assert gas_price is not None
            signed = await self.sign_queued(key_id, gas_price)
        sent = False
        if signed or RelayStatus.SIGNED in stages:
            sent = await self.broadcast_signed(key_id)
        tracked = False
        if sent or stages & {RelayStatus.SUBMITTED, RelayStatus.MINED}:
            tracked = await self.track_submitted(key_id)
        return signed or sent or tracked

    # -- QUEUED → SIGNED ---------------------------------------------------------------------

    async def sign_queued(self, key_id: str, gas_price: tuple[int, int]) -> bool:
        """Signs the key's queued jobs at its next nonces, except those of wallets waiting
        for ``resync_wallet`` (their requests would revert).

        A job is signed at ``gas_price``, but a sponsored one never above what its sponsor
        has reserved for it (``within_reservation``): its worst case, gas limit × max fee,
        stays within its charge, so its settlement can never take the sponsor past its funds.
        When the network asks for more than the reservation covers, the job goes out at the
        reserved fee. Refused as underpriced, it is re-priced at once; accepted but not mined,
        it is bumped once stuck: either way by ``_bump``, which first grows the reservation
        as far as the sponsor's remaining funds allow (``sponsorship.reserve_fee_bump``). If
        they cannot pay even that, a job the node never accepted fails with its sponsor's
        refusal (``broadcast_signed``), so that its key's later jobs do not wait behind it.

        The reservations come with the jobs, in the statement that reads (and, on PostgreSQL,
        locks) them, and without the sponsors' locks: a QUEUED job's charge cannot change
        while this transaction holds the job. Its charge is inserted in the transaction that
        queues the job, so a job is never seen without it; after that only a fee bump
        (``reserve_fee_bump``, from ``_bump``, on a job locked as SIGNED or SUBMITTED) and a
        settlement (``settle_charges``, of jobs the same transaction has just failed or
        landed) write it, each holding the job's row and each for a job no longer QUEUED.
        This round holds the rows of the jobs it signs (``FOR UPDATE SKIP LOCKED``; SQLite
        has one writer) until they are SIGNED. A job queued again after a revert
        (``track_submitted``) keeps its unsettled charge, grown by any bump before the
        revert: it is capped at that charge, which may be above its quote."""
        async with self.services.db.session() as session:
            key = await self._claim_key(session, key_id)
            if key is None:
                return False
            statement = (
                select(RelayTransaction, SponsorCharge.amount_wei)
                .outerjoin(SponsorCharge, _OPEN_RESERVATION)
                .where(
                    RelayTransaction.relayer_key_id == key_id,
                    RelayTransaction.status == RelayStatus.QUEUED,
                )
            )
            if self.wallets_to_resync:
                statement = statement.where(
                    RelayTransaction.wallet_id.not_in(sorted(self.wallets_to_resync))
                )
            if self._is_postgres:
                # Jobs another worker's resync_wallet is re-signing are skipped this round: the
                # transaction built here must carry the requests stored with it. Only the
                # jobs' rows are locked, not their charges.
                statement = statement.with_for_update(of=RelayTransaction, skip_locked=True)
            rows = (
                await session.execute(
                    statement.order_by(
                        RelayTransaction.created_at, RelayTransaction.forwarder_nonce
                    ).limit(SIGN_BATCH)
                )
            ).all()
            if not rows:
                return False
            now = utc_now()
            attempts: list[dict[str, object]] = []
            # Signed inside the block: the plaintext key lives only while it is unlocked.
            with unlocked_account(sealed_key_of(key), keyring=self.services.keyring) as account:
                signer = TransactionSigner(account.key)
                for job, reserved_wei in rows:
                    max_fee, priority_fee = within_reservation(
                        gas_price,
                        gas_limit=job.gas_limit,
                        reserved_wei=reserved_wei if job.sponsor_id is not None else None,
                    )
                    signed = self._sign_job(
                        signer, job, nonce=key.next_nonce, max_fee=max_fee, tip=priority_fee
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
                    attempts.append(attempt_row(job, at=now))
            # One executemany (a RelayAttempt object each cost more than signing the job).
            await session.execute(insert(RelayAttempt.__table__), attempts)
            session.add(key)
        return True

    def _sign_job(
        self,
        signer: TransactionSigner,
        job: RelayTransaction,
        *,
        nonce: int,
        max_fee: int,
        tip: int,
    ):  # type: ignore[no-untyped-def]
        """The relayer's transaction carrying the job's forward requests to the forwarder."""
        requests = [ForwardRequest.from_json(item) for item in job.forward_requests]
        return signer.sign_eip1559(
            chain_id=self.chain_id,
            nonce=nonce,
            max_priority_fee_per_gas=tip,
            max_fee_per_gas=max_fee,
            gas=job.gas_limit,
            to=self.forwarder,
            value=0,
            data=forwarder_calldata(requests),
        )

    async def _claim_key(self, session: AsyncSession, key_id: str) -> RelayerKey | None:
        """The key's row, locked against other workers (``None``: another worker has it).

        ``FOR NO KEY UPDATE``, not ``FOR UPDATE``: every API transaction that queues a job
        holds ``FOR KEY SHARE`` on the key's row until it commits (the job's foreign key), and
        ``FOR UPDATE SKIP LOCKED`` would skip the key whenever one is in flight: under load the
        worker skipped a busy key round after round (docs/benchmarks.md). Two workers still
        exclude each other, and ``next_nonce`` is not part of any key."""
        statement = select(RelayerKey).where(RelayerKey.id == key_id)
        if self._is_postgres:
            statement = statement.with_for_update(skip_locked=True, key_share=True)
        return (await session.execute(statement)).scalar_one_or_none()

    # -- SIGNED → SUBMITTED ------------------------------------------------------------------

    async def broadcast_signed(self, key_id: str) -> bool:
        async with self.services.db.session() as session:
            jobs = list(
                (
                    await session.execute(
                        select(
                            RelayTransaction.id,
                            RelayTransaction.raw_transaction,
                            RelayTransaction.submitted_at,
                        )
                        .where(
                            RelayTransaction.relayer_key_id == key_id,
                            RelayTransaction.status == RelayStatus.SIGNED,
                        )
                        .order_by(RelayTransaction.relayer_nonce)
                    )
                ).all()
            )
        if not jobs:
            return False
        results = await self.rpc.batch(
            [("eth_sendRawTransaction", ["0x" + bytes(raw).hex()]) for _job_id, raw, _at in jobs]
        )
        submitted, too_low, rejected, underpriced = [], [], [], []
        for (job_id, _raw, submitted_at), result in zip(jobs, results, strict=True):
            outcome = classify(result)
            if outcome in (SendOutcome.ACCEPTED, SendOutcome.ALREADY_KNOWN):
                submitted.append(job_id)
            elif outcome == SendOutcome.NONCE_TOO_LOW:
                too_low.append(job_id)
            elif outcome == SendOutcome.INSUFFICIENT_FUNDS:
                logger.error(
                    "%s: relayer key %s lacks native funds; transactions wait", self.name, key_id
                )
                self.low_balance_keys.add(key_id)
                break  # later nonces cannot go before this one
            elif outcome == SendOutcome.UNDERPRICED:
                # Never accepted, so the stored bytes can be replaced: re-sign at today's fees
                # (same nonce); the next round broadcasts it. Later nonces wait behind it.
                logger.warning("%s: job %s underpriced; re-pricing", self.name, job_id)
                underpriced.append(job_id)
                break
            elif outcome in (SendOutcome.NONCE_TOO_HIGH, SendOutcome.TEMPORARY):
                logger.warning("%s: %s for job %s; will retry", self.name, outcome.value, job_id)
                break
            elif submitted_at is not None:
                # A fee bump refused, but an earlier copy was accepted (the job was SUBMITTED)
                # and may still be mined, so the job is not failed: the receipts of every
                # attempt at its nonce are looked up instead. A copy never accepted (say, one
                # re-priced after "underpriced") cannot be mined: that job fails as below.
                assert isinstance(result, RpcError)
                logger.error(
                    "%s: bumped job %s refused (%s); following its earlier attempts",
                    self.name,
                    job_id,
                    result.message,
                )
                too_low.append(job_id)
            else:
                assert isinstance(result, RpcError)
                rejected.append((job_id, result.message))
        # Read before the transaction: a refused job's filler and an underpriced job's new
        # copy are signed at it, and the node call must not run while the rows below (and
        # the refused jobs' sponsors) are locked.
        gas_price = await self._gas_price() if rejected or underpriced else None
        now = utc_now()
        async with self.services.db.session() as session:
            if submitted:
                # Two workers may broadcast the same stored bytes and mark the same rows. Lock
                # them in one order and skip those the other worker holds (it marks them
                # itself): one UPDATE over both sets locks rows in scan order and can deadlock.
                mine = list(
                    (
                        await session.execute(
                            select(RelayTransaction.id)
                            .where(
                                RelayTransaction.id.in_(submitted),
                                RelayTransaction.status == RelayStatus.SIGNED,
                            )
                            .order_by(RelayTransaction.id)
                            .with_for_update(skip_locked=True)
                        )
                    ).scalars()
                )
                if mine:
                    await session.execute(
                        update(RelayTransaction)
                        .where(RelayTransaction.id.in_(mine))
                        .values(status=RelayStatus.SUBMITTED, submitted_at=now, updated_at=now)
                    )
            refused_sponsored = await self._fail_refused(
                session,
                [(job_id, f"rejected by the node: {message}") for job_id, message in rejected],
                gas_price=gas_price,
            )
            # Nonce too low: maybe ours landed (a crash between send and commit). The receipt
            # step looks up every hash of these jobs; mark them submitted so it does.
            if too_low:
                await session.execute(
                    update(RelayTransaction)
                    .where(
                        RelayTransaction.id.in_(too_low),
                        RelayTransaction.status == RelayStatus.SIGNED,
                    )
                    .values(status=RelayStatus.SUBMITTED, submitted_at=now, updated_at=now)
                )
            repricing = [
                job
                for job_id in underpriced
                if (job := await _lock_job(session, job_id, _JOBS.c.status == RelayStatus.SIGNED))
                is not None
            ]
            # Nothing of a refused job was mined, so its sponsor paid nothing: its reservation
            # is settled at 0, or it would count against the sponsor's funds and caps forever.
            # One call for the round, after every job row it locks: it locks the sponsors, the
            # refused jobs' and the re-priced ones' (whose reservation may grow), in the order
            # every settlement takes them (sorted), for the rest of this transaction only (see
            # track_submitted for why this order cannot deadlock).
            await sponsorship.settle_charges(
                session,
                dict.fromkeys(refused_sponsored, 0),
                lock_also=[job.sponsor_id for job in repricing if job.sponsor_id is not None],
            )
            unfunded: list[tuple[str, str, SponsorRefused]] = []
            for job in repricing:
                refused_tx_hash = job.tx_hash
                refusal = await self._bump(session, job, gas_price=gas_price)
                session.add(job)
                # The sponsor cannot fund a price the node would take. A job no copy of which
                # the node ever accepted fails (below), rather than be refused round after
                # round with every later job of its key waiting behind it. One that was
                # accepted (SUBMITTED before a bump) is not failed: that copy may still be
                # mined at this nonce, and a failure would tell its customer FAILED for a
                # transfer that may yet execute, settle its sponsor at 0 for gas the relayer
                # then pays, and race that copy with a filler. It stays SIGNED, as a stuck job
                # whose bump its sponsor cannot fund: once that copy is mined, the next
                # broadcast hears "nonce too low" and its receipts are followed.
                if refusal is not None and job.submitted_at is None:
                    assert refused_tx_hash is not None
                    unfunded.append((job.id, refused_tx_hash, refusal))
        if unfunded:
            assert gas_price is not None
            await self._fail_unfunded(unfunded, gas_price=gas_price)
        return True

    async def _fail_refused(
        self,
        session: AsyncSession,
        refused: list[tuple[str, str]],
        *,
        gas_price: tuple[int, int] | None,
    ) -> list[str]:
        """Fails each (job id, error) of jobs the node never accepted a copy of, and fills
        their nonces (``_fail_and_fill``). Returns the failed sponsored jobs' ids: their
        reservations are the caller's to settle at 0 (nothing of them was mined), in its
        round's one pass over sponsors."""
        sponsored: list[str] = []
        for job_id, error in refused:
            assert gas_price is not None
            failed = await self._fail_and_fill(session, job_id, error, gas_price=gas_price)
            if failed is not None:
                # Its nonce unused, the wallet's later requests would revert: they wait for
                # the next round's resync.
                self.wallets_to_resync.add(failed.wallet_id)
                if failed.sponsor_id is not None:
                    sponsored.append(failed.id)
        return sponsored

    async def _fail_unfunded(
        self, unfunded: list[tuple[str, str, SponsorRefused]], *, gas_price: tuple[int, int]
    ) -> None:
        """Fails sponsored jobs the node refused as underpriced before accepting any copy,
        and whose sponsors' funds do not cover a price it would take (``_bump``'s refusal,
        given as (job id, the refused copy's hash, refusal)): each ends FAILED with the
        sponsor's refusal as its error, never charged to its customer, its reservation
        settled at 0, its nonce filled, its wallet resynchronised, as for any job the node
        refused (``_fail_refused``).

        A transaction of its own, after the one that judged the bump: failing a job inserts a
        filler, which that one could not do once it held sponsors (jobs, then sponsors in
        one sorted pass; see ``track_submitted``). Here too the jobs come first, locked and
        checked again (another worker may have sent or re-priced one since), then the
        sponsors, in ``settle_charges``'s pass."""
        async with self.services.db.session() as session:
            refused: list[tuple[str, str]] = []
            for job_id, tx_hash, refusal in sorted(unfunded, key=lambda item: item[0]):
                job = await _lock_job(
                    session,
                    job_id,
                    _JOBS.c.status == RelayStatus.SIGNED,
                    _JOBS.c.tx_hash == tx_hash,
                    _JOBS.c.submitted_at.is_(None),
                )
                if job is None:
                    continue
                logger.error(
                    "%s: job %s fails, never accepted by the node: %s",
                    self.name,
                    job_id,
                    refusal.message,
                )
                refused.append(
                    (job_id, f"refused by its sponsor ({refusal.reason}): {refusal.message}")
                )
            sponsored = await self._fail_refused(session, refused, gas_price=gas_price)
            await sponsorship.settle_charges(session, dict.fromkeys(sponsored, 0))

    async def _fail_and_fill(
        self, session: AsyncSession, job_id: str, error: str, *, gas_price: tuple[int, int]
    ) -> RelayTransaction | None:
        """The node refused the job's transaction: the job fails, and a zero-value transaction
        to the relayer itself, signed at ``gas_price`` (read before the transaction), takes its
        nonce, so no gap stalls the key's later transactions. Returns the failed job; its
        sponsor's reservation is the caller's to settle (at 0, with the round's others)."""
        job = await session.get(RelayTransaction, job_id)
        if job is None or job.status != RelayStatus.SIGNED or job.relayer_nonce is None:
            return None
        nonce = job.relayer_nonce
        await session.execute(
            update(RelayTransaction)
            .where(RelayTransaction.id == job_id)
            .values(
                status=RelayStatus.FAILED,
                error=error[:500],
                relayer_nonce=None,
                updated_at=utc_now(),
            )
        )
        key = await session.get(RelayerKey, job.relayer_key_id)
        assert key is not None
        max_fee, tip = gas_price
        with unlocked_account(sealed_key_of(key), keyring=self.services.keyring) as signer:
            signed = signer.sign_transaction(
                {
                    "to": key.address,
                    "value": 0,
                    "gas": 21_000,
                    "maxFeePerGas": max_fee,
                    "maxPriorityFeePerGas": tip,
                    "nonce": nonce,
                    "chainId": self.chain_id,
                    "type": 2,
                }
            )
        filler = RelayTransaction(
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
        session.add(filler)
        await session.flush()
        session.add(RelayAttempt(**attempt_row(filler, at=utc_now())))
        logger.warning(
            "%s: nonce %d of key %s filled after a rejection", self.name, nonce, key.address
        )
        return job

    async def resync_wallet(self, wallet_id: str) -> None:
        """After one of the wallet's jobs failed without executing, its later forward requests
        carry nonces the forwarder will refuse. Once none of them is in flight, re-sign the
        wallet's queued jobs (those never signed and those back from a revert) in their
        forwarder-nonce order from the forwarder's on-chain nonce, under the wallet's lock, and
        release the wallet (``wallets_to_resync``): a failure never leaves the wallet unable to
        transact, and the wallet's next nonce follows its last queued request."""
        from wallet.keys import sealed_key_of
        from wallet.keys import unlocked_account as unlock_wallet

        async with self.services.db.session() as session:
            await session.execute(
                update(Wallet)
                .where(Wallet.id == wallet_id)
                .values(next_forwarder_nonce=Wallet.next_forwarder_nonce)
            )  # the wallet's lock, as the API takes it
            in_flight = (
                await session.execute(
                    select(RelayTransaction.id).where(
                        RelayTransaction.wallet_id == wallet_id,
                        RelayTransaction.kind != JobKind.NONCE_FILL,
                        RelayTransaction.status.in_((RelayStatus.SIGNED, RelayStatus.SUBMITTED)),
                    )
                )
            ).first()
            if in_flight is not None:
                return  # they land or revert first; the wallet stays held, tried next round
            wallet = await session.get(Wallet, wallet_id, populate_existing=True)
            assert wallet is not None
            method, params = nonces_call(self.forwarder, wallet.address)
            next_nonce = int(await self.rpc.call(method, *params), 16)
            queued_statement = (
                select(RelayTransaction)
                .where(
                    RelayTransaction.wallet_id == wallet_id,
                    RelayTransaction.status == RelayStatus.QUEUED,
                )
                .order_by(RelayTransaction.forwarder_nonce, RelayTransaction.created_at)
            )
            if self._is_postgres:
                # Waits for a worker signing some of them (sign_queued locks what it signs);
                # those are SIGNED by then and drop out of this read.
                queued_statement = queued_statement.with_for_update()
            queued = list((await session.execute(queued_statement)).scalars())
            separator = self.services.forwarder_domain_separator
            with unlock_wallet(sealed_key_of(wallet), keyring=self.services.keyring) as signer:
                for job in queued:
                    requests = [ForwardRequest.from_json(item) for item in job.forward_requests]
                    resigned = [
                        sign_request(
                            ForwardRequest(
                                **{**r.__dict__, "nonce": next_nonce + index, "signature": b""}
                            ),
                            private_key=signer.key,
                            separator=separator,
                        )
                        for index, r in enumerate(requests)
                    ]
                    job.forward_requests = [r.to_json() for r in resigned]
                    job.forwarder_nonce = next_nonce
                    next_nonce += len(resigned)
                    session.add(job)
            if wallet.next_forwarder_nonce != next_nonce:
                logger.warning(
                    "%s: wallet %s forwarder nonce resynchronised %d -> %d",
                    self.name,
                    wallet.address,
                    wallet.next_forwarder_nonce,
                    next_nonce,
                )
            wallet.next_forwarder_nonce = next_nonce
            session.add(wallet)
        self.wallets_to_resync.discard(wallet_id)  # committed: its jobs may be signed

    # -- SUBMITTED → MINED → CONFIRMED, and fee bumps ----------------------------------------

    async def track_submitted(self, key_id: str) -> bool:
        """Receipts of every hash sent for each submitted job at its current relayer nonce (one
        batch), then the outcome in one transaction: mined, confirmed once deep enough,
        re-signed with a higher fee when stuck, or reverted. A reverted job fails, unless it
        could not have executed (``_requests_ahead_of_the_forwarder``): then it goes back to
        QUEUED, signed again once its wallet is resynchronised. A sponsor's charge is settled
        by the transaction that ends a job, never by one after which the job is queued again
        (that transaction's gas is the operator's)."""
        async with self.services.db.session() as session:
            jobs = (
                await session.execute(
                    select(
                        RelayTransaction.id,
                        RelayTransaction.status,
                        RelayTransaction.kind,
                        RelayTransaction.tx_hash,
                        RelayTransaction.relayer_nonce,
                        RelayTransaction.forwarder_nonce,
                        RelayTransaction.attempts,
                        RelayTransaction.submitted_at,
                        RelayTransaction.block_number,
                        RelayTransaction.sponsor_id,
                        RelayTransaction.wallet_id,
                    ).where(
                        RelayTransaction.relayer_key_id == key_id,
                        RelayTransaction.status.in_((RelayStatus.SUBMITTED, RelayStatus.MINED)),
                    )
                )
            ).all()
            if not jobs:
                return False
            hashes_by_job: dict[str, list[str]] = {job.id: [job.tx_hash or ""] for job in jobs}
            relayer_nonce_of = {job.id: job.relayer_nonce for job in jobs}
            multi = [job.id for job in jobs if job.attempts > 1]
            if multi:
                for job_id, tx_hash, relayer_nonce in (
                    await session.execute(
                        select(
                            RelayAttempt.relay_transaction_id,
                            RelayAttempt.tx_hash,
                            RelayAttempt.relayer_nonce,
                        ).where(RelayAttempt.relay_transaction_id.in_(multi))
                    )
                ).all():
                    # An attempt at another relayer nonce was sent before the job went back to
                    # the queue: its receipt (a revert) is not this transaction's outcome.
                    if relayer_nonce is not None and relayer_nonce != relayer_nonce_of[job_id]:
                        continue
                    if tx_hash not in hashes_by_job[job_id]:
                        hashes_by_job[job_id].append(tx_hash)
        calls: list[tuple[str, list[object]]] = [("eth_blockNumber", [])]
        index: list[str] = []
        for job in jobs:
            if job.status == RelayStatus.SUBMITTED:
                for tx_hash in hashes_by_job[job.id]:
                    calls.append(("eth_getTransactionReceipt", [tx_hash]))
                    index.append(job.id)
        results = await self.rpc.batch(calls)
        head = int(results[0], 16) if isinstance(results[0], str) else None
        receipts: dict[str, dict[str, str]] = {}
        for job_id, receipt in zip(index, results[1:], strict=True):
            if isinstance(receipt, dict):
                receipts[job_id] = receipt
        # Read after the receipts, so that a forwarder nonce is never older than a revert.
        forwarder_nonce_before, nonce_unread = await self._requests_ahead_of_the_forwarder(
            [
                job
                for job in jobs
                if job.status == RelayStatus.SUBMITTED
                and job.kind != JobKind.NONCE_FILL
                and job.id in receipts
                and int(receipts[job.id]["status"], 16) != 1
            ]
        )

        now = utc_now()
        confirmations = self.settings.relayer_confirmations
        stuck_after = timedelta(seconds=self.settings.relayer_stuck_seconds)

        def deep_enough(block_number: int | None) -> bool:
            return (
                head is not None
                and block_number is not None
                and head - block_number + 1 >= confirmations
            )

        landed: list[dict[str, object]] = []
        requeued: list[dict[str, object]] = []
        reverted_wallets: set[str] = set()
        charges: list[dict[str, object]] = []
        confirmed: list[str] = []
        stuck: list[str] = []
        for job in jobs:
            receipt = receipts.get(job.id)
            if job.status == RelayStatus.SUBMITTED and receipt is not None:
                block_number = int(receipt["blockNumber"], 16)
                gas_used = int(receipt["gasUsed"], 16)
                gas_price = int(receipt["effectiveGasPrice"], 16)
                succeeded = int(receipt["status"], 16) == 1
                final = succeeded and deep_enough(block_number)
                if not succeeded and job.id in nonce_unread:
                    continue  # judged next round, when the forwarder's nonce can be read
                if not succeeded:
                    reverted_wallets.add(job.wallet_id)
                if job.id in forwarder_nonce_before:
                    logger.warning(
                        "%s: job %s reverted without executing (its forward request's nonce %d "
                        "is ahead of the forwarder's %d): queued again; the reverted transaction "
                        "%s used %d gas (%d wei)",
                        self.name,
                        job.id,
                        job.forwarder_nonce,
                        forwarder_nonce_before[job.id],
                        receipt["transactionHash"],
                        gas_used,
                        gas_used * gas_price,
                    )
                    requeued.append({"b_id": job.id, "b_relayer_nonce": job.relayer_nonce})
                    continue
                if not succeeded:
                    logger.warning(
                        "%s: job %s failed: transaction %s reverted on chain (%d gas)",
                        self.name,
                        job.id,
                        receipt["transactionHash"],
                        gas_used,
                    )
                landed.append(
                    {
                        "b_id": job.id,
                        "b_relayer_nonce": job.relayer_nonce,
                        "b_status": (
                            RelayStatus.CONFIRMED
                            if final
                            else RelayStatus.MINED
                            if succeeded
                            else RelayStatus.FAILED
                        ),
                        "b_error": None if succeeded else "the transaction reverted on chain",
                        "b_block_number": block_number,
                        "b_gas_used": gas_used,
                        "b_effective_gas_price": gas_price,
                        "b_tx_hash": receipt["transactionHash"],
                        "b_confirmed_at": now if final else None,
                    }
                )
                if job.sponsor_id is not None:
                    charges.append(
                        {
                            "b_job_id": job.id,
                            "b_tx_hash": receipt["transactionHash"],
                            "b_amount_wei": gas_used * gas_price,
                        }
                    )
            elif job.status == RelayStatus.MINED and deep_enough(job.block_number):
                confirmed.append(job.id)
            elif job.status == RelayStatus.SUBMITTED and job.submitted_at is not None:
                if now - job.submitted_at > stuck_after:
                    stuck.append(job.id)
        if not (landed or requeued or confirmed or stuck):
            return False
        # Rows in one order for every worker, so two workers' updates cannot deadlock.
        landed.sort(key=lambda row: row["b_id"])
        requeued.sort(key=lambda row: row["b_id"])
        confirmed.sort()

        stuck_gas_price = await self._gas_price() if stuck else None
        async with self.services.db.session() as session:
            # One executemany each. The guards make a second writer a no-op, and keep a receipt
            # read before the job was queued and signed again off the job's new transaction.
            if landed:
                await session.execute(
                    _STILL_AS_READ.values(
                        status=bindparam("b_status"),
                        error=bindparam("b_error"),
                        block_number=bindparam("b_block_number"),
                        gas_used=bindparam("b_gas_used"),
                        effective_gas_price=bindparam("b_effective_gas_price"),
                        tx_hash=bindparam("b_tx_hash"),
                        confirmed_at=bindparam("b_confirmed_at"),
                        updated_at=now,
                    ),
                    landed,
                )
            if requeued:
                # Back to the state the API created it in; its attempts stay as the record of
                # what was sent. Its relayer nonce was used by the reverted transaction, so the
                # key's nonces have no gap.
                await session.execute(
                    _STILL_AS_READ.values(
                        status=RelayStatus.QUEUED,
                        relayer_nonce=None,
                        raw_transaction=None,
                        tx_hash=None,
                        max_fee_per_gas=None,
                        max_priority_fee_per_gas=None,
                        attempts=0,
                        block_number=None,
                        gas_used=None,
                        effective_gas_price=None,
                        error=None,
                        submitted_at=None,
                        confirmed_at=None,
                        updated_at=now,
                    ),
                    requeued,
                )
            if confirmed:
                await session.execute(
                    update(_JOBS)
                    .where(_JOBS.c.id.in_(confirmed), _JOBS.c.status == RelayStatus.MINED)
                    .values(status=RelayStatus.CONFIRMED, confirmed_at=now, updated_at=now)
                )
            # Locked and checked again, in one lock order for every worker: another worker may
            # have requeued or landed a job since it was read, and a bump must not overwrite it.
            bumping = [
                job
                for job_id in sorted(stuck)
                if (
                    job := await _lock_job(
                        session,
                        job_id,
                        _JOBS.c.status == RelayStatus.SUBMITTED,
                        _JOBS.c.relayer_nonce == relayer_nonce_of[job_id],
                    )
                )
                is not None
            ]
            # Sponsors last, all in one pass in sorted order (settle_charges): those whose
            # charges this round settles and those of the sponsored jobs it bumps (a bump may
            # grow its reservation). Why no deadlock goes through a sponsor: a worker's round
            # locks its jobs' rows, then sponsors in one sorted pass, then only rows whose
            # every writer holds their sponsor's lock (charges, customers' days); a request
            # locks its wallet, then one sponsor, then no job row, wallet or other sponsor
            # (it inserts its job; an enrollment's row is no worker's). So a transaction that
            # holds a sponsor never waits for a job row, a wallet or a sponsor sorting before
            # it. Locking each bump's sponsor after the pass would break this: it could sort
            # before one settled in the pass, and two rounds could each hold what the other
            # waits for.
            sponsored_bumps = [job.sponsor_id for job in bumping if job.sponsor_id is not None]
            if charges:
                # Only jobs this transaction ended: a receipt read before another worker queued
                # the job again must not settle the charge its next transaction owes.
                ended_by = dict(
                    (
                        await session.execute(
                            select(_JOBS.c.id, _JOBS.c.tx_hash).where(
                                _JOBS.c.id.in_([charge["b_job_id"] for charge in charges]),
                                _JOBS.c.status.in_(
                                    (RelayStatus.MINED, RelayStatus.CONFIRMED, RelayStatus.FAILED)
                                ),
                            )
                        )
                    ).all()
                )
                await sponsorship.settle_charges(
                    session,
                    {
                        charge["b_job_id"]: charge["b_amount_wei"]
                        for charge in charges
                        if ended_by.get(charge["b_job_id"]) == charge["b_tx_hash"]
                    },
                    lock_also=sponsored_bumps,
                )
            else:
                await sponsorship.lock_in_order(session, sponsored_bumps)
            for job in bumping:
                # A bump its sponsor cannot fund leaves the job as it is: it was accepted, and
                # that copy may still be mined (see broadcast_signed).
                await self._bump(session, job, gas_price=stuck_gas_price)
                session.add(job)
        # Their later requests would revert: held until resynchronised (next round).
        self.wallets_to_resync.update(reverted_wallets)
        return True

    async def _requests_ahead_of_the_forwarder(
        self, reverted: Sequence[Row[Any]]
    ) -> tuple[dict[str, int], set[str]]:
        """Of these reverted jobs, those whose first forward request's nonce is above the
        forwarder's current nonce for their wallet (one batch of ``nonces`` calls), with that
        nonce; and those whose wallet's nonce the node did not give (a rate limit, say): they
        are not judged this round. Forwarder nonces only grow, so a request above the nonce was
        not valid when its transaction was mined either: an earlier request of the wallet had
        not executed (a wallet's jobs go through one key, in forwarder-nonce order). The job did
        not fail on its own merits, and nothing of it executed.

        Empty unless the forwarder refuses relayers its owner did not authorize: the job's old
        request, published in the reverted transaction, stays validly signed until its deadline
        and becomes valid again when the wallet's nonce reaches it (the job is signed again at
        a lower nonce); only relayers that never send it may be able to submit it."""
        if not reverted or not self.forwarder_refuses_outsiders:
            return {}, set()
        async with self.services.db.session() as session:
            address_of = dict(
                (
                    await session.execute(
                        select(Wallet.id, Wallet.address).where(
                            Wallet.id.in_(sorted({job.wallet_id for job in reverted}))
                        )
                    )
                ).all()
            )
        wallet_ids = sorted(address_of)
        answers = await self.rpc.batch(
            [nonces_call(self.forwarder, address_of[wallet_id]) for wallet_id in wallet_ids]
        )
        on_chain = {
            wallet_id: nonce
            for wallet_id, answer in zip(wallet_ids, answers, strict=True)
            if (nonce := _word(answer)) is not None
        }
        ahead = {
            job.id: on_chain[job.wallet_id]
            for job in reverted
            if job.wallet_id in on_chain and job.forwarder_nonce > on_chain[job.wallet_id]
        }
        return ahead, {job.id for job in reverted if job.wallet_id not in on_chain}

    async def _bump(
        self,
        session: AsyncSession,
        job: RelayTransaction,
        *,
        gas_price: tuple[int, int] | None = None,
    ) -> SponsorRefused | None:
        """Replace a stuck transaction: same nonce, fees up by the bump percentage (capped).
        ``gas_price`` read beforehand keeps the network call out of a transaction holding
        row locks.

        A sponsored job's sponsor has reserved its worst case, and the bump never takes it
        past that: if the transaction's gas limit × the new max fee would exceed the
        reservation, the reservation grows first, within the sponsor's remaining funds
        (``sponsorship.reserve_fee_bump``; its caps are not applied). If the funds cover less,
        the bump goes only as far as they do; if they do not cover the smallest replacement
        a node accepts, the job is not bumped (an error names it and its sponsor) and the
        sponsor's refusal is returned, for the caller to decide the job's fate
        (``broadcast_signed``). The caller has locked the sponsor in its round's one pass
        over sponsors (``track_submitted``). Other jobs' bumps are the operator's gas: their
        customer's fee is fixed in the signed forward request."""
        key = await session.get(RelayerKey, job.relayer_key_id)
        assert key is not None and job.relayer_nonce is not None
        bump = 100 + max(self.settings.relayer_fee_bump_percent, MIN_REPLACEMENT_BUMP_PERCENT)
        cap = self.settings.relayer_max_fee_per_gas_wei
        current_max, current_tip = gas_price or await self._gas_price()
        max_fee = min(max(job.max_fee_per_gas * bump // 100 + 1, current_max), cap)
        if max_fee <= job.max_fee_per_gas:
            logger.error("%s: job %s is stuck at the fee cap", self.name, job.id)
            return None
        if job.sponsor_id is not None:
            wanted = max_fee
            smallest = job.max_fee_per_gas * (100 + MIN_REPLACEMENT_BUMP_PERCENT) // 100 + 1
            # The transaction's gas limit is the job's (``_sign_job``), which its reservation
            # was priced with.
            covered = await sponsorship.reserve_fee_bump(
                session,
                sponsor_id=job.sponsor_id,
                relay_transaction_id=job.id,
                gas_limit=job.gas_limit,
                max_fee_per_gas=max_fee,
                min_max_fee_per_gas=min(smallest, max_fee),
            )
            sponsor = await session.get(Sponsor, job.sponsor_id)  # locked above: no query
            sponsor_name = sponsor.name if sponsor is not None else job.sponsor_id
            if covered is None:
                logger.error(
                    "%s: job %s not bumped: its sponsor %s (%s) lacks the funds for a fee bump",
                    self.name,
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
                    self.name,
                    job.id,
                    covered,
                    wanted,
                    sponsor_name,
                    job.sponsor_id,
                )
            max_fee = covered
        tip = min(max(job.max_priority_fee_per_gas * bump // 100 + 1, current_tip), max_fee)
        with unlocked_account(sealed_key_of(key), keyring=self.services.keyring) as account:
            signed = self._sign_job(
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
        session.add(RelayAttempt(**attempt_row(job, at=utc_now())))
        logger.info(
            "%s: bumped job %s to %d wei/gas (attempt %d)", self.name, job.id, max_fee, job.attempts
        )
        return None

    # -- nonces and balances ----------------------------------------------------------------

    async def reconcile(self, keys: list[RelayerKey]) -> None:
        """The chain's pending nonce is a floor for ``next_nonce``; watch native balances and
        whether the forwarder accepts each key, and so whether it checks relayers at all
        (``forwarder_refuses_outsiders``: an older forwarder without ``isRelayer`` answers the
        probe with an error)."""
        calls: list[tuple[str, list[object]]] = []
        for key in keys:
            calls.append(("eth_getTransactionCount", [key.address, "pending"]))
            calls.append(("eth_getBalance", [key.address, "latest"]))
            calls.append(is_relayer_call(self.forwarder, key.address))
        results = await self.rpc.batch(calls)
        answers = [_word(results[3 * position + 2]) for position in range(len(keys))]
        if any(answer is not None for answer in answers):
            # Once seen, kept: a forwarder's code does not change, and a round of failed probes
            # (a rate limit, say) must not turn requeues back into failures.
            self.forwarder_refuses_outsiders = True
        async with self.services.db.session() as session:
            for position, key in enumerate(keys):
                pending, balance = results[3 * position : 3 * position + 2]
                accepted = answers[position]
                if accepted is not None:
                    if accepted == 0:
                        if key.id not in self.unauthorized_keys:
                            logger.error(
                                "relayer key %s is not authorized in the forwarder %s: its "
                                "transactions wait; run `ovpp-wallet relayer-authorize`",
                                key.address,
                                self.forwarder,
                            )
                        self.unauthorized_keys.add(key.id)
                    else:
                        self.unauthorized_keys.discard(key.id)
                if isinstance(balance, str):
                    if int(balance, 16) < self.settings.relayer_low_balance_wei:
                        if key.id not in self.low_balance_keys:
                            logger.error(
                                "relayer key %s is low on native funds: %d wei",
                                key.address,
                                int(balance, 16),
                            )
                        self.low_balance_keys.add(key.id)
                    else:
                        self.low_balance_keys.discard(key.id)
                if not isinstance(pending, str):
                    continue
                chain_nonce = int(pending, 16)
                locked = await self._claim_key(session, key.id)
                if locked is not None and locked.next_nonce < chain_nonce:
                    logger.warning(
                        "relayer key %s: nonce %d raised to the chain's %d",
                        key.address,
                        locked.next_nonce,
                        chain_nonce,
                    )
                    locked.next_nonce = chain_nonce
                    session.add(locked)

    async def _gas_price(self) -> tuple[int, int]:
        # The pending block's base fee is the one the next transaction must meet.
        block = await self.rpc.call("eth_getBlockByNumber", "pending", False)
        base_fee = int(block["baseFeePerGas"], 16)
        tip = 10**9
        return min(base_fee * 2 + tip, self.settings.relayer_max_fee_per_gas_wei), tip


def within_reservation(
    gas_price: tuple[int, int], *, gas_limit: int, reserved_wei: int | None
) -> tuple[int, int]:
    """The fees (max fee, tip) to first sign a job at: ``gas_price``, with the max fee capped
    at what the job's reservation covers for its gas limit (``reserved_wei // gas_limit``) and
    the tip at the max fee, so that the transaction's worst case never exceeds the reservation.
    ``reserved_wei`` is ``None`` for a job with no open reservation, signed at ``gas_price``
    unchanged: a job without a sponsor, whose gas is the operator's (as is a sponsored job's
    without a charge, from before charges were kept: ``settle_charges`` finds none to bill)."""
    if reserved_wei is None:
        return gas_price
    max_fee = min(gas_price[0], reserved_wei // gas_limit)
    return max_fee, min(gas_price[1], max_fee)


async def _lock_job(
    session: AsyncSession, job_id: str, *still: ColumnElement[bool]
) -> RelayTransaction | None:
    """The job, its row locked for the rest of the transaction, if it is ``still`` as the
    caller read it (conditions on ``_JOBS``): another worker may have moved it since."""
    return (
        await session.execute(
            select(RelayTransaction).where(_JOBS.c.id == job_id, *still).with_for_update()
        )
    ).scalar_one_or_none()


def _word(answer: object) -> int | None:
    """An ``eth_call`` answer as a uint256; ``None`` for an error or anything but one ABI word
    (an address without code answers ``0x``)."""
    if isinstance(answer, str) and len(answer) == 66:
        return int(answer, 16)
    return None


def attempt_row(job: RelayTransaction, *, at: datetime) -> dict[str, object]:
    """The ``relay_attempts`` row of the raw transaction just stored on ``job``. Its relayer
    nonce matters: only attempts at the job's current nonce are its possible outcomes."""
    assert job.relayer_nonce is not None and job.raw_transaction is not None
    return {
        "id": new_id(),
        "relay_transaction_id": job.id,
        "relayer_nonce": job.relayer_nonce,
        "tx_hash": job.tx_hash,
        "raw_transaction": job.raw_transaction,
        "max_fee_per_gas": job.max_fee_per_gas,
        "max_priority_fee_per_gas": job.max_priority_fee_per_gas,
        "created_at": at,
    }


def relayer_account_address(private_key: bytes) -> str:
    return Account.from_key(private_key).address
