"""Operator-submitted forward requests: the Integration Service (onboarding a utility,
publishing its programs) submits a custodial wallet's signed requests itself, paying the gas
from the operator key, and waits for the receipt. Customer actions never use this path.

Forwarder nonces taken here are never given back: a send that fails may still have reached a
pool, or been mined. The wallet is marked instead, and the next direct submit for it first
aligns its counter with the forwarder's nonce (docs/relayer.md, "Direct submits")."""

from __future__ import annotations

import logging
import time
from collections import Counter

from eth_account import Account
from web3 import AsyncWeb3

from chain.calls import Call
from relayer import repository
from relayer.deps import RelayerServices
from relayer.forwarder import forwarder_calldata, nonces_call
from relayer.jobs import GasPayment, reserve_nonces, sign_calls
from wallet.models import Wallet

logger = logging.getLogger(__name__)

# Per process, like the worker's ``wallets_to_resync``: wallets a direct send failed for (its
# nonces may or may not be used), and the direct submits of each wallet under way here. Lost
# on a restart: a wallet's next direct submit then reverts (its requests are ahead of the
# forwarder), which marks it again.
_wallets_unsure: set[str] = set()
_submits_under_way: Counter[str] = Counter()


class DirectSubmitError(Exception):
    pass


async def submit_as_wallet(
    services: RelayerServices, *, wallet_id: str, calls: list[Call], operator_key: str
) -> str:
    """Sign ``calls`` as the wallet (atomic batch) and submit them now. Returns the tx hash.
    If the send fails, the wallet's forwarder nonces stay taken and the wallet is marked:
    its next direct submit aligns its counter with the forwarder first."""
    _submits_under_way[wallet_id] += 1
    try:
        if wallet_id in _wallets_unsure:
            await _align_forwarder_nonce(services, wallet_id)
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
            _wallets_unsure.add(wallet_id)
            raise
    finally:
        _submits_under_way[wallet_id] -= 1
        if not _submits_under_way[wallet_id]:
            del _submits_under_way[wallet_id]


async def _align_forwarder_nonce(services: RelayerServices, wallet_id: str) -> None:
    """Set the marked wallet's next forwarder nonce to the forwarder's (pending) nonce, under
    the wallet's lock, when nothing else may hold nonces above it: no job of the wallet in the
    relayer (if one does, its revert makes the worker resync the wallet from the forwarder)
    and no other direct submit of it under way here. The mark stays until it is done."""
    async with services.db.session() as session:
        wallet = await session.get(Wallet, wallet_id)
        assert wallet is not None
        address = wallet.address
    method, params = nonces_call(services.chain.addresses.forwarder, address)  # type: ignore[union-attr]
    answer = await services.chain.rpc.call(method, params[0], "pending")
    chain_nonce = int(answer, 16)
    async with services.db.session() as session:
        await repository.lock_wallet(session, wallet_id)
        # Read under the lock: a submit that reserved before it is counted by now.
        if _submits_under_way[wallet_id] > 1 or await repository.wallet_holds_nonces_from(
            session, wallet_id, chain_nonce=chain_nonce
        ):
            return
        wallet = await session.get(Wallet, wallet_id, populate_existing=True)
        assert wallet is not None
        if wallet.next_forwarder_nonce != chain_nonce:
            logger.warning(
                "wallet %s: forwarder nonce aligned with the forwarder's after a failed "
                "direct send: %d -> %d",
                address,
                wallet.next_forwarder_nonce,
                chain_nonce,
            )
            wallet.next_forwarder_nonce = chain_nonce
            session.add(wallet)
    _wallets_unsure.discard(wallet_id)


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
