"""Money: amounts in US dollars as decimal.Decimal, read from what the service sends without going through float,
and shown by one function everywhere (a Result's cost, history, spend, the budget's errors, the CLI, forms).

The service sends `usage.cost` as a string ("0.30"); a JSON number (0.004) arrives as a float, which is read by
its shortest decimal spelling (repr), the digits the JSON text had. The journal keeps costs in a REAL column (see
_journal_rows): a cost of at most 15 significant digits comes back by that same spelling, exactly.
"""

from __future__ import annotations

import decimal
import math
import re
from decimal import Decimal
from typing import Any

_AMOUNT = re.compile(r"[+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?", re.ASCII)  # 0-9 only, no other script's
LARGEST = Decimal(10) ** 12  # a figure above a trillion dollars is no cost: unreadable, as "abc" is
SMALLEST = Decimal(10) ** -12  # nor one under a trillionth of a dollar but 0 ("1e-999": a 1,000-digit text)
MAX_PLACES = 6  # shown: $0.004, $0.000125; past a millionth of a dollar an amount is rounded to one
_PLACE = Decimal(1).scaleb(-MAX_PLACES)


def usd(value: Any) -> Decimal | None:
    """An amount of US dollars from a JSON value, a Decimal or a number: None when absent, unreadable (digits other
    than 0-9 too), negative, NaN, infinite or absurd (over LARGEST, or under SMALLEST but not 0); a string spelling
    a number is read as it is spelled, never through float. So an amount is at most 64 characters long as read, and
    its exact decimal text (usd_text) a few dozen."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > 64 or not _AMOUNT.fullmatch(text):
            return None
        amount = Decimal(text)
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            return None
        amount = Decimal(repr(value))  # the shortest spelling that reads back as this float: the JSON text's digits
    else:
        return None
    if not amount.is_finite() or amount < 0 or amount > LARGEST or (amount and amount < SMALLEST):
        return None
    return amount + 0  # -0 becomes 0


def total(amounts: Any) -> Decimal:
    """The sum of the known amounts (None skipped), exactly."""
    return sum((a for a in amounts if a is not None), Decimal(0))


def format_usd(amount: Decimal | float | str | None, *, unknown: str = "?") -> str:
    """An amount for people: "$0.30", "$0.004", "$12.50"; at least two decimals and as many more as the amount has
    (up to six); `unknown` for None or an unreadable amount."""
    value = usd(amount)
    if value is None:
        return unknown
    if value and value < _PLACE:
        return f"<${_PLACE}"
    exponent = value.as_tuple().exponent  # an int: usd() gives finite amounts only
    if isinstance(exponent, int) and exponent < -MAX_PLACES:
        value = value.quantize(_PLACE, rounding=decimal.ROUND_HALF_EVEN)
    return f"${usd_text(value)}"


def usd_text(amount: Decimal | None) -> str | None:
    """An amount as plain decimal text for files and JSON, exact, with at least two decimals ("0.004", "0.30",
    "12.00"), or None."""
    if amount is None:
        return None
    whole, _, places = f"{amount:f}".partition(".")
    return f"{whole}.{places.rstrip('0'):0<2}"
