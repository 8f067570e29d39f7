"""Local SMTP servers that capture mail instead of delivering it.

``MaildirServer`` backs the demo: every message lands in a Maildir that any mail
client (or ``mailbox.Maildir``) can read. ``CaptureServer`` is what every capture
server shares (start and stop, STARTTLS or TLS, AUTH, SMTPUTF8); the fault-injecting
server of the tests, ``newsletter.mail.faulty.FaultyServer``, is built on it.

They run an aiosmtpd ``Controller`` in a background thread, bound to 127.0.0.1 on a
port the kernel picks, and are context managers that stop the thread on exit.
"""

from __future__ import annotations

import asyncio
import mailbox
import os
import ssl
import threading
import weakref
from collections.abc import Mapping
from types import TracebackType
from typing import Any, ClassVar, Literal, NamedTuple, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

__all__ = [
    "AUTH_REQUIRED",
    "CaptureServer",
    "CapturedMessage",
    "FreePortController",
    "MaildirServer",
    "ServerTls",
    "TrackedSMTP",
]

ServerTls = Literal["none", "starttls", "tls"]

_HOST = "127.0.0.1"
# Generous: the controller thread has to start an event loop and answer a probe.
_READY_TIMEOUT = 10.0
AUTH_REQUIRED = "530 5.7.0 Authentication required"


