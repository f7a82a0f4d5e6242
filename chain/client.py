"""Reads from the chain. Balances always come from the node, never from a database copy, and
all of one request's reads go out as one JSON-RPC batch (one round trip)."""

from __future__ import annotations

import logging
from typing import Any

from web3 import AsyncWeb3
from web3.exceptions import Web3Exception

from chain.address_book import AddressBook
from chain.artifacts import artifact
from chain.profiles import ChainProfile
from chain.tokens import TokenInfo, TokenKind
from core.errors import ChainUnavailable, ConfigurationError

logger = logging.getLogger(__name__)


class ChainClient:
    def __init__(self, *, rpc_url: str, profile: ChainProfile, timeout_seconds: float = 10.0):
        self.rpc_url = rpc_url
        self.profile = profile
        self.web3 = AsyncWeb3(
            AsyncWeb3.AsyncHTTPProvider(rpc_url, request_kwargs={"timeout": timeout_seconds})
        )
        self.addresses: AddressBook | None = None
        self.tokens: list[TokenInfo] = []
        self._erc20_abi = artifact("OVPPToken").abi

    async def connect(self, addresses: AddressBook) -> None:
        """Check the node is the configured chain and read the tokens' metadata once."""
        chain_id = await self._call(self.web3.eth.chain_id)
        if chain_id != self.profile.chain_id:
            raise ConfigurationError(
                f"the node at {self.rpc_url} is chain {chain_id}, expected {self.profile.chain_id}"
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
        try:
            async with self.web3.batch_requests() as batch:
                for token in self.tokens:
                    if token.address is None:
                        batch.add(self.web3.eth.get_balance(owner))
                    else:
                        batch.add(self.erc20(token.address).functions.balanceOf(owner))
                results = await batch.async_execute()
        except (Web3Exception, OSError, TimeoutError) as error:
            logger.warning("balance read failed: %s", error)
            raise ChainUnavailable("the chain is not reachable right now; try again") from error
        return [(token, int(value)) for token, value in zip(self.tokens, results, strict=True)]

    async def is_ready(self) -> bool:
        try:
            return await self.web3.eth.chain_id == self.profile.chain_id
        except Exception:  # readiness probe: any failure means not ready
            return False

    async def _call(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except (Web3Exception, OSError, TimeoutError) as error:
            raise ChainUnavailable(f"the chain node at {self.rpc_url} is not reachable") from error

    async def close(self) -> None:
        await self.web3.provider.disconnect()
