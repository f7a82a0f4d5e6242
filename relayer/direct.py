"""Operator-submitted forward requests: the Integration Service (onboarding a utility,
publishing its programs) submits a custodial wallet's signed requests itself, paying the gas
from the operator key, and waits for the receipt. Customer actions never use this path."""

from __future__ import annotations

import time

from eth_account import Account
from web3 import AsyncWeb3

from chain.calls import Call
from relayer.deps import RelayerServices
from relayer.forwarder import forwarder_calldata
from relayer.jobs import GasPayment, release_nonces, reserve_nonces, sign_calls
from wallet.models import Wallet


class DirectSubmitError(Exception):
    pass


async def submit_as_wallet(
    services: RelayerServices, *, wallet_id: str, calls: list[Call], operator_key: str
) -> str:
    """Sign ``calls`` as the wallet (atomic batch) and submit them now. Returns the tx hash.
    The wallet's forwarder nonces are given back if the transaction does not land."""
    async with services.db.session() as session:
        wallet = await session.get(Wallet, wallet_id)
        assert wallet is not None
        first = await reserve_nonces(
            session, wallet_id=wallet_id, calls=calls, payment=GasPayment()
        )
    signed = sign_calls(
        wallet,
        calls=calls,
        first_nonce=first,
        deadline=int(time.time()) + 3600,
        keyring=services.keyring,
        separator=services.forwarder_domain_separator,
    )
    try:
        return await send_from_operator(
            services,
            operator_key=operator_key,
            to=services.chain.addresses.forwarder,  # type: ignore[union-attr]
            data=forwarder_calldata(signed),
            gas=sum(c.gas for c in calls) + 100_000,
        )
    except Exception:
        async with services.db.session() as session:
            await release_nonces(session, wallet_id=wallet_id, calls=calls, payment=GasPayment())
        raise


async def send_from_operator(
    services: RelayerServices, *, operator_key: str, to: str, data: bytes, gas: int
) -> str:
    web3: AsyncWeb3 = services.chain.web3
    operator = Account.from_key(operator_key)
    block = await web3.eth.get_block("latest")
    signed = operator.sign_transaction(
        {
            "to": AsyncWeb3.to_checksum_address(to),
            "data": data,
            "value": 0,
            "gas": gas,
            "maxFeePerGas": int(block["baseFeePerGas"]) * 2 + 10**9,
            "maxPriorityFeePerGas": 10**9,
            "nonce": await web3.eth.get_transaction_count(operator.address, "pending"),
            "chainId": services.chain.profile.chain_id,
        }
    )
    tx_hash = await web3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = await web3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
    if receipt["status"] != 1:
        raise DirectSubmitError(f"transaction {tx_hash.hex()} reverted")
    return "0x" + bytes(tx_hash).hex()
