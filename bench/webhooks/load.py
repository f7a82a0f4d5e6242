"""The webhook load: Stripe events signed before the clock starts, sent over plain HTTP/1.1
keep-alive connections written by hand (a request is a ``write`` of ready bytes, an answer is
read by its ``Content-Length``), so the generator spends little of the CPU it shares with the
server."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tests.support.stripe import sign

EVENT_PREFIX = "evt_bench_"


@dataclass(frozen=True)
class Delivery:
    """One POST as Stripe makes it; a redelivery repeats the body and signature."""

    event_id: str
    request: bytes  # the whole HTTP request, headers included
    redelivery: bool


@dataclass
class Answers:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    answered_duplicate: int = 0
    redeliveries_sent: int = 0
    started: float = 0.0
    finished: float = 0.0


def event_body(event_id: str, *, created: int, serial: int) -> bytes:
    """A ``payment_intent.succeeded`` shaped as Stripe sends it (about 1.6 KB)."""
    intent_id = f"pi_bench_{serial:08d}"
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "api_version": "2024-06-20",
            "created": created,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": "payment_intent.succeeded",
            "data": {
                "object": {
                    "id": intent_id,
                    "object": "payment_intent",
                    "amount": 2500,
                    "amount_received": 2500,
                    "capture_method": "automatic",
                    "client_secret": f"{intent_id}_secret_benchbenchbench",
                    "confirmation_method": "automatic",
                    "created": created - 5,
                    "currency": "eur",
                    "customer": None,
                    "description": None,
                    "last_payment_error": None,
                    "latest_charge": f"ch_bench_{serial:08d}",
                    "livemode": False,
                    "metadata": {
                        "ovpp_payment_id": f"00000000-0000-4000-8000-{serial:012d}",
                        "ovpp_quote_id": f"00000000-0000-4000-9000-{serial:012d}",
                        "ovpp_wallet": "0x" + f"{serial:040x}",
                    },
                    "payment_method": f"pm_bench_{serial:08d}",
                    "payment_method_types": ["card"],
                    "receipt_email": None,
                    "status": "succeeded",
                },
                "previous_attributes": None,
            },
        },
        indent=2,
    ).encode()


def signed_deliveries(
    *, url: str, secret: str, events: int, duplicate_share: float, seed: int = 17
) -> list[Delivery]:
    """``events`` unique events, plus ``duplicate_share`` × ``events`` redeliveries of some of
    them, each placed after its original (sometimes close enough to race it), all signed now."""
    parts = urlsplit(url)
    timestamp = int(time.time())
    originals: list[Delivery] = []
    run = f"{random.Random().getrandbits(32):08x}"
    for serial in range(events):
        event_id = f"{EVENT_PREFIX}{run}_{serial:07d}"
        body = event_body(event_id, created=timestamp, serial=serial)
        signature = sign(secret, body, timestamp=timestamp)
        head = (
            f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/json; charset=utf-8\r\n"
            f"User-Agent: Stripe/1.0 (+https://stripe.com/docs/webhooks)\r\n"
            f"Stripe-Signature: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        originals.append(Delivery(event_id=event_id, request=head + body, redelivery=False))
    chooser = random.Random(seed)
    placed = [(float(index), delivery) for index, delivery in enumerate(originals)]
    for index in chooser.sample(range(events), round(events * duplicate_share)):
        # Half arrive while their original may still be in flight (a race the database settles),
        # half anywhere later.
        later = events - index if chooser.random() < 0.5 else min(events - index, 16)
        original = originals[index]
        again = Delivery(event_id=original.event_id, request=original.request, redelivery=True)
        placed.append((index + chooser.uniform(0.5, later + 0.5), again))
    placed.sort(key=lambda item: item[0])
    sequence = [delivery for _key, delivery in placed]
    return sequence


async def send_all(urls: list[str], deliveries: list[Delivery], *, concurrency: int) -> Answers:
    """Send every delivery over ``concurrency`` keep-alive connections (spread over ``urls``),
    each taking the next delivery as soon as its previous answer is in."""
    answers = Answers()
    queue = iter(deliveries)
    connections = [
        await asyncio.open_connection(urlsplit(url).hostname, urlsplit(url).port)
        for url in (urls[index % len(urls)] for index in range(concurrency))
    ]
    answers.started = time.perf_counter()
    try:
        await asyncio.gather(
            *(_connection(reader, writer, queue, answers) for reader, writer in connections)
        )
    finally:
        answers.finished = time.perf_counter()
        for _reader, writer in connections:
            writer.close()
    return answers


async def _connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    queue: Iterator[Delivery],
    answers: Answers,
) -> None:
    for delivery in queue:
        sent = time.perf_counter()
        writer.write(delivery.request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await reader.readexactly(length)
        answers.latencies.append(time.perf_counter() - sent)
        answers.statuses[status] = answers.statuses.get(status, 0) + 1
        answers.redeliveries_sent += delivery.redelivery
        if status == 200 and json.loads(body).get("duplicate") is True:
            answers.answered_duplicate += 1
