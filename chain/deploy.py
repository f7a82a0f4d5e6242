"""Deploys the project's contracts to a chain and writes its address book.

Used by ``ovpp-wallet deploy`` and by ``serve`` on the local chain. Synchronous on purpose: it
runs before the server starts, one transaction after another in nonce order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from chain.address_book import AddressBook
from chain.artifacts import artifact

logger = logging.getLogger(__name__)

RECEIPT_TIMEOUT_SECONDS = 60


class DeployError(Exception):
    pass


class Deployer:
    def __init__(self, *, rpc_url: str, private_key: str, progress: Callable[[str], None] = print):
        self.web3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
        self.account: LocalAccount = Account.from_key(private_key)
        self.progress = progress
        self._nonce: int | None = None

    def deploy_all(self) -> AddressBook:
        chain_id = self.web3.eth.chain_id
        self.progress(f"deploying from {self.account.address} to chain {chain_id}")
        forwarder = self.deploy("OVPPForwarder", self.account.address)
        # The deploying account is the operator that submits the integration service's
        # requests itself (onboarding utilities, publishing programs: relayer/direct.py).
        self.authorize_relayer(forwarder, self.account.address)
        ovpp = self.deploy("OVPPToken", forwarder, self.account.address)
        stablecoin = self.deploy("USDStablecoin", forwarder, self.account.address)
        registry = self.deploy("OVPPRegistry", forwarder, ovpp, self.account.address)
        distributor = self.deploy("RewardsDistributor", forwarder, ovpp)
        return AddressBook(
            chain_id=chain_id,
            forwarder=forwarder,
            ovpp_token=ovpp,
            stablecoin=stablecoin,
            registry=registry,
            rewards_distributor=distributor,
            deployed_at_block=self.web3.eth.block_number,
        )

    def deploy(self, name: str, *constructor_args: Any) -> str:
        build = artifact(name)
        contract = self.web3.eth.contract(abi=build.abi, bytecode=build.bytecode)
        transaction = contract.constructor(*constructor_args).build_transaction(self._base_tx())
        receipt = self._send(transaction)
        address = receipt["contractAddress"]
        self.progress(f"  {name} at {address} (gas {receipt['gasUsed']})")
        return str(address)

    def mint(self, *, token: str, to: str, amount: int) -> None:
        contract = self.web3.eth.contract(
            address=Web3.to_checksum_address(token), abi=artifact("OVPPToken").abi
        )
        self._send(
            contract.functions.mint(Web3.to_checksum_address(to), amount).build_transaction(
                self._base_tx()
            )
        )

    def balance_of(self, *, token: str, owner: str) -> int:
        contract = self.web3.eth.contract(
            address=Web3.to_checksum_address(token), abi=artifact("OVPPToken").abi
        )
        return int(contract.functions.balanceOf(Web3.to_checksum_address(owner)).call())

    def has_code(self, address: str) -> bool:
        return len(self.web3.eth.get_code(Web3.to_checksum_address(address))) > 0

    def book_is_live(self, book: AddressBook) -> bool:
        """The chain still holds every contract of the book (a reset local chain does not)."""
        addresses = (book.forwarder, book.ovpp_token, book.stablecoin, book.registry)
        optional = (book.rewards_distributor,)  # a book written before it existed lacks it
        return (
            self.web3.eth.chain_id == book.chain_id
            and all(address is not None and self.has_code(address) for address in addresses)
            and all(address is None or self.has_code(address) for address in optional)
            and self.forwarder_authorizes_relayers(book.forwarder)
        )

    def authorize_relayer(self, forwarder: str, account: str) -> None:
        contract = self.web3.eth.contract(
            address=Web3.to_checksum_address(forwarder), abi=artifact("OVPPForwarder").abi
        )
        self._send(
            contract.functions.setRelayer(
                Web3.to_checksum_address(account), True
            ).build_transaction(self._base_tx())
        )
        self.progress(f"  {account} may submit forward requests")

    def forwarder_authorizes_relayers(self, forwarder: str) -> bool:
        """The forwarder is the current one, which only accepts authorized relayers (an
        older local chain may hold one that accepts anybody: that one is replaced)."""
        contract = self.web3.eth.contract(
            address=Web3.to_checksum_address(forwarder), abi=artifact("OVPPForwarder").abi
        )
        try:
            contract.functions.isRelayer(self.account.address).call()
        except Exception:  # no such function: the contract predates relayer authorization
            return False
        return True

    def _base_tx(self) -> dict[str, Any]:
        # Re-read every time: other processes (the relayer's local funding) use this account too.
        self._nonce = self.web3.eth.get_transaction_count(self.account.address, "pending")
        base_fee = self.web3.eth.get_block("latest")["baseFeePerGas"]
        priority = self.web3.to_wei(1, "gwei")
        return {
            "from": self.account.address,
            "nonce": self._nonce,
            "maxPriorityFeePerGas": priority,
            "maxFeePerGas": base_fee * 2 + priority,
            "chainId": self.web3.eth.chain_id,
        }

    def _send(self, transaction: dict[str, Any]) -> Any:
        signed = self.account.sign_transaction(transaction)
        tx_hash = self.web3.eth.send_raw_transaction(signed.raw_transaction)
        self._nonce = transaction["nonce"] + 1
        receipt = self.web3.eth.wait_for_transaction_receipt(
            tx_hash, timeout=RECEIPT_TIMEOUT_SECONDS
        )
        if receipt["status"] != 1:
            raise DeployError(f"transaction {tx_hash.hex()} reverted")
        return receipt
