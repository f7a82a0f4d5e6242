"""What interrupts a round of the indexer. None reaches a customer: the loop reads again (at
once, with a smaller range, or after a backoff)."""

from __future__ import annotations


class ChainMoved(Exception):
    """The node's chain changed while a range was read (a block vanished, a parent hash or a
    log's block hash stopped matching): nothing of the read is written, the next round checks
    the cursor's block and reads again."""


class RangeRefused(Exception):
    """The node refused ``eth_getLogs`` for a range (too many results, too many blocks): the
    range is halved and read again."""


class LeaseLost(Exception):
    """Another indexer holds the chain's lease or moved its cursor since this one read it: the
    round's writes are rolled back, unwritten."""
