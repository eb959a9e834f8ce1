"""Money as integer nano-dollars inside, as nine-place decimal strings outside."""
from __future__ import annotations

from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Optional, Union

NANO = Decimal("1000000000")
MAX_USD = Decimal("1000000000")  # a billion dollars: far above any budget, far below int64 nano

Money = Union[str, int, float, Decimal]


def to_nano(value: Money) -> int:
    """Parse a decimal string or number of USD into nano-dollars (ValueError when not money)."""
    if isinstance(value, bool):
        raise ValueError("not an amount of money")
    try:
        amount = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise ValueError("not a decimal amount") from None
    if not amount.is_finite() or amount < 0 or amount > MAX_USD:
        raise ValueError("must be a finite amount between 0 and 1e9")
    return int((amount * NANO).to_integral_value(rounding=ROUND_CEILING))


def usd(nano: Optional[int]) -> Optional[str]:
    """Nano-dollars as a decimal string with nine places ("1.154232800")."""
    if nano is None:
        return None
    nano = int(nano)
    whole, part = divmod(abs(nano), 1_000_000_000)  # integers: what Decimal(nano).scaleb(-9) prints, faster
    return f"{'-' if nano < 0 else ''}{whole}.{part:09d}"


def cost_nano(tokens: int, nano_per_mtok: int) -> int:
    """The price of `tokens` at `nano_per_mtok` nano-dollars per million, rounded up."""
    return -((-int(tokens) * int(nano_per_mtok)) // 1_000_000)
