"""normalise_email's per-domain fast path gives exactly email-validator's answer.

The reference is email-validator called in full, as ``normalise_email`` did before the
fast path: the same canonical form for every valid address, the same message for
every invalid one.
"""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.errors import InvalidAddress
from newsletter.mail.addresses import _plain_address, normalise_email


def reference(raw: str) -> str:
    candidate = raw.strip()
    try:
        return validate_email(candidate, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        return f"invalid address {candidate!r}: {exc}"


def fast(raw: str) -> str:
    try:
        return normalise_email(raw)
    except InvalidAddress as exc:
        return str(exc)


TRICKY = [
    "Ada@Example.ORG",
    "  grace.hopper+news@example.com ",
    "POSTMASTER@example.org",  # a case-insensitive mailbox name (RFC 2142)
    "a.b.c@sub.example.co.uk",
    "a..b@example.org",
    ".a@example.org",
    "a.@example.org",
    "a@b",
    "a@example",
    "a@localhost",
    "a@example.test",
    "a@example.local",
    "a@-example.org",
    "a@example-.org",
    "a@exa_mple.org",
    "a@example..org",
    "a@.example.org",
    "a@example.org.",
    "a@ex ample.org",
    "a@example.org@example.org",
    "a@[127.0.0.1]",
    "a@xn--bcher-kva.de",
    "a@bücher.de",
    "a@BÜCHER.DE",
    "a@xn--zz.de",
    "a@ﬀ.example",  # a compatibility character the UTS 46 mapping folds
    "a@e\u0301xample.org",  # a combining accent (NFC)
    "a@exa\u200bmple.org",  # a zero-width space
    "a@\u0661.example",
    "a@123.com",
    "a@1.2.3.4",
    "üser@example.org",
    '"quoted"@example.org',
    '"a b"@example.org',
    "Ada <ada@example.org>",
    "<ada@example.org>",
    "ada@example.org>",
    "a<b@example.org",
    "a@example.org\n",
    "a\n@example.org",
    "a＠example.org",
    "!#$%&'*+-/=?^_`{|}~@example.org",
    "x" * 64 + "@example.org",
    "x" * 65 + "@example.org",
    "x" * 240 + "@example.org",
    "x" * 242 + "@example.org",  # 254 octets: the longest there is
    "x" * 243 + "@example.org",
    "x" * 238 + "@bücher.de",  # fits in Unicode, too long in ASCII (xn--bcher-kva.de)
    "x" * 230 + "@" + "ü" * 10 + ".de",
    "a@" + ".".join(["a" * 63] * 4),
    "a@" + "a" * 64 + ".org",
    "",
    "@example.org",
    "a@",
]


@pytest.mark.parametrize("raw", TRICKY)
def test_the_fast_path_answers_as_email_validator_does(raw: str) -> None:
    assert fast(raw) == reference(raw)
    assert fast(raw) == reference(raw)  # again, now from the cache


def test_plain_addresses_take_the_fast_path() -> None:
    assert _plain_address("Ada@Example.ORG") == "ada@example.org"
    assert _plain_address("a@bücher.de") == "a@bücher.de"
    # Not plain, or refused: email-validator decides (and says why).
    assert _plain_address("üser@example.org") is None
    assert _plain_address('"quoted"@example.org') is None
    assert _plain_address("a@localhost") is None


LOCAL = st.text(alphabet="aZ09.+-_!'\"@ ü<>\\", min_size=0, max_size=12)
DOMAIN = st.text(alphabet="aZ09.-_ü@[]\u0301\u200bﬀ ", min_size=0, max_size=16)


@settings(max_examples=300, deadline=None)
@given(local=LOCAL, domain=st.one_of(DOMAIN, st.sampled_from(["example.org", "bücher.de"])))
def test_any_address_gets_email_validators_answer(local: str, domain: str) -> None:
    raw = f"{local}@{domain}"
    assert fast(raw) == reference(raw)
