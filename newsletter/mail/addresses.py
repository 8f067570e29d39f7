"""Email addresses: the one place that says how an address is checked, compared and sent.

Two forms, two uses:

* ``normalise_email`` is for **what people type** (the subscribe form, the CLI, a CSV
  import, a test-send recipient): it validates the syntax (email-validator) and returns
  the canonical form addresses are stored in, lower case so one person is one row.
* ``address_key`` is the cheap "same address?" key for addresses that are **already
  stored, or reported by someone else** (suppressions, bounces, a DSN's recipient):
  trimmed and lower case, no validation, so it never refuses what it is given. On a
  stored address it changes nothing.

Subscribers' addresses are stored as people typed them, normalised (a domain such as
``bücher.de`` stays in Unicode). SMTP and mail headers need more care:

* a non-ASCII **domain** is written in its ASCII form (IDNA 2008 with the UTS 46
  mapping, ``xn--bcher-kva.de``), which every relay and mailbox understands;
* a non-ASCII **local part** (``üser@example.org``) has no ASCII form: such a message
  can only travel with SMTPUTF8 (RFC 6531), and its headers carry raw UTF-8 (RFC
  6532). A relay that does not offer SMTPUTF8 refuses it, and that delivery fails
  alone, with the reason.
"""

from __future__ import annotations

import re
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

from newsletter.errors import InvalidAddress
from newsletter.settings import ascii_domain

# A plain local part: email-validator's own dot-atom (RFC 5322 atext, ASCII), which it
# accepts as it is. Anything else (quotes, Unicode, a display name) takes the full path.
_PLAIN_ADDRESS = re.compile(
    r"([a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~]+(?:\.[a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~]+)*)@([^@]+)"
)
_MAX_LENGTH = 254  # octets, as email-validator checks the whole address (RFC 5321)


def normalise_email(raw: str) -> str:
    """Validate the syntax of an address and return its canonical, lower-case form."""
    candidate = raw.strip()
    fast = _plain_address(candidate)
    if fast is not None:
        return fast
    try:
        result = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(f"invalid address {candidate!r}: {exc}") from None
    # Treated case-insensitively in practice; one canonical form keeps it unique.
    return result.normalized.lower()


def _plain_address(candidate: str) -> str | None:
    """``validate_email``'s answer for a valid address with a plain local part, its
    domain checked once per domain (most of the cost, and a list has few domains);
    None for anything else, which then goes through ``validate_email`` in full.

    Same answer by construction: for a dot-atom local part email-validator splits at
    the first "@", returns the local part unchanged, checks the domain alone, then the
    three lengths checked here. ``tests/test_addresses_fast.py`` compares both over tricky
    addresses."""
    match = _PLAIN_ADDRESS.fullmatch(candidate)
    if match is None:
        return None
    local, domain = match.groups()
    checked = _domain(domain)
    if checked is None:
        return None
    normalised_domain, wire_domain = checked
    normalised = f"{local}@{normalised_domain}"
    for form in (candidate, normalised, f"{local}@{wire_domain}"):
        if len(form.encode()) > _MAX_LENGTH:
            return None
    return normalised.lower()


@lru_cache(maxsize=65536)
def _domain(domain: str) -> tuple[str, str] | None:
    """The normal and ASCII forms of ``domain`` as email-validator makes them, or None
    when it refuses the domain (the full path then says why)."""
    try:
        result = validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError:
        return None
    return result.domain, result.ascii_domain


def address_key(email: str) -> str:
    """The form addresses are stored and compared in (subscribers, suppressions,
    bounces): trimmed, lower case. For stored addresses and addresses from DSNs;
    what people type goes through ``normalise_email``."""
    return email.strip().lower()


def smtp_address(address: str) -> str:
    """``address`` with its domain in ASCII (IDNA); the local part as it is.

    Raises ``InvalidAddress`` when the domain has no valid ASCII form.
    """
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise InvalidAddress(f"{address!r} is not an email address")
    if domain.isascii():
        return address
    try:
        wire_domain = ascii_domain(domain)
    except ValueError as exc:
        raise InvalidAddress(f"the domain of {address!r} has no ASCII form: {exc}") from None
    return f"{local}@{wire_domain}"


def needs_smtputf8(address: str) -> bool:
    """Whether ``address`` (already through ``smtp_address``) can travel only with SMTPUTF8."""
    return not address.isascii()
