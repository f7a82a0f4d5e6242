"""Driving the local Stripe API the way a customer's app and Stripe would, and watching the
webhooks it sends.

- ``StripeTestClient`` pays a PaymentIntent with a test card (what the app's payment sheet
  does: attach a card, confirm), runs 3-D Secure, refunds, and reads objects back.
- ``WebhookTap`` wraps the app served to localstripe: it records every webhook delivery's raw
  body and ``Stripe-Signature`` exactly as received (so a test can deliver it again), and can
  hold back the deliveries of chosen PaymentIntents (a delivery lost in transit, which Stripe
  retries later) so a test decides when, and in which order, they arrive.
- ``signed_event`` makes the events localstripe never sends (``payment_intent.payment_failed``
  after a failed 3-D Secure, ``charge.refunded``, ``charge.dispute.created``) the way Stripe
  signs them: HMAC-SHA256 over ``"{t}.{body}"`` with the endpoint secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import httpx


class StripeTestClient:
    def __init__(self, api_base: str, api_key: str) -> None:
        self._http = httpx.AsyncClient(
            base_url=api_base, headers={"Authorization": f"Bearer {api_key}"}, timeout=10
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def _post(self, path: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self._http.post(path, data=data or {})
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()

    async def payment_intent(self, payment_intent_id: str) -> dict[str, Any]:
        response = await self._http.get(f"/v1/payment_intents/{payment_intent_id}")
        assert response.status_code == 200, response.text
        return response.json()

    async def payment_intents_with_metadata(self, key: str, value: str) -> list[dict[str, Any]]:
        response = await self._http.get("/v1/payment_intents", params={"limit": 100})
        assert response.status_code == 200, response.text
        return [pi for pi in response.json()["data"] if pi["metadata"].get(key) == value]

    async def card(self, number: str) -> str:
        method = await self._post(
            "/v1/payment_methods",
            {
                "type": "card",
                "card[number]": number,
                "card[exp_month]": "12",
                "card[exp_year]": "2030",
                "card[cvc]": "123",
            },
        )
        return str(method["id"])

    async def pay(self, payment_intent_id: str, payment_method: str = "pm_card_visa") -> dict:
        """Attach a card and confirm, as the app's payment sheet does."""
        path = f"/v1/payment_intents/{payment_intent_id}"
        await self._post(path, {"payment_method": payment_method})
        return await self._post(f"{path}/confirm")

    async def fail_three_d_secure(self, payment_intent_id: str, client_secret: str) -> dict:
        """Confirm with a card that asks for 3-D Secure, and fail the authentication."""
        await self.pay(payment_intent_id, await self.card("4000002500003155"))
        response = await self._http.post(
            f"/v1/payment_intents/{payment_intent_id}/_authenticate",
            data={"client_secret": client_secret, "success": "false"},
        )
        assert response.status_code == 200, response.text
        return response.json()

    async def refund(self, payment_intent_id: str, amount: int | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {"payment_intent": payment_intent_id}
        if amount is not None:
            data["amount"] = str(amount)
        return await self._post("/v1/refunds", data)

    async def change_amount(self, payment_intent_id: str, amount: int) -> dict[str, Any]:
        """The PaymentIntent's amount changed on Stripe's side (the Dashboard, another
        integration) before it is paid."""
        return await self._post(f"/v1/payment_intents/{payment_intent_id}", {"amount": amount})

    async def refunds(self, payment_intent_id: str) -> list[dict[str, Any]]:
        response = await self._http.get("/v1/refunds", params={"payment_intent": payment_intent_id})
        assert response.status_code == 200, response.text
        return response.json()["data"]

    async def charge(self, charge_id: str) -> dict[str, Any]:
        response = await self._http.get(f"/v1/charges/{charge_id}")
        assert response.status_code == 200, response.text
        return response.json()


def signed_event(
    secret: str,
    *,
    event_type: str,
    obj: dict[str, Any],
    timestamp: int | None = None,
    event_id: str | None = None,
) -> tuple[bytes, str]:
    """An event body and its ``Stripe-Signature`` header, made as Stripe makes them."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    body = json.dumps(
        {
            "id": event_id or f"evt_test_{secrets.token_hex(8)}",
            "object": "event",
            "type": event_type,
            "created": timestamp,
            "api_version": "2017-08-15",
            "livemode": False,
            "data": {"object": obj},
        },
        indent=2,
        sort_keys=True,
    ).encode()
    return body, sign(secret, body, timestamp=timestamp)


def sign(secret: str, body: bytes, *, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), b"%d." % timestamp + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


@dataclass(frozen=True)
class Delivery:
    """One webhook request, byte for byte."""

    body: bytes
    signature: str
    event_id: str
    event_type: str
    payment_intent_id: str | None


@dataclass
class WebhookTap:
    app: Any
    deliveries: list[Delivery] = field(default_factory=list)
    held: set[str] = field(default_factory=set)  # PaymentIntent ids whose webhooks stop here

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if not (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == "/webhooks/stripe"
        ):
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        headers = {key.decode().lower(): value.decode() for key, value in scope["headers"]}
        delivery = _delivery(body, headers.get("stripe-signature", ""))
        if delivery is not None:
            self.deliveries.append(delivery)
        if delivery is not None and delivery.payment_intent_id in self.held:
            await _answer(send, 200, b'{"heldByTest": true}')
            return
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def wait_for(
        self, event_type: str, payment_intent_id: str, *, timeout: float = 20.0
    ) -> Delivery:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for delivery in self.deliveries:
                if (
                    delivery.event_type == event_type
                    and delivery.payment_intent_id == payment_intent_id
                ):
                    return delivery
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {event_type} webhook for {payment_intent_id} in {timeout} s")


def _delivery(body: bytes, signature: str) -> Delivery | None:
    try:
        event = json.loads(body)
        obj = event["data"]["object"]
    except (ValueError, KeyError, TypeError):
        return None
    if obj.get("object") == "payment_intent":
        payment_intent_id = obj.get("id")
    else:
        payment_intent_id = obj.get("payment_intent")
    return Delivery(body, signature, event.get("id", ""), event.get("type", ""), payment_intent_id)


async def _answer(send: Any, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
