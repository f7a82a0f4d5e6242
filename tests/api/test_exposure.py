"""What the API tells anyone who asks is theirs to know: an operator's configuration problem
is masked (and logged for the operator), and the public ``/readyz`` says how many relayer keys
need attention, never which ones."""

from __future__ import annotations

import asyncio
import logging
import uuid

import httpx
import pytest
from sqlmodel import select

from api.app import create_app
from api.graphql.extensions import MASKED_MESSAGE
from chain.address_book import AddressBook
from chain.artifacts import artifact
from chain.deploy import Deployer
from identity.models import Tenant
from identity.principal import Principal
from identity.service import provision
from relayer.models import RelayerKey
from relayer.runner import RunningRelayer
from relayer.worker import RelayerWorker
from tests.support.graphql import gql
from tests.support.issuer import TestIssuer
from tests.support.own_stack import OwnStack
from tests.support.transfers import TRANSFER, jobs_of, quote
from wallet.kms import KeyRing, LocalKeyEncryptionKey

OVPP = 10**18
RECIPIENT = "0x000000000000000000000000000000000000dEaD"


@pytest.mark.parametrize("own_stack", ["sqlite", "postgresql"], indirect=True)
async def test_a_configuration_error_reaches_the_client_masked_and_the_operator_logged(
    own_stack: OwnStack,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A wallet sealed under a key-encryption key this server no longer holds (a KEK rotated
    without OVPP_PREVIOUS_KEKS): the customer sees the masked error, not the KEK's id or the
    setting to change; the operator finds both in the log; nothing is queued. On a stack of the
    test's own: the wallet under the retired KEK must not stay in the session's database."""
    client, services = own_stack.client, own_stack.services
    retired = LocalKeyEncryptionKey(bytes(range(32)))
    subject = f"customer-{uuid.uuid4().hex[:12]}"
    async with services.db.session() as session:
        tenant = (
            await session.execute(select(Tenant).where(Tenant.issuer == test_issuer.issuer))
        ).scalar_one()
    principal = Principal(
        tenant_id=tenant.id,
        tenant_slug=tenant.slug,
        issuer=test_issuer.issuer,
        subject=subject,
        email=None,
        client_id=None,
        scopes=frozenset({"wallet:read", "wallet:sign"}),
    )
    account = await provision(services.db, principal=principal, keyring=KeyRing(retired))
    deployer.mint(token=contracts.ovpp_token, to=account.wallet.address, amount=5 * OVPP)
    token = test_issuer.mint(sub=subject, scope="wallet:read wallet:sign")
    fields = {"token": "OVPP", "to": RECIPIENT, "amount": "1", "feeToken": "OVPP"}
    quoted = await quote(client, token, **fields)

    with caplog.at_level(logging.ERROR, logger="api.graphql"):
        body = await gql(
            client,
            TRANSFER,
            {"input": {**fields, "quoteId": quoted["id"], "idempotencyKey": "kek-gone"}},
            token=token,
        )

    assert body.get("data") is None
    assert [error["message"] for error in body["errors"]] == [MASKED_MESSAGE]
    assert retired.key_id not in str(body) and "OVPP_" not in str(body)
    assert "CONFIGURATION" not in str(body)
    logged = "\n".join(str(record.exc_info[1]) for record in caplog.records if record.exc_info)
    assert retired.key_id in logged and "OVPP_PREVIOUS_KEKS" in logged
    assert await jobs_of(services, account.wallet.address) == []


@pytest.mark.parametrize("own_stack", ["sqlite"], indirect=True)
async def test_readyz_counts_the_relayer_keys_needing_attention_without_naming_them(
    own_stack: OwnStack, deployer: Deployer, contracts: AddressBook
) -> None:
    """One of the stack's two keys is not accepted by the forwarder: ``/readyz`` (public,
    unauthenticated) says one key is unauthorized, and neither its id nor its address."""
    services = own_stack.services
    async with services.db.session() as session:
        keys = list((await session.execute(select(RelayerKey).order_by(RelayerKey.slot))).scalars())
    refused = keys[-1]
    forwarder = deployer.web3.eth.contract(
        address=contracts.forwarder, abi=artifact("OVPPForwarder").abi
    )
    deployer.web3.eth.wait_for_transaction_receipt(
        forwarder.functions.setRelayer(refused.address, False).transact(
            {"from": deployer.account.address}
        )
    )
    worker = RelayerWorker(services, name="test-relayer")
    await worker.tick()  # a round starts with the keys' reconciliation
    assert worker.unauthorized_keys == {refused.id}
    stop = asyncio.Event()
    running = RunningRelayer(worker=worker, stop=stop, task=asyncio.create_task(worker.run(stop)))
    app = create_app(own_stack.settings, services=services)
    app.state.relayer = running
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            response = await http.get("/readyz")
    finally:
        await running.shutdown()

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["relayer"] == {"running": True, "lowBalanceKeys": 0, "unauthorizedKeys": 1}
    for key in keys:
        assert key.id not in response.text
        assert key.address.lower()[2:] not in response.text.lower()
