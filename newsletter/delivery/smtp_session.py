"""One SMTP session's mail transactions, pipelined (RFC 2920) when the relay offers it.

aiosmtplib still opens every session (TCP, implicit TLS or STARTTLS, EHLO, AUTH); the
session's transport is then handed to ``ReplyReader`` and the transactions are written
here, because aiosmtplib cannot pipeline: its protocol keeps one reply waiter and drops
whatever arrives while no command waits, so MAIL, RCPT and DATA in one write would lose
replies. It also parses every address with ``email.utils`` and takes a lock and a round
trip per command, which cost more than rendering a message. Here a transaction is one
write of MAIL FROM + RCPT TO + DATA (or one command at a time when PIPELINING is not
offered), the replies read in order, then the message.

Every outcome is a ``SendResult``, as aiosmtplib's exceptions were classified before:
a refusal at MAIL, at DATA or after the message is the reply's code (5xx permanent,
anything else temporary) and the session is reset with RSET; refusals of some
recipients are listed on a sent result; a dropped connection or a reply slower than
the timeout is temporary and closes the session. A definite refusal outranks a
connection that drops after it (a 421 closes the connection, as RFC 5321 says).
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import aiosmtplib

SendStatus = Literal["sent", "temporary", "permanent"]

# What aiosmtplib refused in an address on a command line: white space, brackets,
# quotes and control characters (an address must not smuggle in a second command).
_UNSAFE_ADDRESS = re.compile(r'[\s<>"\x00-\x1f\x7f]')
_MAX_REPLY = 64 * 1024  # bytes of an unfinished reply before the relay is deemed broken
# A line that starts with a dot (RFC 5321 4.5.2). A regular expression finds and doubles
# it three times faster than ``bytes.replace``: CPython 3.11 searches for a two-byte
# needle at about 1 GB/s, 50 us for a 58 KB issue (8% of a delivery worker's CPU).
_DOT_LINE = re.compile(rb"\n\.")


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


@dataclass(frozen=True)
class Reply:
    code: int
    text: str  # the lines' texts without the codes, joined by newlines


class SessionLost(Exception):
    """The connection dropped, or a reply did not come in time or made no sense."""


def check_address(address: str) -> str:
    """The address as it goes between the angle brackets; ``ValueError`` if it cannot."""
    if not address or _UNSAFE_ADDRESS.search(address):
        raise ValueError(f"address {address!r} cannot be put on an SMTP command line")
    return address


def wire_data(message: bytes, *, crlf: bool) -> tuple[bytes, int]:
    """The DATA payload (CRLF line ends, leading dots doubled, the final ``.``) and the
    message's size for RFC 1870 (with CRLF, without the doubled dots and final dot).

    ``crlf`` says the caller built the message with CRLF line ends only (the composer
    does), which spares three passes over it; anything else is normalised exactly as
    aiosmtplib did (``newsletter.delivery.smtp.normalize_line_endings``).
    """
    if not crlf:
        from newsletter.delivery.smtp import normalize_line_endings

        message = normalize_line_endings(message)
    elif not message.endswith(b"\r\n"):
        message += b"\r\n"
    size = len(message)
    message = _DOT_LINE.sub(b"\n..", message)
    if message.startswith(b"."):
        message = b"." + message
    return message + b".\r\n", size


class ReplyReader(asyncio.Protocol):
    """Collects the relay's replies in order; pipelined replies wait in a queue."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._lines: list[bytes] = []
        self._replies: deque[Reply] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._gone = asyncio.get_running_loop().create_future()
        self.lost: str | None = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > _MAX_REPLY:
                    self._fail("the relay sent a reply line without an end")
                return
            line = bytes(self._buffer[: end + 1])
            del self._buffer[: end + 1]
            code = line[:3]
            if not code.isdigit() or line[3:4] not in (b" ", b"-", b"\r", b"\n"):
                text = line.decode("utf-8", "replace").strip()
                self._fail(f"malformed SMTP reply line: {text[:200]}")
                return
            self._lines.append(line[4:].strip(b" \t\r\n"))
            if line[3:4] == b"-":
                if len(self._lines) > 1000:
                    self._fail("the relay sent a reply of more than 1000 lines")
                    return
                continue
            text = b"\n".join(self._lines).decode("utf-8", "surrogateescape")
            self._lines = []
            self._replies.append(Reply(int(code), text))
            self._wake()

    def eof_received(self) -> bool:
        self._fail("Unexpected EOF received")
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(str(exc) if exc else "Connection lost")
        if not self._gone.done():
            self._gone.set_result(None)

    @property
    def is_gone(self) -> bool:
        return self._gone.done()

    async def wait_gone(self, timeout: float) -> bool:
        """Whether the connection was lost (its socket closed) within ``timeout``."""
        try:
            await asyncio.wait_for(asyncio.shield(self._gone), timeout)
        except TimeoutError:
            return False
        return True

    def _fail(self, reason: str) -> None:
        if self.lost is None:
            self.lost = reason
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def forget(self) -> None:
        """Drop replies nobody will read (before a new transaction on a reset session)."""
        self._replies.clear()

    async def next(self, timeout: float) -> Reply:
        """The next reply, in the order the commands were written."""
        if not self._replies:
            if self.lost is not None:
                raise SessionLost(self.lost)
            loop = asyncio.get_running_loop()
            self._waiter = waiter = loop.create_future()
            try:
                async with asyncio.timeout(timeout):
                    while not self._replies and self.lost is None:
                        await waiter
                        if not self._replies and self.lost is None:
                            self._waiter = waiter = loop.create_future()
            except TimeoutError:
                raise SessionLost("Timed out waiting for server response") from None
            finally:
                self._waiter = None
            if not self._replies:
                raise SessionLost(self.lost or "Connection lost")
        return self._replies.popleft()


