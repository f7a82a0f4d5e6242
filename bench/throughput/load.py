"""The load: funded customer wallets, and sponsored transfers submitted round-robin over them
through the typed client (clients/python), as a utility's app would call the API."""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ovpp_client import Transaction, WalletClient
from ovpp_client.operations import operation_document

OVPP = 10**18
WALLET_FUNDS = 1_000 * OVPP
TRANSFER_AMOUNT = "0.001"
TRANSFER_AMOUNT_RAW = 10**15


@dataclass
class Wallet:
    token: str
    address: str
    index: int  # which API process serves it (--api process): one wallet, one server


@dataclass
class Outcome:
    accepted: dict[str, float] = field(default_factory=dict)  # job id → wall clock accepted
    request_seconds: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    recipients_of: dict[str, tuple[str, str]] = field(default_factory=dict)  # id → (from, to)
    started: float = 0.0
    last_accepted: float = 0.0
    relayer_started: float = 0.0  # with --prequeue: when the relayer was started
    # PostgreSQL: what the benchmark database's backends were doing, summed over the samples
    # taken once a second while requests were in flight (see _sample_backends).
    backend_samples: Counter[str] = field(default_factory=Counter)
    backend_sample_count: int = 0


class AiohttpWalletClient(WalletClient):
    """The typed client (clients/python) over an aiohttp session instead of httpx: the load
    generator shares the machine's two cores with what it measures, and aiohttp costs about a
    third of httpx's CPU per request."""

    def __init__(self, session: Any, url: str, *, access_token: str) -> None:
        super().__init__(None, access_token=access_token)  # type: ignore[arg-type]
        self._session, self._url = session, url

    async def execute(self, operation_name: str, variables: dict[str, Any] | None = None) -> Any:
        body = {
            "query": operation_document(operation_name),
            "operationName": operation_name,
            "variables": variables or {},
        }
        async with self._session.post(self._url, json=body, headers=self._headers()) as response:
            answer = await response.json(content_type=None)
        if response.status != 200 or answer.get("errors") or answer.get("data") is None:
            raise RuntimeError(f"HTTP {response.status}: {answer.get('errors')}")
        return answer["data"]


async def provision_wallets(
    client_for: Callable[[int, str], WalletClient], issuer: Any, *, count: int
) -> list[Wallet]:
    semaphore = asyncio.Semaphore(16)

    async def one(index: int) -> Wallet:
        subject = f"bench-{index}-{uuid.uuid4().hex[:8]}"
        expires = int(time.time()) + 3600
        token = issuer.mint(sub=subject, email=f"{subject}@example.com", exp=expires)
        async with semaphore:
            viewer = await client_for(index, token).viewer_balances()
        return Wallet(token=token, address=viewer.address, index=index)

    return list(await asyncio.gather(*(one(index) for index in range(count))))


async def submit(
    client_for: Callable[[int, str], WalletClient],
    wallets: list[Wallet],
    recipients: list[str],
    args: argparse.Namespace,
    outcome: Outcome,
) -> None:
    """Round-robin over the wallets, at most ``concurrency`` transfers in flight."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(args.transfers):
        queue.put_nowait(index)

    async def worker() -> None:
        while True:
            try:
                index = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            wallet = wallets[index % len(wallets)]
            to = recipients[index % len(recipients)]
            began = time.perf_counter()
            # Through the typed client (clients/python), as a utility's app would call the API.
            api = client_for(wallet.index, wallet.token)
            try:
                quoted = await api.quote_transfer(
                    token="OVPP", to=to, amount=TRANSFER_AMOUNT, fee_token="OVPP"
                )
                if not quoted.sponsored:
                    raise RuntimeError("the quote is not sponsored")
                result = await api.transfer(
                    token="OVPP",
                    to=to,
                    amount=TRANSFER_AMOUNT,
                    fee_token="OVPP",
                    quote_id=quoted.id,
                    idempotency_key=f"bench-{index}",
                )
                if not isinstance(result, Transaction):
                    raise RuntimeError(f"{type(result).__name__}: {result.message}")
            except Exception as error:  # counted and reported; the run goes on
                outcome.failures.append(f"transfer {index}: {error}"[:300])
                continue
            now = time.time()
            outcome.accepted[result.id] = now
            outcome.recipients_of[result.id] = (wallet.address, to)
            outcome.request_seconds.append(time.perf_counter() - began)
            outcome.last_accepted = max(outcome.last_accepted, now)

    outcome.started = time.time()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
