"""Idempotency keys a client chooses never share a namespace with the ones the backend makes
for itself (a refused job's nonce filler, an enrollment's relayed call, a card-paid
enrollment's payment, an onramp delivery): a client key that could collide is refused."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import pytest
from alembic import command
from eth_account import Account
from sqlalchemy import update
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import select

from api.container import Services
from chain.address_book import AddressBook
from chain.deploy import Deployer
from chain.tokens import format_units
from core.migrate import alembic_config
from relayer.models import PIPELINE_STATUSES, JobKind, RelayStatus, RelayTransaction
from relayer.worker import RelayerWorker
from tests.support.enrollment import UNENROLL, add_device, enroll, program_id, wait_enrollment
from tests.support.graphql import gql
from tests.support.issuer import TestIssuer
from tests.support.own_stack import (
    OVPP,
    OwnStack,
    queue_transfers,
    status_counts,
    two_senders_on_one_key,
)
from tests.support.transfers import QUOTE, TRANSFER
from tests.support.wallets import new_customer

WORK_SECONDS = 20.0
USD = 10**6
RESERVED_EXAMPLES = (
    "nonce-fill:0b7e1c9a-4d55-4c3e-9a1f-5f1b2d3c4e5f",
    "enroll:0b7e1c9a-4d55-4c3e-9a1f-5f1b2d3c4e5f:join",
    "unenroll:0b7e1c9a-4d55-4c3e-9a1f-5f1b2d3c4e5f",
    "enrollment:join",
    "onramp-delivery:pi_123",
)
ONRAMP_QUOTE = """
mutation($input: OnrampQuoteInput!) {
  quoteOnramp(input: $input) { __typename ... on OnrampQuote { id } }
}
"""
CREATE_ONRAMP_PAYMENT = """
mutation($input: CreateOnrampPaymentInput!) {
  createOnrampPayment(input: $input) {
    __typename ... on OnrampPayment { id } ... on InvalidInput { message field }
  }
}
"""
FUND_SPONSORSHIP = """
mutation($input: FundSponsorshipInput!) {
  fundSponsorship(input: $input) { __typename ... on InvalidInput { message field } }
}
"""


@pytest.mark.parametrize("own_stack", ["sqlite", "postgresql"], indirect=True)
async def test_a_client_cannot_take_the_key_of_a_refused_jobs_nonce_filler(
    own_stack: OwnStack,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """A customer names a transfer ``nonce-fill:<id of their own earlier transfer>``; the node
    then refuses that earlier transfer. The earlier one must still fail and a zero-value
    transaction take its relayer nonce, or the key's later transactions (other customers'
    too) would wait behind the gap for ever: the client's key is refused instead."""
    doomed_sender, neighbour = await two_senders_on_one_key(
        own_stack, test_issuer, deployer, contracts
    )
    [doomed] = await queue_transfers(own_stack, [doomed_sender], count=1)
    squatting = await transfer_with_key(
        own_stack, doomed_sender.customer.token, f"nonce-fill:{doomed.job_id}"
    )
    [following] = await queue_transfers(own_stack, [neighbour], count=1)
    async with own_stack.services.db.session() as session:
        await session.execute(
            update(RelayTransaction)
            .where(RelayTransaction.id == doomed.job_id)
            .values(gas_limit=100_000_000)  # anvil: "intrinsic gas too high"
        )

    await run_the_worker_until_nothing_is_open(own_stack)

    jobs = await jobs_on_relayer_key(own_stack, doomed_sender.relayer_key_id)
    by_id = {job.id: job for job in jobs}
    assert by_id[doomed.job_id].status == RelayStatus.FAILED, by_id[doomed.job_id].error
    assert [job.status for job in jobs if job.kind == JobKind.NONCE_FILL] == [RelayStatus.CONFIRMED]
    assert by_id[following.job_id].status == RelayStatus.CONFIRMED
    assert (squatting["__typename"], squatting.get("field")) == ("InvalidInput", "idempotencyKey")
    assert "reserved" in squatting["message"]


