"""VERP return paths: round trip, case folding, and refusal of forged or foreign addresses."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.errors import ConfigError
from newsletter.mail.verp import envelope_sender, parse_verp, verp_address
from tests.conftest import TEST_SECRET, make_settings

RETURN_PATH = "bounces@example.org"

local_parts = st.from_regex(r"[a-z0-9][a-z0-9._+\-]{0,20}", fullmatch=True)
domains = st.from_regex(r"[a-z0-9]{1,12}(\.[a-z0-9]{1,12}){1,3}", fullmatch=True)
delivery_ids = st.integers(min_value=0, max_value=2**63 - 1)
secrets = st.text(min_size=1, max_size=64)


@given(delivery_id=delivery_ids, local=local_parts, domain=domains, secret=secrets)
def test_round_trip(delivery_id: int, local: str, domain: str, secret: str) -> None:
    return_path = f"{local}@{domain}"
    address = verp_address(delivery_id, return_path=return_path, secret=secret)
    assert address.startswith(f"{local}+{delivery_id}-")
    assert address.endswith(f"@{domain}")
    assert parse_verp(address, return_path=return_path, secret=secret) == delivery_id
    # Relays that fold the case of the address, or quote it with a name, change nothing.
    assert parse_verp(address.upper(), return_path=return_path, secret=secret) == delivery_id
    assert (
        parse_verp(f'"Bounce" <{address}>', return_path=return_path, secret=secret) == delivery_id
    )


@given(delivery_id=delivery_ids, other=delivery_ids)
def test_a_signature_is_only_valid_for_its_own_delivery(delivery_id: int, other: int) -> None:
    address = verp_address(delivery_id, return_path=RETURN_PATH, secret=TEST_SECRET)
    forged = address.replace(f"+{delivery_id}-", f"+{other}-", 1)
    expected = delivery_id if other == delivery_id else None
    assert parse_verp(forged, return_path=RETURN_PATH, secret=TEST_SECRET) == expected


def test_shape_is_short_lower_case_base32() -> None:
    address = verp_address(42, return_path=RETURN_PATH, secret=TEST_SECRET)
    assert re.fullmatch(r"bounces\+42-[a-z2-7]{8}@example\.org", address)
    assert address == verp_address(42, return_path=RETURN_PATH, secret=TEST_SECRET)


def _tamper(signature: str) -> str:
    first = "b" if signature[0] != "b" else "c"
    return first + signature[1:]


def test_tampered_foreign_and_other_secret_addresses_are_refused() -> None:
    address = verp_address(42, return_path=RETURN_PATH, secret=TEST_SECRET)
    local, _, domain = address.partition("@")
    prefix, _, signature = local.rpartition("-")
    refused = [
        f"{prefix}-{_tamper(signature)}@{domain}",  # signature changed
        f"{prefix}-{signature[:-1]}@{domain}",  # signature cut short
        address.replace("example.org", "example.net"),  # another domain
        address.replace("bounces+", "other+"),  # another local part
        "bounces@example.org",  # the bare return path
        "bounces+42@example.org",  # no signature at all
        "",
        "not an address",
        f"{address}.evil.example",  # our address as a prefix of a foreign one
    ]
    for candidate in refused:
        assert parse_verp(candidate, return_path=RETURN_PATH, secret=TEST_SECRET) is None, candidate
    other_secret = TEST_SECRET + "-rotated"
    assert parse_verp(address, return_path=RETURN_PATH, secret=other_secret) is None


def test_a_return_path_that_is_not_an_address_is_a_config_error() -> None:
    for bad in ("bounces", "@example.org", "bounces@", "bou nces@example.org"):
        with pytest.raises(ConfigError, match="return_path"):
            verp_address(1, return_path=bad, secret=TEST_SECRET)
    with pytest.raises(ValueError, match="negative"):
        verp_address(-1, return_path=RETURN_PATH, secret=TEST_SECRET)


def test_envelope_sender_follows_the_settings() -> None:
    plain = make_settings()
    assert envelope_sender(plain, 7) == plain.sender_address
    with_return_path = make_settings(return_path=RETURN_PATH)
    assert envelope_sender(with_return_path, 7) == RETURN_PATH
    verp = make_settings(return_path=RETURN_PATH, verp=True)
    sender = envelope_sender(verp, 7)
    assert sender == verp_address(7, return_path=RETURN_PATH, secret=TEST_SECRET)
    assert parse_verp(sender, return_path=RETURN_PATH, secret=TEST_SECRET) == 7
