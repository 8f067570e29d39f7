"""Delivery status notifications: parsing real-world bounces, matching them to
deliveries, and applying the bounce rules, on SQLite and PostgreSQL.

The DSNs under tests/data/bounces are written as Postfix, Exim, Gmail and Microsoft
send them; the junk beside them (a reply, an auto-reply, an empty file, broken MIME,
a success report) must be counted and left alone.
"""

from __future__ import annotations

import mailbox
import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from newsletter.bounces.dsn import BounceReport, parse_dsn
from newsletter.bounces.mailboxes import (
    BounceSummary,
    process_mailbox,
    process_maildir,
    run_bounces,
)
from newsletter.bounces.matching import process_bounce
from newsletter.db import SessionFactory
from newsletter.errors import ConfigError, NewsletterError
from newsletter.mail.message import message_id_for
from newsletter.mail.verp import verp_address
from newsletter.models import (
    Bounce,
    BounceKind,
    Delivery,
    DeliveryStatus,
    Edition,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from newsletter.settings import Settings
from tests.conftest import TEST_SECRET, make_settings

DATA = Path(__file__).parent / "data" / "bounces"
EDITION = date(2026, 5, 27)
NEXT_EDITION = date(2026, 5, 28)
SENDER = "newsletter@example.org"
RETURN_PATH = "bounces@example.org"
HARD, SOFT = BounceKind.HARD, BounceKind.SOFT

# fixture -> (subscriber address, delivery id its Message-ID names, kind, status, SMTP code)
MATCHED: dict[str, tuple[str, int, BounceKind, str, int | None]] = {
    "postfix-user-unknown.eml": ("alice@example.com", 4201, HARD, "5.1.1", 550),
    "postfix-delayed.eml": ("bob@example.net", 4202, SOFT, "4.4.1", None),
    "exim-mailbox-disabled.eml": ("carol@example.net", 4203, HARD, "5.0.0", 550),
    "gmail-no-such-user.eml": ("dave.nobody@gmail.com", 4204, HARD, "5.1.1", 550),
    "microsoft-recipient-not-found.eml": ("erin@outlook.com", 4205, HARD, "5.1.10", 550),
    "exim-legacy-plain.eml": ("frank@example.net", 4206, HARD, "5.1.1", 550),
}
# A DSN from a forwarding host that quotes nothing of the original: only VERP can tell
# that the forwarded address belongs to grace, whose delivery is 4207.
NO_ORIGINAL = "postfix-no-original.eml"
GRACE, GRACE_DELIVERY, GRACE_FORWARD = "grace@example.net", 4207, "grace.moved@elsewhere.example"
JUNK = [
    "not-a-bounce.eml",
    "auto-reply.eml",
    "empty.eml",
    "broken-mime.eml",
    "postfix-relayed.eml",
]


def dsn(name: str) -> bytes:
    return (DATA / name).read_bytes()


def with_verp(raw: bytes, delivery_id: int, *, secret: str = TEST_SECRET) -> bytes:
    """The DSN as the local delivery agent stores it when it arrived at a VERP address."""
    address = verp_address(delivery_id, return_path=RETURN_PATH, secret=secret)
    return f"Delivered-To: {address}\n".encode() + raw


def bounce_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"return_path": RETURN_PATH, "verp": True}
    values.update(overrides)
    return make_settings(database_url, **values)


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("name", sorted(MATCHED))
def test_each_real_world_bounce_is_read(name: str) -> None:
    address, delivery_id, kind, status, code = MATCHED[name]
    [report] = parse_dsn(dsn(name))
    assert report.recipient == address
    assert report.kind == kind
    assert report.status == status
    assert report.smtp_code == code
    assert report.original_message_id == f"<issue-20260527-{delivery_id}@example.org>"
    assert report.verp_delivery_id is None
    assert report.diagnostic
    assert "\n" not in report.diagnostic


def test_a_dsn_that_quotes_nothing_still_names_the_failed_address() -> None:
    [report] = parse_dsn(dsn(NO_ORIGINAL))
    assert (report.recipient, report.kind, report.status) == (GRACE_FORWARD, HARD, "5.1.1")
    assert report.original_message_id is None
    assert report.diagnostic == "smtp; 550 5.1.1 No such user"


