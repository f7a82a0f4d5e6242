"""Classification of a node's answer to ``eth_sendRawTransaction`` (BRIEF §5).

An answer not recognised here is ``MAYBE_SENT``, never a refusal: a proxy, a load balancer or
a node with its own wording may answer an error for a transaction that did reach a pool. Only
the errors of ``PERMANENT_ERRORS`` fail a job (docs/relayer.md, "What the node answers")."""

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
    REJECTED = "REJECTED"  # a known permanent error: this transaction can never be pooled
    MAYBE_SENT = "MAYBE_SENT"  # not understood: it may be in a pool, its hash is followed


# Errors that say the transaction itself can never be pooled (geth's txpool and core errors,
# and anvil's wording where it differs), lower case, matched as substrings. Anything else a node
# answers may hide a transaction that reached a pool.
PERMANENT_ERRORS = (
    "intrinsic gas too low",  # geth, anvil: a gas limit below the transaction's intrinsic gas
    "intrinsic gas too high",  # anvil: a gas limit above the block's
    "exceeds block gas limit",  # geth: a gas limit above the block's
    "gas uint64 overflow",  # geth
    "invalid sender",  # geth: the signature recovers no sender
    "invalid signature",
    "invalid chain id",  # geth, anvil: "invalid chain id for signer"
    "only replay-protected",  # geth: a legacy transaction without a chain id
    "transaction type not supported",  # geth
    "failed to decode transaction",  # anvil: not a transaction
    "empty transaction data",  # anvil
    "rlp:",  # geth: not a transaction
    "typed transaction too short",  # geth
    "oversized data",  # geth: above the pool's size limit
    "max initcode size exceeded",  # geth
    "max priority fee per gas higher than max fee per gas",  # geth, anvil
    "negative value",  # geth
    "execution reverted",  # nodes that simulate a transaction before pooling it
)


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
    if any(text in message for text in PERMANENT_ERRORS):
        return SendOutcome.REJECTED
    return SendOutcome.MAYBE_SENT
