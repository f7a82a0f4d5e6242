"""``walletActivity`` over graphql-transport-ws: an incoming transfer reaches the app within a
few seconds of its block, and only the signed-in wallet's items do."""

from __future__ import annotations

import asyncio
import time

from api.container import Services
from chain.address_book import AddressBook
from chain.deploy import Deployer
from tests.support.activity import indexed
from tests.support.wallets import FundedCustomer
from tests.support.websocket import connect, receive, subscribe

OVPP = 10**18
WALLET_ACTIVITY = """
subscription { walletActivity {
  id kind status amount counterparty counterpartyLabel token { symbol } blockNumber txHash
} }
"""


async def test_an_incoming_transfer_is_pushed_within_seconds_of_its_block(
    ws_url: str,
    chain_indexer,
    services: Services,
    funded_customer: FundedCustomer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    dana = await funded_customer()
    erin = await funded_customer()
    await indexed(services)
    socket = await connect(ws_url, dana.token)
    try:
        await subscribe(socket, "1", WALLET_ACTIVITY, {})
        await asyncio.sleep(
            1.5
        )  # the subscriptions have read the feed as it is (nothing is pushed)
        deployer.mint(token=contracts.ovpp_token, to=erin.address, amount=OVPP)  # not dana's
        deployer.mint(token=contracts.ovpp_token, to=dana.address, amount=7 * OVPP)
        block = deployer.web3.eth.block_number
        mined = time.monotonic()
        message = await receive(socket, timeout=10.0)
        assert message["type"] == "next" and "errors" not in message["payload"], message
        item = message["payload"]["data"]["walletActivity"]
        assert time.monotonic() - mined < 5.0
        assert (item["kind"], item["amount"], item["token"]["symbol"]) == ("RECEIVED", "7", "OVPP")
        assert item["blockNumber"] == block and item["counterpartyLabel"] == "Token issuer"
    finally:
        await socket.close()
