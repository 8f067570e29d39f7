"""Per-delivery return paths (VERP): ``bounces+<delivery id>-<signature>@domain``.

A bounce goes to the envelope sender, so when every delivery has its own, the
address a bounce arrives at names the delivery even when the bounce quotes nothing
of the message. The short HMAC makes the address unforgeable: nobody can send a
fake bounce that suppresses someone else's address by guessing delivery ids. The
signature is lower-case base32, so relays that fold the case of local parts do not
break it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from email.utils import parseaddr

from newsletter.errors import ConfigError
from newsletter.settings import Settings

_SIGNATURE_BYTES = 5  # 40 bits: 8 base32 characters
_SIGNATURE_LENGTH = 8


def _split(return_path: str) -> tuple[str, str]:
    local, at, domain = return_path.strip().rpartition("@")
    if not at or not local or not domain or any(ch.isspace() for ch in return_path.strip()):
        raise ConfigError(
            f"invalid setting return_path (NEWSLETTER_RETURN_PATH): {return_path!r} "
            "is not an address such as bounces@example.org"
        )
    return local, domain


def _signature(delivery_id: int, secret: str) -> str:
    # A label of its own so this MAC can never be mistaken for another use of the key.
    digest = hmac.new(
        secret.encode("utf-8"), f"verp:{delivery_id}".encode("ascii"), hashlib.sha256
    ).digest()
    return base64.b32encode(digest[:_SIGNATURE_BYTES]).decode("ascii").lower()


def verp_address(delivery_id: int, *, return_path: str, secret: str) -> str:
    """The return path of one delivery: ``local+<id>-<signature>@domain``."""
    if delivery_id < 0:
        raise ValueError(f"delivery id must not be negative: {delivery_id}")
    local, domain = _split(return_path)
    return f"{local}+{delivery_id}-{_signature(delivery_id, secret)}@{domain}"


def parse_verp(address: str, *, return_path: str, secret: str) -> int | None:
    """The delivery id a VERP address names, or None when it is not one of ours or
    its signature does not match (foreign, tampered or made with another secret).

    Accepts the address bare, in angle brackets or with a display name, in any case.
    """
    local, domain = _split(return_path)
    bare = parseaddr(address.strip())[1] or address.strip()
    pattern = re.compile(
        rf"{re.escape(local)}\+(\d{{1,19}})-([a-z2-7]{{{_SIGNATURE_LENGTH}}})@{re.escape(domain)}",
        re.IGNORECASE,
    )
    match = pattern.fullmatch(bare)
    if match is None:
        return None
    delivery_id = int(match.group(1))
    if not hmac.compare_digest(match.group(2).lower(), _signature(delivery_id, secret)):
        return None
    return delivery_id


def check_return_path(return_path: str) -> None:
    """Raise ConfigError (naming the setting) unless ``return_path`` is an address."""
    _split(return_path)


def return_path_base(settings: Settings) -> str:
    """The configured return path, or the sender's address when none is set."""
    return settings.return_path or settings.sender_address


def envelope_sender(settings: Settings, delivery_id: int) -> str:
    """The SMTP MAIL FROM of one delivery: its VERP address when ``verp`` is on,
    else the return path (or the sender's address)."""
    base = return_path_base(settings)
    if not settings.verp:
        return base
    return verp_address(
        delivery_id, return_path=base, secret=settings.secret_key.get_secret_value()
    )
