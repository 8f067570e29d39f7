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
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Self

import aiosmtplib
import aiosmtplib.protocol

from newsletter.delivery.smtp_session import SendResult, SendStatus, SessionLost, SmtpSession
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


class SmtpPool:
    """Pool of reused SMTP sessions; use as ``async with SmtpPool(config) as pool``.

    One session is opened on entry (so an unreachable server fails fast, with
    ``SmtpUnavailable``); more are opened only when concurrent ``send`` calls find
    every open session busy, up to ``config.connections``. aiosmtplib opens each
    session (TLS, EHLO, AUTH); the transactions are ``SmtpSession``'s (pipelined).
    """

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        # LIFO so idle open sessions are reused before an unopened slot (None) is
        # taken: the pool only grows when sends actually overlap.
        self._idle: asyncio.LifoQueue[SmtpSession | None] | None = None
        self._open: set[SmtpSession] = set()
        self._busy: set[SmtpSession] = set()
        self._closing: set[SmtpSession] = set()  # discarded, socket maybe not yet closed
        self._failure: str | None = None

    async def __aenter__(self) -> Self:
        if self._idle is not None:
            raise RuntimeError("SmtpPool is already open")
        self._failure = None
        first = await self._connect()
        idle: asyncio.LifoQueue[SmtpSession | None] = asyncio.LifoQueue()
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
        sessions = list(self._open)
        self._open.clear()
        await asyncio.gather(*(self._quit(session) for session in sessions))
        # Closed is not yet gone: a TLS session's socket closes only after its
        # close_notify exchange, in a loop callback. Wait for it (bounded) so no
        # socket outlives the pool, also those of sessions discarded while sending.
        closing, self._closing = [*sessions, *self._closing], set()
        await asyncio.gather(*(session.wait_closed() for session in closing))

    @property
    def open_connections(self) -> int:
        """Number of sessions currently open (for logs and tests)."""
        return len(self._open)

    async def send(
        self, *, sender: str, recipients: Sequence[str], message: bytes, crlf: bool = False
    ) -> SendResult:
        """Send one message on a free session and classify the server's answer.

        ``crlf``: the caller vouches that the message has CRLF line ends only (the
        composer's messages do), which spares normalising them.

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
        session = await idle.get()
        completed = False
        try:
            self._raise_if_failed()
            if session is None or not session.is_connected:
                self._discard(session)
                session = None
                session = await self._reconnect()
            self._busy.add(session)
            result = await self._transact(
                session, sender=sender, recipients=recipients, message=message, crlf=crlf
            )
            completed = True
        finally:
            if session is not None:
                self._busy.discard(session)
                # A cancelled or crashed transaction leaves the session in an
                # unknown state, and a dropped one is useless: replace both later.
                if not completed or not session.is_connected:
                    self._discard(session)
                    session = None
            idle.put_nowait(session)
        return result

    async def _transact(
        self,
        session: SmtpSession,
        *,
        sender: str,
        recipients: Sequence[str],
        message: bytes,
        crlf: bool,
    ) -> SendResult:
        """Run MAIL/RCPT/DATA on one session and turn the outcome into a result."""
        addresses = [sender, *recipients]
        if not session.smtputf8 and not all(a.isascii() for a in addresses):
            return SendResult(
                status="permanent",
                code=None,
                reply=(
                    f"{', '.join(a for a in addresses if not a.isascii())} can only be sent "
                    f"with SMTPUTF8 (RFC 6531), which {self.config.address} does not offer"
                ),
            )
        try:
            async with asyncio.timeout(self.config.message_timeout):
                return await session.transact(
                    sender=sender, recipients=recipients, message=message, crlf=crlf
                )
        except TimeoutError:
            # The whole message took too long (each reply has its own timeout):
            # where it stood is unknown: drop the session, retry the message later.
            session.close()
            reason = f"no answer within {self.config.message_timeout:g} s for the message"
            return self._lost(reason)
        except (SessionLost, OSError) as exc:
            session.close()
            return self._lost(str(exc) or type(exc).__name__)
        except ValueError as exc:
            # An address that cannot be put on a command line (nothing was sent).
            return SendResult(status="permanent", code=None, reply=f"invalid address: {exc}")

    def _lost(self, reason: str) -> SendResult:
        return SendResult(
            status="temporary",
            code=None,
            reply=f"connection to {self.config.address} lost: {reason}",
        )

    async def _connect(self) -> SmtpSession:
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
            session = await SmtpSession.adopt(client, timeout=config.timeout)
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
        self._open.add(session)
        return session

    async def _reconnect(self) -> SmtpSession:
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

    def _discard(self, session: SmtpSession | None) -> None:
        if session is not None:
            session.close()
            self._open.discard(session)
            self._closing = {s for s in self._closing if not s.gone}
            self._closing.add(session)

    async def _quit(self, session: SmtpSession) -> None:
        """End one session politely; a dead or busy session is just closed."""
        if session in self._busy:
            session.close()
            return
        await session.quit()
