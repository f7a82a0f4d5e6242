"""The chain indexer: every transfer of the served tokens that touches a custodial wallet, read
from the chain's logs, reorganisation-safe (docs/indexer.md)."""
