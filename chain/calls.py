"""A call a signer makes through the forwarder: the unit every relayed job is built from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Call:
    target: str
    data: bytes
    gas: int
