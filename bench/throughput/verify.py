"""What a user and an auditor would check after a run, on the chain and in the database: every
job CONFIRMED exactly once with a successful receipt, each relayer key's nonces contiguous,
each wallet's forwarder nonce equal to its transfers, and every balance adding up."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import select

from api.container import Services
from bench.harness import balance_of_call, forwarder_nonce_call, read_uint_calls, say
from bench.throughput.load import TRANSFER_AMOUNT_RAW, WALLET_FUNDS, Outcome, Wallet
from chain.address_book import AddressBook
from chain.rpc import JsonRpc
from relayer.models import RelayerKey, RelayStatus, RelayTransaction


async def verify(
    services: Services, rpc: JsonRpc, outcome: Outcome, wallets: list[Wallet]
) -> list[str]:
    """What a user and an auditor would check; an empty list means all holds."""
    addresses = services.chain.addresses
    assert addresses is not None
    async with services.db.session() as session:
        jobs = (
            await session.execute(
                select(
                    RelayTransaction.id,
                    RelayTransaction.status,
                    RelayTransaction.relayer_key_id,
                    RelayTransaction.relayer_nonce,
                    RelayTransaction.tx_hash,
                    RelayTransaction.wallet_id,
                    RelayTransaction.forwarder_nonce,
                    RelayTransaction.attempts,
                )
            )
        ).all()
        keys = list((await session.execute(select(RelayerKey))).scalars())
    problems = _jobs_problems(jobs, outcome)
    problems += await _receipt_problems(rpc, [job.tx_hash for job in jobs if job.tx_hash])
    problems += await _relayer_nonce_problems(rpc, jobs, keys)
    problems += await _wallet_problems(rpc, addresses, outcome, wallets)
    return problems


def _jobs_problems(jobs: list[Any], outcome: Outcome) -> list[str]:
    """Every accepted transfer is exactly one job, CONFIRMED, with its own transaction."""
    problems: list[str] = []
    job_ids = {job.id for job in jobs}
    if job_ids != set(outcome.accepted):
        problems.append(
            f"jobs in the database ({len(job_ids)}) differ from transfers accepted "
            f"({len(outcome.accepted)})"
        )
    not_confirmed = [job for job in jobs if job.status != RelayStatus.CONFIRMED]
    if not_confirmed:
        statuses = Counter(job.status for job in not_confirmed)
        problems.append(f"{len(not_confirmed)} job(s) not CONFIRMED: {dict(statuses)}")
    hashes = [job.tx_hash for job in jobs if job.tx_hash]
    if len(set(hashes)) != len(jobs):
        problems.append("transaction hashes are missing or shared between jobs")
    bumped = sum(1 for job in jobs if job.attempts > 1)
    if bumped:
        say(f"note: {bumped} job(s) needed a fee bump")
    return problems


async def _receipt_problems(rpc: JsonRpc, hashes: list[str]) -> list[str]:
    """Every job's final transaction landed and succeeded."""
    problems: list[str] = []
    for start in range(0, len(hashes), 500):
        part = hashes[start : start + 500]
        receipts = await rpc.batch([("eth_getTransactionReceipt", [h]) for h in part])
        for tx_hash, receipt in zip(part, receipts, strict=True):
            if not isinstance(receipt, dict) or int(receipt["status"], 16) != 1:
                problems.append(f"transaction {tx_hash} has no successful receipt")
    return problems


async def _relayer_nonce_problems(
    rpc: JsonRpc, jobs: list[Any], keys: list[RelayerKey]
) -> list[str]:
    """Relayer nonces: contiguous 0..n-1 per key in the database, and n on chain."""
    problems: list[str] = []
    by_key: dict[str, list[int]] = defaultdict(list)
    for job in jobs:
        if job.relayer_nonce is not None:
            by_key[job.relayer_key_id].append(job.relayer_nonce)
    chain_nonces = await rpc.batch(
        [("eth_getTransactionCount", [key.address, "latest"]) for key in keys]
    )
    for key, chain_nonce in zip(keys, chain_nonces, strict=True):
        nonces = sorted(by_key.get(key.id, []))
        if nonces != list(range(len(nonces))):
            problems.append(f"relayer key {key.slot}: database nonces have gaps or repeats")
        if key.next_nonce != len(nonces):
            problems.append(
                f"relayer key {key.slot}: next_nonce {key.next_nonce} != {len(nonces)} jobs"
            )
        if int(chain_nonce, 16) != len(nonces):
            problems.append(
                f"relayer key {key.slot}: nonce on chain {int(chain_nonce, 16)} != "
                f"{len(nonces)} transactions"
            )
        say(f"relayer key {key.slot} {key.address}: {len(nonces)} transactions")
    return problems


async def _wallet_problems(
    rpc: JsonRpc, addresses: AddressBook, outcome: Outcome, wallets: list[Wallet]
) -> list[str]:
    """Each transfer executed exactly once on chain (forwarder nonces per wallet); recipients
    got exactly what was sent, senders lost exactly that."""
    problems: list[str] = []
    per_sender = Counter(sender for sender, _to in outcome.recipients_of.values())
    forwarder_nonces = await read_uint_calls(
        rpc, [forwarder_nonce_call(addresses.forwarder, wallet.address) for wallet in wallets]
    )
    wrong = [
        wallet.address
        for wallet, nonce in zip(wallets, forwarder_nonces, strict=True)
        if nonce != per_sender.get(wallet.address, 0)
    ]
    if wrong:
        problems.append(f"{len(wrong)} wallet(s) whose forwarder nonce != transfers accepted")

    per_recipient = Counter(to for _sender, to in outcome.recipients_of.values())
    recipients = sorted(per_recipient)
    received = await read_uint_calls(
        rpc, [balance_of_call(addresses.ovpp_token, to) for to in recipients]
    )
    for to, balance in zip(recipients, received, strict=True):
        if balance != per_recipient[to] * TRANSFER_AMOUNT_RAW:
            problems.append(f"recipient {to} holds {balance}, expected more or less")
    left = await read_uint_calls(
        rpc, [balance_of_call(addresses.ovpp_token, w.address) for w in wallets]
    )
    for wallet, balance in zip(wallets, left, strict=True):
        if balance != WALLET_FUNDS - per_sender.get(wallet.address, 0) * TRANSFER_AMOUNT_RAW:
            problems.append(f"sender {wallet.address} balance {balance} does not add up")
    return problems