@pytest.mark.parametrize("name", JUNK)
def test_junk_is_not_a_bounce(name: str) -> None:
    assert parse_dsn(dsn(name)) == []


def test_global_delivery_status_with_a_utf8_address() -> None:
    raw = (
        "From: MAILER-DAEMON@mx.example.de\n"
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/report; report-type=global-delivery-status; boundary=XX\n"
        "\n--XX\nContent-Type: text/plain; charset=utf-8\n\nUnzustellbar.\n"
        "--XX\nContent-Type: message/global-delivery-status\n\n"
        "Reporting-MTA: dns; mx.example.de\n\n"
        "Final-Recipient: utf-8; jörg@example.de\nAction: failed\nStatus: 5.1.1\n"
        "Diagnostic-Code: smtp; 550 5.1.1 Benutzer unbekannt\n\n"
        "Final-Recipient: rfc822; anna@example.de\nAction: delivered\nStatus: 2.0.0\n\n"
        "--XX--\n"
    ).encode()
    [report] = parse_dsn(raw)
    assert (report.recipient, report.kind, report.smtp_code) == ("jörg@example.de", HARD, 550)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted([*MATCHED, NO_ORIGINAL, *JUNK])),
    cut=st.floats(min_value=0, max_value=1),
    noise=st.binary(max_size=64),
)
def test_mangled_bounces_never_raise(name: str, cut: float, noise: bytes) -> None:
    raw = dsn(name)
    at = int(len(raw) * cut)
    reports = parse_dsn(raw[:at] + noise + raw[at + len(noise) :])
    assert all(isinstance(report, BounceReport) for report in reports)
    assert all(report.kind in (HARD, SOFT) and report.recipient for report in reports)


# --------------------------------------------------------------------------- database


@pytest.fixture
def world(sessions: SessionFactory) -> SessionFactory:
    """One edition sent to the subscriber of every fixture, with the Message-IDs the
    fixtures quote (delivery ids fixed so the DSNs can name them)."""
    addresses = {address: delivery_id for address, delivery_id, *_ in MATCHED.values()}
    addresses[GRACE] = GRACE_DELIVERY
    with sessions.begin() as session:
        edition = Edition(date=EDITION)
        session.add(edition)
        session.flush()
        for address, delivery_id in addresses.items():
            subscriber = Subscriber(email=address, status=SubscriberStatus.ACTIVE)
            session.add(subscriber)
            session.flush()
            add_sent_delivery(session, delivery_id, edition, subscriber)
    return sessions


def add_sent_delivery(session: Any, delivery_id: int, edition: Edition, subscriber: Any) -> None:
    session.add(
        Delivery(
            id=delivery_id,
            edition_id=edition.id,
            subscriber_id=subscriber.id,
            status=DeliveryStatus.SENT,
            attempts=1,
            message_id=message_id_for(
                delivery_id=delivery_id, edition=edition.date, sender_address=SENDER
            ),
            last_smtp_code=250,
        )
    )
    session.flush()


def snapshot(sessions: SessionFactory) -> dict[str, Any]:
    """Everything the bounce rules may change, in comparable form."""
    with sessions() as session:
        return {
            "bounces": sorted(
                (b.email, b.delivery_id, b.kind.value, b.source, b.code, b.reply)
                for b in session.scalars(select(Bounce))
            ),
            "suppressions": sorted(session.scalars(select(Suppression.email))),
            "subscribers": dict(session.execute(select(Subscriber.email, Subscriber.status)).all()),
            "deliveries": dict(session.execute(select(Delivery.id, Delivery.status)).all()),
        }


def make_maildir(path: Path, names: list[str]) -> Path:
    box = mailbox.Maildir(path, create=True)
    for name in names:
        box.add(dsn(name))
    return path


def files(maildir: Path, sub: str) -> list[str]:
    return sorted(p.name for p in (maildir / sub).iterdir())


