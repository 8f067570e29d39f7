"""Email addresses on the wire: internationalised domains and local parts.

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

import idna

from newsletter.errors import InvalidAddress


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
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise InvalidAddress(f"the domain of {address!r} has no ASCII form: {exc}") from None
    return f"{local}@{ascii_domain}"


def needs_smtputf8(address: str) -> bool:
    """Whether ``address`` (already through ``smtp_address``) can travel only with SMTPUTF8."""
    return not address.isascii()
