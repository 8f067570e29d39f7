"""Reading the bounce mailbox: a Maildir, an IMAP folder or a POP3 mailbox.

A relay that accepted an issue and failed to deliver it later reports so in a DSN sent
to the envelope sender. Each message of the bounce mailbox goes through
``newsletter.bounces.matching.process_bounce`` in its own transaction. Reading is safe
to repeat: a message is only marked done (seen, or deleted on POP3) after its bounces
are committed, and one that fails is counted and left for the next run.
``run_bounces`` is what ``newsletter bounces`` does.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import os
import poplib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from newsletter.bounces.matching import BounceResult, process_bounce
from newsletter.db import SessionFactory, make_engine, make_session_factory
from newsletter.errors import ConfigError, NewsletterError
from newsletter.mail.verp import check_return_path, return_path_base
from newsletter.migrations import require_current
from newsletter.models import BounceKind
from newsletter.settings import Settings

log = logging.getLogger(__name__)

_TIMEOUT = 60.0  # seconds per IMAP/POP3 operation


@dataclass
class BounceSummary:
    """Counts of one run over a bounce mailbox."""

    read: int = 0  # messages read
    bounces: int = 0  # failed or delayed recipients found in them
    hard: int = 0
    soft: int = 0
    unmatched: int = 0  # bounces matched to no delivery (recorded against the address)
    not_bounces: int = 0  # messages that report no failure (junk, auto-replies, broken)
    errors: int = 0  # messages that could not be processed (left for the next run)

    def add(self, results: list[BounceResult]) -> None:
        self.read += 1
        if not results:
            self.not_bounces += 1
        for result in results:
            self.bounces += 1
            if result.report.kind == BounceKind.HARD:
                self.hard += 1
            else:
                self.soft += 1
            if result.delivery_id is None:
                self.unmatched += 1

    def __str__(self) -> str:
        return (
            f"read {self.read} messages: {self.bounces} bounces ({self.hard} hard, "
            f"{self.soft} soft, {self.unmatched} unmatched), {self.not_bounces} not bounces, "
            f"{self.errors} errors"
        )


def _process_one(
    session_factory: SessionFactory,
    raw: bytes,
    settings: Settings,
    summary: BounceSummary,
    done: Callable[[], None],
) -> None:
    """Process one message in its own transaction, then mark it done; count an error
    (and leave the message for the next run) if anything fails."""
    try:
        with session_factory.begin() as session:
            results = process_bounce(session, raw, settings=settings)
        done()
    except Exception:
        log.exception("could not process a message from the bounce mailbox")
        summary.read += 1
        summary.errors += 1
        return
    summary.add(results)


def process_maildir(
    session_factory: SessionFactory, path: Path, *, settings: Settings
) -> BounceSummary:
    """Process every message of a Maildir not yet seen, and mark each seen after commit.

    Messages are renamed into cur/ with the ``S`` flag as the Maildir convention says
    (never rewritten), so a mail client sees them as read and the next run skips them.
    """
    _check_maildir(path)
    check_return_path(return_path_base(settings))
    summary = BounceSummary()
    for message_path in _unseen(path):
        try:
            raw = message_path.read_bytes()
        except FileNotFoundError:
            continue  # taken by another reader since the directory was listed
        except OSError:
            log.exception("cannot read %s", message_path)
            summary.read += 1
            summary.errors += 1
            continue
        _process_one(
            session_factory, raw, settings, summary, partial(_mark_seen, path, message_path)
        )
    return summary


def _check_maildir(path: Path) -> None:
    if not path.exists():
        raise NewsletterError(f"bounce Maildir {path} does not exist")
    if not all((path / sub).is_dir() for sub in ("new", "cur", "tmp")):
        raise NewsletterError(f"{path} is not a Maildir (it needs new/, cur/ and tmp/)")


def _info(name: str) -> tuple[str, str]:
    """(unique name, flags) of a Maildir file name ``unique:2,FLAGS``."""
    unique, sep, info = name.partition(":2,")
    return unique, info if sep else ""


def _unseen(path: Path) -> Iterator[Path]:
    for sub in ("new", "cur"):
        for name in sorted(os.listdir(path / sub)):
            if name.startswith("."):
                continue
            if sub == "cur" and "S" in _info(name)[1]:
                continue
            yield path / sub / name


def _mark_seen(maildir: Path, message_path: Path) -> None:
    unique, flags = _info(message_path.name)
    flags = "".join(sorted(set(flags) | {"S"}))
    message_path.rename(maildir / "cur" / f"{unique}:2,{flags}")


def process_mailbox(session_factory: SessionFactory, settings: Settings) -> BounceSummary:
    """Process the bounce mailbox the settings name (maildir, imap or pop3)."""
    check_mailbox_settings(settings)
    check_return_path(return_path_base(settings))
    if settings.bounce_mailbox == "imap":
        return _process_imap(session_factory, settings)
    if settings.bounce_mailbox == "pop3":
        return _process_pop3(session_factory, settings)
    assert settings.bounce_maildir is not None  # checked above
    return process_maildir(session_factory, settings.bounce_maildir, settings=settings)


def check_mailbox_settings(settings: Settings) -> None:
    """Refuse a bounce mailbox configuration that cannot work, naming the setting."""
    kind = settings.bounce_mailbox
    if kind == "none":
        raise ConfigError(
            "invalid setting bounce_mailbox (NEWSLETTER_BOUNCE_MAILBOX): none; set it to "
            "maildir, imap or pop3 (or pass --maildir PATH)"
        )
    if kind == "maildir":
        required: tuple[tuple[str, object], ...] = (("bounce_maildir", settings.bounce_maildir),)
    else:
        required = (
            ("bounce_host", settings.bounce_host),
            ("bounce_username", settings.bounce_username),
            ("bounce_password", settings.bounce_password),
        )
    for name, value in required:
        if not value:
            raise ConfigError(
                f"invalid setting {name} (NEWSLETTER_{name.upper()}): not set, "
                f"but bounce_mailbox is {kind}"
            )


def _server_settings(settings: Settings) -> tuple[str, str, str]:
    """(host, username, password) for IMAP or POP3 (checked to be set)."""
    password = settings.bounce_password.get_secret_value() if settings.bounce_password else ""
    return settings.bounce_host or "", settings.bounce_username or "", password


def _process_imap(session_factory: SessionFactory, settings: Settings) -> BounceSummary:
    """Fetch UNSEEN messages of ``bounce_folder`` and flag each \\Seen after commit."""
    host, username, password = _server_settings(settings)
    summary = BounceSummary()
    try:
        client: imaplib.IMAP4 = (
            imaplib.IMAP4_SSL(host, settings.bounce_port or 993, timeout=_TIMEOUT)
            if settings.bounce_tls
            else imaplib.IMAP4(host, settings.bounce_port or 143, timeout=_TIMEOUT)
        )
    except (imaplib.IMAP4.error, OSError) as exc:
        raise NewsletterError(f"cannot reach the bounce mailbox imap://{host}: {exc}") from None
    try:
        client.login(username, password)
        status, _ = client.select(_imap_quote(settings.bounce_folder))
        if status != "OK":
            raise NewsletterError(f"IMAP folder {settings.bounce_folder!r} cannot be selected")
        _status, data = client.uid("SEARCH", "UNSEEN")
        uids = data[0].split() if data and isinstance(data[0], bytes) else []
        for uid in uids:
            raw = _imap_fetch(client, uid.decode("ascii"))
            if raw is None:
                summary.read += 1
                summary.errors += 1
                continue
            seen = partial(_imap_seen, client, uid.decode("ascii"))
            _process_one(session_factory, raw, settings, summary, seen)
    except (imaplib.IMAP4.error, OSError) as exc:
        raise NewsletterError(f"bounce mailbox imap://{host}: {exc}") from None
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            client.logout()
    return summary


def _imap_quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _imap_fetch(client: imaplib.IMAP4, uid: str) -> bytes | None:
    # BODY.PEEK so that a message whose processing fails stays unseen.
    status, data = client.uid("FETCH", uid, "(BODY.PEEK[])")
    if status != "OK":
        return None
    for item in data:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bytes):
            return item[1]
    return None


def _imap_seen(client: imaplib.IMAP4, uid: str) -> None:
    status, _ = client.uid("STORE", uid, "+FLAGS", "(\\Seen)")
    if status != "OK":
        raise NewsletterError(f"IMAP server refused to flag message {uid} seen")


def _process_pop3(session_factory: SessionFactory, settings: Settings) -> BounceSummary:
    """Retrieve every message and delete each after its bounces are committed (the
    deletions take effect at QUIT; a crash before then only means re-reading)."""
    host, username, password = _server_settings(settings)
    summary = BounceSummary()
    try:
        client: poplib.POP3 = (
            poplib.POP3_SSL(host, settings.bounce_port or 995, timeout=_TIMEOUT)
            if settings.bounce_tls
            else poplib.POP3(host, settings.bounce_port or 110, timeout=_TIMEOUT)
        )
    except (poplib.error_proto, OSError) as exc:
        raise NewsletterError(f"cannot reach the bounce mailbox pop3://{host}: {exc}") from None
    try:
        client.user(username)
        client.pass_(password)
        count, _size = client.stat()
        for number in range(1, count + 1):
            _response, lines, _octets = client.retr(number)
            raw = b"\r\n".join(lines) + b"\r\n"
            delete = partial(_pop3_delete, client, number)
            _process_one(session_factory, raw, settings, summary, delete)
        client.quit()
    except (poplib.error_proto, OSError) as exc:
        client.close()
        raise NewsletterError(f"bounce mailbox pop3://{host}: {exc}") from None
    return summary


def _pop3_delete(client: poplib.POP3, number: int) -> None:
    client.dele(number)


def run_bounces(settings: Settings, maildir: Path | None) -> BounceSummary:
    """What ``newsletter bounces [--maildir PATH]`` does: open the database and process
    the given Maildir, or the bounce mailbox the settings configure."""
    if maildir is None:
        check_mailbox_settings(settings)  # before connecting to anything
    engine = make_engine(settings.database_url)
    try:
        require_current(engine)
        sessions = make_session_factory(engine)
        if maildir is not None:
            return process_maildir(sessions, maildir, settings=settings)
        return process_mailbox(sessions, settings)
    finally:
        engine.dispose()
