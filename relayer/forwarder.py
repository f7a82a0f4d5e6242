"""ERC-2771 forward requests for OpenZeppelin's ``ERC2771Forwarder``: EIP-712 hashing and
signing by the custodial wallet, and the calldata of ``execute`` / ``executeAll``.

This is the relayer's hot path, so everything is encoded by hand rather than through the
generic encoders: the EIP-712 digest directly (typehash, struct hash, domain separator) instead
of ``eth_account``'s typed-data encoder (~20× slower), the calldata as fixed ABI words instead
of ``eth_abi.encode`` (~10×), and signatures with ``coincurve`` directly instead of
``Account.unsafe_sign_hash`` (~4×). ``tests/chain/test_forwarder_encoding.py`` checks each against
the generic encoder byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass

import coincurve
from eth_abi import encode
from eth_hash.auto import keccak

from chain.abi_words import address_word, uint_word

FORWARD_REQUEST_TYPE = (
    "ForwardRequest(address from,address to,uint256 value,uint256 gas,uint256 nonce,"
    "uint48 deadline,bytes data)"
)
FORWARD_REQUEST_TYPEHASH = keccak(FORWARD_REQUEST_TYPE.encode())
_DOMAIN_TYPEHASH = keccak(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
FORWARDER_NAME = "OVPPForwarder"
_REQUEST_DATA_TYPE = "(address,address,uint256,uint256,uint48,bytes,bytes)"
EXECUTE_SELECTOR = keccak(f"execute({_REQUEST_DATA_TYPE})".encode())[:4]
EXECUTE_ALL_SELECTOR = keccak(f"executeAll({_REQUEST_DATA_TYPE}[])".encode())[:4]
NONCES_SELECTOR = keccak(b"nonces(address)")[:4]
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


def domain_separator(*, chain_id: int, forwarder: str) -> bytes:
    return keccak(
        encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [_DOMAIN_TYPEHASH, keccak(FORWARDER_NAME.encode()), keccak(b"1"), chain_id, forwarder],
        )
    )


@dataclass(frozen=True)
class ForwardRequest:
    sender: str
    target: str
    value: int
    gas: int
    nonce: int
    deadline: int
    data: bytes
    signature: bytes = b""

    def struct_hash(self) -> bytes:
        # Every member is a static 32-byte word (``data`` enters as its keccak).
        return keccak(
            b"".join(
                (
                    FORWARD_REQUEST_TYPEHASH,
                    address_word(self.sender),
                    address_word(self.target),
                    uint_word(self.value),
                    uint_word(self.gas),
                    uint_word(self.nonce),
                    uint_word(self.deadline, bits=48),
                    keccak(self.data),
                )
            )
        )

    def digest(self, separator: bytes) -> bytes:
        return keccak(b"\x19\x01" + separator + self.struct_hash())

    def as_tuple(self) -> tuple[str, str, int, int, int, bytes, bytes]:
        return (
            self.sender,
            self.target,
            self.value,
            self.gas,
            self.deadline,
            self.data,
            self.signature,
        )

    def to_json(self) -> dict[str, object]:
        return {
            "from": self.sender,
            "to": self.target,
            "value": str(self.value),
            "gas": self.gas,
            "nonce": self.nonce,
            "deadline": self.deadline,
            "data": "0x" + self.data.hex(),
            "signature": "0x" + self.signature.hex(),
        }

    @classmethod
    def from_json(cls, item: dict[str, object]) -> ForwardRequest:
        return cls(
            sender=str(item["from"]),
            target=str(item["to"]),
            value=int(str(item["value"])),
            gas=int(str(item["gas"])),
            nonce=int(str(item["nonce"])),
            deadline=int(str(item["deadline"])),
            data=bytes.fromhex(str(item["data"])[2:]),
            signature=bytes.fromhex(str(item["signature"])[2:]),
        )


def sign_request(
    request: ForwardRequest, *, private_key: bytes, separator: bytes
) -> ForwardRequest:
    signature = coincurve.PrivateKey(private_key).sign_recoverable(
        request.digest(separator), hasher=None
    )  # r ‖ s ‖ recovery id, s already low (libsecp256k1 normalises)
    return ForwardRequest(
        **{**request.__dict__, "signature": signature[:64] + bytes([signature[64] + 27])}
    )


def nonces_call(forwarder: str, address: str) -> tuple[str, list[object]]:
    """The ``eth_call`` reading the forwarder's next nonce for ``address`` (latest block)."""
    data = NONCES_SELECTOR + address_word(address)
    return "eth_call", [{"to": forwarder, "data": "0x" + data.hex()}, "latest"]


def word_answer(answer: object) -> int | None:
    """An ``eth_call`` answer as a uint256; ``None`` for an error or anything but one ABI word
    (an address without code answers ``0x``)."""
    if isinstance(answer, str) and len(answer) == 66:
        return int(answer, 16)
    return None


def forwarder_calldata(requests: list[ForwardRequest]) -> bytes:
    """``execute`` for one request; ``OVPPForwarder.executeAll`` for several: all calls or none
    (OpenZeppelin's ``executeBatch`` skips a call that reverts, so it cannot bundle a fee).

    ABI layout: ``execute(tuple)`` is the selector, the offset of the (dynamic) tuple, then the
    tuple; ``executeAll(tuple[])`` is the selector, the array's offset, then the array: its
    length, each element's offset from the end of the length word, and the elements."""
    if not requests:
        raise ValueError("no forward request to execute")
    if len(requests) == 1:
        return EXECUTE_SELECTOR + uint_word(32) + _request_tuple(requests[0])
    return EXECUTE_ALL_SELECTOR + uint_word(32) + _request_array(requests)


def _request_array(requests: list[ForwardRequest]) -> bytes:
    """ABI ``tuple[]``: the length, each element's offset from the end of the length word,
    then the elements."""
    tuples = [_request_tuple(request) for request in requests]
    offsets, position = [], 32 * len(tuples)
    for encoded in tuples:
        offsets.append(uint_word(position))
        position += len(encoded)
    return b"".join((uint_word(len(tuples)), *offsets, *tuples))


def _request_tuple(request: ForwardRequest) -> bytes:
    """``(address from, address to, uint256 value, uint256 gas, uint48 deadline, bytes data,
    bytes signature)``: five static words, two offsets, then both byte strings."""
    data, signature = _dynamic_bytes(request.data), _dynamic_bytes(request.signature)
    return b"".join(
        (
            address_word(request.sender),
            address_word(request.target),
            uint_word(request.value),
            uint_word(request.gas),
            uint_word(request.deadline, bits=48),
            uint_word(7 * 32),
            uint_word(7 * 32 + len(data)),
            data,
            signature,
        )
    )


def _dynamic_bytes(value: bytes) -> bytes:
    """ABI ``bytes``: the length word, then the bytes right-padded to a whole word."""
    return uint_word(len(value)) + value + b"\x00" * (-len(value) % 32)
