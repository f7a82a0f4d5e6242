"""The real parts a benchmark runs against, each started fresh and thrown away afterwards:
an anvil node at the ``shanghai`` hardfork on a free port, the committed contracts deployed on
it, and a migrated database (a throwaway PostgreSQL database, or a SQLite file)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_abi import encode
from eth_account import Account
from eth_hash.auto import keccak

from chain.address_book import AddressBook
from chain.deploy import Deployer
from chain.profiles import ANVIL_DEV_PRIVATE_KEY
from chain.rpc import JsonRpc, RpcError
from devsupport.anvil import LocalChain

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE_PREFIX = "ovpp_bench"
MINT_SELECTOR = keccak(b"mint(address,uint256)")[:4]
SET_RELAYER_SELECTOR = keccak(b"setRelayer(address,bool)")[:4]
BALANCE_OF_SELECTOR = keccak(b"balanceOf(address)")[:4]
NONCES_SELECTOR = keccak(b"nonces(address)")[:4]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass
class LocalStack:
    chain: LocalChain
    contracts: AddressBook
    address_book_path: Path
    workdir: Path


@contextlib.contextmanager
def local_chain(*, block_time: float | None = None) -> Iterator[LocalStack]:
    """A fresh anvil (automine unless ``block_time``) with the contracts deployed."""
    with tempfile.TemporaryDirectory(prefix="ovpp-bench-") as directory:
        workdir = Path(directory)
        chain = LocalChain(port=free_port(), log_file=workdir / "anvil.log", block_time=block_time)
        chain.start()
        try:
            deployer = Deployer(
                rpc_url=chain.rpc_url, private_key=ANVIL_DEV_PRIVATE_KEY, progress=lambda _m: None
            )
            contracts = deployer.deploy_all()
            book_path = workdir / "addresses.json"
            contracts.save(book_path)
            yield LocalStack(
                chain=chain, contracts=contracts, address_book_path=book_path, workdir=workdir
            )
        finally:
            chain.stop()


async def gas_price(rpc: JsonRpc) -> tuple[int, int]:
    block = await rpc.call("eth_getBlockByNumber", "latest", False)
    tip = 10**9
    return int(block["baseFeePerGas"], 16) * 2 + tip, tip


async def send_in_nonce_order(
    rpc: JsonRpc,
    *,
    private_key: str,
    calls: list[tuple[str, bytes]],
    chain_id: int,
    gas: int = 200_000,
    chunk: int = 100,
) -> list[dict[str, Any]]:
    """Sign ``(to, data)`` calls from one key with consecutive nonces, send them in nonce order
    (JSON-RPC batches), and return their receipts (each must succeed)."""
    sender = Account.from_key(private_key)
    nonce = int(await rpc.call("eth_getTransactionCount", sender.address, "pending"), 16)
    max_fee, tip = await gas_price(rpc)
    raws: list[str] = []
    hashes: list[str] = []
    for offset, (to, data) in enumerate(calls):
        signed = sender.sign_transaction(
            {
                "to": to,
                "data": data,
                "value": 0,
                "gas": gas,
                "maxFeePerGas": max_fee,
                "maxPriorityFeePerGas": tip,
                "nonce": nonce + offset,
                "chainId": chain_id,
                "type": 2,
            }
        )
        raws.append("0x" + bytes(signed.raw_transaction).hex())
        hashes.append("0x" + bytes(signed.hash).hex())
    for start in range(0, len(raws), chunk):
        results = await rpc.batch(
            [("eth_sendRawTransaction", [raw]) for raw in raws[start : start + chunk]]
        )
        failed = [result for result in results if isinstance(result, RpcError)]
        if failed:
            raise RuntimeError(f"sending failed: {failed[0].message}")
    receipts = await wait_for_receipts(rpc, hashes)
    reverted = [receipt for receipt in receipts if int(receipt["status"], 16) != 1]
    if reverted:
        raise RuntimeError(f"{len(reverted)} transaction(s) reverted")
    return receipts


async def wait_for_receipts(
    rpc: JsonRpc, hashes: list[str], *, within_seconds: float = 60.0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within_seconds
    found: dict[str, dict[str, Any]] = {}
    while True:
        missing = [tx_hash for tx_hash in hashes if tx_hash not in found]
        for start in range(0, len(missing), 500):
            part = missing[start : start + 500]
            results = await rpc.batch([("eth_getTransactionReceipt", [h]) for h in part])
            for tx_hash, receipt in zip(part, results, strict=True):
                if isinstance(receipt, dict):
                    found[tx_hash] = receipt
        if len(found) == len(hashes):
            return [found[tx_hash] for tx_hash in hashes]
        if time.monotonic() > deadline:
            missing_count = len(hashes) - len(found)
            raise TimeoutError(f"{missing_count} receipt(s) missing after {within_seconds} s")
        await asyncio.sleep(0.1)


def mint_call(token: str, to: str, amount: int) -> tuple[str, bytes]:
    return token, MINT_SELECTOR + encode(["address", "uint256"], [to, amount])


def set_relayer_call(forwarder: str, relayer: str) -> tuple[str, bytes]:
    """The forwarder's owner lets ``relayer`` submit forward requests."""
    return forwarder, SET_RELAYER_SELECTOR + encode(["address", "bool"], [relayer, True])


async def read_uint_calls(rpc: JsonRpc, calls: list[tuple[str, bytes]]) -> list[int]:
    """``eth_call`` each ``(contract, calldata)`` returning one uint256, in batches."""
    values: list[int] = []
    for start in range(0, len(calls), 500):
        part = calls[start : start + 500]
        results = await rpc.batch(
            [("eth_call", [{"to": to, "data": "0x" + data.hex()}, "latest"]) for to, data in part]
        )
        for result in results:
            if isinstance(result, RpcError):
                raise RuntimeError(f"eth_call failed: {result.message}")
            values.append(int(result, 16))
    return values


def balance_of_call(token: str, owner: str) -> tuple[str, bytes]:
    return token, BALANCE_OF_SELECTOR + encode(["address"], [owner])


def forwarder_nonce_call(forwarder: str, owner: str) -> tuple[str, bytes]:
    return forwarder, NONCES_SELECTOR + encode(["address"], [owner])


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def with_descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (the npm ``anvil`` is a wrapper around the binary)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
            except (OSError, ValueError):
                continue
    family, frontier = [pid], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        family += children
        frontier = children
    return family


def postgres_backends_of(database: str) -> list[int]:
    """Pids of the PostgreSQL server processes serving ``database`` (same machine)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if command.startswith(b"postgres:") and f" {database} ".encode() in command:
            pids.append(int(entry.name))
    return pids


class CpuMeter:
    """CPU seconds used by a set of processes between ``start()`` and ``stop()``."""

    def __init__(self) -> None:
        self._start: dict[int, float] = {}
        self.used: dict[str, float] = {}

    def start(self, pids: dict[int, str]) -> None:
        self._start = {pid: process_cpu_seconds(pid) for pid in pids}
        self._names = dict(pids)

    def stop(self, pids: dict[int, str]) -> dict[str, float]:
        self._names.update(pids)
        used: dict[str, float] = {}
        for pid, name in self._names.items():
            delta = process_cpu_seconds(pid) - self._start.get(pid, 0.0)
            used[name] = used.get(name, 0.0) + max(delta, 0.0)
        self.used = used
        return used


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]
