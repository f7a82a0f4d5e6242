"""An indexer test's own chain (an anvil of its own, which it may reorganise), its own database
and services, custodial wallets, token moves on chain, and what the index should hold."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_hash.auto import keccak
from sqlalchemy import select
from web3 import Web3

from api.container import Services
from chain.abi_words import address_word, uint_word
from chain.artifacts import artifact
from chain.deploy import Deployer
from chain.logs import TRANSFER_TOPIC, parse_transfer_log
from chain.rpc import JsonRpc
from core.settings import Settings, load_settings
from devsupport.anvil import LocalChain
from identity.models import Tenant
from identity.service import DEV_TENANT_SLUG, system_account
from indexer.follow import CommittedRange, Indexer
from indexer.models import IndexerCursor, TokenTransfer, WalletBalance
from tests.support.relayer_process import RelayerProcesses, environment_without_ovpp

# Anvil's fourth to seventh development accounts: outside holders who send to the wallets.
OUTSIDERS = (
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
)
TOKEN_ABI = artifact("OVPPToken").abi
MINT_SELECTOR = keccak(b"mint(address,uint256)")[:4]
CAUGHT_UP_TIMEOUT_SECONDS = 60.0


@dataclass
class IndexerStack:
    """An anvil, a database and the services of one indexer test."""

    chain: LocalChain
    deployer: Deployer
    settings: Settings
    services: Services
    tmp_path: Path

    @property
    def web3(self) -> Web3:
        return self.deployer.web3

    @property
    def ovpp(self) -> str:
        assert self.services.chain.addresses is not None
        return self.services.chain.addresses.ovpp_token

    @property
    def chain_id(self) -> int:
        return self.services.chain.profile.chain_id

    def rpc(self, method: str, *params: Any) -> Any:
        response = self.web3.provider.make_request(method, list(params))  # type: ignore[arg-type]
        assert "error" not in response, response
        return response["result"]

    def indexer(
        self,
        name: str = "test-indexer",
        *,
        on_commit: Callable[[CommittedRange], None] | None = None,
        **settings: Any,
    ) -> Indexer:
        """An indexer on this stack, with ``settings`` overriding the stack's (read anew: a copy
        would keep the values the stack's settings already resolved, such as the RPC URL)."""
        overridden = load_settings(**{**self.settings.model_dump(), **settings})
        services = dataclasses.replace(self.services, settings=overridden)
        return Indexer(services, name=name, on_commit=on_commit)

    async def new_wallet(self, name: str) -> str:
        """A custodial wallet (a system wallet of the development utility): its address."""
        async with self.services.db.session() as session:
            tenant_id = (
                await session.execute(select(Tenant.id).where(Tenant.slug == DEV_TENANT_SLUG))
            ).scalar_one()
        account = await system_account(
            self.services.db, tenant_id=tenant_id, name=name, keyring=self.services.keyring
        )
        return account.wallet.address

    def mint(self, to: str, amount: int) -> str:
        """Mints OVPP to ``to`` (a Transfer from the zero address); returns the tx hash."""
        self.deployer.mint(token=self.ovpp, to=to, amount=amount)
        return "0x" + self.web3.eth.get_block("latest")["transactions"][-1].hex()

    async def mint_many(self, recipients: list[str], amount: int, *, per_block: int = 3) -> None:
        """Mints ``amount`` OVPP to each recipient, about ``per_block`` transactions a block,
        sent in JSON-RPC batches from the deployer (an unlocked anvil account), each batch mined
        before the next is sent."""
        rpc = JsonRpc(self.chain.rpc_url)
        sender = self.deployer.account.address
        try:
            nonce = int(await rpc.call("eth_getTransactionCount", sender, "pending"), 16)
            for start in range(0, len(recipients), per_block):
                calls = [
                    (
                        "eth_sendTransaction",
                        [self._mint_call(sender, nonce + start + offset, to, amount)],
                    )
                    for offset, to in enumerate(recipients[start : start + per_block])
                ]
                hashes = await rpc.batch(calls)
                assert all(isinstance(tx_hash, str) for tx_hash in hashes), hashes
                while True:  # the last one mined, all are (one sender, nonces in order)
                    if await rpc.call("eth_getTransactionReceipt", hashes[-1]) is not None:
                        break
                    await asyncio.sleep(0.005)
        finally:
            await rpc.close()

    def _mint_call(self, sender: str, nonce: int, to: str, amount: int) -> dict[str, str]:
        data = MINT_SELECTOR + address_word(to) + uint_word(amount)
        return {
            "from": sender,
            "nonce": hex(nonce),
            "to": self.ovpp,
            "data": "0x" + data.hex(),
            "gas": hex(100_000),
        }

    def signed_transfer(self, sender_key: str, to: str, amount: int) -> str:
        """A raw, signed OVPP transfer from ``sender_key``'s account (not sent): ``0x…``."""
        sender = Account.from_key(sender_key)
        token = self.web3.eth.contract(address=Web3.to_checksum_address(self.ovpp), abi=TOKEN_ABI)
        transaction = token.functions.transfer(Web3.to_checksum_address(to), amount)
        built = transaction.build_transaction(
            {
                "from": sender.address,
                "nonce": self.web3.eth.get_transaction_count(sender.address, "pending"),
                "gas": 100_000,
                "maxFeePerGas": 100 * 10**9,
                "maxPriorityFeePerGas": 10**9,
                "chainId": self.chain_id,
            }
        )
        return "0x" + sender.sign_transaction(built).raw_transaction.hex()

    def send_raw(self, raw: str) -> str:
        return str(self.rpc("eth_sendRawTransaction", raw))

    def send_from(self, address: str, to: str, amount: int) -> None:
        """``address`` (a custodial wallet, impersonated on anvil) sends OVPP to ``to``."""
        self.rpc("anvil_impersonateAccount", address)
        self.rpc("anvil_setBalance", address, hex(10**18))
        token = self.web3.eth.contract(address=Web3.to_checksum_address(self.ovpp), abi=TOKEN_ABI)
        tx_hash = token.functions.transfer(Web3.to_checksum_address(to), amount).transact(
            {"from": Web3.to_checksum_address(address)}
        )
        assert self.web3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 1

    def head(self) -> int:
        return int(self.web3.eth.block_number)

    def balance_of(self, address: str) -> int:
        token = self.web3.eth.contract(address=Web3.to_checksum_address(self.ovpp), abi=TOKEN_ABI)
        return int(token.functions.balanceOf(Web3.to_checksum_address(address)).call())

    def transfers_touching(self, addresses: set[str]) -> set[tuple[str, int]]:
        """(tx hash, log index) of every OVPP/stablecoin Transfer on the node's chain now that
        touches one of ``addresses``: what the index must hold, read without the indexer."""
        assert self.services.chain.addresses is not None
        logs = self.rpc(
            "eth_getLogs",
            {
                "fromBlock": "0x0",
                "toBlock": "latest",
                "address": [self.ovpp, self.services.chain.addresses.stablecoin],
                "topics": [TRANSFER_TOPIC],
            },
        )
        found = set()
        for log in logs:
            transfer = parse_transfer_log(log)
            if transfer and {transfer.from_address, transfer.to_address} & addresses:
                found.add((transfer.tx_hash, transfer.log_index))
        return found

    async def indexed(self) -> list[TokenTransfer]:
        async with self.services.db.session() as session:
            rows = await session.execute(select(TokenTransfer).order_by(TokenTransfer.id))
            return list(rows.scalars())

    async def cursor(self) -> IndexerCursor | None:
        async with self.services.db.session() as session:
            return await session.get(IndexerCursor, self.chain_id)

    async def indexed_balance(self, address: str) -> int:
        """``address``'s OVPP as the index keeps it (``wallet_balances``), checked to be the sum
        of its indexed transfers."""
        rows = [row for row in await self.indexed() if row.token_address == self.ovpp]
        incoming = sum(row.value for row in rows if row.to_address == address)
        summed = incoming - sum(row.value for row in rows if row.from_address == address)
        async with self.services.db.session() as session:
            kept = await session.get(WalletBalance, (self.chain_id, address, self.ovpp))
        assert (kept.balance if kept is not None else 0) == summed, (kept, summed)
        return summed

    async def catch_up(self, indexer: Indexer) -> None:
        """Runs the indexer's rounds until its cursor is the node's head."""
        deadline = time.monotonic() + CAUGHT_UP_TIMEOUT_SECONDS
        while True:
            busy = await indexer.tick()
            cursor = await self.cursor()
            if not busy and cursor is not None and cursor.last_block == self.head():
                return
            assert time.monotonic() < deadline, f"cursor at {cursor}, head {self.head()}"
            if not busy:
                await asyncio.sleep(0.01)

    def processes(self, **settings: str) -> RelayerProcesses:
        """``ovpp-wallet indexer`` processes on this stack's database and chain."""
        own = self.settings
        assert own.kek is not None and own.address_book is not None
        env = environment_without_ovpp(
            OVPP_ENVIRONMENT="development",
            OVPP_DATA_DIR=str(own.data_dir),
            OVPP_DATABASE_URL=own.resolved_database_url,
            OVPP_RPC_URL=own.resolved_rpc_url,
            OVPP_ADDRESS_BOOK=str(own.address_book),
            OVPP_KEK=own.kek.get_secret_value(),
            OVPP_TREASURY_ADDRESS=own.treasury_address or "",
            OVPP_TENANTS=json.dumps([tenant.model_dump() for tenant in own.tenants]),
            OVPP_LOG_LEVEL="INFO",
            **settings,
        )
        return RelayerProcesses(
            env=env,
            logs_dir=self.tmp_path,
            command="indexer",
            started_line="indexer running",
        )
