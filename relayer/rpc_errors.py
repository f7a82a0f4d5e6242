"""Classification of a node's answer to ``eth_sendRawTransaction`` (BRIEF §5)."""

from __future__ import annotations

from enum import StrEnum

from chain.rpc import RpcError


class SendOutcome(StrEnum):
    ACCEPTED = "ACCEPTED"  # in the pool now
    ALREADY_KNOWN = "ALREADY_KNOWN"  # ours, already in the pool (or replacement underpriced)
    NONCE_TOO_LOW = "NONCE_TOO_LOW"  # the nonce is used: look up receipts of every hash we sent
    NONCE_TOO_HIGH = "NONCE_TOO_HIGH"  # a gap below: retry briefly, then reconcile
    INSUFFICIENT_FUNDS = (
        "INSUFFICIENT_FUNDS"  # the relayer key needs native funds: fail fast, alert
    )
    UNDERPRICED = "UNDERPRICED"  # below the pool's minimum or the base fee: re-price
    TEMPORARY = "TEMPORARY"  # the pool is full or busy, or no answer: retry the same bytes
    REJECTED = "REJECTED"  # anything else: the transaction itself is bad


def classify(result: object) -> SendOutcome:
    if not isinstance(result, RpcError):
        return SendOutcome.ACCEPTED if isinstance(result, str) else SendOutcome.TEMPORARY
    message = result.message.lower()
    if any(
        text in message
        for text in (
            "txpool is full",
            "account limit exceeded",
            "future transaction tries to replace pending",
            "no answer for this call",
            "too many",
            "rate limit",
        )
    ):
        return SendOutcome.TEMPORARY
    if (
        "already known" in message
        or "known transaction" in message
        or "already imported" in message
    ):
        return SendOutcome.ALREADY_KNOWN
    if "replacement" in message and "underpriced" in message:
        return SendOutcome.ALREADY_KNOWN
    if "nonce too low" in message or "nonce has already been used" in message:
        return SendOutcome.NONCE_TOO_LOW
    if "nonce too high" in message:
        return SendOutcome.NONCE_TOO_HIGH
    if "insufficient funds" in message:
        return SendOutcome.INSUFFICIENT_FUNDS
    if "underpriced" in message or "max fee per gas less than block base fee" in message:
        return SendOutcome.UNDERPRICED
    return SendOutcome.REJECTED
