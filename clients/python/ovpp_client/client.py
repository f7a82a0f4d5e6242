"""``WalletClient``: one method per operation in ``clients/operations``, typed results.

Expected refusals (a mutation's typed failures: ``InsufficientFunds``, ``QuoteExpired``, …)
are returned as values; GraphQL errors (``UNAUTHENTICATED``, ``FORBIDDEN``, …) and transport
failures raise ``WalletApiError``, whose message is the server's user-safe one."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx

from ovpp_client.operations import operation_document
from ovpp_client.types import (
    ActivityItem,
    ActivityPage,
    Chain,
    Device,
    DeviceModel,
    DevicesAndEnrollments,
    Enrollment,
    EnrollmentCheck,
    FeeQuote,
    InvalidInput,
    OnrampPayment,
    OnrampQuote,
    OnrampUnavailable,
    Program,
    QuoteExpired,
    Refusal,
    SiteAddress,
    Token,
    Transaction,
    TransactionPage,
    Viewer,
    Wire,
    refusal_from_wire,
)


class WalletApiError(Exception):
    """A GraphQL error or an HTTP failure. ``code`` is the error's ``extensions.code``
    (``UNAUTHENTICATED``, ``FORBIDDEN``, ``CHAIN_UNAVAILABLE``, …) or ``HTTP_<status>``."""

    def __init__(self, message: str, *, code: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.request_id = request_id


def _amount(value: Decimal | str | int) -> str:
    """An amount on the wire: a decimal string in token units, never a float."""
    if isinstance(value, float):
        raise TypeError("amounts are Decimal, str or int, never float")
    return str(value)


class WalletClient:
    """The API as the utility's app uses it, signed in with an access token from the utility's
    OpenID Provider (``wallet:read``, and ``wallet:sign`` to move value)."""

    def __init__(
        self, http: httpx.AsyncClient, *, access_token: str | None, path: str = "/graphql"
    ) -> None:
        self._http = http
        self._path = path
        self.access_token = access_token

    @classmethod
    @asynccontextmanager
    async def open(
        cls, base_url: str, *, access_token: str | None, timeout: float = 30.0
    ) -> AsyncIterator[WalletClient]:
        """A client with its own HTTP connection pool, e.g. ``http://127.0.0.1:8000``."""
        async with httpx.AsyncClient(base_url=base_url, timeout=timeout) as http:
            yield cls(http, access_token=access_token)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"} if self.access_token else {}

    async def execute(self, operation_name: str, variables: Wire | None = None) -> Wire:
        """Run one operation of ``clients/operations`` by name; its ``data``."""
        response = await self._http.post(
            self._path,
            json={
                "query": operation_document(operation_name),
                "operationName": operation_name,
                "variables": variables or {},
            },
            headers=self._headers(),
        )
        request_id = response.headers.get("x-request-id")
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise WalletApiError(
                f"HTTP {response.status_code} from the wallet API",
                code=f"HTTP_{response.status_code}",
                request_id=request_id,
            )
        _raise_errors(body, request_id=request_id)
        if response.status_code != 200 or body.get("data") is None:
            raise WalletApiError(
                f"HTTP {response.status_code} from the wallet API",
                code=f"HTTP_{response.status_code}",
                request_id=request_id,
            )
        return body["data"]

    # The wallet

    async def viewer_balances(self) -> Viewer:
        """The signed-in customer, the wallet address, and balances read from the chain now."""
        return Viewer.from_wire((await self.execute("Viewer"))["viewer"])

    async def chain(self) -> Chain:
        return Chain.from_wire((await self.execute("Chain"))["chain"])

    async def tokens(self) -> list[Token]:
        return [Token.from_wire(item) for item in (await self.execute("Tokens"))["tokens"]]

    async def quote_transfer(
        self, *, token: str, to: str, amount: Decimal | str | int, fee_token: str
    ) -> FeeQuote:
        """What the gas costs in ``fee_token`` (``OVPP``/``STABLECOIN``), or that it is
        sponsored. Show it before the customer confirms."""
        data = await self.execute(
            "QuoteTransfer",
            {"input": {"token": token, "to": to, "amount": _amount(amount), "feeToken": fee_token}},
        )
        return FeeQuote.from_wire(data["quoteTransfer"])

    async def transfer(
        self,
        *,
        token: str,
        to: str,
        amount: Decimal | str | int,
        fee_token: str,
        quote_id: str,
        idempotency_key: str,
    ) -> Transaction | Refusal:
        """Send without gas. Retrying with the same ``idempotency_key`` and input returns the
        same transaction, so a retry after a lost answer never sends twice."""
        data = await self.execute(
            "Transfer",
            {
                "input": {
                    "token": token,
                    "to": to,
                    "amount": _amount(amount),
                    "feeToken": fee_token,
                    "quoteId": quote_id,
                    "idempotencyKey": idempotency_key,
                }
            },
        )
        result = data["transfer"]
        if result["__typename"] == "Transaction":
            return Transaction.from_wire(result)
        return refusal_from_wire(result)

    async def transaction(self, transaction_id: str) -> Transaction:
        data = await self.execute("Transaction", {"id": transaction_id})
        return Transaction.from_wire(data["transaction"])

    async def transactions(self, *, first: int = 20, after: str | None = None) -> TransactionPage:
        """The wallet's history, newest first; ``after=page.end_cursor`` for the next page."""
        data = await self.execute("Transactions", {"first": first, "after": after})
        return TransactionPage.from_wire(data["viewer"]["wallet"]["transactions"])

    async def wait_for_transaction(
        self, transaction_id: str, *, timeout: float = 60.0, poll_seconds: float = 0.1
    ) -> Transaction:
        """Poll until the transaction is final (``CONFIRMED``, ``FAILED``, ``REPLACED``); for
        pushed updates use ``transaction_updates``."""
        deadline = time.monotonic() + timeout
        while True:
            transaction = await self.transaction(transaction_id)
            if transaction.is_final:
                return transaction
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"transaction {transaction_id} still {transaction.status} after {timeout} s"
                )
            await asyncio.sleep(poll_seconds)

    async def transaction_updates(
        self, transaction_id: str, *, websocket_url: str | None = None
    ) -> AsyncIterator[Transaction]:
        """The transaction now and at each status change until final, pushed over
        graphql-transport-ws (``websocket_url`` defaults to the HTTP base URL's ``ws(s)://``
        twin; needs a real server, not an in-process ASGI transport)."""
        pushed = self._subscribe("TransactionUpdates", {"id": transaction_id}, websocket_url)
        async for data in pushed:
            yield Transaction.from_wire(data["transactionUpdates"])

    async def activity(
        self,
        *,
        first: int = 20,
        after: str | None = None,
        kinds: list[str] | None = None,
        token: str | None = None,
    ) -> ActivityPage:
        """The wallet's activity, newest first; ``after=page.end_cursor`` for the next page,
        ``kinds`` (``SENT``, ``RECEIVED``, …) and ``token`` (``OVPP``, ``STABLECOIN``) filter."""
        wanted = {"kinds": kinds, "token": token} if kinds or token else None
        data = await self.execute("Activity", {"first": first, "after": after, "filter": wanted})
        return ActivityPage.from_wire(data["viewer"]["wallet"])

    async def wallet_activity(
        self, *, websocket_url: str | None = None
    ) -> AsyncIterator[ActivityItem]:
        """Each new or changed item of the wallet's activity, pushed over graphql-transport-ws
        (an incoming transfer within a few seconds of its block); runs until closed."""
        async for data in self._subscribe("WalletActivity", {}, websocket_url):
            yield ActivityItem.from_wire(data["walletActivity"])

    async def _subscribe(
        self, operation: str, variables: Wire, websocket_url: str | None
    ) -> AsyncIterator[Wire]:
        """The ``data`` of each result of the subscription ``operation``, until it completes."""
        import websockets

        url = websocket_url or str(
            self._http.base_url.copy_with(
                scheme="wss" if self._http.base_url.scheme == "https" else "ws", path=self._path
            )
        )
        async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as socket:  # type: ignore[list-item]
            await socket.send(json.dumps({"type": "connection_init", "payload": self._headers()}))
            acknowledgement = json.loads(await socket.recv())
            if acknowledgement.get("type") != "connection_ack":
                raise WalletApiError("the subscription was not accepted", code="UNAUTHENTICATED")
            payload = {
                "query": operation_document(operation),
                "operationName": operation,
                "variables": variables,
            }
            await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
            async for raw in socket:
                message = json.loads(raw)
                if message["type"] == "complete":
                    return
                if message["type"] == "error":
                    _raise_errors({"errors": message["payload"]}, request_id=None)
                if message["type"] == "next":
                    _raise_errors(message["payload"], request_id=None)
                    yield message["payload"]["data"]

    # Devices and programs

    async def device_models(self, *, device_type: str | None = None) -> list[DeviceModel]:
        data = await self.execute("DeviceModels", {"deviceType": device_type})
        return [DeviceModel.from_wire(item) for item in data["deviceModels"]]

    async def programs(
        self, *, site_address: SiteAddress, device_type: str | None = None
    ) -> list[Program]:
        data = await self.execute(
            "Programs", {"siteAddress": site_address.to_wire(), "deviceType": device_type}
        )
        return [Program.from_wire(item) for item in data["programs"]]

    async def add_device(
        self, *, make: str, model: str, serial: str, site_address: SiteAddress
    ) -> Device | InvalidInput:
        data = await self.execute(
            "AddDevice",
            {
                "input": {
                    "make": make,
                    "model": model,
                    "serial": serial,
                    "siteAddress": site_address.to_wire(),
                }
            },
        )
        result = data["addDevice"]
        if result["__typename"] == "Device":
            return Device.from_wire(result)
        return InvalidInput.from_wire(result)

    async def check_enrollment(
        self,
        *,
        device_id: str,
        program_id: str,
        protocol: str,
        payment_method: str | None = None,
    ) -> EnrollmentCheck:
        data = await self.execute(
            "CheckEnrollment",
            {
                "input": {
                    "deviceId": device_id,
                    "programId": program_id,
                    "protocol": protocol,
                    "paymentMethod": payment_method,
                }
            },
        )
        return EnrollmentCheck.from_wire(data["checkEnrollment"])

    async def enroll(
        self,
        *,
        device_id: str,
        program_id: str,
        protocol: str,
        payment_method: str,
        idempotency_key: str,
    ) -> Enrollment | Refusal:
        """``payment_method``: ``WALLET``, ``SPONSOR`` or ``CARD`` (then the enrollment is
        ``FEE_PENDING`` with ``payment_client_secret`` for the payment sheet)."""
        data = await self.execute(
            "Enroll",
            {
                "input": {
                    "deviceId": device_id,
                    "programId": program_id,
                    "protocol": protocol,
                    "paymentMethod": payment_method,
                    "idempotencyKey": idempotency_key,
                }
            },
        )
        return _enrollment_or_refusal(data["enroll"])

    async def unenroll(self, *, enrollment_id: str, idempotency_key: str) -> Enrollment | Refusal:
        data = await self.execute(
            "Unenroll",
            {"input": {"enrollmentId": enrollment_id, "idempotencyKey": idempotency_key}},
        )
        return _enrollment_or_refusal(data["unenroll"])

    async def viewer_enrollments(self) -> DevicesAndEnrollments:
        return DevicesAndEnrollments.from_wire((await self.execute("ViewerEnrollments"))["viewer"])

    async def wait_for_enrollment(
        self,
        enrollment_id: str,
        *,
        settled: frozenset[str] = frozenset({"ACTIVE", "FAILED", "UNENROLLED"}),
        timeout: float = 60.0,
        poll_seconds: float = 0.1,
    ) -> Enrollment:
        """Poll the viewer's enrollments until this one reaches a ``settled`` status."""
        deadline = time.monotonic() + timeout
        while True:
            enrollments = (await self.viewer_enrollments()).enrollments
            enrollment = next(item for item in enrollments if item.id == enrollment_id)
            if enrollment.status in settled:
                return enrollment
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"enrollment {enrollment_id} still {enrollment.status} after {timeout} s"
                )
            await asyncio.sleep(poll_seconds)

    # Buying tokens by card

    async def quote_onramp(
        self,
        *,
        token: str,
        currency: str,
        fiat_amount: Decimal | str | int | None = None,
        token_amount: Decimal | str | int | None = None,
    ) -> OnrampQuote | InvalidInput | OnrampUnavailable:
        """Name what to pay (``fiat_amount``, fee included) or what to receive."""
        data = await self.execute(
            "QuoteOnramp",
            {
                "input": {
                    "token": token,
                    "currency": currency,
                    "fiatAmount": None if fiat_amount is None else _amount(fiat_amount),
                    "tokenAmount": None if token_amount is None else _amount(token_amount),
                }
            },
        )
        result = data["quoteOnramp"]
        if result["__typename"] == "OnrampQuote":
            return OnrampQuote.from_wire(result)
        return refusal_from_wire(result)  # type: ignore[return-value]

    async def create_onramp_payment(
        self,
        *,
        token: str,
        currency: str,
        quote_id: str,
        idempotency_key: str,
        fiat_amount: Decimal | str | int | None = None,
        token_amount: Decimal | str | int | None = None,
    ) -> OnrampPayment | QuoteExpired | InvalidInput | OnrampUnavailable:
        """Open the card payment for a quote (give the same amount the quote was asked with);
        ``client_secret`` is for the app's Stripe payment sheet."""
        data = await self.execute(
            "CreateOnrampPayment",
            {
                "input": {
                    "token": token,
                    "currency": currency,
                    "quoteId": quote_id,
                    "idempotencyKey": idempotency_key,
                    "fiatAmount": None if fiat_amount is None else _amount(fiat_amount),
                    "tokenAmount": None if token_amount is None else _amount(token_amount),
                }
            },
        )
        result = data["createOnrampPayment"]
        if result["__typename"] == "OnrampPayment":
            return OnrampPayment.from_wire(result)
        return refusal_from_wire(result)  # type: ignore[return-value]

    async def onramp_payments(self, *, first: int = 20) -> list[OnrampPayment]:
        data = await self.execute("OnrampPayments", {"first": first})
        return [OnrampPayment.from_wire(item) for item in data["viewer"]["onrampPayments"]]


def _enrollment_or_refusal(result: Wire) -> Enrollment | Refusal:
    if result["__typename"] == "Enrollment":
        return Enrollment.from_wire(result)
    return refusal_from_wire(result)


def _raise_errors(body: dict[str, Any], *, request_id: str | None) -> None:
    errors = body.get("errors")
    if not errors:
        return
    first = errors[0]
    raise WalletApiError(
        first.get("message", "GraphQL error"),
        code=(first.get("extensions") or {}).get("code", "GRAPHQL_ERROR"),
        request_id=request_id,
    )
