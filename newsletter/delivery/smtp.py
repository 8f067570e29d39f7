"""Asynchronous SMTP delivery over a small pool of long-lived connections.

Opening an SMTP session (TCP, TLS, EHLO, AUTH) costs several round trips, so an
edition is sent over at most ``SmtpConfig.connections`` sessions that are reused
message after message.  Every outcome of a single message is returned as a
``SendResult``; only "the server cannot be reached at all" is raised, as
``SmtpUnavailable``, so the caller can stop and leave the remaining messages
pending for the next run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Literal, Self

import aiosmtplib
import aiosmtplib.protocol

from newsletter.errors import ConfigError, SmtpUnavailable
from newsletter.settings import Settings

__all__ = ["SendResult", "SendStatus", "SmtpConfig", "SmtpPool", "TlsMode", "smtp_config"]


# --- DATA encoding without two whole-message regular expressions ---------------------------
#
# Before DATA, aiosmtplib rewrites every message with two regular expressions: line
# ends to CRLF, and a "." doubled at the start of each line. On a 45 KB issue that
# costs ~0.6 ms, more than rendering and assembling it. The two functions below give
# exactly the same bytes (tests compare them on random input) but use bytes.count
# and bytes.replace, which run at memory speed; a message that does not already use
# CRLF only takes the original path.

_normalize_line_endings = aiosmtplib.protocol.normalize_message_line_endings
_PERIOD_REGEX = aiosmtplib.protocol.PERIOD_REGEX


def normalize_line_endings(message: bytes) -> bytes:
    """``aiosmtplib.protocol.normalize_message_line_endings``, fast for CRLF-only input."""
    crlf = message.count(b"\r\n")
    if crlf == message.count(b"\n") == message.count(b"\r"):
        return message if message.endswith(b"\r\n") else message + b"\r\n"
    return _normalize_line_endings(message)


class _PeriodQuoter:
    """Stands in for aiosmtplib's ``PERIOD_REGEX`` (``(?m)^\\.``): ``^`` in multiline
    mode is the start and every position after a "\\n", so doubling the dot is two
    replacements."""

    pattern = _PERIOD_REGEX.pattern

    def sub(self, replacement: bytes, message: bytes) -> bytes:
        if replacement != b"..":
            return _PERIOD_REGEX.sub(replacement, message)
        quoted = message.replace(b"\n.", b"\n..")
        return b"." + quoted if quoted.startswith(b".") else quoted


def _install_fast_data_encoding() -> bool:
    protocol = aiosmtplib.protocol
    if not hasattr(protocol, "PERIOD_REGEX") or not hasattr(
        protocol, "normalize_message_line_endings"
    ):
        return False  # another aiosmtplib layout: leave it alone
    protocol.normalize_message_line_endings = normalize_line_endings
    protocol.PERIOD_REGEX = _PeriodQuoter()  # type: ignore[assignment]
    return True


FAST_DATA_ENCODING = _install_fast_data_encoding()

TlsMode = Literal["none", "starttls", "tls"]
SendStatus = Literal["sent", "temporary", "permanent"]

# Pauses before each attempt to replace a dead connection while sending: a server
# restart or a brief network blip should not abort an edition, but a server that
# is gone should be reported quickly.
_RECONNECT_DELAYS = (0.0, 0.1, 0.5)


@dataclass(frozen=True, kw_only=True)
class SmtpConfig:
    """How to reach the outgoing SMTP server and how many sessions to keep open."""

    host: str
    port: int
    tls: TlsMode
    username: str | None
    password: str | None = field(repr=False)
    timeout: float
    connections: int
    validate_certs: bool = True
    cert_bundle: str | None = None
    # The whole of one message (MAIL, RCPT, DATA): a relay that answers each command
    # just inside ``timeout`` must still not hold a message for ever.
    message_timeout: float = 120.0

    def __post_init__(self) -> None:
        if self.connections < 1:
            raise ConfigError(f"smtp connections must be at least 1, got {self.connections}")
        if self.timeout <= 0:
            raise ConfigError(f"smtp timeout must be positive, got {self.timeout}")
        if self.tls not in ("none", "starttls", "tls"):
            raise ConfigError(f"smtp tls must be none, starttls or tls, got {self.tls!r}")

    @property
    def address(self) -> str:
        """``host:port``, for messages that name the server."""
        return f"{self.host}:{self.port}"


def smtp_config(settings: Settings, connections: int | None = None) -> SmtpConfig:
    """The SMTP pool's configuration from the service settings."""
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    return SmtpConfig(
        host=settings.smtp_host,
        port=settings.smtp_port,
        tls=settings.smtp_tls,
        username=settings.smtp_username,
        password=password,
        timeout=settings.smtp_timeout,
        connections=connections or settings.smtp_connections,
        message_timeout=settings.smtp_message_timeout,
    )


