"""The delivery worker: posts due deliveries to their endpoints, signed per Standard Webhooks.

Each round claims up to a batch of due PENDING deliveries in one short transaction (PostgreSQL
``FOR UPDATE SKIP LOCKED``, and on both backends an update guarded on the row as read, so two
workers never claim one attempt). A claim counts the attempt and leases the delivery past the
attempt's timeout; the POSTs run outside any transaction; each outcome is written guarded on
its attempt number. A 2xx is DELIVERED; anything else (a status, a timeout, a refused address,
a redirect, which is never followed) is tried again after an exponential backoff with jitter,
until ``max_attempts``, then FAILED. A worker killed mid-attempt leaves the lease to expire and
the attempt to be made again: delivery is at least once, with the same ``webhook-id``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import aiohttp

from appwebhooks import repository
from appwebhooks.errors import RefusedAddress, UnacceptableEndpointUrl
from appwebhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookEvent
from appwebhooks.signing import signature, unseal
from appwebhooks.targets import PublicOnlyResolver, check_endpoint_url
from core.background import BackgroundLoop, run_rounds
from core.db import Database, utc_now
from core.errors import ConfigurationError
from core.settings import Settings
from wallet.kms import KeyRing, KeyUnwrapError

logger = logging.getLogger(__name__)

USER_AGENT = "OpenVPP-Wallet-Webhooks/1"
RESPONSE_PREFIX_BYTES = 200
LEASE_MARGIN_SECONDS = 30.0
_JITTER = 0.2


class WebhookServices(Protocol):
    settings: Settings
    db: Database
    keyring: KeyRing


@dataclass(frozen=True)
class DeliveryPolicy:
    max_attempts: int
    retry_base_seconds: float
    retry_max_seconds: float
    timeout_seconds: float
    allow_private: bool  # development: http and any address (receivers on 127.0.0.1)
    batch: int = 20

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryPolicy:
        return cls(
            max_attempts=settings.app_webhook_max_attempts,
            retry_base_seconds=settings.app_webhook_retry_base_seconds,
            retry_max_seconds=settings.app_webhook_retry_max_seconds,
            timeout_seconds=settings.app_webhook_timeout_seconds,
            allow_private=settings.is_development,
        )

    def retry_delay(self, failed_attempts: int) -> float:
        """Seconds before the next attempt: base × 4^(n−1) after the n-th failure, at most
        ``retry_max_seconds``, each ±20 % at random so failed receivers are not hit in step."""
        delay = min(self.retry_base_seconds * 4 ** (failed_attempts - 1), self.retry_max_seconds)
        return delay * random.uniform(1 - _JITTER, 1 + _JITTER)  # noqa: S311 (jitter, not a secret)


def message_body(event: WebhookEvent) -> bytes:
    """The JSON posted for an event: the same bytes at every attempt."""
    envelope = {
        "type": event.type,
        "timestamp": event.created_at.isoformat(),
        "data": event.payload,
    }
    return json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class _Outcome:
    status: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookSender:
    def __init__(
        self, services: WebhookServices, *, policy: DeliveryPolicy, name: str = "app-webhooks"
    ) -> None:
        self.services = services
        self.policy = policy
        self.name = name
        self._wake = asyncio.Event()
        self._http: aiohttp.ClientSession | None = None

    def wake(self) -> None:
        self._wake.set()

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None:
            resolver = None if self.policy.allow_private else PublicOnlyResolver()
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=resolver, limit=self.policy.batch),
                timeout=aiohttp.ClientTimeout(total=self.policy.timeout_seconds),
            )
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await run_rounds(
                self.name,
                self.tick,
                stop=stop,
                wake=self._wake,
                poll_seconds=self.services.settings.app_webhook_poll_seconds,
                log=logger,
            )
        finally:
            await self.close()

    async def tick(self) -> bool:
        """One round: claim the due deliveries, post them, record each outcome. ``True`` when
        it claimed a full batch (more may be due: run again at once)."""
        claimed = await self._claim()
        if not claimed:
            return False
        await asyncio.gather(*(self._attempt(*row) for row in claimed))
        return len(claimed) >= self.policy.batch

    async def _claim(self) -> list[Any]:
        now = utc_now()
        until = now + timedelta(seconds=self.policy.timeout_seconds + LEASE_MARGIN_SECONDS)
        async with self.services.db.session() as session:
            ids = await repository.due_deliveries(session, now=now, limit=self.policy.batch)
            leased = [
                delivery_id
                for delivery_id in ids
                if await repository.lease(session, delivery_id, now=now, until=until)
            ]
            return await repository.attempt_material(session, leased) if leased else []

    async def _attempt(
        self, delivery: WebhookDelivery, event: WebhookEvent, endpoint: WebhookEndpoint
    ) -> None:
        outcome = await self._post(event, endpoint)
        now = utc_now()
        attempt = delivery.attempts
        values: dict[str, Any] = {"last_response_status": outcome.status, "last_error": None}
        if outcome.delivered:
            values |= {"status": DeliveryStatus.DELIVERED, "delivered_at": now}
            values["next_attempt_at"] = None
        elif attempt >= self.policy.max_attempts:
            values |= {"status": DeliveryStatus.FAILED, "next_attempt_at": None}
            values["last_error"] = outcome.error
        else:
            delay = self.policy.retry_delay(attempt)
            values |= {"next_attempt_at": now + timedelta(seconds=delay)}
            values["last_error"] = outcome.error
        if not outcome.delivered:
            logger.info(
                "%s: delivery %s of %s to endpoint %s, attempt %d: %s",
                self.name,
                delivery.id,
                event.id,
                endpoint.id,
                attempt,
                outcome.error,
            )
        async with self.services.db.session() as session:
            await repository.record_attempt(session, delivery.id, attempt=attempt, values=values)

    async def _post(self, event: WebhookEvent, endpoint: WebhookEndpoint) -> _Outcome:
        if endpoint.deleted_at is not None or not endpoint.enabled:
            return _Outcome(None, "the endpoint is disabled")
        try:
            url = check_endpoint_url(endpoint.url, allow_private=self.policy.allow_private)
            key = unseal(
                endpoint.sealed_secret,
                kek_id=endpoint.kek_id,
                endpoint_id=endpoint.id,
                keyring=self.services.keyring,
            )
        except UnacceptableEndpointUrl as refusal:
            return _Outcome(None, refusal.message)
        except (KeyUnwrapError, ConfigurationError) as error:  # its KEK no longer configured
            logger.error("%s: endpoint %s: its secret does not unseal", self.name, endpoint.id)
            return _Outcome(
                None, f"the endpoint's secret could not be read ({type(error).__name__})"
            )
        body = message_body(event)
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": event.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(
                key, message_id=event.id, timestamp=timestamp, body=body
            ),
        }
        return await self._send(url, body, headers)

    async def _send(self, url: str, body: bytes, headers: dict[str, str]) -> _Outcome:
        try:
            async with self._client().post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                prefix = await response.content.read(RESPONSE_PREFIX_BYTES)
                status = response.status
        except RefusedAddress as refusal:
            return _Outcome(None, str(refusal))
        except TimeoutError:
            return _Outcome(None, f"no answer within {self.policy.timeout_seconds:g} s")
        except aiohttp.ClientError as error:
            return _Outcome(None, f"could not post: {type(error).__name__}")
        if 200 <= status < 300:
            return _Outcome(status, None)
        text = prefix.decode("utf-8", errors="replace").strip()
        kind = "a redirect, not followed" if 300 <= status < 400 else "not a 2xx"
        return _Outcome(status, f"HTTP {status} ({kind}): {text}"[:300])


@dataclass
class RunningSender(BackgroundLoop):
    sender: WebhookSender

    def wake(self) -> None:
        self.sender.wake()


async def start_app_webhooks(
    services: WebhookServices, *, name: str = "app-webhooks", policy: DeliveryPolicy | None = None
) -> RunningSender:
    """Run the delivery worker as a task of the current event loop (``serve``, the CLI,
    tests)."""
    sender = WebhookSender(
        services, policy=policy or DeliveryPolicy.from_settings(services.settings), name=name
    )
    stop = asyncio.Event()
    return RunningSender(sender=sender, stop=stop, task=asyncio.create_task(sender.run(stop)))
