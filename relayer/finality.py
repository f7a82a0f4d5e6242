"""Finality of a relay job: whether a failed job can never execute any more, read from the
chain."""

from __future__ import annotations

from relayer import repository
from relayer.deps import RelayerServices
from relayer.forwarder import ZERO_ADDRESS
from relayer.keys import is_relayer_call
from relayer.models import RelayStatus, RelayTransaction


async def job_can_never_execute(services: RelayerServices, job_id: str) -> bool:
    """Whether a FAILED job can never execute, so what it would have paid for may be given back
    (a job that does not exist never will).
    Its relayer transaction is final: the reverted one's receipt, read again now (a reorg may
    have undone it), as deep as ``relayer_confirmations``; or, for one the node refused, the
    zero-value transaction that took its nonce (``nonce_filler_status``) CONFIRMED. And its
    signed forward requests are out of everyone's reach: past their deadline by the chain's
    clock, or held by a forwarder that accepts only the relayer's own keys (``isRelayer``),
    which never submit a FAILED job."""
    async with services.db.session() as session:
        job = await session.get(RelayTransaction, job_id)
        if job is None:
            return True
        nonce_filler_status = await repository.nonce_filler_status(session, job)
    if job.status != RelayStatus.FAILED:
        return False
    assert services.chain.addresses is not None
    calls: list[tuple[str, list[object]]] = [
        ("eth_getBlockByNumber", ["latest", False]),
        is_relayer_call(services.chain.addresses.forwarder, ZERO_ADDRESS),
    ]
    if job.block_number is not None:
        calls.append(("eth_getTransactionReceipt", [job.tx_hash]))
    latest, answer, *receipt = await services.chain.rpc.batch(calls)
    if not isinstance(latest, dict):
        return False
    if job.block_number is None:
        if nonce_filler_status != RelayStatus.CONFIRMED:
            return False
    else:
        reverted = receipt[0]
        if not isinstance(reverted, dict) or int(reverted["status"], 16) != 0:
            return False
        depth = int(latest["number"], 16) - int(reverted["blockNumber"], 16) + 1
        if depth < services.settings.relayer_confirmations:
            return False
    deadlines = [int(request["deadline"]) for request in job.forward_requests]
    if deadlines and max(deadlines) < int(latest["timestamp"], 16):
        return True
    # An older forwarder has no isRelayer (an error, or no word): wait for the deadlines.
    return isinstance(answer, str) and len(answer) == 66