@pytest.mark.parametrize("own_stack", ["sqlite", "postgresql"], indirect=True)
async def test_a_key_squatted_before_the_refusal_no_longer_blocks_a_refused_jobs_filler(
    own_stack: OwnStack,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """A transfer stored, before such keys were refused, under ``nonce-fill:<id of an open
    job>``: once migrated, the job refused by the node still fails and its nonce is filled."""
    doomed_sender, neighbour = await two_senders_on_one_key(
        own_stack, test_issuer, deployer, contracts
    )
    [doomed] = await queue_transfers(own_stack, [doomed_sender], count=1)
    [squatter] = await queue_transfers(own_stack, [doomed_sender], count=1)
    [following] = await queue_transfers(own_stack, [neighbour], count=1)
    database_url = own_stack.settings.database_url
    async with own_stack.services.db.session() as session:
        await session.execute(
            update(RelayTransaction)
            .where(RelayTransaction.id == squatter.job_id)
            .values(idempotency_key=f"nonce-fill:{doomed.job_id}")  # as the API once took it
        )
        await session.execute(
            update(RelayTransaction)
            .where(RelayTransaction.id == doomed.job_id)
            .values(gas_limit=100_000_000)  # anvil: "intrinsic gas too high"
        )
    await run_again(database_url, "0010", after="0009")

    await run_the_worker_until_nothing_is_open(own_stack)

    jobs = await jobs_on_relayer_key(own_stack, doomed_sender.relayer_key_id)
    by_id = {job.id: job for job in jobs}
    assert by_id[doomed.job_id].status == RelayStatus.FAILED, by_id[doomed.job_id].error
    assert [job.status for job in jobs if job.kind == JobKind.NONCE_FILL] == [RelayStatus.CONFIRMED]
    assert by_id[following.job_id].status == RelayStatus.CONFIRMED
    assert by_id[squatter.job_id].status == RelayStatus.CONFIRMED
    assert by_id[squatter.job_id].idempotency_key == squatter.job_id


async def jobs_on_relayer_key(stack: OwnStack, relayer_key_id: str) -> list[RelayTransaction]:
    async with stack.services.db.session() as session:
        statement = select(RelayTransaction).where(
            RelayTransaction.relayer_key_id == relayer_key_id
        )
        return list((await session.execute(statement)).scalars())


async def run_again(database_url: str, revision: str, *, after: str) -> None:
    """Revision ``revision`` run again over a database marked as being at ``after`` (its
    parent), then marked at head: what deploying that revision does to rows stored before it,
    without re-running the later revisions (which would create their indexes twice)."""
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:

            def run(sync_connection: object) -> None:
                config = alembic_config(database_url)
                config.attributes["connection"] = sync_connection
                command.stamp(config, after)
                command.upgrade(config, revision)
                command.stamp(config, "head")

            await connection.run_sync(run)
    finally:
        await engine.dispose()


async def transfer_with_key(stack: OwnStack, token: str, idempotency_key: str) -> dict:
    return await transfer_with_key_through(stack.client, token, idempotency_key)


async def run_the_worker_until_nothing_is_open(stack: OwnStack) -> Counter[str]:
    """The worker as ``serve`` runs it (a failed round is logged and tried again), until no job
    is open or ``WORK_SECONDS`` have passed. Returns the jobs' statuses then."""
    worker = RelayerWorker(stack.services, name="test-relayer")
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    deadline = time.monotonic() + WORK_SECONDS
    try:
        while True:
            counts = await status_counts(stack.services.db)
            if not counts.keys() & set(PIPELINE_STATUSES) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await running
    return counts


async def test_a_transfer_keyed_like_an_enrollments_call_cannot_break_the_enrollment(
    client,
    relayer,
    registry_demo,
    services: Services,
    demo_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """An enrollment's relayed call is keyed ``enroll:<customer id>:<the client's key>`` on the
    customer's wallet, and the customer's id is ``viewer.id``. A transfer the customer keyed
    that way first must not make the enrollment with that key fail (it did, masked as an
    unexpected error): such a transfer key is refused."""
    customer = await new_customer(
        client, demo_issuer, deployer, contracts, ovpp=100 * OVPP, stablecoin=10 * USD
    )
    viewer_id = (await gql(client, "{ viewer { id } }", token=customer.token))["data"]["viewer"][
        "id"
    ]
    squatting = await transfer_with_key_through(
        client, customer.token, f"enroll:{viewer_id}:join-1"
    )

    device = await add_device(client, customer.token, "Voltstack", "VS-13.5")
    enrolled = await enroll(
        client,
        customer.token,
        deviceId=device,
        programId=await program_id(services, "dr-battery-2026"),
        protocol="OPENADR_3",
        paymentMethod="WALLET",
        idempotencyKey="join-1",
    )
    assert enrolled["__typename"] == "Enrollment", enrolled
    assert (await wait_enrollment(client, customer.token, enrolled["id"]))["status"] == "ACTIVE"
    assert (squatting["__typename"], squatting.get("field")) == ("InvalidInput", "idempotencyKey")


async def test_every_mutation_refuses_a_key_in_an_internal_namespace(
    client,
    relayer,
    registry_demo,
    services: Services,
    test_issuer: TestIssuer,
    demo_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """transfer, enroll (wallet, sponsor or card), unenroll, createOnrampPayment and
    fundSponsorship: a key starting with a prefix the backend uses for its own keys is refused
    as ``InvalidInput`` on ``idempotencyKey``, and nothing is stored."""
    customer = await new_customer(
        client, demo_issuer, deployer, contracts, ovpp=100 * OVPP, stablecoin=10 * USD
    )
    device = await add_device(client, customer.token, "Voltstack", "VS-13.5")
    program = await program_id(services, "dr-battery-2026")
    joined = await enroll(
        client,
        customer.token,
        deviceId=device,
        programId=program,
        protocol="OPENADR_3",
        paymentMethod="WALLET",
    )
    assert (await wait_enrollment(client, customer.token, joined["id"]))["status"] == "ACTIVE"
    admin = test_issuer.mint(sub=f"admin-{uuid.uuid4().hex[:6]}", scope="utility:admin")

    for key in RESERVED_EXAMPLES:
        refusals = {
            "transfer": await transfer_with_key_through(client, customer.token, key),
        }
        for method in ("WALLET", "SPONSOR", "CARD"):
            refusals[f"enroll {method}"] = await enroll(
                client,
                customer.token,
                deviceId=device,
                programId=program,
                protocol="OPENADR_2_0B",
                paymentMethod=method,
                idempotencyKey=key,
            )
        body = await gql(
            client,
            UNENROLL,
            {"input": {"enrollmentId": joined["id"], "idempotencyKey": key}},
            token=customer.token,
        )
        assert "errors" not in body, body
        refusals["unenroll"] = body["data"]["unenroll"]
        refusals["createOnrampPayment"] = await onramp_payment_with_key(client, customer.token, key)
        for mutation, refusal in refusals.items():
            assert (refusal["__typename"], refusal.get("field")) == (
                "InvalidInput",
                "idempotencyKey",
            ), (mutation, key, refusal)
        funded = await gql(
            client,
            FUND_SPONSORSHIP,
            {"input": {"amount": "0.5", "idempotencyKey": key}},
            token=admin,
        )
        assert "errors" not in funded, funded
        refusal = funded["data"]["fundSponsorship"]
        assert (refusal["__typename"], refusal["field"]) == ("InvalidInput", "idempotencyKey")

    shown = await gql(client, "{ viewer { enrollments { id status } } }", token=customer.token)
    assert shown["data"]["viewer"]["enrollments"] == [{"id": joined["id"], "status": "ACTIVE"}]


async def transfer_with_key_through(client, token: str, idempotency_key: str) -> dict:
    """A quoted 0.1 OVPP transfer (fee in stablecoin) sent with ``idempotency_key``: what the
    ``transfer`` mutation answered."""
    fields = {
        "token": "OVPP",
        "to": Account.create().address,
        "amount": format_units(OVPP // 10, 18),
        "feeToken": "STABLECOIN",
    }
    quote = await gql(client, QUOTE, {"input": fields}, token=token)
    assert "errors" not in quote, quote
    body = await gql(
        client,
        TRANSFER,
        {
            "input": {
                **fields,
                "quoteId": quote["data"]["quoteTransfer"]["id"],
                "idempotencyKey": idempotency_key,
            }
        },
        token=token,
    )
    assert "errors" not in body, body
    result = body["data"]["transfer"]
    return {name: result[name] for name in ("__typename", "field", "message") if name in result}


async def onramp_payment_with_key(client, token: str, idempotency_key: str) -> dict:
    quote = await gql(
        client,
        ONRAMP_QUOTE,
        {"input": {"token": "OVPP", "currency": "USD", "tokenAmount": "10"}},
        token=token,
    )
    assert quote["data"]["quoteOnramp"]["__typename"] == "OnrampQuote", quote
    body = await gql(
        client,
        CREATE_ONRAMP_PAYMENT,
        {
            "input": {
                "token": "OVPP",
                "currency": "usd",
                "tokenAmount": "10",
                "quoteId": quote["data"]["quoteOnramp"]["id"],
                "idempotencyKey": idempotency_key,
            }
        },
        token=token,
    )
    assert "errors" not in body, body
    return body["data"]["createOnrampPayment"]
