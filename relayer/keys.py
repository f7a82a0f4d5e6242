"""Relayer keys: created sealed like wallets, funded on local chains, watched for balance."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.container import Services
from core.db import insert_if_absent, new_id, utc_now
from relayer.models import RelayerKey
from wallet.keys import SealedKey, generate_sealed_key

logger = logging.getLogger(__name__)


def sealed_key_of(key: RelayerKey) -> SealedKey:
    return SealedKey(
        address=key.address,
        encrypted_private_key=key.encrypted_private_key,
        wrapped_data_key=key.wrapped_data_key,
        kek_id=key.kek_id,
    )


async def enabled_keys(session: AsyncSession) -> list[RelayerKey]:
    statement = select(RelayerKey).where(RelayerKey.enabled.is_(True)).order_by(RelayerKey.slot)
    return list((await session.execute(statement)).scalars())


async def ensure_relayer_keys(services: Services, *, count: int) -> list[RelayerKey]:
    """Slots 0..count-1 exist (racing creators settle on the unique slot); later slots are
    disabled, never deleted, so their transactions still finish."""
    async with services.db.session() as session:
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
        for key in (await session.execute(select(RelayerKey))).scalars():
            key.enabled = key.slot < count
            session.add(key)
    async with services.db.session() as session:
        return await enabled_keys(session)


async def fund_local_keys(services: Services, keys: list[RelayerKey], *, deployer_key: str) -> None:
    """Local chain only: top relayer keys up with native gas from the deployer account."""
    from eth_account import Account

    web3 = services.chain.web3
    funder = Account.from_key(deployer_key)
    nonce = await web3.eth.get_transaction_count(funder.address, "pending")
    block = await web3.eth.get_block("latest")
    hashes = []
    for key in keys:
        balance = await web3.eth.get_balance(key.address)
        if balance >= services.settings.relayer_low_balance_wei * 10:
            continue
        transaction = {
            "to": key.address,
            "value": services.settings.relayer_fund_wei,
            "gas": 21_000,
            "maxFeePerGas": int(block["baseFeePerGas"]) * 2 + 10**9,
            "maxPriorityFeePerGas": 10**9,
            "nonce": nonce,
            "chainId": services.chain.profile.chain_id,
        }
        signed = funder.sign_transaction(transaction)
        hashes.append(await web3.eth.send_raw_transaction(signed.raw_transaction))
        nonce += 1
    for tx_hash in hashes:
        await web3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
    if hashes:
        logger.info("funded %d relayer key(s) on the local chain", len(hashes))
