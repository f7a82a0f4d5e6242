"""Gasless transfers through the relayer, checked on the chain."""

from __future__ import annotations

import uuid

from sqlmodel import select

from api.container import Services
from relayer.models import RelayerKey, RelayTransaction
from tests.support.graphql import gql
from tests.support.transfers import TRANSFER, quote
from tests.support.wallets import ChainReader, FundedCustomer, wait_for_status

OVPP = 10**18
USD = 10**6


async def test_gasless_ovpp_transfer_with_the_fee_in_stablecoin(
    client,
    relayer,
    services: Services,
    chain: ChainReader,
    funded_customer: FundedCustomer,
) -> None:
    customer = await funded_customer(ovpp=100 * OVPP, stablecoin=50 * USD)
    recipient = "0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8]
    fee_quote = await quote(
        client, customer.token, token="OVPP", to=recipient, amount="12.5", feeToken="STABLECOIN"
    )
    assert fee_quote["sponsored"] is False and fee_quote["feeToken"]["symbol"] == "USDC"
    quoted_fee = _base_units(fee_quote["feeAmount"], 6)
    assert quoted_fee > 0

    async with services.db.session() as session:
        keys = list((await session.execute(select(RelayerKey))).scalars())
    relayer_balances = {key.address: chain.native(key.address) for key in keys}
    treasury_before = chain.usd_of(services.treasury_address)

    body = await gql(
        client,
        TRANSFER,
        {
            "input": {
                "token": "OVPP",
                "to": recipient,
                "amount": "12.5",
                "feeToken": "STABLECOIN",
                "quoteId": fee_quote["id"],
                "idempotencyKey": f"send-{uuid.uuid4()}",
            }
        },
        token=customer.token,
    )
    assert "errors" not in body, body
    result = body["data"]["transfer"]
    assert result["__typename"] == "Transaction", result
    final = await wait_for_status(client, customer.token, result["id"])
    assert final["status"] == "CONFIRMED", final

    receipt = chain.receipt(final["hash"])
    async with services.db.session() as session:
        job = await session.get(RelayTransaction, result["id"])
        relayer_key = await session.get(RelayerKey, job.relayer_key_id)
    paid_wei = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    # Anvil automines one transaction per block, so the key's balance across our block moves by
    # exactly what our transaction cost, whatever else the key sends before or after.
    block = receipt["blockNumber"]
    before_block = chain.web3.eth.get_balance(relayer_key.address, block_identifier=block - 1)
    after_block = chain.web3.eth.get_balance(relayer_key.address, block_identifier=block)
    assert after_block == before_block - paid_wei
    assert chain.native(relayer_key.address) <= relayer_balances[relayer_key.address] - paid_wei
    assert chain.native(customer.address) == 0
    assert chain.ovpp_of(customer.address) == 100 * OVPP - 12_500_000_000_000_000_000
    assert chain.ovpp_of(recipient) == 12_500_000_000_000_000_000
    assert chain.usd_of(customer.address) == 50 * USD - quoted_fee
    assert chain.usd_of(services.treasury_address) == treasury_before + quoted_fee
    assert _base_units(final["feeAmount"], 6) == quoted_fee  # never above the quote


def _base_units(amount: str, decimals: int) -> int:
    from chain.tokens import parse_units

    return parse_units(amount, decimals)
