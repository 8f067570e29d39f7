"""DKIM signing: keys made at test time, signatures checked by dkimpy's own verifier
against a public key served from a local table instead of DNS."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import dkim  # type: ignore[import-untyped]
import nacl.encoding
import nacl.signing
import pytest
from dkim.util import parse_tag_value  # type: ignore[import-untyped]

from newsletter.errors import ConfigError
from newsletter.mail.dkim import DkimSigner
from newsletter.mail.message import MessageHeaders, build_message, message_id_for
from newsletter.mail.render import RenderedIssue
from tests.conftest import make_settings

DOMAIN = "example.org"
SELECTOR = "news"
UNSUBSCRIBE_URL = "https://papers.example.org/unsubscribe/WzQyLDNd.aww-yg.6VWQjqhvtW3s92Wkgn"


@dataclass(frozen=True)
class Key:
    algorithm: str  # the dkim_algorithm setting
    path: Path  # the private key, as the operator stores it
    dns_record: bytes  # the TXT record published at <selector>._domainkey.<domain>


def _openssl(*args: str) -> bytes:
    return subprocess.run(["openssl", *args], check=True, capture_output=True).stdout


def _rsa_key(directory: Path, bits: int = 2048) -> Key:
    path = directory / f"rsa-{bits}.pem"
    _openssl("genrsa", "-out", str(path), str(bits))
    public = _openssl("rsa", "-in", str(path), "-pubout", "-outform", "DER")
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    return Key("rsa-sha256", path, record)


def _ed25519_key(directory: Path) -> Key:
    signing = nacl.signing.SigningKey.generate()
    path = directory / "ed25519.key"
    path.write_bytes(signing.encode(encoder=nacl.encoding.Base64Encoder) + b"\n")
    public = signing.verify_key.encode(encoder=nacl.encoding.Base64Encoder)
    return Key("ed25519-sha256", path, b"v=DKIM1; k=ed25519; p=" + public)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Key]:
    directory = tmp_path_factory.mktemp("dkim")
    return {"rsa-sha256": _rsa_key(directory), "ed25519-sha256": _ed25519_key(directory)}


@pytest.fixture(params=["rsa-sha256", "ed25519-sha256"])
def key(request: pytest.FixtureRequest, keys: dict[str, Key]) -> Key:
    found: Key = keys[request.param]
    return found


def dns_for(key: Key) -> Callable[..., bytes | None]:
    """A resolver that knows exactly one DKIM key record."""

    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        if name.rstrip(b".") == f"{SELECTOR}._domainkey.{DOMAIN}".encode():
            return key.dns_record
        return None

    return lookup


def signer_for(key: Key) -> DkimSigner:
    settings = make_settings(
        dkim_domain=DOMAIN,
        dkim_selector=SELECTOR,
        dkim_key_file=key.path,
        dkim_algorithm=key.algorithm,
    )
    signer = DkimSigner.from_settings(settings)
    assert signer is not None
    return signer


def issue() -> bytes:
    """A real issue as the sender builds it (multipart, encoded headers, raw List-*)."""
    rendered = RenderedIssue(
        subject="Paper Newsletter · 3 new papers für Sie 📚",
        html="<p>Grüße</p>\n",
        text="Grüße\n",
    )
    headers = MessageHeaders(
        sender="Paper Newsletter <newsletter@example.org>",
        to_address="ada@example.com",
        to_name="Ada Lovelace",
        message_id=message_id_for(
            delivery_id=7, edition=date(2026, 5, 27), sender_address="newsletter@example.org"
        ),
        list_id="papers.example.org",
        list_name="Paper Newsletter",
        unsubscribe_url=UNSUBSCRIBE_URL,
        date=datetime(2026, 5, 27, 7, 0, tzinfo=UTC),
    )
    return build_message(rendered, headers)


def signature_tags(signed: bytes) -> dict[bytes, bytes]:
    head = signed.split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"DKIM-Signature: ")
    lines = head.split(b"\r\n")
    field = [lines[0]]
    for line in lines[1:]:
        if not line[:1].isspace():
            break
        field.append(line)
    value = b"".join(field)[len(b"DKIM-Signature: ") :]
    tags: dict[bytes, bytes] = parse_tag_value(b"".join(value.split()))
    return tags


def test_signed_issue_verifies_and_covers_the_unsubscribe_headers(key: Key) -> None:
    message = issue()
    signed = signer_for(key).sign(message)
    # The signature is prepended; the message itself is untouched.
    assert signed.startswith(b"DKIM-Signature: ")
    assert signed.endswith(message)
    assert dkim.verify(signed, dnsfunc=dns_for(key))
    tags = signature_tags(signed)
    assert tags[b"a"] == key.algorithm.encode()
    assert tags[b"c"] == b"relaxed/relaxed"
    assert tags[b"d"] == DOMAIN.encode()
    assert tags[b"s"] == SELECTOR.encode()
    signed_headers = tags[b"h"].split(b":")
    expected = {
        b"from",
        b"to",
        b"subject",
        b"date",
        b"message-id",
        b"list-id",
        b"list-unsubscribe",
        b"list-unsubscribe-post",
        b"mime-version",
        b"content-type",
    }
    assert set(signed_headers) == expected
    # Every one is named twice: once for the header, once more so none can be added.
    assert all(signed_headers.count(name) == 2 for name in expected)


def test_signed_issue_keeps_crlf_line_ends_only(key: Key) -> None:
    """The signature header is folded with CRLF too: the delivery workers send composed
    messages without a normalising pass (``SmtpPool.send(crlf=True)``)."""
    signed = signer_for(key).sign(issue())
    assert signed.count(b"\r\n") == signed.count(b"\n") == signed.count(b"\r")
    assert signed.split(b"\r\n\r\n", 1)[0].count(b"\r\n ") >= 1  # folded, with CRLF


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            lambda m: m.replace(b"unsubscribe/WzQyLDNd", b"unsubscribe/XzQyLDNd", 1),
            id="unsubscribe-url-altered",
        ),
        pytest.param(
            lambda m: m.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", b"", 1),
            id="unsubscribe-post-removed",
        ),
        pytest.param(
            lambda m: m.replace(
                b"\r\n\r\n", b"\r\nList-Unsubscribe: <https://evil.example/u>\r\n\r\n", 1
            ),
            id="second-unsubscribe-added",
        ),
        pytest.param(lambda m: m + b"P.S. added in transit\r\n", id="body-appended"),
    ],
)
def test_tampering_after_signing_breaks_the_signature(
    key: Key, change: Callable[[bytes], bytes]
) -> None:
    signed = signer_for(key).sign(issue())
    tampered = change(signed)
    assert tampered != signed
    assert dkim.verify(signed, dnsfunc=dns_for(key))
    assert not dkim.verify(tampered, dnsfunc=dns_for(key))


def test_relaxed_canonicalisation_survives_refolding_by_a_relay(key: Key) -> None:
    signed = signer_for(key).sign(issue())
    refolded = signed.replace(b"\r\nList-Id: ", b"\r\nlist-id:   ", 1).replace(
        b"\r\nMIME-Version: 1.0\r\n", b"\r\nMIME-Version:\r\n 1.0 \r\n", 1
    )
    assert refolded != signed
    assert dkim.verify(refolded, dnsfunc=dns_for(key))


def test_only_headers_present_are_signed(keys: dict[str, Key]) -> None:
    key = keys["rsa-sha256"]
    message = (
        b"From: Paper Newsletter <newsletter@example.org>\r\n"
        b"To: ada@example.com\r\n"
        b"Subject: hello\r\n"
        b"X-Mailer: not signed\r\n"
        b"\r\n"
        b"hello\r\n"
    )
    signed = signer_for(key).sign(message)
    assert dkim.verify(signed, dnsfunc=dns_for(key))
    assert signature_tags(signed)[b"h"].split(b":") == [
        b"from",
        b"from",
        b"to",
        b"to",
        b"subject",
        b"subject",
    ]
    # A header outside the signed set may change; one inside may not.
    assert dkim.verify(signed.replace(b"not signed", b"changed"), dnsfunc=dns_for(key))
    assert not dkim.verify(
        signed.replace(b"Subject: hello", b"Subject: hullo"), dnsfunc=dns_for(key)
    )


def test_signing_is_off_unless_configured() -> None:
    assert DkimSigner.from_settings(make_settings()) is None


def test_partial_configuration_is_refused(keys: dict[str, Key]) -> None:
    path = keys["rsa-sha256"].path
    with pytest.raises(ConfigError, match=r"dkim_selector \(NEWSLETTER_DKIM_SELECTOR\)"):
        DkimSigner.from_settings(make_settings(dkim_domain=DOMAIN, dkim_key_file=path))
    with pytest.raises(ConfigError, match=r"dkim_key_file .*: not set"):
        DkimSigner.from_settings(make_settings(dkim_domain=DOMAIN, dkim_selector=SELECTOR))


def test_bad_keys_are_config_errors_naming_the_setting(
    keys: dict[str, Key], tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    short = _rsa_key(tmp_path, bits=512).path
    cases = [
        (tmp_path / "missing.pem", "rsa-sha256", "cannot read"),
        (tmp_path, "rsa-sha256", "cannot read"),  # a directory, unreadable as a key
        (garbage, "rsa-sha256", "not a PEM RSA private key"),
        (keys["ed25519-sha256"].path, "rsa-sha256", "not a PEM RSA private key"),
        (keys["rsa-sha256"].path, "ed25519-sha256", "not an ed25519 key"),
        (short, "rsa-sha256", "512-bit"),
    ]
    for path, algorithm, reason in cases:
        settings = make_settings(
            dkim_domain=DOMAIN,
            dkim_selector=SELECTOR,
            dkim_key_file=path,
            dkim_algorithm=algorithm,
        )
        with pytest.raises(ConfigError, match="dkim_key_file") as caught:
            DkimSigner.from_settings(settings)
        assert reason in str(caught.value), (path, str(caught.value))
        assert "\n" not in str(caught.value)


def test_a_domain_with_spaces_is_refused(keys: dict[str, Key]) -> None:
    settings = make_settings(
        dkim_domain="example .org", dkim_selector=SELECTOR, dkim_key_file=keys["rsa-sha256"].path
    )
    with pytest.raises(ConfigError, match="dkim_domain"):
        DkimSigner.from_settings(settings)
