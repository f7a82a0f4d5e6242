"""The onramp processor: the one place stored Stripe events and paid payments are acted on.

Each tick, in separate transactions: process the stored events not yet processed (a failure
is retried with backoff); re-read from Stripe the payments awaiting a card for a while (a lost
webhook); deliver PAID payments from the treasury; settle deliveries whose
relayed transfer is final; refund payments whose delivery failed; move card-paid enrollments
on. Every step is idempotent and guarded in SQL, so a crash anywhere, a restart, or a second
processor on the same PostgreSQL loses nothing and does nothing twice. It runs inside ``serve``
next to the relayer worker, as ``ovpp-wallet onramp process``, or in a test's event loop
(``start_onramp_processor``); the webhook route wakes it as soon as an event is stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from core.background import BackgroundLoop, run_rounds
from core.db import utc_now
from identity.service import CustomerAccount
from onramp import delivery, events, refunds, repository
from onramp.deps import OnrampServices
from onramp.models import PaymentStatus, StripeEvent
from onramp.treasury import treasury_account

logger = logging.getLogger(__name__)

MAX_RETRY_SECONDS = 300

PaymentFollower = Callable[[OnrampServices], Awaitable[bool]]
"""A step run after every round, for what waits on payments (card-paid enrollments): returns
whether it moved anything. The composition root registers them; the onramp knows none."""


def backoff_seconds(failures: int) -> int:
    """1, 2, 4 … seconds after each failure in a row, at most ``MAX_RETRY_SECONDS``."""
    return min(2 ** min(failures, 10), MAX_RETRY_SECONDS)


class OnrampProcessor:
    def __init__(
        self,
        services: OnrampServices,
        *,
        name: str = "onramp",
        followers: Sequence[PaymentFollower] = (),
    ) -> None:
        self.services = services
        self.name = name
        self.followers = tuple(followers)
        self._wake = asyncio.Event()
        self._treasury: CustomerAccount | None = None
        self._short_of_stock: set[str] = set()  # payments already reported as waiting for stock
        self._refund_retries: dict[str, tuple[int, float]] = {}  # payment → (failures, retry at)

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        await run_rounds(
            self.name,
            self.tick,
            stop=stop,
            wake=self._wake,
            poll_seconds=self.services.settings.onramp_processor_poll_seconds,
            log=logger,
        )

    async def treasury(self) -> CustomerAccount:
        if self._treasury is None:
            self._treasury = await treasury_account(self.services)
        return self._treasury

    async def tick(self) -> bool:
        """One round of every step; ``True`` when something moved (run again at once). Without
        Stripe (the card onramp off) only the followers run: they are the product's too."""
        if self.services.stripe is None:
            return await self.run_followers()
        moved = await self.process_events()
        moved = await self.reread_stale() or moved
        moved = await self.deliver_paid() or moved
        moved = bool(await delivery.settle_deliveries(self.services)) or moved
        moved = await self.refund_undelivered() or moved
        moved = await self.run_followers() or moved
        return moved

    async def process_events(self) -> bool:
        async with self.services.db.session() as session:
            event_ids = await repository.events_to_process(session)
        for event_id in event_ids:
            try:
                await events.process_event(self.services, event_id)
            except Exception as error:
                logger.warning("%s: event %s not processed yet: %r", self.name, event_id, error)
                await self._retry_later(event_id, error)
        return bool(event_ids)

    async def reread_stale(self) -> bool:
        """Payments awaiting a card for a while are re-read from Stripe (a lost webhook)."""
        try:
            return bool(await events.reread_stale_payments(self.services))
        except Exception:
            logger.exception("%s: re-reading stale payments failed", self.name)
            return False

    async def _retry_later(self, event_id: str, error: Exception) -> None:
        async with self.services.db.session() as session:
            row = await session.get(StripeEvent, event_id)
            attempts = row.attempts if row is not None else 0
            delay = backoff_seconds(attempts)
            await repository.record_event_failure(
                session,
                event_id,
                error=repr(error),
                retry_at=utc_now() + timedelta(seconds=delay),
            )

    async def deliver_paid(self) -> bool:
        async with self.services.db.session() as session:
            payment_ids = await repository.payment_ids_with_status(session, PaymentStatus.PAID)
        if not payment_ids:
            return False
        treasury = await self.treasury()
        queued = False
        for payment_id in payment_ids:
            try:
                outcome = await delivery.deliver(self.services, payment_id, treasury=treasury)
            except Exception:
                logger.exception("%s: delivery of payment %s failed", self.name, payment_id)
                continue
            queued = queued or outcome == delivery.DeliveryOutcome.QUEUED
            if outcome == delivery.DeliveryOutcome.OUT_OF_STOCK:
                if payment_id not in self._short_of_stock:  # said once, retried every round
                    logger.error(
                        "%s: the onramp treasury %s holds too little to deliver payment %s; "
                        "fund it (`ovpp-wallet onramp treasury`), the delivery is retried",
                        self.name,
                        treasury.wallet.address,
                        payment_id,
                    )
                self._short_of_stock.add(payment_id)
            else:
                self._short_of_stock.discard(payment_id)
        return queued

    async def refund_undelivered(self) -> bool:
        """Give back the money of payments whose delivery failed. A payment that did not move
        (its delivery not provably dead yet, a dispute, Stripe unreachable) is looked at again
        after a backoff (up to ``MAX_RETRY_SECONDS``), not every round, and never holds up the
        others: it is skipped while it waits."""
        async with self.services.db.session() as session:
            payment_ids = await repository.payment_ids_with_status(
                session, PaymentStatus.DELIVERY_FAILED, limit=1000
            )
        current = set(payment_ids)  # forget payments that left DELIVERY_FAILED some other way
        self._refund_retries = {
            payment_id: retry
            for payment_id, retry in self._refund_retries.items()
            if payment_id in current
        }
        moved = False
        now = time.monotonic()
        for payment_id in payment_ids:
            failures, retry_at = self._refund_retries.get(payment_id, (0, 0.0))
            if now < retry_at:
                continue
            try:
                status = await refunds.refund_undelivered(self.services, payment_id)
            except Exception as error:
                logger.warning(
                    "%s: refund of undelivered payment %s not made yet: %r",
                    self.name,
                    payment_id,
                    error,
                )
                status = None
            if status is None:
                delay = backoff_seconds(failures)
                self._refund_retries[payment_id] = (failures + 1, now + delay)
            else:
                moved = True
                self._refund_retries.pop(payment_id, None)
        return moved

    async def run_followers(self) -> bool:
        moved = False
        for follower in self.followers:
            try:
                moved = await follower(self.services) or moved
            except Exception:
                logger.exception("%s: %s failed", self.name, follower.__qualname__)
        return moved


@dataclass
class RunningProcessor(BackgroundLoop):
    processor: OnrampProcessor

    def wake(self) -> None:
        self.processor.wake()


async def start_onramp_processor(
    services: OnrampServices,
    *,
    name: str = "onramp",
    followers: Sequence[PaymentFollower] = (),
) -> RunningProcessor:
    """Run the processor as a task of the current event loop (``serve``, the CLI, tests)."""
    processor = OnrampProcessor(services, name=name, followers=followers)
    stop = asyncio.Event()
    return RunningProcessor(
        processor=processor, stop=stop, task=asyncio.create_task(processor.run(stop))
    )
