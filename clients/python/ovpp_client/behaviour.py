"""What the generated types in ``types.py`` do beyond reading the wire: mixins they inherit."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ovpp_client.types import Balance


class ViewerBehaviour:
    __slots__ = ()
    balances: list[Balance]

    def balance(self, symbol: str) -> Balance:
        """The balance of one token by symbol (``OVPP``, ``USDC``, the native symbol)."""
        return next(balance for balance in self.balances if balance.token.symbol == symbol)


class TransactionBehaviour:
    __slots__ = ()
    status: str

    FINAL_STATUSES = frozenset({"CONFIRMED", "FAILED", "REPLACED"})

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL_STATUSES
