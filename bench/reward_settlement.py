"""Settling one event for many devices (issue 20): the contribution computation for N devices
with one reading a minute, the Merkle tree and its proofs, then the settlement on a fresh
anvil: one publish (approve + publish) and ``claimMany`` batches, with gas per recipient,
transactions and wall time.

    .venv/bin/python -m bench.reward_settlement --devices 10000 --batch 100

The chain part sends from an unlocked anvil account (no forwarder: the relayed path adds the
forwarder's ~30k gas per transaction, not per recipient). Every recipient is a fresh address
(the dearest case: a new balance slot per transfer) and every device a new reputation slot.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from datetime import UTC, datetime, timedelta

from eth_account import Account
from eth_hash.auto import keccak
from web3 import Web3

from bench.harness import local_chain, say
from chain.artifacts import artifact
from chain.deploy import Deployer
from chain.profiles import ANVIL_DEV_PRIVATE_KEY
from programs.rewards.contribution import (
    Dispatch,
    Rule,
    Sample,
    baseline_of,
    event_reward,
    measure,
)
from programs.rewards.distributor import event_id_of
from programs.rewards.merkle import RewardLeaf, build_tree, leaf_hash

OVPP = 10**18
START = datetime(2026, 7, 15, 17, 0, tzinfo=UTC)
END = START + timedelta(hours=1)


def contributions(devices: int) -> list[tuple[int, int, int]]:
    """(delivered Wh, performance bps, reward) per device, timed."""
    rule = Rule("METER_BEFORE_AFTER", timedelta(minutes=60), 4, 5, 2_000, 3 * OVPP)
    dispatch = Dispatch(START, END, 3.5, 60, 5.0, 13_500)
    rng = random.Random(20)
    series = []
    for _ in range(devices):
        base, during = rng.uniform(0.2, 1.5), rng.uniform(-4.0, 1.0)
        series.append(
            [Sample(START - timedelta(minutes=60 - m), base) for m in range(60)]
            + [Sample(START + timedelta(minutes=m), during) for m in range(60)]
        )
    started = time.process_time()
    results = []
    for samples in series:
        contribution = measure(samples, dispatch, baseline_of(samples, dispatch, rule), "OPT_IN")
        reward = event_reward(contribution, rule, response="OPT_IN")
        results.append((contribution.delivered_wh, contribution.performance_bps, reward))
    cpu = time.process_time() - started
    say(
        f"contributions: {devices} devices x 120 readings (one a minute) in {cpu:.2f} s CPU "
        f"({cpu / devices * 1e6:.0f} us a device)"
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100, help="leaves per claimMany")
    args = parser.parse_args()
    say(f"load average {os.getloadavg()}")
    figures = contributions(args.devices)

    with local_chain() as stack:
        deployer = Deployer(
            rpc_url=stack.chain.rpc_url, private_key=ANVIL_DEV_PRIVATE_KEY, progress=lambda _m: None
        )
        w3 = deployer.web3
        sponsor = w3.eth.accounts[1]
        distributor = w3.eth.contract(
            address=stack.contracts.rewards_distributor, abi=artifact("RewardsDistributor").abi
        )
        token = w3.eth.contract(address=stack.contracts.ovpp_token, abi=artifact("OVPPToken").abi)
        ref = keccak(b"bench-event")
        event_id = event_id_of(sponsor, ref)
        started = time.process_time()
        leaves = [
            RewardLeaf(i, keccak(f"device-{i}".encode()), Account.create().address, reward, wh,
                       event_id, bps)
            for i, (wh, bps, reward) in enumerate(figures)
        ]  # fmt: skip
        tree = build_tree([leaf_hash(leaf) for leaf in leaves])
        proofs = [tree.proof(leaf_hash(leaf)) for leaf in leaves]
        say(f"tree and {len(proofs)} proofs: {time.process_time() - started:.2f} s CPU")
        total = sum(leaf.amount for leaf in leaves)
        deployer.mint(token=token.address, to=sponsor, amount=total)

        def send(fn) -> dict:
            tx = fn.transact({"from": sponsor, "gas": 29_000_000})
            receipt = w3.eth.wait_for_transaction_receipt(tx, timeout=120)
            assert receipt["status"] == 1
            return receipt

        wall = time.monotonic()
        publish_gas = send(token.functions.approve(distributor.address, total))["gasUsed"]
        publish_gas += send(distributor.functions.publish(ref, tree.root, total, len(leaves)))[
            "gasUsed"
        ]
        claim_gas, transactions = 0, 2
        for i in range(0, len(leaves), args.batch):
            chunk = leaves[i : i + args.batch]
            receipt = send(
                distributor.functions.claimMany(
                    event_id, [leaf.as_tuple() for leaf in chunk], proofs[i : i + args.batch]
                )
            )
            claim_gas += receipt["gasUsed"]
            transactions += 1
        wall = time.monotonic() - wall
        paid = distributor.functions.distribution(event_id).call()[5]
        assert paid == total
        sample = leaves[-1]
        assert (
            token.functions.balanceOf(Web3.to_checksum_address(sample.recipient)).call()
            == sample.amount
        )
        say(
            f"settlement: {len(leaves)} recipients, {transactions} transactions "
            f"(approve + publish, {transactions - 2} claimMany of {args.batch}); publish "
            f"{publish_gas:,} gas; claims {claim_gas:,} gas = {claim_gas // len(leaves):,} per "
            f"recipient ({(claim_gas + publish_gas) // len(leaves):,} with the publish); "
            f"{claim_gas // (transactions - 2):,} per claim transaction; wall {wall:.1f} s on anvil"
        )


if __name__ == "__main__":
    main()
