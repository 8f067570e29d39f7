"""Form fields as ``forms`` reads them: numbers only in ASCII digits (issue 12, item 7)."""

from __future__ import annotations

import pytest

from newsletter.papers.catalogue import load_catalogue
from newsletter.subscribers.accounts import Choices
from newsletter.web.forms import FormError, parse_choices, parse_int, parse_weekday

CATALOGUE = load_catalogue()


def choices(**fields: str) -> Choices:
    return parse_choices(
        CATALOGUE,
        topics=["cs.CL"],
        keywords=[],
        weights=None,
        frequency="weekly",
        timezone="UTC",
        send_hour=fields.get("send_hour", "7"),
        max_papers=fields.get("max_papers", ""),
        weekday=fields.get("weekday", ""),
    )


@pytest.mark.parametrize("raw", ["²", "٣", "３", "1_0", "+1", "7.0", "24", "9" * 8])
def test_the_hour_is_ascii_digits_from_0_to_23(raw: str) -> None:
    with pytest.raises(FormError, match=r"^The hour must be a whole number from 0 to 23\.$"):
        choices(send_hour=raw)


@pytest.mark.parametrize("raw", ["²", "٣", "３", "1_0", "0", "51"])
def test_papers_per_issue_is_ascii_digits_from_1_to_50(raw: str) -> None:
    refused = r"^Papers per issue must be a whole number from 1 to 50\.$"
    with pytest.raises(FormError, match=refused):
        choices(max_papers=raw)


@pytest.mark.parametrize("raw", ["²", "٣", "３", "7", "-1", "friday"])
def test_the_weekday_is_one_of_the_list(raw: str) -> None:
    with pytest.raises(FormError, match="weekday"):
        parse_weekday(raw)


def test_good_numbers_are_read() -> None:
    picked = choices(send_hour=" 07 ", max_papers="12", weekday="6")
    assert (picked.send_hour, picked.max_papers, picked.send_weekday) == (7, 12, 6)
    assert parse_int("3", low=1, high=3, label="Rank") == 3
    assert parse_weekday("") == 0
