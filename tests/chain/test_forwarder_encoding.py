"""The relayer's hand-written encoders give exactly what the generic ones give: the EIP-712
signature of a forward request, the forwarder's calldata, and the raw relayer transaction."""

from __future__ import annotations

import os

import pytest
from eth_abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data

from chain.erc20 import erc20_transfer_data
from relayer.forwarder import (
    EXECUTE_ALL_SELECTOR,
    EXECUTE_SELECTOR,
    FORWARDER_NAME,
    ForwardRequest,
    domain_separator,
    forwarder_calldata,
    sign_request,
)
from relayer.transactions import TransactionSigner

CHAIN_ID = 31337
FORWARDER = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
TOKEN = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
RECIPIENT = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
REQUEST_TYPE = "(address,address,uint256,uint256,uint48,bytes,bytes)"


def _request(sender: str, *, nonce: int, data: bytes) -> ForwardRequest:
    return ForwardRequest(
        sender=sender,
        target=TOKEN,
        value=0,
        gas=65_000,
        nonce=nonce,
        deadline=1_900_000_000,
        data=data,
    )


@pytest.mark.parametrize("nonce", [0, 1, 2**64 + 5])
def test_a_forward_request_is_signed_as_eip712_typed_data(nonce: int) -> None:
    account = Account.create()
    request = _request(
        account.address, nonce=nonce, data=erc20_transfer_data(RECIPIENT, 12 * 10**18)
    )
    separator = domain_separator(chain_id=CHAIN_ID, forwarder=FORWARDER)
    signed = sign_request(request, private_key=account.key, separator=separator)

    typed = encode_typed_data(
        full_message={
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "ForwardRequest": [
                    {"name": "from", "type": "address"},
                    {"name": "to", "type": "address"},
                    {"name": "value", "type": "uint256"},
                    {"name": "gas", "type": "uint256"},
                    {"name": "nonce", "type": "uint256"},
                    {"name": "deadline", "type": "uint48"},
                    {"name": "data", "type": "bytes"},
                ],
            },
            "primaryType": "ForwardRequest",
            "domain": {
                "name": FORWARDER_NAME,
                "version": "1",
                "chainId": CHAIN_ID,
                "verifyingContract": FORWARDER,
            },
            "message": {
                "from": request.sender,
                "to": request.target,
                "value": request.value,
                "gas": request.gas,
                "nonce": request.nonce,
                "deadline": request.deadline,
                "data": request.data,
            },
        }
    )
    expected = Account.sign_message(typed, account.key)
    assert signed.signature == bytes(expected.signature)


@pytest.mark.parametrize("data_length", [0, 1, 31, 32, 33, 68, 200])
def test_forwarder_calldata_is_the_abi_encoding(data_length: int) -> None:
    sender = Account.create().address
    requests = [
        ForwardRequest(
            **{
                **_request(sender, nonce=index, data=os.urandom(data_length + index)).__dict__,
                "signature": os.urandom(65),
            }
        )
        for index in range(3)
    ]
    tuples = [
        (r.sender, r.target, r.value, r.gas, r.deadline, r.data, r.signature) for r in requests
    ]
    assert forwarder_calldata(requests[:1]) == EXECUTE_SELECTOR + encode(
        [REQUEST_TYPE], [tuples[0]]
    )
    for count in (2, 3):
        assert forwarder_calldata(requests[:count]) == EXECUTE_ALL_SELECTOR + encode(
            [f"{REQUEST_TYPE}[]"], [tuples[:count]]
        )
    assert erc20_transfer_data(RECIPIENT, 5) == bytes.fromhex("a9059cbb") + encode(
        ["address", "uint256"], [RECIPIENT, 5]
    )


@pytest.mark.parametrize(
    ("nonce", "value", "data_length"),
    [(0, 0, 0), (1, 0, 1), (127, 1, 55), (128, 10**18, 56), (2**40, 0, 420), (7, 0, 1200)],
)
def test_a_relayer_transaction_is_signed_like_eth_account(
    nonce: int, value: int, data_length: int
) -> None:
    account = Account.create()
    data = os.urandom(data_length)
    fields = {
        "chain_id": CHAIN_ID,
        "nonce": nonce,
        "max_priority_fee_per_gas": 10**9,
        "max_fee_per_gas": 3 * 10**9 + 7,
        "gas": 130_000,
        "to": FORWARDER,
        "value": value,
        "data": data,
    }
    ours = TransactionSigner(account.key).sign_eip1559(**fields)
    theirs = account.sign_transaction(
        {
            "chainId": CHAIN_ID,
            "nonce": nonce,
            "maxPriorityFeePerGas": fields["max_priority_fee_per_gas"],
            "maxFeePerGas": fields["max_fee_per_gas"],
            "gas": fields["gas"],
            "to": FORWARDER,
            "value": value,
            "data": data,
            "type": 2,
        }
    )
    assert ours.raw_transaction == bytes(theirs.raw_transaction)
    assert ours.hash == bytes(theirs.hash)
