"""Rewards: contribution records computed from the program server's telemetry after an event,
the program's reward rule, and settlement on chain against a Merkle root
(``RewardsDistributor``). See docs/rewards.md."""
