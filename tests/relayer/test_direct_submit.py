"""The operator's direct submits (``relayer.direct.submit_as_wallet``) never hand a wallet's
forwarder nonces back: a send that fails may have reached the node. The wallet is marked, and
its next direct submit aligns the wallet's counter with the forwarder's nonce before signing."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Iterator

import pytest
from eth_account import Account
from web3 import Web3

from api.container import Services
from chain.address_book import AddressBook
from chain.artifacts import artifact
from chain.calls import Call
from chain.client import ChainClient
from chain.deploy import Deployer
from chain.erc20 import erc20_approve_data
from devsupport.anvil import LocalChain
from relayer.direct import submit_as_wallet
from tests.support.issuer import TestIssuer
from tests.support.own_stack import OwnStack, new_sender
from tests.support.rpc_proxy import FaultyRpcProxy
from wallet.models import Wallet

pytestmark = pytest.mark.parametrize("own_stack", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def rpc_proxy(anvil: LocalChain) -> Iterator[FaultyRpcProxy]:
    with FaultyRpcProxy(upstream=anvil.rpc_url) as proxy:
        yield proxy


@pytest.fixture
async def proxied(own_stack: OwnStack, rpc_proxy: FaultyRpcProxy) -> AsyncIterator[Services]:
    """The stack's services with their chain client talking to the node through the proxy."""
    services = own_stack.services
    chain = ChainClient(rpc_url=rpc_proxy.url, profile=services.chain.profile)
    chain.addresses = services.chain.addresses
    through = copy.copy(services)
    through.chain = chain
    try:
        yield through
    finally:
        await chain.close()


async def test_a_direct_send_answered_with_an_error_after_it_landed_keeps_its_nonces(
    own_stack: OwnStack,
    rpc_proxy: FaultyRpcProxy,
    proxied: Services,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """The node mines the operator's transaction but the answer is an error: the submit fails,
    yet the wallet's two forwarder nonces stay taken (they are used on chain), and the next
    direct submit for the wallet lands at the two after them."""
    sender = await new_sender(own_stack, test_issuer, deployer, contracts)
    forwarder = forwarder_of(deployer, contracts)
    address = await address_of(own_stack, sender.wallet_id)
    first, second = approvals(contracts), approvals(contracts)

    rpc_proxy.answer_broadcasts_with_error("some new error", forward=True, times=1)
    with pytest.raises(Exception, match="some new error"):
        await submit_as_wallet(
            proxied, wallet_id=sender.wallet_id, calls=first, operator_key=operator(deployer)
        )
    # It landed (the proxy's error may reach us before the node has mined what it forwarded).
    assert await eventually(lambda: forwarder.functions.nonces(address).call() == 2)
    assert await next_forwarder_nonce(own_stack, sender.wallet_id) == 2  # not handed back

    tx_hash = await submit_as_wallet(
        proxied, wallet_id=sender.wallet_id, calls=second, operator_key=operator(deployer)
    )
    assert deployer.web3.eth.get_transaction_receipt(tx_hash)["status"] == 1
    assert forwarder.functions.nonces(address).call() == 4
    assert await next_forwarder_nonce(own_stack, sender.wallet_id) == 4
    assert_approved(deployer, contracts, owner=address, calls=[*first, *second])


async def test_a_direct_send_that_never_reached_the_node_is_realigned_by_the_next(
    own_stack: OwnStack,
    rpc_proxy: FaultyRpcProxy,
    proxied: Services,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """The operator's transaction never reaches the node: its nonces stay taken (nobody can
    tell yet), and the next direct submit, finding the forwarder still at 0 and no relayer job
    of the wallet holding them, signs from the forwarder's nonce and lands."""
    sender = await new_sender(own_stack, test_issuer, deployer, contracts)
    forwarder = forwarder_of(deployer, contracts)
    address = await address_of(own_stack, sender.wallet_id)

    rpc_proxy.answer_broadcasts_with_error("some new error", forward=False, times=1)
    with pytest.raises(Exception, match="some new error"):
        await submit_as_wallet(
            proxied,
            wallet_id=sender.wallet_id,
            calls=approvals(contracts),
            operator_key=operator(deployer),
        )
    assert forwarder.functions.nonces(address).call() == 0
    assert await next_forwarder_nonce(own_stack, sender.wallet_id) == 2  # not handed back

    calls = approvals(contracts)
    await submit_as_wallet(
        proxied, wallet_id=sender.wallet_id, calls=calls, operator_key=operator(deployer)
    )
    assert forwarder.functions.nonces(address).call() == 2
    assert await next_forwarder_nonce(own_stack, sender.wallet_id) == 2
    assert_approved(deployer, contracts, owner=address, calls=calls)


def operator(deployer: Deployer) -> str:
    return "0x" + bytes(deployer.account.key).hex()


def forwarder_of(deployer: Deployer, contracts: AddressBook):  # type: ignore[no-untyped-def]
    return deployer.web3.eth.contract(
        address=contracts.forwarder, abi=artifact("OVPPForwarder").abi
    )


async def eventually(check, *, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def approvals(contracts: AddressBook) -> list[Call]:
    """Two calls (two forwarder nonces), each approving a fresh spender for an amount."""
    return [
        Call(
            target=contracts.ovpp_token,
            data=erc20_approve_data(Account.create().address, amount),
            gas=100_000,
        )
        for amount in (7, 11)
    ]


def assert_approved(
    deployer: Deployer, contracts: AddressBook, *, owner: str, calls: list[Call]
) -> None:
    token = deployer.web3.eth.contract(address=contracts.ovpp_token, abi=artifact("OVPPToken").abi)
    for call in calls:
        spender = Web3.to_checksum_address("0x" + call.data[4 + 12 : 4 + 32].hex())
        amount = int.from_bytes(call.data[4 + 32 : 4 + 64], "big")
        assert token.functions.allowance(owner, spender).call() == amount


async def address_of(stack: OwnStack, wallet_id: str) -> str:
    async with stack.services.db.session() as session:
        return (await session.get_one(Wallet, wallet_id)).address


async def next_forwarder_nonce(stack: OwnStack, wallet_id: str) -> int:
    async with stack.services.db.session() as session:
        return (await session.get_one(Wallet, wallet_id)).next_forwarder_nonce
