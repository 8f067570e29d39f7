"""Optional DKIM signing of outgoing issues (dkimpy), rsa-sha256 or ed25519-sha256.

Off by default: relays usually sign for the sending domain. When it is on, the
signature covers the headers a receiver judges an issue by, both RFC 8058
unsubscribe headers included (Gmail and Yahoo only honour one-click unsubscribe
when it is signed), with relaxed/relaxed canonicalisation so that a relay's
refolding of headers or trailing white space does not break it. Every signed
header is also "oversigned" (named once more than it occurs), so no header of those
names can be added in transit without breaking the signature.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Literal

from newsletter.errors import ConfigError
from newsletter.settings import Settings

Algorithm = Literal["rsa-sha256", "ed25519-sha256"]

SIGNED_HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "MIME-Version",
    "Content-Type",
)
_SIGNED = {name.lower().encode("ascii") for name in SIGNED_HEADERS}
_ED25519_SEED_BYTES = 32
_MIN_RSA_BITS = 1024  # receivers ignore shorter keys (RFC 8301)
_PROBE = b"From: probe@example.org\r\nSubject: probe\r\n\r\nprobe\r\n"

_SETTING = {
    "dkim_domain": "dkim_domain (NEWSLETTER_DKIM_DOMAIN)",
    "dkim_selector": "dkim_selector (NEWSLETTER_DKIM_SELECTOR)",
    "dkim_key_file": "dkim_key_file (NEWSLETTER_DKIM_KEY_FILE)",
}


@dataclass(frozen=True)
class DkimSigner:
    """Signs messages for one domain and selector with one private key."""

    domain: str
    selector: str
    private_key: bytes
    algorithm: Algorithm = "rsa-sha256"

    @classmethod
    def from_settings(cls, settings: Settings) -> DkimSigner | None:
        """The signer the settings describe, or None when DKIM is not configured.

        Setting only some of domain, selector and key file is refused rather than
        silently sending unsigned mail; so is a key that cannot be read or used.
        """
        domain, selector, path = (
            settings.dkim_domain,
            settings.dkim_selector,
            settings.dkim_key_file,
        )
        if not domain and not selector and path is None:
            return None
        given = {"dkim_domain": domain, "dkim_selector": selector, "dkim_key_file": path}
        if not domain or not selector or path is None:
            missing = next(name for name, value in given.items() if not value)
            present = [_SETTING[name] for name, value in given.items() if value]
            verb = "is" if len(present) == 1 else "are"
            raise ConfigError(
                f"invalid setting {_SETTING[missing]}: not set, but {' and '.join(present)} "
                f"{verb}: set all three to sign with DKIM, or none"
            )
        for name, value in (("dkim_domain", domain), ("dkim_selector", selector)):
            if not value.isascii() or any(ch.isspace() or ch == ";" for ch in value):
                raise ConfigError(
                    f"invalid setting {_SETTING[name]}: {value!r} must be plain ASCII "
                    "without spaces or ';' (use the punycode form of a domain)"
                )
        try:
            key = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"invalid setting {_SETTING['dkim_key_file']}: cannot read {path}: "
                f"{exc.strerror or exc}"
            ) from None
        signer = cls(
            domain=domain,
            selector=selector,
            private_key=key.strip() if settings.dkim_algorithm == "ed25519-sha256" else key,
            algorithm=settings.dkim_algorithm,
        )
        signer._check_key(str(path))
        return signer

    def _check_key(self, where: str) -> None:
        """Refuse a key dkimpy cannot sign with, at start-up rather than per message."""
        expected = (
            "a PEM RSA private key"
            if self.algorithm == "rsa-sha256"
            else "an ed25519 key in dkimpy's format (the base64 32-byte seed)"
        )
        problem = f"{where} is not {expected} for dkim_algorithm {self.algorithm}"
        if self.algorithm == "ed25519-sha256":
            try:
                seed = base64.b64decode(self.private_key, validate=True)
            except ValueError:
                seed = b""
            if len(seed) != _ED25519_SEED_BYTES:
                raise ConfigError(f"invalid setting {_SETTING['dkim_key_file']}: {problem}")
        else:
            try:
                from dkim.crypto import parse_pem_private_key  # type: ignore[import-untyped]

                bits = parse_pem_private_key(self.private_key)["modulus"].bit_length()
            except Exception:  # dkimpy's ASN.1 parser raises several unrelated types
                raise ConfigError(
                    f"invalid setting {_SETTING['dkim_key_file']}: {problem}"
                ) from None
            if bits < _MIN_RSA_BITS:
                raise ConfigError(
                    f"invalid setting {_SETTING['dkim_key_file']}: {where} is a {bits}-bit "
                    f"RSA key; receivers ignore keys shorter than {_MIN_RSA_BITS} bits"
                )
        import dkim  # type: ignore[import-untyped]

        try:
            self.sign(_PROBE)
        except (dkim.DKIMException, ValueError) as exc:
            raise ConfigError(
                f"invalid setting {_SETTING['dkim_key_file']}: {problem} ({exc})"
            ) from None

    def sign(self, message: bytes) -> bytes:
        """The message with a ``DKIM-Signature:`` header prepended."""
        # dkimpy is imported when DKIM is configured, not by every delivery run (~0.15 s).
        import dkim

        linesep = b"\r\n" if b"\r\n" in message[:4096] else b"\n"
        signer = dkim.DKIM(
            message, signature_algorithm=self.algorithm.encode("ascii"), linesep=linesep
        )
        counts: dict[bytes, int] = {}
        for name, _value in signer.headers:
            lowered = name.lower()
            if lowered in _SIGNED:
                counts[lowered] = counts.get(lowered, 0) + 1
        # Each present header once per occurrence plus once more (oversigning).
        include = [name for name, count in counts.items() for _ in range(count + 1)]
        signature: bytes = signer.sign(
            self.selector.encode("ascii"),
            self.domain.encode("ascii"),
            self.private_key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=include,
        )
        return signature + message
