"""Token facts, and the base-unit ↔ decimal-string conversion used at the API edge."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum


class TokenKind(StrEnum):
    OVPP = "OVPP"
    STABLECOIN = "STABLECOIN"
    NATIVE = "NATIVE"


@dataclass(frozen=True)
class TokenInfo:
    kind: TokenKind
    symbol: str
    name: str
    decimals: int
    address: str | None  # None for the chain's native token


def format_units(raw: int, decimals: int) -> str:
    """``1234500, 6 -> "1.2345"``: exact, no float, no exponent, trailing zeros dropped."""
    sign = "-" if raw < 0 else ""
    whole, fraction = divmod(abs(raw), 10**decimals)
    if decimals == 0 or fraction == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{str(fraction).rjust(decimals, '0').rstrip('0')}"


class AmountError(ValueError):
    pass


def parse_units(text: str, decimals: int) -> int:
    """``"1.2345", 6 -> 1234500``. Rejects negatives, exponents and excess precision."""
    cleaned = text.strip()
    if not cleaned or any(character not in "0123456789." for character in cleaned):
        raise AmountError('an amount is a plain decimal string such as "12.5"')
    try:
        value = Decimal(cleaned)
    except InvalidOperation as error:
        raise AmountError(f"{text!r} is not a decimal amount") from error
    scaled = value.scaleb(decimals)
    if scaled != scaled.to_integral_value():
        raise AmountError(f"at most {decimals} decimal places")
    return int(scaled)
