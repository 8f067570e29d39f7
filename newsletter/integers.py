"""Small whole numbers typed by people: the one rule for every form, path, CSV cell and
API field that carries one (an hour, a weekday, a rank, a number of papers).

Python alone has no such rule: ``int()`` reads "٣" (Arabic-Indic three), "３" and "1_0",
``str.isdigit()`` says yes to "²", which ``int()`` then refuses, and a few thousand
digits make ``int()`` raise. Here a number is ASCII digits, and nothing else.
"""

from __future__ import annotations

import re

from newsletter.errors import NewsletterError

# [0-9], not \d: \d is every script's digits. Ten digits hold any range here.
_ASCII_DIGITS = re.compile(r"[0-9]{1,10}")
# The largest id a row of ours can have (an INTEGER column: 32 bits on PostgreSQL).
MAX_ROW_ID = 2**31 - 1


class NotInRange(NewsletterError):
    """Not a whole number within the range; the message says which range."""


def small_int(raw: str | int, *, low: int, high: int) -> int:
    """``raw`` as an int from ``low`` to ``high``: an int, or ASCII digits with spaces
    around them (no sign, no "_", no other script's digits); else ``NotInRange``."""
    if isinstance(raw, bool):  # an int to Python, never a number to a person
        value = None
    elif isinstance(raw, int):
        value = raw
    else:
        text = raw.strip()
        value = int(text) if _ASCII_DIGITS.fullmatch(text) else None
    if value is None or not low <= value <= high:
        raise NotInRange(f"must be a whole number from {low} to {high}")
    return value
