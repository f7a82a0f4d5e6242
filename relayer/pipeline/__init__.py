"""The relayer's stages, one module each: ``sign`` (QUEUED → SIGNED), ``broadcast`` (SIGNED →
SUBMITTED, ``fail`` for what the node refuses), ``track`` (SUBMITTED → MINED → CONFIRMED),
``bump`` (stuck or underpriced transactions) and ``reconcile`` (nonces, balances, wallets).
``relayer.worker`` runs them; docs/relayer.md ("Pipeline internals") explains the design."""