class SmtpSession:
    """An open, greeted (and, as configured, encrypted and logged-in) SMTP session."""

    def __init__(
        self,
        transport: asyncio.WriteTransport,
        reader: ReplyReader,
        *,
        timeout: float,
        pipelining: bool,
        smtputf8: bool,
        size: bool,
    ) -> None:
        self._transport = transport
        self._reader = reader
        self.timeout = timeout
        self.pipelining = pipelining
        self.smtputf8 = smtputf8
        self.size = size

    @classmethod
    async def adopt(cls, client: aiosmtplib.SMTP, *, timeout: float) -> SmtpSession:
        """Take over the connection aiosmtplib opened (after EHLO, as it left it)."""
        if client.is_ehlo_or_helo_needed:
            try:
                await client.ehlo()
            except aiosmtplib.SMTPHeloError:
                if not client.is_connected:
                    raise
                await client.helo()
        transport = client.transport
        if transport is None or transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        reader = ReplyReader()
        transport.set_protocol(reader)
        return cls(
            transport,  # type: ignore[arg-type]
            reader,
            timeout=timeout,
            pipelining=client.supports_extension("pipelining"),
            smtputf8=client.supports_extension("smtputf8"),
            size=client.supports_extension("size"),
        )

    @property
    def is_connected(self) -> bool:
        return self._reader.lost is None and not self._transport.is_closing()

    @property
    def gone(self) -> bool:
        """The connection is lost and its socket closed (not only closing)."""
        return self._reader.is_gone

    def close(self) -> None:
        if not self._transport.is_closing():
            self._transport.close()

    def _write(self, data: bytes) -> None:
        if not self.is_connected:
            raise SessionLost(self._reader.lost or "Connection lost")
        self._transport.write(data)

    async def _reply(self) -> Reply:
        return await self._reader.next(self.timeout)

    async def transact(
        self, *, sender: str, recipients: Sequence[str], message: bytes, crlf: bool = False
    ) -> SendResult:
        """MAIL, RCPT for each recipient, DATA: the outcome as a ``SendResult``.

        Raises ``SessionLost`` when the connection drops (or a reply does not come)
        before the relay said anything definite; the caller closes the session.
        ``ValueError``: an address that cannot go on a command line (nothing sent).
        """
        encoding = "ascii"
        options = b""
        if not (sender.isascii() and all(r.isascii() for r in recipients)):
            if not self.smtputf8:
                raise ValueError("a non-ASCII address needs SMTPUTF8, which is not offered")
            encoding, options = "utf-8", b" SMTPUTF8"
        mail = b"MAIL FROM:<" + check_address(sender).encode(encoding) + b">"
        rcpts = [b"RCPT TO:<" + check_address(r).encode(encoding) + b">\r\n" for r in recipients]
        data, size = wire_data(message, crlf=crlf)
        if self.size:
            options = b" SIZE=%d" % size + options
        mail += options + b"\r\n"
        self._reader.forget()
        if self.pipelining:
            self._write(b"".join((mail, *rcpts, b"DATA\r\n")))
            return await self._pipelined(recipients, data)
        return await self._stepwise(mail, rcpts, recipients, data)

    async def _pipelined(self, recipients: Sequence[str], data: bytes) -> SendResult:
        mail = await self._reply()
        answers: list[Reply] = []
        try:
            for _ in recipients:
                answers.append(await self._reply())
            start = await self._reply()
        except SessionLost:
            if mail.code != 250:
                self.close()
                return _rejected(mail)
            if answers and len(_refusals(recipients, answers)) == len(answers):
                self.close()
                return _all_refused(_refusals(recipients, answers))
            raise
        if mail.code != 250:
            return await self._abandon(_rejected(mail), start)
        refused = _refusals(recipients, answers)
        if len(refused) == len(recipients):
            return await self._abandon(_all_refused(refused), start)
        if start.code != 354:
            return await self._reset_after(_rejected(start))
        return await self._send_data(data, refused)

    async def _stepwise(
        self, mail: bytes, rcpts: list[bytes], recipients: Sequence[str], data: bytes
    ) -> SendResult:
        self._write(mail)
        reply = await self._reply()
        if reply.code != 250:
            return await self._reset_after(_rejected(reply))
        answers: list[Reply] = []
        for rcpt in rcpts:
            self._write(rcpt)
            try:
                answers.append(await self._reply())
            except SessionLost:
                refused = _refusals(recipients, answers)
                if answers and len(refused) == len(answers):
                    self.close()
                    return _all_refused(refused)
                raise
        refused = _refusals(recipients, answers)
        if len(refused) == len(recipients):
            return await self._reset_after(_all_refused(refused))
        self._write(b"DATA\r\n")
        start = await self._reply()
        if start.code != 354:
            return await self._reset_after(_rejected(start))
        return await self._send_data(data, refused)

    async def _send_data(self, data: bytes, refused: list[tuple[str, int, str]]) -> SendResult:
        self._write(data)
        done = await self._reply()
        if done.code != 250:
            return await self._reset_after(_rejected(done))
        return SendResult(status="sent", code=250, reply=done.text, refused=tuple(refused))

    async def _abandon(self, result: SendResult, start: Reply) -> SendResult:
        """MAIL or every RCPT failed, but a pipelined DATA may still have been accepted:
        end it with an empty message (RFC 2920 section 3.1), then reset."""
        if start.code == 354:
            try:
                self._write(b".\r\n")
                await self._reply()
            except SessionLost:
                self.close()
                return result
        return await self._reset_after(result)

    async def _reset_after(self, result: SendResult) -> SendResult:
        """RSET after a refusal so the session can carry the next message; a session
        that cannot say 250 to it is closed (it is out of step)."""
        if await self.rset() is False:
            self.close()
        return result

    async def rset(self) -> bool | None:
        """True if the relay confirmed the reset; None if the session is gone."""
        if not self.is_connected:
            return None
        try:
            self._reader.forget()
            self._write(b"RSET\r\n")
            return (await self._reply()).code == 250
        except SessionLost:
            self.close()
            return None

    async def quit(self) -> None:
        """QUIT and close; a session that does not answer is just closed."""
        try:
            if self.is_connected:
                self._reader.forget()
                self._write(b"QUIT\r\n")
                await self._reply()
        except SessionLost:
            pass
        finally:
            self.close()

    async def wait_closed(self) -> None:
        """Close, and wait until the socket really is closed.

        Closing a TLS session only starts its close_notify exchange; asyncio closes
        the socket when the relay answers (or after 30 s), in a loop callback. A loop
        that ends before then (``asyncio.run`` returning) leaves the socket to be
        garbage-collected unclosed (a ResourceWarning, and a socket held until then).
        A relay that does not answer within the timeout has the connection aborted.
        """
        self.close()
        if not await self._reader.wait_gone(self.timeout):
            self._transport.abort()
            await self._reader.wait_gone(self.timeout)


def _refusals(recipients: Sequence[str], answers: list[Reply]) -> list[tuple[str, int, str]]:
    return [
        (r, a.code, a.text)
        for r, a in zip(recipients, answers, strict=False)
        if a.code not in (250, 251)
    ]


def _rejected(reply: Reply) -> SendResult:
    """Classify a rejection reply: 5xx is final, anything else may pass later."""
    status: SendStatus = "permanent" if 500 <= reply.code < 600 else "temporary"
    return SendResult(status=status, code=reply.code, reply=reply.text)


def _all_refused(refusals: Sequence[tuple[str, int, str]]) -> SendResult:
    """Classify a message whose every recipient was refused at RCPT."""
    # A single temporary refusal means a later retry can still deliver something.
    temporary = [r for r in refusals if not 500 <= r[1] < 600]
    _, code, text = temporary[0] if temporary else refusals[0]
    result = _rejected(Reply(code, text))
    if len(refusals) == 1:
        return result
    return replace(result, refused=tuple(refusals))
