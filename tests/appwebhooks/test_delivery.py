"""Delivery for real: a receiver on a free port verifies every request with the
``standardwebhooks`` package. Retries keep the event's ``webhook-id``; an event committed with
no worker running (a crash after the change) is delivered once one starts."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from sqlalchemy import update

from api.container import Services
from appwebhooks.delivery import WebhookSender
from appwebhooks.models import EventType, WebhookDelivery
from appwebhooks.service import emit
from core.db import utc_now
from tests.support.utilities import fresh_utility
from tests.support.webhook_receiver import running_receiver
from tests.support.webhooks import FAST, add_endpoint, sending, wait_until_settled

PAYLOAD = {"transactionId": "t-1", "amount": "12.5", "amountRaw": "12500000000000000000"}


async def _emit(services: Services, tenant_id: str, payload: dict | None = None) -> str:
    async with services.db.session() as session:
        event_id = await emit(session, tenant_id, EventType.TRANSACTION_FINAL, payload or PAYLOAD)
    assert event_id is not None
    return event_id


async def test_a_receiver_failing_twice_gets_the_event_three_times_with_one_webhook_id(
    services: Services,
) -> None:
    async with fresh_utility(services, audience="https://hooks-retry.test") as (_issuer, tenant):
        with running_receiver([500, 500, 200]) as receiver:
            endpoint, secret = await add_endpoint(services, tenant, receiver.url)
            receiver.secret = secret
            event_id = await _emit(services, tenant)
            async with sending(services):
                (delivery,) = await wait_until_settled(services, endpoint.id)

    assert [item.error for item in receiver.received] == [None, None, None]
    assert {item.headers["webhook-id"] for item in receiver.received} == {event_id}
    assert len({item.body for item in receiver.received}) == 1  # the same bytes every time
    envelope = receiver.verified()[0]
    assert envelope["type"] == "transaction.final"
    assert envelope["data"] == PAYLOAD
    assert delivery.status == "DELIVERED"
    assert delivery.attempts == 3
    assert delivery.last_response_status == 200
    assert delivery.delivered_at is not None and delivery.last_error is None


async def test_an_event_committed_before_any_worker_runs_is_delivered_when_one_starts(
    services: Services,
) -> None:
    """The crash case: the change and its event committed, then the process died. Also a
    worker that died mid-attempt: its lease ends and the attempt is made again."""
    async with fresh_utility(services, audience="https://hooks-crash.test") as (_issuer, tenant):
        with running_receiver() as receiver:
            endpoint, secret = await add_endpoint(services, tenant, receiver.url)
            receiver.secret = secret
            event_id = await _emit(services, tenant)
            # A worker claims it and dies before posting.
            dead = WebhookSender(services, policy=FAST, name="dead")
            claimed = await dead._claim()
            assert [row[1].id for row in claimed if row[2].id == endpoint.id] == [event_id]
            assert receiver.received == []
            # Its lease runs out.
            async with services.db.session() as session:
                await session.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.endpoint_id == endpoint.id)
                    .values(next_attempt_at=utc_now() - timedelta(seconds=1))
                )
            async with sending(services):
                (delivery,) = await wait_until_settled(services, endpoint.id)

    assert delivery.status == "DELIVERED" and delivery.attempts == 2
    assert [item.headers["webhook-id"] for item in receiver.received] == [event_id]
    assert receiver.received[0].error is None


async def test_a_delivery_fails_after_its_last_attempt_keeping_only_a_prefix_of_the_answer(
    services: Services,
) -> None:
    async with fresh_utility(services, audience="https://hooks-fail.test") as (_issuer, tenant):
        with running_receiver([500, 503, 500]) as receiver:
            endpoint, secret = await add_endpoint(services, tenant, receiver.url)
            receiver.secret = secret
            await _emit(services, tenant)
            async with sending(services, dataclasses.replace(FAST, max_attempts=2)):
                (delivery,) = await wait_until_settled(services, endpoint.id)

    assert len(receiver.received) == 2
    assert delivery.status == "FAILED" and delivery.attempts == 2
    assert delivery.last_response_status == 503
    assert delivery.next_attempt_at is None
    assert delivery.last_error is not None and delivery.last_error.startswith("HTTP 503")
    assert len(delivery.last_error) <= 300  # the receiver answered 5000 characters


async def test_a_redirect_is_not_followed_and_a_slow_receiver_times_out(
    services: Services,
) -> None:
    async with fresh_utility(services, audience="https://hooks-redirect.test") as (_i, tenant):
        with running_receiver([307]) as receiver:
            endpoint, secret = await add_endpoint(services, tenant, receiver.url)
            receiver.secret = secret
            await _emit(services, tenant)
            async with sending(services, dataclasses.replace(FAST, max_attempts=1)):
                (redirected,) = await wait_until_settled(services, endpoint.id)
        assert len(receiver.received) == 1  # /hooks/elsewhere was never asked
        assert redirected.status == "FAILED" and redirected.last_response_status == 307
        assert "redirect, not followed" in (redirected.last_error or "")

        with running_receiver(delay=1.0) as slow:
            endpoint, secret = await add_endpoint(services, tenant, slow.url)
            slow.secret = secret
            await _emit(services, tenant)
            policy = dataclasses.replace(FAST, max_attempts=1, timeout_seconds=0.3)
            async with sending(services, policy):
                (timed_out,) = await wait_until_settled(services, endpoint.id)
    assert timed_out.status == "FAILED" and timed_out.last_response_status is None
    assert timed_out.last_error == "no answer within 0.3 s"


async def test_a_deleted_endpoint_gets_nothing_more(services: Services) -> None:
    from appwebhooks.service import delete_endpoint

    async with fresh_utility(services, audience="https://hooks-deleted.test") as (_i, tenant):
        with running_receiver() as receiver:
            endpoint, secret = await add_endpoint(services, tenant, receiver.url)
            receiver.secret = secret
            await _emit(services, tenant)
            async with services.db.session() as session:
                await delete_endpoint(session, tenant_id=tenant, endpoint_id=endpoint.id)
            async with services.db.session() as session:
                assert await emit(session, tenant, EventType.TRANSACTION_FINAL, PAYLOAD) is None
            async with sending(services):
                (delivery,) = await wait_until_settled(services, endpoint.id)
    assert receiver.received == []
    assert delivery.status == "FAILED" and delivery.attempts == 0
    assert delivery.last_error == "its endpoint was deleted"
