"""The one rule for small whole numbers people type (issue 12, item 7)."""

from __future__ import annotations

import pytest

from newsletter.integers import NotInRange, small_int


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("0", 0), ("23", 23), (" 7 ", 7), ("07", 7), ("000", 0), (5, 5), (0, 0)],
)
def test_ascii_digits_and_ints_in_the_range_are_read(raw: str | int, expected: int) -> None:
    assert small_int(raw, low=0, high=23) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "²",  # str.isdigit() says yes, int() refuses: the 500 of issue 12
        "٣",  # Arabic-Indic 3: int() reads it, str.isdigit() too
        "３",  # fullwidth
        "߃",  # NKo
        "1_0",
        "+1",
        "-0",
        "1.0",
        "1e1",
        "",
        " ",
        "seven",
        "24",
        -1,
        24,
        True,
        False,
        pytest.param("9" * 5000, id="5000-digits"),  # int() raises past 4300 digits
        pytest.param("0" * 10 + "1", id="11-digits"),
    ],
)
def test_anything_else_is_refused_with_the_range(raw: str | int) -> None:
    with pytest.raises(NotInRange, match=r"^must be a whole number from 0 to 23$"):
        small_int(raw, low=0, high=23)
