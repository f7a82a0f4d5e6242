"""Gas of a gasless transfer against a plain ERC-20 transfer, on a fresh anvil (shanghai).

    .venv/bin/python -m bench.gas

The relayed transactions are built exactly as the product builds them: forward requests from
``relayer.forwarder`` (``erc20_transfer_data``, ``sign_request``, ``forwarder_calldata``, the
gas per call of ``relayer.service``) signed by a custodial-style key, wrapped by the relayer's
``TransactionSigner``. Measured from receipts: a direct ``transfer`` (to an address that already
holds tokens, and to a fresh one); a relayed transfer with the fee in OVPP, with the fee in the
stablecoin, and sponsored (no fee), each as a wallet's first transfer (its forwarder nonce slot
goes from zero to non-zero) and in steady state (later transfers). Every relayed transfer goes
to a recipient that already holds tokens, and the fee treasury already holds both tokens, so
the steady-state rows compare like with like against the plain transfer to a holder.

A call trace (``debug_traceTransaction`` with the call tracer) splits each relayed transaction
into intrinsic gas (21,000 + calldata), the token calls, the signature recoveries (the
``ecrecover`` precompile) and what the forwarder itself spends (EIP-712 hashing, the nonce
SSTORE, ABI decoding, the ERC-2771 calldata copy).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account

from api.container import LOCAL_TREASURY_ADDRESS
from bench.harness import (
    gas_price,
    local_chain,
    mint_call,
    say,
    send_in_nonce_order,
    set_relayer_call,
    wait_for_receipts,
)
from chain.address_book import AddressBook
from chain.erc20 import erc20_transfer_data
from chain.profiles import ANVIL_DEV_PRIVATE_KEY
from chain.rpc import JsonRpc, RpcError
from relayer.forwarder import ForwardRequest, domain_separator, forwarder_calldata, sign_request
from relayer.service import TRANSFER_CALL_GAS
from relayer.transactions import TransactionSigner

CHAIN_ID = 31337
OVPP = 10**18
USD = 10**6
ECRECOVER = "0x0000000000000000000000000000000000000001"


@dataclass
class Measurement:
    label: str
    gas_used: int
    calldata_bytes: int
    calldata_gas: int
    breakdown: dict[str, int]


def calldata_gas(data: bytes) -> int:
    """EIP-2028: 4 gas per zero byte, 16 per non-zero byte."""
    zeros = data.count(0)
    return 4 * zeros + 16 * (len(data) - zeros)


async def send_one(
    rpc: JsonRpc, *, private_key: bytes, to: str, data: bytes, gas: int = 400_000
) -> dict[str, Any]:
    sender = Account.from_key(private_key)
    nonce = int(await rpc.call("eth_getTransactionCount", sender.address, "pending"), 16)
    max_fee, tip = await gas_price(rpc)
    signed = TransactionSigner(private_key).sign_eip1559(
        chain_id=CHAIN_ID,
        nonce=nonce,
        max_priority_fee_per_gas=tip,
        max_fee_per_gas=max_fee,
        gas=gas,
        to=to,
        value=0,
        data=data,
    )
    (result,) = await rpc.batch([("eth_sendRawTransaction", ["0x" + signed.raw_transaction.hex()])])
    if isinstance(result, RpcError):
        raise RuntimeError(f"sending failed: {result.message}")
    (receipt,) = await wait_for_receipts(rpc, ["0x" + signed.hash.hex()])
    if int(receipt["status"], 16) != 1:
        raise RuntimeError(f"transaction {receipt['transactionHash']} reverted")
    return receipt


async def breakdown(rpc: JsonRpc, tx_hash: str, *, data: bytes) -> dict[str, int]:
    """Intrinsic, token calls, ecrecover and forwarder gas from the call tracer."""
    trace = await rpc.call("debug_traceTransaction", tx_hash, {"tracer": "callTracer"})
    token_calls, recoveries = 0, 0
    for call in trace.get("calls", []) or []:
        used = int(call["gasUsed"], 16)
        if call["to"].lower() == ECRECOVER:
            recoveries += used
        else:
            token_calls += used
    intrinsic = 21_000 + calldata_gas(data)
    total = int(trace["gasUsed"], 16)
    return {
        "intrinsic (21000 + calldata)": intrinsic,
        "token call(s)": token_calls,
        "ecrecover": recoveries,
        "forwarder (hashing, nonce, decoding)": total - intrinsic - token_calls - recoveries,
    }


async def measure(args: argparse.Namespace) -> list[Measurement]:
    with local_chain() as stack:
        contracts: AddressBook = stack.contracts
        rpc = JsonRpc(stack.chain.rpc_url, timeout_seconds=30)
        try:
            return await _measure(rpc, contracts)
        finally:
            await rpc.close()


async def _fund(
    rpc: JsonRpc,
    contracts: AddressBook,
    *,
    relayer: Any,
    direct_sender: Any,
    holder: str,
    wallets: dict[str, Any],
) -> None:
    """Native gas for the relayer and the direct sender, tokens for everyone, the treasury
    already holding both tokens (steady state for the fee's destination too)."""
    deployer = Account.from_key(ANVIL_DEV_PRIVATE_KEY)
    max_fee, tip = await gas_price(rpc)
    nonce = int(await rpc.call("eth_getTransactionCount", deployer.address, "pending"), 16)
    hashes = []
    for offset, address in enumerate((relayer.address, direct_sender.address)):
        signed = deployer.sign_transaction(
            {
                "to": address,
                "value": 10**20,
                "gas": 21_000,
                "maxFeePerGas": max_fee,
                "maxPriorityFeePerGas": tip,
                "nonce": nonce + offset,
                "chainId": CHAIN_ID,
            }
        )
        hashes.append(await rpc.call("eth_sendRawTransaction", "0x" + signed.raw_transaction.hex()))
    await wait_for_receipts(rpc, hashes)
    await send_in_nonce_order(
        rpc,
        private_key=ANVIL_DEV_PRIVATE_KEY,
        calls=[
            set_relayer_call(contracts.forwarder, relayer.address),
            mint_call(contracts.ovpp_token, direct_sender.address, 1_000 * OVPP),
            mint_call(contracts.ovpp_token, holder, OVPP),
            mint_call(contracts.stablecoin, holder, USD),
            mint_call(contracts.ovpp_token, LOCAL_TREASURY_ADDRESS, OVPP),
            mint_call(contracts.stablecoin, LOCAL_TREASURY_ADDRESS, USD),
            *(mint_call(contracts.ovpp_token, w.address, 1_000 * OVPP) for w in wallets.values()),
            *(mint_call(contracts.stablecoin, w.address, 1_000 * USD) for w in wallets.values()),
        ],
        chain_id=CHAIN_ID,
    )


async def _measure(rpc: JsonRpc, contracts: AddressBook) -> list[Measurement]:
    separator = domain_separator(chain_id=CHAIN_ID, forwarder=contracts.forwarder)
    relayer = Account.create()
    direct_sender = Account.create()
    holder = Account.create().address  # a recipient that already holds both tokens
    wallets = {name: Account.create() for name in ("ovpp-fee", "usd-fee", "sponsored")}

    await _fund(
        rpc,
        contracts,
        relayer=relayer,
        direct_sender=direct_sender,
        holder=holder,
        wallets=wallets,
    )
    say("contracts deployed, accounts funded")

    results: list[Measurement] = []

    async def direct(label: str, to: str) -> None:
        data = erc20_transfer_data(to, OVPP)
        receipt = await send_one(
            rpc, private_key=direct_sender.key, to=contracts.ovpp_token, data=data
        )
        results.append(
            Measurement(
                label,
                int(receipt["gasUsed"], 16),
                len(data),
                calldata_gas(data),
                {"intrinsic (21000 + calldata)": 21_000 + calldata_gas(data)},
            )
        )

    await direct("plain ERC-20 transfer, to a holder", holder)
    await direct("plain ERC-20 transfer, to a fresh address", Account.create().address)

    forwarder_nonces = dict.fromkeys(wallets, 0)

    async def relayed(label: str, wallet_name: str, fee: tuple[str, int] | None) -> None:
        wallet = wallets[wallet_name]
        deadline = int(time.time()) + 3600
        unsigned = [
            ForwardRequest(
                sender=wallet.address,
                target=contracts.ovpp_token,
                value=0,
                gas=TRANSFER_CALL_GAS,
                nonce=forwarder_nonces[wallet_name],
                deadline=deadline,
                data=erc20_transfer_data(holder, OVPP // 10),
            )
        ]
        if fee is not None:
            fee_token, fee_amount = fee
            unsigned.append(
                ForwardRequest(
                    sender=wallet.address,
                    target=fee_token,
                    value=0,
                    gas=TRANSFER_CALL_GAS,
                    nonce=forwarder_nonces[wallet_name] + 1,
                    deadline=deadline,
                    data=erc20_transfer_data(LOCAL_TREASURY_ADDRESS, fee_amount),
                )
            )
        signed = [sign_request(r, private_key=wallet.key, separator=separator) for r in unsigned]
        forwarder_nonces[wallet_name] += len(signed)
        data = forwarder_calldata(signed)
        receipt = await send_one(rpc, private_key=relayer.key, to=contracts.forwarder, data=data)
        results.append(
            Measurement(
                label,
                int(receipt["gasUsed"], 16),
                len(data),
                calldata_gas(data),
                await breakdown(rpc, receipt["transactionHash"], data=data),
            )
        )

    fee_in_ovpp = (contracts.ovpp_token, OVPP // 100)
    fee_in_usd = (contracts.stablecoin, 5 * USD // 100)
    for when in ("first", "steady"):
        await relayed(f"relayed, fee in OVPP ({when})", "ovpp-fee", fee_in_ovpp)
        await relayed(f"relayed, fee in stablecoin ({when})", "usd-fee", fee_in_usd)
        await relayed(f"relayed, sponsored ({when})", "sponsored", None)
    # A third round shows the steady state is steady.
    await relayed("relayed, fee in OVPP (steady, again)", "ovpp-fee", fee_in_ovpp)
    await relayed("relayed, sponsored (steady, again)", "sponsored", None)
    return results


def print_table(results: list[Measurement]) -> dict[str, Any]:
    baseline = next(m for m in results if m.label == "plain ERC-20 transfer, to a holder")
    fresh = next(m for m in results if m.label == "plain ERC-20 transfer, to a fresh address")
    width = max(len(m.label) for m in results)
    print()
    print(
        f"  {'transaction'.ljust(width)}  {'gas used':>9}  {'× plain':>7}  {'× fresh':>7}  "
        f"{'calldata':>13}"
    )
    for m in results:
        print(
            f"  {m.label.ljust(width)}  {m.gas_used:>9,}  {m.gas_used / baseline.gas_used:>7.2f}  "
            f"{m.gas_used / fresh.gas_used:>7.2f}  {m.calldata_bytes:>5} B {m.calldata_gas:>5,}"
        )
    print("\n  where the gas of each relayed transaction goes:")
    for m in results:
        if len(m.breakdown) > 1:
            parts = ", ".join(f"{name} {gas:,}" for name, gas in m.breakdown.items())
            print(f"  {m.label}: {parts}")
    print("\n  markdown:")
    print("  | transaction | gas used | ratio to plain transfer (to a holder) |")
    print("  |---|---:|---:|")
    for m in results:
        print(f"  | {m.label} | {m.gas_used:,} | {m.gas_used / baseline.gas_used:.2f}× |")
    return {
        "plain_transfer_gas": baseline.gas_used,
        "rows": [
            {
                "label": m.label,
                "gas_used": m.gas_used,
                "ratio": round(m.gas_used / baseline.gas_used, 3),
                "calldata_bytes": m.calldata_bytes,
                "calldata_gas": m.calldata_gas,
                "breakdown": m.breakdown,
            }
            for m in results
        ],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gas", description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    results = asyncio.run(measure(args))
    figures = print_table(results)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    sys.exit(0)


if __name__ == "__main__":
    main()