def test_maildir_run_matches_by_message_id_and_applies_the_rules(
    world: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    maildir = make_maildir(tmp_path / "bounces", [*MATCHED, *JUNK])
    before = snapshot(world)

    summary = process_maildir(world, maildir, settings=bounce_settings(database_url))

    assert (summary.read, summary.bounces, summary.hard, summary.soft) == (11, 6, 5, 1)
    assert (summary.unmatched, summary.not_bounces, summary.errors) == (0, 5, 0)
    after = snapshot(world)
    hard = {a: d for a, d, kind, *_ in MATCHED.values() if kind == HARD}
    assert after["suppressions"] == sorted(hard)
    for address, delivery_id, kind, status, code in MATCHED.values():
        rows = [b for b in after["bounces"] if b[0] == address]
        assert len(rows) == 1, address
        _email, bounced_delivery, recorded_kind, source, recorded_code, reply = rows[0]
        assert (bounced_delivery, recorded_kind, source) == (delivery_id, kind.value, "dsn")
        assert recorded_code == code
        assert reply.startswith(status)
        assert "[DSN <" in reply
        expected = SubscriberStatus.BOUNCED if kind == HARD else SubscriberStatus.ACTIVE
        assert after["subscribers"][address] == expected
        sent_or_bounced = DeliveryStatus.BOUNCED if kind == HARD else DeliveryStatus.SENT
        assert after["deliveries"][delivery_id] == sent_or_bounced
    # Grace was in no DSN: untouched.
    assert after["subscribers"][GRACE] == before["subscribers"][GRACE]
    assert after["deliveries"][GRACE_DELIVERY] == DeliveryStatus.SENT
    # Every message, bounce or junk, has been marked seen in cur/.
    assert files(maildir, "new") == []
    seen = files(maildir, "cur")
    assert len(seen) == 11
    assert all(name.endswith(":2,S") for name in seen)

    again = process_maildir(world, maildir, settings=bounce_settings(database_url))
    assert again.read == 0
    assert snapshot(world) == after
    assert files(maildir, "cur") == seen


def test_processing_the_same_dsn_twice_changes_nothing(
    world: SessionFactory, database_url: str
) -> None:
    config = bounce_settings(database_url)
    raws = [dsn(name) for name in MATCHED] + [dsn(NO_ORIGINAL)]  # the last one unmatched
    for raw in raws:
        with world.begin() as session:
            first = process_bounce(session, raw, settings=config)
        assert first
        assert all(result.outcome.recorded for result in first)
    after_first = snapshot(world)
    assert len(after_first["bounces"]) == len(raws)
    for raw in raws:
        with world.begin() as session:
            second = process_bounce(session, raw, settings=config)
        assert second
        assert not any(result.outcome.recorded for result in second)
    assert snapshot(world) == after_first


@pytest.mark.parametrize("verp", [True, False], ids=["verp-on", "verp-since-turned-off"])
def test_verp_names_the_delivery_when_the_dsn_quotes_nothing(
    world: SessionFactory, database_url: str, verp: bool
) -> None:
    # Bounces of mail sent while VERP was on still match after it is turned off.
    config = bounce_settings(database_url, verp=verp)
    with world.begin() as session:
        [result] = process_bounce(
            session, with_verp(dsn(NO_ORIGINAL), GRACE_DELIVERY), settings=config
        )
    assert (result.matched_by, result.delivery_id, result.email) == ("verp", 4207, GRACE)
    assert result.report.verp_delivery_id == GRACE_DELIVERY
    assert result.outcome.suppressed
    after = snapshot(world)
    assert GRACE in after["suppressions"]
    assert after["subscribers"][GRACE] == SubscriberStatus.BOUNCED
    assert after["deliveries"][GRACE_DELIVERY] == DeliveryStatus.BOUNCED
    [bounce] = after["bounces"]
    assert GRACE_FORWARD in bounce[5]  # the address that actually failed is kept


def test_verp_beats_a_message_id_that_names_another_delivery(
    world: SessionFactory, database_url: str
) -> None:
    # Alice's DSN arriving at Grace's VERP address: the signed address wins.
    with world.begin() as session:
        [result] = process_bounce(
            session,
            with_verp(dsn("postfix-user-unknown.eml"), GRACE_DELIVERY),
            settings=bounce_settings(database_url),
        )
    assert (result.matched_by, result.delivery_id) == ("verp", GRACE_DELIVERY)


def test_a_late_bounce_for_a_reused_delivery_id_does_not_bounce_its_new_owner(
    world: SessionFactory, database_url: str
) -> None:
    # Someone's issue 4207 of an earlier edition bounces after they deleted their data
    # and SQLite gave id 4207 to Grace's delivery: Grace must not be bounced.
    earlier = message_id_for(
        delivery_id=GRACE_DELIVERY, edition=date(2026, 5, 20), sender_address=SENDER
    )
    raw = dsn("postfix-user-unknown.eml").replace(
        b"<issue-20260527-4201@example.org>", earlier.encode()
    )
    assert earlier.encode() in raw
    with world.begin() as session:
        [result] = process_bounce(
            session, with_verp(raw, GRACE_DELIVERY), settings=bounce_settings(database_url)
        )
    assert (result.matched_by, result.delivery_id) == ("address", None)
    after = snapshot(world)
    assert after["deliveries"][GRACE_DELIVERY] == DeliveryStatus.SENT
    assert after["subscribers"][GRACE] == SubscriberStatus.ACTIVE
    assert GRACE not in after["suppressions"]


def test_forged_verp_address_is_not_trusted(world: SessionFactory, database_url: str) -> None:
    forged = with_verp(dsn(NO_ORIGINAL), GRACE_DELIVERY, secret="another-secret-" + "x" * 32)
    with world.begin() as session:
        [result] = process_bounce(session, forged, settings=bounce_settings(database_url))
    assert (result.matched_by, result.delivery_id) == ("address", None)
    after = snapshot(world)
    assert after["subscribers"][GRACE] == SubscriberStatus.ACTIVE
    assert after["deliveries"][GRACE_DELIVERY] == DeliveryStatus.SENT
    # Recorded against the address that failed, which is suppressed (bounce_limit 1).
    assert [b[:3] for b in after["bounces"]] == [(GRACE_FORWARD, None, "hard")]
    assert after["suppressions"] == [GRACE_FORWARD]


def test_unmatched_bounce_is_counted_and_recorded_against_the_address(
    world: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    maildir = make_maildir(tmp_path / "bounces", [NO_ORIGINAL])
    summary = process_maildir(world, maildir, settings=bounce_settings(database_url))
    assert (summary.read, summary.bounces, summary.hard, summary.unmatched) == (1, 1, 1, 1)
    assert snapshot(world)["suppressions"] == [GRACE_FORWARD]


def test_soft_bounce_is_recorded_without_suppression(
    world: SessionFactory, database_url: str
) -> None:
    with world.begin() as session:
        [result] = process_bounce(
            session, dsn("postfix-delayed.eml"), settings=bounce_settings(database_url)
        )
    assert (result.report.kind, result.delivery_id, result.matched_by) == (SOFT, 4202, "message-id")
    assert not result.outcome.suppressed
    after = snapshot(world)
    assert [b[:3] for b in after["bounces"]] == [("bob@example.net", 4202, "soft")]
    assert after["suppressions"] == []
    assert after["subscribers"]["bob@example.net"] == SubscriberStatus.ACTIVE
    assert after["deliveries"][4202] == DeliveryStatus.SENT


def test_bounce_limit_two_needs_two_hard_bounces(world: SessionFactory, database_url: str) -> None:
    config = bounce_settings(database_url, bounce_limit=2)
    with world.begin() as session:
        alice = session.scalars(select(Subscriber).where(Subscriber.email == "alice@example.com"))
        edition = Edition(date=NEXT_EDITION)
        session.add(edition)
        session.flush()
        add_sent_delivery(session, 4211, edition, alice.one())
    first = dsn("postfix-user-unknown.eml")
    second = first.replace(b"<issue-20260527-4201@", b"<issue-20260528-4211@").replace(
        b"4Yx2b01kQhz4wB3@mx", b"4Yx9z99kQhz4wB3@mx"
    )

    with world.begin() as session:
        [result] = process_bounce(session, first, settings=config)
    assert (result.delivery_id, result.outcome.recorded, result.outcome.suppressed) == (
        4201,
        True,
        False,
    )
    middle = snapshot(world)
    assert middle["suppressions"] == []
    assert middle["subscribers"]["alice@example.com"] == SubscriberStatus.ACTIVE
    assert middle["deliveries"][4201] == DeliveryStatus.BOUNCED

    with world.begin() as session:
        [result] = process_bounce(session, second, settings=config)
    assert (result.delivery_id, result.outcome.suppressed) == (4211, True)
    after = snapshot(world)
    assert after["suppressions"] == ["alice@example.com"]
    assert after["subscribers"]["alice@example.com"] == SubscriberStatus.BOUNCED
    assert after["deliveries"][4211] == DeliveryStatus.BOUNCED


def test_an_unreadable_message_is_an_error_and_the_others_still_count(
    world: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    maildir = make_maildir(tmp_path / "bounces", ["postfix-user-unknown.eml", "empty.eml"])
    (maildir / "new" / "1779865333.M1P1.unreadable").mkdir()  # cannot be read as a file
    config = bounce_settings(database_url)

    summary = process_maildir(world, maildir, settings=config)
    assert (summary.read, summary.bounces, summary.not_bounces, summary.errors) == (3, 1, 1, 1)
    assert snapshot(world)["suppressions"] == ["alice@example.com"]
    # The failed one stays where it was, for the next run; the others are done.
    assert files(maildir, "new") == ["1779865333.M1P1.unreadable"]
    again = process_maildir(world, maildir, settings=config)
    assert (again.read, again.errors, again.bounces) == (1, 1, 0)


def test_seen_messages_in_cur_are_skipped_and_unseen_ones_read(
    world: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    maildir = make_maildir(tmp_path / "bounces", [])
    (maildir / "cur" / "1779865000.M1P1.host:2,S").write_bytes(dsn("postfix-user-unknown.eml"))
    (maildir / "cur" / "1779865001.M2P1.host:2,F").write_bytes(dsn("gmail-no-such-user.eml"))
    summary = process_maildir(world, maildir, settings=bounce_settings(database_url))
    assert (summary.read, summary.hard) == (1, 1)
    assert snapshot(world)["suppressions"] == ["dave.nobody@gmail.com"]
    assert files(maildir, "cur") == ["1779865000.M1P1.host:2,S", "1779865001.M2P1.host:2,FS"]


def test_a_missing_or_non_maildir_path_is_a_clear_error(
    sessions: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    config = bounce_settings(database_url)
    with pytest.raises(NewsletterError, match="does not exist"):
        process_maildir(sessions, tmp_path / "nowhere", settings=config)
    with pytest.raises(NewsletterError, match="is not a Maildir"):
        process_maildir(sessions, tmp_path, settings=config)


def test_run_bounces_uses_the_given_maildir_or_the_configured_one(
    world: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    given_dir = make_maildir(tmp_path / "given", ["postfix-user-unknown.eml", "auto-reply.eml"])
    configured = make_maildir(tmp_path / "configured", ["gmail-no-such-user.eml"])
    config = bounce_settings(database_url, bounce_mailbox="maildir", bounce_maildir=configured)

    summary = run_bounces(config, given_dir)
    assert str(summary) == (
        "read 2 messages: 1 bounces (1 hard, 0 soft, 0 unmatched), 1 not bounces, 0 errors"
    )
    summary = run_bounces(config, None)
    assert (summary.read, summary.hard) == (1, 1)
    assert snapshot(world)["suppressions"] == ["alice@example.com", "dave.nobody@gmail.com"]


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({}, "bounce_mailbox"),
        ({"bounce_mailbox": "maildir"}, "bounce_maildir"),
        ({"bounce_mailbox": "imap"}, "bounce_host"),
        ({"bounce_mailbox": "pop3", "bounce_host": "localhost"}, "bounce_username"),
        (
            {"bounce_mailbox": "imap", "bounce_host": "localhost", "bounce_username": "u"},
            "bounce_password",
        ),
    ],
)
def test_an_unusable_mailbox_configuration_names_the_setting(
    sessions: SessionFactory, overrides: dict[str, Any], setting: str
) -> None:
    # sqlite:// that is never opened: the configuration is refused before connecting.
    config = bounce_settings("sqlite:///nowhere/never.db", **overrides)
    with pytest.raises(ConfigError, match=rf"invalid setting {setting} \("):
        run_bounces(config, None)
    with pytest.raises(ConfigError, match=rf"invalid setting {setting} \("):
        process_mailbox(sessions, config)


def test_summary_counts_add_up() -> None:
    summary = BounceSummary(read=4, bounces=3, hard=2, soft=1, unmatched=1, not_bounces=1)
    assert str(summary) == (
        "read 4 messages: 3 bounces (2 hard, 1 soft, 1 unmatched), 1 not bounces, 0 errors"
    )


# --------------------------------------------------------------------------- IMAP and POP3
#
# Small real servers on a local socket, speaking just the commands imaplib and poplib
# send here, so the client code runs against the protocol rather than a mock.

USER, PASSWORD = "bounces@example.org", "mailbox-password"


class Mailbox:
    """The server side: messages by number, with a seen flag (IMAP) or deleted (POP3)."""

    def __init__(self, raws: list[bytes]) -> None:
        self.messages = dict(enumerate(raws, start=1))
        self.seen: set[int] = set()
        self.logins: list[str] = []


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, handler: type[socketserver.StreamRequestHandler], box: Mailbox) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.box = box


class ImapHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        box: Mailbox = self.server.box  # type: ignore[attr-defined]
        self.send(b"* OK IMAP4rev1 test server ready")
        while line := self.rfile.readline():
            tag, _, rest = line.decode().rstrip("\r\n").partition(" ")
            command, _, args = rest.partition(" ")
            command = command.upper()
            if command == "CAPABILITY":
                self.send(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN")
            elif command == "LOGIN":
                user, _, password = args.partition(" ")
                box.logins.append(user)
                if password.strip('"') != PASSWORD:
                    self.send(f"{tag} NO [AUTHENTICATIONFAILED] Invalid credentials".encode())
                    continue
            elif command == "SELECT":
                if args != '"INBOX"':
                    self.send(f"{tag} NO no such folder".encode())
                    continue
                self.send(f"* {len(box.messages)} EXISTS".encode())
            elif command == "UID":
                if not self.uid(tag, args.split(" ", 2), box):
                    continue
            elif command == "LOGOUT":
                self.send(b"* BYE logging out")
                self.send(f"{tag} OK LOGOUT completed".encode())
                return
            else:
                self.send(f"{tag} BAD unknown command".encode())
                continue
            self.send(f"{tag} OK {command} completed".encode())

    def uid(self, tag: str, words: list[str], box: Mailbox) -> bool:
        verb = words[0].upper()
        if verb == "SEARCH" and words[1:] == ["UNSEEN"]:
            unseen = " ".join(str(n) for n in sorted(box.messages) if n not in box.seen)
            self.send(f"* SEARCH {unseen}".rstrip().encode())
        elif verb == "FETCH" and words[2] == "(BODY.PEEK[])":
            number = int(words[1])
            raw = box.messages[number]
            self.wfile.write(f"* {number} FETCH (UID {number} BODY[] {{{len(raw)}}}\r\n".encode())
            self.wfile.write(raw + b")\r\n")
        elif verb == "STORE" and words[2] == "+FLAGS (\\Seen)":
            number = int(words[1])
            box.seen.add(number)
            self.send(f"* {number} FETCH (UID {number} FLAGS (\\Seen))".encode())
        else:
            self.send(f"{tag} BAD unexpected UID command".encode())
            return False
        return True

    def send(self, line: bytes) -> None:
        self.wfile.write(line + b"\r\n")


class Pop3Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        box: Mailbox = self.server.box  # type: ignore[attr-defined]
        deleted: set[int] = set()
        self.send(b"+OK POP3 test server ready")
        while line := self.rfile.readline():
            command, _, arg = line.decode().rstrip("\r\n").partition(" ")
            command = command.upper()
            if command == "USER":
                box.logins.append(arg)
                self.send(b"+OK")
            elif command == "PASS":
                self.send(b"+OK logged in" if arg == PASSWORD else b"-ERR [AUTH] invalid login")
            elif command == "STAT":
                size = sum(len(raw) for raw in box.messages.values())
                self.send(f"+OK {len(box.messages)} {size}".encode())
            elif command == "RETR":
                raw = box.messages[int(arg)]
                self.send(f"+OK {len(raw)} octets".encode())
                for text in raw.splitlines():
                    self.send(b"." + text if text.startswith(b".") else text)
                self.send(b".")
            elif command == "DELE":
                deleted.add(int(arg))
                self.send(b"+OK marked for deletion")
            elif command == "QUIT":
                # Deletions take effect only now, as in RFC 1939's UPDATE state.
                for number in deleted:
                    del box.messages[number]
                self.send(b"+OK bye")
                return
            else:
                self.send(b"-ERR unknown command")

    def send(self, line: bytes) -> None:
        self.wfile.write(line + b"\r\n")


@contextmanager
def serving(handler: type[socketserver.StreamRequestHandler], box: Mailbox) -> Iterator[int]:
    server = _Server(handler, box)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


MAILBOX_CONTENT = ["postfix-user-unknown.eml", "postfix-delayed.eml", "auto-reply.eml", "empty.eml"]


def server_settings(database_url: str, kind: str, port: int, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "bounce_mailbox": kind,
        "bounce_host": "127.0.0.1",
        "bounce_port": port,
        "bounce_tls": False,
        "bounce_username": USER,
        "bounce_password": PASSWORD,
    }
    values.update(overrides)
    return bounce_settings(database_url, **values)


def test_imap_fetches_unseen_messages_and_flags_them_seen(
    world: SessionFactory, database_url: str
) -> None:
    box = Mailbox([dsn(name) for name in MAILBOX_CONTENT] + [dsn("gmail-no-such-user.eml")])
    box.seen.add(5)  # already read by someone: left alone
    with serving(ImapHandler, box) as port:
        config = server_settings(database_url, "imap", port)
        summary = process_mailbox(world, config)
        assert (summary.read, summary.hard, summary.soft, summary.not_bounces) == (4, 1, 1, 2)
        assert box.seen == {1, 2, 3, 4, 5}
        assert box.logins == [USER]
        assert snapshot(world)["suppressions"] == ["alice@example.com"]
        assert process_mailbox(world, config).read == 0

        wrong = server_settings(database_url, "imap", port, bounce_password="wrong")
        with pytest.raises(NewsletterError, match=r"imap://127\.0\.0\.1: .*Invalid credentials"):
            process_mailbox(world, wrong)
        other_folder = server_settings(database_url, "imap", port, bounce_folder="Bounces")
        with pytest.raises(NewsletterError, match="'Bounces' cannot be selected"):
            process_mailbox(world, other_folder)


def test_pop3_retrieves_every_message_and_deletes_it_after_commit(
    world: SessionFactory, database_url: str
) -> None:
    box = Mailbox([dsn(name) for name in MAILBOX_CONTENT])
    with serving(Pop3Handler, box) as port:
        wrong = server_settings(database_url, "pop3", port, bounce_password="wrong")
        with pytest.raises(NewsletterError, match=r"pop3://127\.0\.0\.1: .*invalid login"):
            process_mailbox(world, wrong)
        assert len(box.messages) == 4

        config = server_settings(database_url, "pop3", port)
        summary = process_mailbox(world, config)
        assert (summary.read, summary.hard, summary.soft, summary.not_bounces) == (4, 1, 1, 2)
        assert box.messages == {}
        after = snapshot(world)
        assert after["suppressions"] == ["alice@example.com"]
        assert [b[:3] for b in after["bounces"]] == [
            ("alice@example.com", 4201, "hard"),
            ("bob@example.net", 4202, "soft"),
        ]
        assert process_mailbox(world, config).read == 0


def test_an_unreachable_mail_server_is_a_clear_error(
    sessions: SessionFactory, database_url: str
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        for kind in ("imap", "pop3"):
            config = server_settings(database_url, kind, port)
            with pytest.raises(NewsletterError, match=f"cannot reach the bounce mailbox {kind}"):
                process_mailbox(sessions, config)


def test_a_return_path_that_is_not_an_address_stops_the_run_before_reading(
    sessions: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    maildir = make_maildir(tmp_path / "bounces", ["postfix-user-unknown.eml"])
    config = bounce_settings(database_url, return_path="bounces")
    with pytest.raises(ConfigError, match="return_path"):
        process_maildir(sessions, maildir, settings=config)
    assert len(files(maildir, "new")) == 1
