"""Relayer keys: created sealed like wallets, authorized in the forwarder and funded (both
automatic on local chains), watched for balance."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any
from weakref import WeakKeyDictionary

from eth_hash.auto import keccak
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import insert_if_absent, new_id, utc_now
from relayer.deps import RelayerServices
from relayer.models import RelayerKey
from wallet.keys import generate_sealed_key

logger = logging.getLogger(__name__)


async def enabled_keys(session: AsyncSession) -> list[RelayerKey]:
    statement = select(RelayerKey).where(RelayerKey.enabled.is_(True)).order_by(RelayerKey.slot)
    return list((await session.execute(statement)).scalars())


async def ensure_relayer_keys(services: RelayerServices, *, count: int) -> list[RelayerKey]:
    """Slots 0..count-1 exist (racing creators settle on the unique slot); later slots are
    disabled, never deleted, so their transactions still finish.

    Which keys are enabled is the relayer's to say: only the relayer (``ovpp-wallet relayer``,
    ``serve`` running it) and ``relayer-authorize`` call this, with their ``OVPP_RELAYER_KEYS``.
    An API process without the relayer calls ``ensure_a_relayer_key``."""
    async with services.db.session() as session:
        await _create_slots(session, services, count=count)
        for key in (await session.execute(select(RelayerKey))).scalars():
            key.enabled = key.slot < count
            session.add(key)
    async with services.db.session() as session:
        return await enabled_keys(session)


async def ensure_a_relayer_key(services: RelayerServices, *, count: int) -> None:
    """For an API process that does not run the relayer: creates slots 0..count-1 only in a
    database that holds no relayer key yet (so a first transfer finds one before the relayer's
    first start), and never changes which keys are enabled. Were it to, an API process with
    another ``OVPP_RELAYER_KEYS`` than the relayer's would disable the relayer's keys at each
    start, and move wallets to other keys while their transactions are in flight."""
    async with services.db.session() as session:
        if (await session.execute(select(RelayerKey.id).limit(1))).first() is None:
            await _create_slots(session, services, count=count)


async def _create_slots(session: AsyncSession, services: RelayerServices, *, count: int) -> None:
    for slot in range(count):
        sealed = generate_sealed_key(services.keyring.current)
        await insert_if_absent(
            session,
            RelayerKey.__table__,
            {
                "id": new_id(),
                "slot": slot,
                "address": sealed.address,
                "encrypted_private_key": sealed.encrypted_private_key,
                "wrapped_data_key": sealed.wrapped_data_key,
                "kek_id": sealed.kek_id,
                "next_nonce": 0,
                "enabled": True,
                "created_at": utc_now(),
            },
        )


async def fund_local_keys(
    services: RelayerServices, keys: list[RelayerKey], *, deployer_key: str
) -> None:
    """Local chain only: top relayer keys up with native gas from the deployer account."""
    web3 = services.chain.web3
    low = [
        key
        for key in keys
        if await web3.eth.get_balance(key.address) < services.settings.relayer_low_balance_wei * 10
    ]
    await _send_in_order(
        services,
        deployer_key,
        [
            {"to": key.address, "value": services.settings.relayer_fund_wei, "gas": 21_000}
            for key in low
        ],
    )
    if low:
        logger.info("funded %d relayer key(s) on the local chain", len(low))


IS_RELAYER_SELECTOR = keccak(b"isRelayer(address)")[:4]


def is_relayer_call(forwarder: str, address: str) -> tuple[str, list[object]]:
    """The ``eth_call`` asking the forwarder whether ``address`` may submit requests."""
    data = IS_RELAYER_SELECTOR + bytes(12) + bytes.fromhex(address.removeprefix("0x"))
    return "eth_call", [{"to": forwarder, "data": "0x" + data.hex()}, "latest"]


async def authorize_keys(
    services: RelayerServices, addresses: list[str], *, owner_key: str
) -> list[str]:
    """Lets the forwarder accept transactions from these relayer addresses (those it does not
    accept yet), signed by the forwarder's owner. Returns the addresses newly authorized."""
    from chain.artifacts import artifact

    assert services.chain.addresses is not None
    forwarder = services.chain.web3.eth.contract(
        address=services.chain.addresses.forwarder, abi=artifact("OVPPForwarder").abi
    )
    missing = [a for a in addresses if not await forwarder.functions.isRelayer(a).call()]
    await _send_in_order(
        services,
        owner_key,
        [
            {
                "to": forwarder.address,
                "data": forwarder.encode_abi("setRelayer", args=[address, True]),
                "gas": 60_000,
            }
            for address in missing
        ],
        what="setRelayer (is the key the forwarder's owner?)",
    )
    if missing:
        logger.info("authorized %d relayer key(s) in the forwarder", len(missing))
    return missing


async def _send_in_order(
    services: RelayerServices,
    private_key: str,
    transactions: list[dict[str, object]],
    *,
    what: str = "transaction",
) -> None:
    """Signs and sends ``transactions`` from one account in nonce order, then waits for each
    receipt; a revert raises."""
    from eth_account import Account

    if not transactions:
        return
    web3 = services.chain.web3
    sender = Account.from_key(private_key)
    nonce = await web3.eth.get_transaction_count(sender.address, "pending")
    block = await web3.eth.get_block("latest")
    hashes = []
    for offset, transaction in enumerate(transactions):
        signed = sender.sign_transaction(
            {
                "value": 0,
                **transaction,
                "maxFeePerGas": int(block["baseFeePerGas"]) * 2 + 10**9,
                "maxPriorityFeePerGas": 10**9,
                "nonce": nonce + offset,
                "chainId": services.chain.profile.chain_id,
            }
        )
        hashes.append(await web3.eth.send_raw_transaction(signed.raw_transaction))
    for tx_hash in hashes:
        receipt = await web3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
        if receipt["status"] != 1:
            raise RuntimeError(f"{what} from {sender.address} reverted: {tx_hash.hex()}")


# Enabled relayer key ids per database, re-read every few seconds: keys are enabled or
# disabled by operators, rarely, and a disabled key still finishes the jobs it was given.
RELAYER_KEYS_CACHE_SECONDS = 5.0
_enabled_keys: WeakKeyDictionary[Any, tuple[float, list[str]]] = WeakKeyDictionary()


async def relayer_key_for(session: AsyncSession, wallet_id: str) -> str:
    """Sticky: all of one wallet's transactions go through one relayer key, so they land in
    the order of the wallet's forwarder nonces."""
    engine = session.get_bind()
    read_at, keys = _enabled_keys.get(engine, (float("-inf"), []))
    if time.monotonic() - read_at >= RELAYER_KEYS_CACHE_SECONDS or not keys:
        statement = (
            select(RelayerKey.id).where(RelayerKey.enabled.is_(True)).order_by(RelayerKey.slot)
        )
        keys = list((await session.execute(statement)).scalars())
        _enabled_keys[engine] = (time.monotonic(), keys)
    if not keys:
        raise RuntimeError("no relayer key is configured")
    index = int(hashlib.sha256(wallet_id.encode()).hexdigest(), 16) % len(keys)
    return keys[index]