class CapturedMessage(NamedTuple):
    """One message a capture server accepted: envelope plus raw DATA bytes."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    mail_options: tuple[str, ...] = ()  # e.g. SMTPUTF8, BODY=8BITMIME


class TrackedSMTP(SMTPServer):
    """aiosmtpd's protocol, remembering the raw transport of every connection.

    After a failed STARTTLS handshake aiosmtpd swaps ``transport`` for the TLS one and
    closes the raw socket transport only in a callback; a server stopped before that
    callback runs would leave it to be garbage-collected unclosed (a ResourceWarning).
    """

    def __init__(
        self, handler: object, *, tracker: weakref.WeakSet[asyncio.BaseTransport], **kwargs: Any
    ) -> None:
        super().__init__(handler, **kwargs)
        self._tracker = tracker

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._tracker.add(transport)
        super().connection_made(transport)


class FreePortController(Controller):
    """A ``Controller`` on a kernel-chosen port that hangs up on clients when stopped."""

    protocol_class: ClassVar[type[TrackedSMTP]] = TrackedSMTP

    def __init__(self, handler: object, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._transports: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()

    def factory(self) -> SMTPServer:
        return self.protocol_class(self.handler, tracker=self._transports, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        # Binding port 0 avoids the race of probing for a free port and binding it
        # later; the probe connection in the base class needs the real port.
        if isinstance(self.server, asyncio.Server):
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]

    def stop(self, no_assert: bool = False) -> None:
        # The base class only cancels tasks, which leaves the sockets of clients
        # still connected to be garbage-collected unclosed (a ResourceWarning).
        if self.loop.is_running():
            hangup = asyncio.run_coroutine_threadsafe(self._abort_connections(), self.loop)
            hangup.result(timeout=_READY_TIMEOUT)
        super().stop(no_assert)

    async def open_connections(self) -> int:
        """Client connections not yet closed (run in the server's own loop)."""
        return sum(1 for transport in list(self._transports) if not transport.is_closing())

    async def _abort_connections(self) -> None:
        for transport in list(self._transports):
            if isinstance(transport, asyncio.Transport):
                transport.abort()
        # abort() closes the socket in a callback; give the loop turns until every
        # socket is closed (bounded: a transport that never lets go is left to GC).
        for _ in range(200):
            if not any(_socket_open(t) for t in list(self._transports)):
                return
            await asyncio.sleep(0.005)


def _socket_open(transport: asyncio.BaseTransport) -> bool:
    try:
        sock = transport.get_extra_info("socket")
    except AttributeError:  # a TLS transport whose TLS layer is already gone
        return False
    return sock is not None and sock.fileno() != -1


class CaptureServer:
    """Lifecycle shared by the capture servers: start on enter, stop on exit."""

    controller_class: ClassVar[type[FreePortController]] = FreePortController

    def __init__(
        self,
        *,
        tls: ServerTls = "none",
        ssl_context: ssl.SSLContext | None = None,
        credentials: Mapping[str, str] | None = None,
        smtputf8: bool = True,
        pipelining: bool = True,
    ) -> None:
        if tls != "none" and ssl_context is None:
            raise ValueError(f"tls={tls!r} needs a server ssl_context")
        self._tls: ServerTls = tls
        self._ssl_context = ssl_context
        self._credentials = dict(credentials) if credentials is not None else None
        self._smtputf8 = smtputf8  # offer SMTPUTF8 (RFC 6531), as Postfix does by default
        self._pipelining = pipelining  # offer PIPELINING (RFC 2920), as Postfix does
        self._controller: FreePortController | None = None
        self._lock = threading.Lock()
        self._received = 0
        self.host = _HOST
        self.port = 0

    @property
    def received(self) -> int:
        """Number of messages accepted so far (read from any thread)."""
        with self._lock:
            return self._received

    def start(self) -> None:
        """Start the server thread; ``host`` and ``port`` are valid afterwards."""
        if self._controller is not None:
            raise RuntimeError("server already running")
        smtp_kwargs: dict[str, Any] = {"enable_SMTPUTF8": self._smtputf8}
        if self._tls == "starttls":
            smtp_kwargs.update(tls_context=self._ssl_context, require_starttls=True)
        if self._credentials is not None:
            # Without TLS, AUTH is only offered when auth_require_tls is off;
            # handle_MAIL enforces the login instead of auth_required, which
            # would make aiosmtpd warn about plaintext AUTH.
            smtp_kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
        controller = self.controller_class(
            self,
            hostname=_HOST,
            # 0 the first time (a free port); the same port again after a stop, so a
            # restarted server is the same relay to its clients.
            port=self.port,
            ready_timeout=_READY_TIMEOUT,
            ssl_context=self._ssl_context if self._tls == "tls" else None,
            server_hostname="localhost",
            **smtp_kwargs,
        )
        try:
            controller.start()
        except BaseException:
            controller.stop(no_assert=True)
            if not controller.loop.is_closed():
                controller.loop.close()
            raise
        self._controller = controller
        self.port = controller.port

    def open_connections(self) -> int:
        """Client connections the server has not closed yet: 0 once every client that
        hung up (or was killed) has been read to its end, so nothing more can arrive
        on them. A method, not a property: aiosmtpd reads every attribute of its
        handler (this object) from the server's loop, which must not wait on itself."""
        controller = self._controller
        if controller is None or not controller.loop.is_running():
            return 0
        count = asyncio.run_coroutine_threadsafe(controller.open_connections(), controller.loop)
        return count.result(timeout=_READY_TIMEOUT)

    def stop(self) -> None:
        """Stop the server thread and close the listening socket."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    async def handle_EHLO(
        self,
        _server: SMTPServer,
        session: Session,
        _envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        """aiosmtpd's EHLO reply, with PIPELINING when offered (aiosmtpd reads pipelined
        commands in order anyway; it just does not say so)."""
        session.host_name = hostname
        if self._pipelining:
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    def _authenticate(
        self,
        _server: SMTPServer,
        _session: Session,
        _envelope: Envelope,
        _mechanism: str,
        auth_data: object,
    ) -> AuthResult:
        """Accept a login whose user name and password match ``credentials``."""
        if self._credentials is None or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode("utf-8", errors="replace")
        password = auth_data.password.decode("utf-8", errors="replace")
        return AuthResult(success=self._credentials.get(user) == password, handled=False)

    async def handle_MAIL(
        self,
        _server: SMTPServer,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        """Accept the sender unless a login is required and missing."""
        if self._login_missing(session):
            return AUTH_REQUIRED
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    def _login_missing(self, session: Session) -> bool:
        return self._credentials is not None and not session.authenticated


class MaildirServer(CaptureServer):
    """SMTP server on 127.0.0.1 that files every message into a Maildir."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        tls: ServerTls = "none",
        ssl_context: ssl.SSLContext | None = None,
        credentials: Mapping[str, str] | None = None,
        smtputf8: bool = True,
    ) -> None:
        super().__init__(
            tls=tls, ssl_context=ssl_context, credentials=credentials, smtputf8=smtputf8
        )
        self.path = os.fspath(path)
        self._maildir = mailbox.Maildir(self.path, create=True)

    async def handle_DATA(self, _server: SMTPServer, _session: Session, envelope: Envelope) -> str:
        """Store the message with its envelope as headers, so the demo can show who got what."""
        content = envelope.original_content or b""
        envelope_headers = (
            f"Return-Path: <{envelope.mail_from or ''}>\r\n"
            f"X-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode()
        # Maildir files conventionally use bare LF line endings.
        stored = (envelope_headers + content).replace(b"\r\n", b"\n")
        with self._lock:
            self._maildir.add(stored)
            self._received += 1
        return "250 OK"
