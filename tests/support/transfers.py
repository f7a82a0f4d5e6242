"""Gasless transfers through GraphQL: quote, send, and the rows they leave."""

from __future__ import annotations

import uuid

from sqlmodel import select

from api.container import Services
from relayer.models import RelayTransaction, SponsorCharge
from tests.support.graphql import gql
from tests.support.wallets import (
    TRANSACTION_FIELDS,
)
from wallet.models import Wallet

QUOTE = """
mutation($input: TransferQuoteInput!) {
  quoteTransfer(input: $input) { id feeToken { symbol } feeAmount sponsored sponsorName expiresAt }
}
"""


TRANSFER = f"""
mutation($input: TransferInput!) {{
  transfer(input: $input) {{
    __typename
    ... on Transaction {{ {TRANSACTION_FIELDS} }}
    ... on InsufficientFunds {{ message token {{ symbol }} required available }}
    ... on PolicyViolation {{ message rule }}
    ... on QuoteExpired {{ message }}
    ... on SponsorRefused {{ message reason sponsorName }}
    ... on InvalidInput {{ message field }}
  }}
}}
"""


async def quote(client, access_token: str, **input_fields: str) -> dict:
    body = await gql(client, QUOTE, {"input": input_fields}, token=access_token)
    assert "errors" not in body, body
    return body["data"]["quoteTransfer"]


async def send(
    client, access_token: str, *, quote_id: str, key: str | None = None, **fields: str
) -> dict:
    body = await gql(
        client,
        TRANSFER,
        {"input": {**fields, "quoteId": quote_id, "idempotencyKey": key or str(uuid.uuid4())}},
        token=access_token,
    )
    assert "errors" not in body, body
    return body["data"]["transfer"]


async def jobs_of(services: Services, address: str) -> list[RelayTransaction]:
    async with services.db.session() as session:
        wallet = (
            await session.execute(select(Wallet).where(Wallet.address == address))
        ).scalar_one()
        statement = select(RelayTransaction).where(RelayTransaction.wallet_id == wallet.id)
        return list((await session.execute(statement)).scalars())


async def charge_of(services: Services, job_id: str) -> SponsorCharge:
    """The sponsor's charge for a job."""
    async with services.db.session() as session:
        statement = select(SponsorCharge).where(SponsorCharge.relay_transaction_id == job_id)
        return (await session.execute(statement)).scalar_one()
