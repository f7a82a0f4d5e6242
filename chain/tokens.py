"""Token facts, and the base-unit ↔ decimal-string conversion used at the API edge."""

from __future__ import annotations

import re
from dataclasses import dataclass
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


# A plain decimal: ASCII digits with at most one point, at least one digit. No sign, exponent,
# separator or inner space.
_PLAIN_DECIMAL = re.compile(r"([0-9]*)(?:\.([0-9]*))?")
# 2**256 has 78 digits: a longer whole part is no token amount (and int() refuses very long
# digit strings).
_MAX_WHOLE_DIGITS = 78


def parse_units(text: str, decimals: int) -> int:
    """``"1.2345", 6 -> 1234500``. Rejects negatives, exponents and excess precision.

    Exact in integers whatever the number of digits: ``Decimal`` arithmetic would round to its
    context's 28 significant digits, turning an amount into one the customer did not type and
    letting decimals beyond the token's through as long as they round away."""
    match = _PLAIN_DECIMAL.fullmatch(text.strip())
    if match is None or not (match.group(1) or match.group(2)):
        raise AmountError('an amount is a plain decimal string such as "12.5"')
    whole = match.group(1).lstrip("0")
    fraction = (match.group(2) or "").rstrip("0")
    if len(fraction) > decimals:
        raise AmountError(f"at most {decimals} decimal places")
    if len(whole) > _MAX_WHOLE_DIGITS:
        raise AmountError("the amount is too large")
    value = int(whole or "0") * 10**decimals + int(fraction.ljust(decimals, "0") or "0")
    if value >= 2**256:  # no token amount on chain (a uint256) and no NUMERIC(78) column holds it
        raise AmountError("the amount is too large")
    return value
