"""Where a transfer may go: a typo'd address (its EIP-55 checksum fails), one without ``0x`` and
the sender's own address are refused as InvalidInput on ``to`` before anything is quoted or
queued; an address without a checksum (all one case) is taken as it is."""

from __future__ import annotations

from eth_account import Account

from api.container import Services
from chain.address_book import AddressBook
from chain.deploy import Deployer
from tests.support.graphql import error_codes, gql
from tests.support.issuer import TestIssuer
from tests.support.transfers import QUOTE, TRANSFER, jobs_of, quote
from tests.support.wallets import new_customer

OVPP = 10**18


def typo_of(address: str) -> str:
    """``address`` with the case of one letter flipped: the same digits, a checksum that fails."""
    at = next(i for i, c in enumerate(address) if i > 1 and c.isalpha())
    return address[:at] + address[at].swapcase() + address[at + 1 :]


def checksummed_with_letters() -> str:
    while True:
        address = Account.create().address
        digits = address[2:]
        if digits != digits.lower() and digits != digits.upper():
            return address


async def test_a_typo_no_0x_or_ones_own_address_is_refused_before_any_quote_or_job(
    client,
    services: Services,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    customer = await new_customer(client, test_issuer, deployer, contracts, ovpp=5 * OVPP)
    recipient = checksummed_with_letters()
    refused = (
        typo_of(recipient),
        recipient[2:],
        recipient.lower()[2:],
        " " + recipient,
        customer.address,
        customer.address.lower(),
    )
    for to in refused:
        body = await gql(
            client,
            QUOTE,
            {"input": {"token": "OVPP", "to": to, "amount": "1", "feeToken": "OVPP"}},
            token=customer.token,
        )
        assert error_codes(body) == ["INVALID_INPUT"], (to, body)

    # a quote for the right address does not carry a typo'd one through
    good = await quote(
        client, customer.token, token="OVPP", to=recipient, amount="1", feeToken="OVPP"
    )
    for to in (typo_of(recipient), customer.address):
        body = await gql(
            client,
            TRANSFER,
            {
                "input": {
                    "token": "OVPP",
                    "to": to,
                    "amount": "1",
                    "feeToken": "OVPP",
                    "quoteId": good["id"],
                    "idempotencyKey": f"typo-{to}",
                }
            },
            token=customer.token,
        )
        result = body["data"]["transfer"]
        assert (result["__typename"], result["field"]) == ("InvalidInput", "to"), (to, result)
    assert await jobs_of(services, customer.address) == []


async def test_an_address_in_one_case_carries_no_checksum_and_is_accepted(
    client, test_issuer: TestIssuer, deployer: Deployer, contracts: AddressBook
) -> None:
    customer = await new_customer(client, test_issuer, deployer, contracts, ovpp=5 * OVPP)
    recipient = checksummed_with_letters()
    for to in (recipient, recipient.lower(), "0x" + recipient[2:].upper()):
        made = await quote(client, customer.token, token="OVPP", to=to, amount="1", feeToken="OVPP")
        assert made["id"], to
