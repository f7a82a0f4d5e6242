"""Reads from the chain. The relayer's balance checks come from the node, never from a database
copy (the API's token balances come from the index), and all of one request's reads go out as
one JSON-RPC batch (one round trip).

The per-request reads (balances, base fee) go through the lean ``JsonRpc`` client with
hand-encoded calls: through web3 (a contract object per token, its middlewares and
formatters) they were over half the CPU of a transfer request (docs/benchmarks.md)."""

from __future__ import annotations

import logging
import time
from typing import Any

from cachetools import LRUCache
from eth_hash.auto import keccak
from web3 import AsyncWeb3
from web3.exceptions import Web3Exception

from chain.address_book import AddressBook
from chain.artifacts import artifact
from chain.profiles import ChainProfile
from chain.rpc import JsonRpc, RpcUnavailable
from chain.tokens import TokenInfo, TokenKind
from core.errors import ChainUnavailable, ConfigurationError
from core.urls import rpc_url_shown

logger = logging.getLogger(__name__)

BALANCE_OF_SELECTOR = keccak(b"balanceOf(address)")[:4]
BASE_FEE_MAX_AGE_SECONDS = 1.0
HEAD_MAX_AGE_SECONDS = 1.0
NATIVE_CACHE_ENTRIES = 100_000


class ChainClient:
    def __init__(self, *, rpc_url: str, profile: ChainProfile, timeout_seconds: float = 10.0):
        self.rpc_url = rpc_url
        self.profile = profile
        self.web3 = AsyncWeb3(
            AsyncWeb3.AsyncHTTPProvider(rpc_url, request_kwargs={"timeout": timeout_seconds})
        )
        self.rpc = JsonRpc(rpc_url, timeout_seconds=timeout_seconds)
        self.addresses: AddressBook | None = None
        self.tokens: list[TokenInfo] = []
        self._erc20_abi = artifact("OVPPToken").abi
        self._base_fee: tuple[float, int] = (float("-inf"), 0)
        self._head: tuple[float, int] = (float("-inf"), 0)
        self._native: LRUCache[tuple[str, str], int] = LRUCache(maxsize=NATIVE_CACHE_ENTRIES)

    async def connect(self, addresses: AddressBook) -> None:
        """Check the node is the configured chain and read the tokens' metadata once."""
        chain_id = await self._call(self.web3.eth.chain_id)
        if chain_id != self.profile.chain_id:
            raise ConfigurationError(
                f"the node at {rpc_url_shown(self.rpc_url)} is chain {chain_id}, "
                f"expected {self.profile.chain_id}"
            )
        self.addresses = addresses
        contracts = [self.erc20(addresses.ovpp_token), self.erc20(addresses.stablecoin)]
        try:
            async with self.web3.batch_requests() as batch:
                for contract in contracts:
                    batch.add(contract.functions.symbol())
                    batch.add(contract.functions.name())
                    batch.add(contract.functions.decimals())
                results = await batch.async_execute()
        except (Web3Exception, OSError, TimeoutError) as error:
            raise ChainUnavailable(f"could not read token metadata: {error}") from error
        ovpp_symbol, ovpp_name, ovpp_decimals, usd_symbol, usd_name, usd_decimals = results
        self.tokens = [
            TokenInfo(TokenKind.OVPP, ovpp_symbol, ovpp_name, ovpp_decimals, addresses.ovpp_token),
            TokenInfo(
                TokenKind.STABLECOIN, usd_symbol, usd_name, usd_decimals, addresses.stablecoin
            ),
            TokenInfo(
                TokenKind.NATIVE, self.profile.native_symbol, self.profile.native_name, 18, None
            ),
        ]

    def erc20(self, address: str) -> Any:
        return self.web3.eth.contract(
            address=AsyncWeb3.to_checksum_address(address), abi=self._erc20_abi
        )

    async def balances(self, owner: str) -> list[tuple[TokenInfo, int]]:
        """Every token's balance of ``owner`` in base units, read in one batch."""
        owner = AsyncWeb3.to_checksum_address(owner)
        balance_of = "0x" + (BALANCE_OF_SELECTOR + bytes(12) + bytes.fromhex(owner[2:])).hex()
        calls: list[tuple[str, list[Any]]] = [
            ("eth_getBalance", [owner, "latest"])
            if token.address is None
            else ("eth_call", [{"to": token.address, "data": balance_of}, "latest"])
            for token in self.tokens
        ]
        results = await self._batch(calls, what="balance read")
        return [(token, int(value, 16)) for token, value in zip(self.tokens, results, strict=True)]

    async def head_block(self) -> int:
        """The node's head block number, read at most once per ``HEAD_MAX_AGE_SECONDS``."""
        read_at, head = self._head
        if time.monotonic() - read_at >= HEAD_MAX_AGE_SECONDS:
            (number,) = await self._batch([("eth_blockNumber", [])], what="head read")
            head = int(number, 16)
            self._head = (time.monotonic(), head)
        return head

    async def native_balance(self, owner: str, *, block_hash: str) -> int:
        """``owner``'s native balance in the block ``block_hash`` (EIP-1898), read from the
        node once per block: a block's state never changes."""
        owner = AsyncWeb3.to_checksum_address(owner)
        cached = self._native.get((owner, block_hash))
        if cached is None:
            (value,) = await self._batch(
                [("eth_getBalance", [owner, {"blockHash": block_hash}])], what="balance read"
            )
            cached = self._native[(owner, block_hash)] = int(value, 16)
        return cached

    async def latest_base_fee(self) -> int:
        """The base fee per gas of the latest block, in wei, read at most once per
        ``BASE_FEE_MAX_AGE_SECONDS`` (about a block: the fee moves by at most 12.5 % a block,
        and quotes charge twice it)."""
        read_at, base_fee = self._base_fee
        if time.monotonic() - read_at >= BASE_FEE_MAX_AGE_SECONDS:
            (block,) = await self._batch(
                [("eth_getBlockByNumber", ["latest", False])], what="block"
            )
            base_fee = int(block["baseFeePerGas"], 16)
            self._base_fee = (time.monotonic(), base_fee)
        return base_fee

    async def _batch(self, calls: list[tuple[str, list[Any]]], *, what: str) -> list[Any]:
        """Results of one JSON-RPC batch; any failure is ``ChainUnavailable``."""
        try:
            results = await self.rpc.batch(calls)
        except RpcUnavailable as error:
            logger.warning("%s failed: %s", what, error)
            raise ChainUnavailable("the chain is not reachable right now; try again") from error
        for result in results:
            if result is None or result == "0x" or not isinstance(result, str | dict):
                logger.warning("%s failed: %r", what, result)
                raise ChainUnavailable("the chain is not reachable right now; try again")
        return results

    async def is_ready(self) -> bool:
        try:
            return await self.web3.eth.chain_id == self.profile.chain_id
        except Exception:  # readiness probe: any failure means not ready
            return False

    async def _call(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except (Web3Exception, OSError, TimeoutError) as error:
            shown = rpc_url_shown(self.rpc_url)
            raise ChainUnavailable(f"the chain node at {shown} is not reachable") from error

    async def close(self) -> None:
        await self.rpc.close()
        await self.web3.provider.disconnect()