@dataclass(frozen=True, kw_only=True)
class SendResult:
    """Outcome of one message: sent, worth retrying later, or never deliverable.

    ``code`` is the server's reply code (``None`` when the connection failed or the
    message could not be put on the wire); ``reply`` is the server's reply text or
    a description of the failure.  ``refused`` lists ``(address, code, reply)`` for
    recipients rejected at RCPT when the message was still accepted for others.
    """

    status: SendStatus
    code: int | None
    reply: str
    refused: tuple[tuple[str, int, str], ...] = ()


class SmtpPool:
    """Pool of reused SMTP sessions; use as ``async with SmtpPool(config) as pool``.

    One session is opened on entry (so an unreachable server fails fast, with
    ``SmtpUnavailable``); more are opened only when concurrent ``send`` calls find
    every open session busy, up to ``config.connections``.
    """

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        # LIFO so idle open sessions are reused before an unopened slot (None) is
        # taken: the pool only grows when sends actually overlap.
        self._idle: asyncio.LifoQueue[aiosmtplib.SMTP | None] | None = None
        self._open: set[aiosmtplib.SMTP] = set()
        self._busy: set[aiosmtplib.SMTP] = set()
        self._failure: str | None = None

    async def __aenter__(self) -> Self:
        if self._idle is not None:
            raise RuntimeError("SmtpPool is already open")
        self._failure = None
        first = await self._connect()
        idle: asyncio.LifoQueue[aiosmtplib.SMTP | None] = asyncio.LifoQueue()
        for _ in range(self.config.connections - 1):
            idle.put_nowait(None)
        idle.put_nowait(first)
        self._idle = idle
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """QUIT every open session so the server sees orderly goodbyes."""
        self._idle = None
        clients = list(self._open)
        self._open.clear()
        await asyncio.gather(*(self._quit(client) for client in clients))

    @property
    def open_connections(self) -> int:
        """Number of sessions currently open (for logs and tests)."""
        return len(self._open)

    async def send(self, *, sender: str, recipients: Sequence[str], message: bytes) -> SendResult:
        """Send one message on a free session and classify the server's answer.

        Raises ``SmtpUnavailable`` when a dead session cannot be replaced, because
        then every further message would fail the same way; from then on every
        call raises it at once, so the caller can stop and keep the rest pending.
        """
        if self._idle is None:
            raise RuntimeError("SmtpPool is not open; use 'async with SmtpPool(...)'")
        if not recipients:
            raise ValueError("send needs at least one recipient")
        self._raise_if_failed()
        idle = self._idle
        client = await idle.get()
        completed = False
        try:
            self._raise_if_failed()
            if client is None or not client.is_connected:
                self._discard(client)
                client = None
                client = await self._reconnect()
            self._busy.add(client)
            result = await self._transact(
                client, sender=sender, recipients=recipients, message=message
            )
            completed = True
        finally:
            if client is not None:
                self._busy.discard(client)
                # A cancelled or crashed transaction leaves the session in an
                # unknown state, and a dropped one is useless: replace both later.
                if not completed or not client.is_connected:
                    self._discard(client)
                    client = None
            idle.put_nowait(client)
        return result

    async def _transact(
        self,
        client: aiosmtplib.SMTP,
        *,
        sender: str,
        recipients: Sequence[str],
        message: bytes,
    ) -> SendResult:
        """Run MAIL/RCPT/DATA on one session and turn the outcome into a result."""
        addresses = [sender, *recipients]
        mail_options = [] if all(a.isascii() for a in addresses) else ["SMTPUTF8"]
        try:
            async with asyncio.timeout(self.config.message_timeout):
                refused, reply = await client.sendmail(
                    sender, list(recipients), message, mail_options=mail_options
                )
        except TimeoutError as exc:
            # One command (aiosmtplib's timeout) or the whole message took too long;
            # where the message stood is unknown: drop the session, retry it later.
            client.close()
            if isinstance(exc, aiosmtplib.SMTPException) and str(exc):
                reason = str(exc)
            else:
                reason = f"no answer within {self.config.message_timeout:g} s for the message"
            return SendResult(
                status="temporary",
                code=None,
                reply=f"connection to {self.config.address} lost: {reason}",
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            await self._reset(client)
            return _all_refused(exc.recipients)
        except aiosmtplib.SMTPResponseException as exc:
            await self._reset(client)
            return _rejected(exc.code, exc.message)
        except OSError as exc:
            # Covers SMTPServerDisconnected and read timeouts (both also close the
            # session inside aiosmtplib) as well as raw socket errors.
            client.close()
            reason = str(exc) or type(exc).__name__
            return SendResult(
                status="temporary",
                code=None,
                reply=f"connection to {self.config.address} lost: {reason}",
            )
        except aiosmtplib.SMTPNotSupported as exc:
            reply = str(exc)
            if mail_options:
                reply = (
                    f"{', '.join(a for a in addresses if not a.isascii())} can only be sent "
                    f"with SMTPUTF8 (RFC 6531), which {self.config.address} does not offer"
                )
            return SendResult(status="permanent", code=None, reply=reply)
        except aiosmtplib.SMTPException as exc:
            # Anything else leaves the session in an unknown state: start afresh.
            client.close()
            return SendResult(status="temporary", code=None, reply=str(exc) or type(exc).__name__)
        except ValueError as exc:
            # aiosmtplib refuses addresses that cannot be put on a command line.
            return SendResult(status="permanent", code=None, reply=f"invalid address: {exc}")
        return SendResult(
            status="sent",
            code=250,
            reply=reply,
            refused=tuple((rcpt, resp.code, resp.message) for rcpt, resp in refused.items()),
        )

    async def _reset(self, client: aiosmtplib.SMTP) -> None:
        """RSET after a rejection so the session can carry the next message."""
        if not client.is_connected:
            return
        # aiosmtplib already sends RSET after a rejection but swallows its
        # failure; asking again tells us whether the session is still in step.
        try:
            await client.rset()
        except (aiosmtplib.SMTPException, OSError):
            client.close()

    async def _connect(self) -> aiosmtplib.SMTP:
        """Open and log in one session, or raise ``SmtpUnavailable`` saying why."""
        config = self.config
        client = aiosmtplib.SMTP(
            hostname=config.host,
            port=config.port,
            username=config.username,
            password=config.password,
            timeout=config.timeout,
            use_tls=config.tls == "tls",
            start_tls=config.tls == "starttls",
            validate_certs=config.validate_certs,
            cert_bundle=config.cert_bundle,
        )
        try:
            await client.connect()
        except aiosmtplib.SMTPAuthenticationError as exc:
            client.close()
            raise SmtpUnavailable(
                f"SMTP server {config.address} refused the login for {config.username!r}: "
                f"{exc.code} {exc.message}"
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            client.close()
            raise SmtpUnavailable(
                f"SMTP server {config.address} refused the session: {exc.code} {exc.message}"
            ) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            client.close()
            # A failed TLS handshake closes the socket in a loop callback: give it its turn.
            await asyncio.sleep(0)
            reason = str(exc) or type(exc).__name__
            raise SmtpUnavailable(f"SMTP server {config.address} unavailable: {reason}") from exc
        self._open.add(client)
        return client

    async def _reconnect(self) -> aiosmtplib.SMTP:
        """Replace a dead session, retrying briefly; latch the failure if all fail."""
        error: SmtpUnavailable | None = None
        for delay in _RECONNECT_DELAYS:
            if delay:
                await asyncio.sleep(delay)
            try:
                return await self._connect()
            except SmtpUnavailable as exc:
                error = exc
        self._failure = str(error)
        raise SmtpUnavailable(self._failure) from error

    def _raise_if_failed(self) -> None:
        # Once reconnecting has failed, further sends fail fast instead of each
        # retrying against a server that is gone.
        if self._failure is not None:
            raise SmtpUnavailable(self._failure)

    def _discard(self, client: aiosmtplib.SMTP | None) -> None:
        if client is not None:
            client.close()
            self._open.discard(client)

    async def _quit(self, client: aiosmtplib.SMTP) -> None:
        """End one session politely; a dead or busy session is just closed."""
        try:
            if client.is_connected and client not in self._busy:
                await client.quit()
        except (aiosmtplib.SMTPException, OSError):
            pass
        finally:
            client.close()


def _rejected(code: int, reply: str) -> SendResult:
    """Classify a rejection reply: 5xx is final, anything else may pass later."""
    status: SendStatus = "permanent" if 500 <= code < 600 else "temporary"
    return SendResult(status=status, code=code, reply=reply)


def _all_refused(refusals: Sequence[aiosmtplib.SMTPRecipientRefused]) -> SendResult:
    """Classify a message whose every recipient was refused at RCPT."""
    # A single temporary refusal means a later retry can still deliver something.
    temporary = [r for r in refusals if not 500 <= r.code < 600]
    first = temporary[0] if temporary else refusals[0]
    result = _rejected(first.code, first.message)
    if len(refusals) == 1:
        return result
    return replace(result, refused=tuple((r.recipient, r.code, r.message) for r in refusals))
