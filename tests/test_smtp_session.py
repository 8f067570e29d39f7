"""The pipelined SMTP transactions (newsletter.delivery.smtp_session) through SmtpPool.

Against aiosmtpd (FaultyServer) with and without PIPELINING offered, every refusal at
every stage; and against a scripted server for what aiosmtpd never does (accepting
DATA after refusing every recipient, hanging up right after a 421, garbage replies).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from newsletter.delivery.smtp import SendResult, SmtpConfig, SmtpPool
from newsletter.delivery.smtp_session import wire_data
from newsletter.mail.faulty import FaultyServer

T = TypeVar("T")
SENDER = "issues@example.org"
MESSAGE = b"Subject: hi\r\n\r\n.a line with a leading dot\r\nbody\r\n"


def config(host: str, port: int, *, timeout: float = 5.0) -> SmtpConfig:
    return SmtpConfig(
        host=host,
        port=port,
        tls="none",
        username=None,
        password=None,
        timeout=timeout,
        connections=1,
    )


def run(cfg: SmtpConfig, body: Callable[[SmtpPool], Awaitable[T]]) -> T:
    async def main() -> T:
        async with SmtpPool(cfg) as pool:
            return await body(pool)

    return asyncio.run(main())


def send(pool: SmtpPool, *recipients: str, message: bytes = MESSAGE) -> Awaitable[SendResult]:
    return pool.send(sender=SENDER, recipients=list(recipients), message=message)


# --- against aiosmtpd, with and without PIPELINING ------------------------------------------


@pytest.fixture(params=[True, False], ids=["pipelining", "stepwise"])
def pipelining(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.mark.parametrize(
    ("faults", "recipients", "expected"),
    [
        ({"mail_replies": {SENDER: "553 5.7.1 sender not allowed"}}, ["a@x.org"], (553, "perm")),
        ({"mail_replies": {SENDER: "451 4.3.0 later"}}, ["a@x.org"], (451, "temp")),
        ({"rcpt_replies": {"a@x.org": "550 5.1.1 no such user"}}, ["a@x.org"], (550, "perm")),
        ({"rcpt_replies": {"a@x.org": "452 4.2.2 full"}}, ["a@x.org"], (452, "temp")),
        ({"data_replies": {"a@x.org": "554 5.6.0 content rejected"}}, ["a@x.org"], (554, "perm")),
        ({"data_replies": {"a@x.org": "451 4.3.0 later"}}, ["a@x.org"], (451, "temp")),
    ],
    ids=["mail-5xx", "mail-4xx", "rcpt-5xx", "rcpt-4xx", "data-5xx", "data-4xx"],
)
def test_refusal_at_each_stage_is_classified_and_the_session_carries_on(
    pipelining: bool, faults: dict[str, dict[str, str]], recipients: list[str], expected: tuple
) -> None:
    code, kind = expected
    with FaultyServer(pipelining=pipelining, **faults) as server:  # type: ignore[arg-type]

        async def body(pool: SmtpPool) -> tuple[SendResult, SendResult, int]:
            refused = await send(pool, *recipients)
            if "mail_replies" in faults:
                server.mail_replies.clear()  # the next message may pass
            after = await send(pool, "b@x.org")
            return refused, after, pool.open_connections

        refused, after, open_connections = run(config(server.host, server.port), body)

    assert refused.code == code
    assert refused.status == ("permanent" if kind == "perm" else "temporary")
    assert after.status == "sent"
    assert open_connections == 1
    assert server.sessions == 1  # reset with RSET and reused, not reconnected
    assert [m.rcpt_tos for m in server.messages] == [["b@x.org"]]


def test_some_recipients_refused_is_sent_with_the_refusals(pipelining: bool) -> None:
    replies = {"gone@x.org": "550 5.1.1 no such user", "later@x.org": "450 4.2.1 busy"}
    with FaultyServer(pipelining=pipelining, rcpt_replies=replies) as server:
        result = run(
            config(server.host, server.port),
            lambda pool: send(pool, "a@x.org", "gone@x.org", "later@x.org", "b@x.org"),
        )
    assert result.status == "sent"
    assert result.refused == (
        ("gone@x.org", 550, "5.1.1 no such user"),
        ("later@x.org", 450, "4.2.1 busy"),
    )
    assert [m.rcpt_tos for m in server.messages] == [["a@x.org", "b@x.org"]]
    assert server.messages[0].data == MESSAGE  # dot-stuffing undone by the server


def test_every_recipient_refused_prefers_the_temporary_reason(pipelining: bool) -> None:
    replies = {"gone@x.org": "550 5.1.1 no such user", "later@x.org": "450 4.2.1 busy"}
    with FaultyServer(pipelining=pipelining, rcpt_replies=replies) as server:
        result = run(
            config(server.host, server.port),
            lambda pool: send(pool, "gone@x.org", "later@x.org"),
        )
    assert (result.status, result.code) == ("temporary", 450)
    assert {r[0] for r in result.refused} == {"gone@x.org", "later@x.org"}
    assert server.messages == []


def test_size_and_smtputf8_options(pipelining: bool) -> None:
    with FaultyServer(pipelining=pipelining) as server:
        result = run(
            config(server.host, server.port),
            lambda pool: send(pool, "jürgen@x.org"),
        )
    assert result.status == "sent"
    (message,) = server.messages
    assert message.rcpt_tos == ["jürgen@x.org"]
    _, size = wire_data(MESSAGE, crlf=True)
    assert size == len(MESSAGE)  # RFC 1870: without the doubled dots
    assert f"SIZE={size}" in message.mail_options
    assert "SMTPUTF8" in message.mail_options


def test_non_ascii_address_without_smtputf8_fails_alone_and_sends_nothing(
    pipelining: bool,
) -> None:
    with FaultyServer(pipelining=pipelining, smtputf8=False) as server:

        async def body(pool: SmtpPool) -> tuple[SendResult, SendResult]:
            return await send(pool, "jürgen@x.org"), await send(pool, "a@x.org")

        refused, after = run(config(server.host, server.port), body)
    assert (refused.status, refused.code) == ("permanent", None)
    assert "SMTPUTF8" in refused.reply
    assert after.status == "sent"
    assert [m.rcpt_tos for m in server.messages] == [["a@x.org"]]


@pytest.mark.parametrize("address", ["a b@x.org", "a@x.org>\r\nRCPT TO:<c@x.org", "", "<a@x.org>"])
def test_an_address_that_cannot_go_on_a_command_line_is_refused_unsent(address: str) -> None:
    with FaultyServer() as server:

        async def body(pool: SmtpPool) -> tuple[SendResult, SendResult]:
            return await send(pool, address), await send(pool, "a@x.org")

        refused, after = run(config(server.host, server.port), body)
    assert refused.status == "permanent"
    assert refused.reply.startswith("invalid address")
    assert after.status == "sent"
    assert [m.rcpt_tos for m in server.messages] == [["a@x.org"]]
    assert server.sessions == 1


def test_hang_up_at_data_is_temporary_and_the_session_is_replaced(pipelining: bool) -> None:
    with FaultyServer(pipelining=pipelining, drop_on_data=[1]) as server:

        async def body(pool: SmtpPool) -> tuple[SendResult, SendResult]:
            return await send(pool, "a@x.org"), await send(pool, "b@x.org")

        lost, after = run(config(server.host, server.port), body)
    assert (lost.status, lost.code) == ("temporary", None)
    assert "lost" in lost.reply
    assert after.status == "sent"
    assert server.sessions == 2


# --- a scripted server, for what aiosmtpd never does ----------------------------------------


Script = Callable[[bytes], list[bytes] | None]  # a command line -> reply lines (None: hang up)


class Scripted:
    """A line-based SMTP server in the test's own loop: EHLO offers PIPELINING; each
    command's reply comes from ``script``; everything received is kept in ``seen``."""

    def __init__(self, script: Script, *, wait_for_data_line: bool = False) -> None:
        self.script = script
        self.wait_for_data_line = wait_for_data_line
        self.seen: list[bytes] = []
        self.bodies: list[bytes] = []
        self.sessions = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Scripted:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        writer.write(b"220 scripted ESMTP\r\n")
        held: list[bytes] = []  # replies held back until the DATA line arrived
        try:
            while line := await reader.readline():
                self.seen.append(line)
                command = line.upper()
                if command.startswith(b"EHLO"):
                    writer.write(b"250-scripted\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                    continue
                replies = self.script(line)
                if replies is None:
                    break
                if self.wait_for_data_line and not command.startswith(b"DATA"):
                    held += replies
                    continue
                writer.write(b"".join(held + replies))
                held = []
                if command.startswith(b"DATA") and replies and replies[-1].startswith(b"354"):
                    self.bodies.append(await read_body(reader))
                    writer.write(b"250 2.0.0 queued\r\n")
                await writer.drain()
        finally:
            writer.close()


async def read_body(reader: asyncio.StreamReader) -> bytes:
    """DATA's lines up to and with the lone dot (still dot-stuffed)."""
    lines = []
    while True:
        line = await reader.readline()
        lines.append(line)
        if line in (b".\r\n", b""):
            return b"".join(lines)


def accept_all(line: bytes) -> list[bytes] | None:
    if line.upper().startswith(b"DATA"):
        return [b"354 go ahead\r\n"]
    if line.upper().startswith(b"QUIT"):
        return [b"221 bye\r\n"]
    return [b"250 ok\r\n"]


def scripted(
    script: Script,
    body: Callable[[SmtpPool, Scripted], Awaitable[T]],
    *,
    timeout: float = 5.0,
    wait_for_data_line: bool = False,
) -> tuple[T, Scripted]:
    async def main() -> tuple[T, Scripted]:
        async with Scripted(script, wait_for_data_line=wait_for_data_line) as server:
            async with SmtpPool(config("127.0.0.1", server.port, timeout=timeout)) as pool:
                result = await body(pool, server)
            return result, server

    return asyncio.run(main())


def test_mail_rcpt_and_data_travel_in_one_write_when_pipelining_is_offered() -> None:
    # The server answers nothing before it has the DATA line: a client waiting for
    # the MAIL reply before writing RCPT would time out.
    result, server = scripted(
        accept_all,
        lambda pool, _server: send(pool, "a@x.org", "b@x.org"),
        timeout=2.0,
        wait_for_data_line=True,
    )
    assert result.status == "sent"
    assert result.reply == "2.0.0 queued"
    assert server.bodies == [MESSAGE.replace(b"\r\n.", b"\r\n..") + b".\r\n"]


def test_data_accepted_after_every_recipient_was_refused_is_ended_empty() -> None:
    """RFC 2920 3.1: a pipelined DATA that a server accepted although no recipient was
    is ended with a lone dot, then the session is reset and carries the next message."""

    def script(line: bytes) -> list[bytes] | None:
        if line.startswith(b"RCPT") and b"gone@" in line:
            return [b"550 5.1.1 no such user\r\n"]
        return accept_all(line)

    async def body(pool: SmtpPool, _server: Scripted) -> tuple[SendResult, SendResult]:
        return await send(pool, "gone@x.org"), await send(pool, "a@x.org")

    (refused, after), server = scripted(script, body)
    assert (refused.status, refused.code) == ("permanent", 550)
    assert after.status == "sent"
    assert server.bodies[0] == b".\r\n"  # nothing of the message went out
    assert server.bodies[1].endswith(b"body\r\n.\r\n")
    assert b"RSET\r\n" in server.seen
    assert server.sessions == 1


def test_a_421_and_a_closed_connection_before_the_other_replies() -> None:
    """The relay says 421 to MAIL and hangs up before answering RCPT and DATA: the
    outcome is the 421 (a slow-down the pool acts on), not a lost connection."""

    async def main() -> tuple[SendResult, SendResult, int]:
        sessions = 0

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal sessions
            sessions += 1
            writer.write(b"220 hi\r\n")
            while line := await reader.readline():
                if line.startswith(b"EHLO"):
                    writer.write(b"250-hi\r\n250 PIPELINING\r\n")
                elif line.startswith(b"MAIL") and sessions == 1:
                    writer.write(b"421 4.7.0 too busy, closing\r\n")
                    await writer.drain()
                    break
                elif line.startswith(b"DATA"):
                    writer.write(b"354 go\r\n")
                    await read_body(reader)
                    writer.write(b"250 ok\r\n")
                else:
                    writer.write(b"250 ok\r\n" if not line.startswith(b"QUIT") else b"221 bye\r\n")
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server, SmtpPool(config("127.0.0.1", port)) as pool:
            first = await send(pool, "a@x.org")
            second = await send(pool, "b@x.org")
        return first, second, sessions

    first, second, sessions = asyncio.run(main())
    assert (first.status, first.code, first.reply) == ("temporary", 421, "4.7.0 too busy, closing")
    assert second.status == "sent"
    assert sessions == 2  # the closed session was replaced


def test_a_garbage_reply_drops_the_session_as_temporary() -> None:
    def script(line: bytes) -> list[bytes] | None:
        if line.startswith(b"MAIL"):
            return [b"hello there\r\n"]
        return accept_all(line)

    async def body(pool: SmtpPool, server: Scripted) -> tuple[SendResult, SendResult]:
        garbage = await send(pool, "a@x.org")
        server.script = accept_all
        return garbage, await send(pool, "b@x.org")

    (garbage, after), server = scripted(script, body)
    assert (garbage.status, garbage.code) == ("temporary", None)
    assert "malformed SMTP reply" in garbage.reply
    assert after.status == "sent"
    assert server.sessions == 2


def test_a_multiline_reply_is_one_reply() -> None:
    def script(line: bytes) -> list[bytes] | None:
        if line.startswith(b"RCPT"):
            return [b"550-5.1.1 no such user\r\n550-see the docs\r\n550 5.1.1 really\r\n"]
        return accept_all(line)

    (result, after), _server = scripted(
        script,
        lambda pool, server: _then_accept(pool, server),
    )
    assert (result.status, result.code) == ("permanent", 550)
    assert result.reply == "5.1.1 no such user\nsee the docs\n5.1.1 really"
    assert after.status == "sent"


async def _then_accept(pool: SmtpPool, server: Scripted) -> tuple[SendResult, SendResult]:
    first = await send(pool, "a@x.org")
    server.script = accept_all
    return first, await send(pool, "b@x.org")


def test_a_reply_slower_than_the_timeout_is_temporary() -> None:
    def script(line: bytes) -> list[bytes] | None:
        if line.startswith(b"MAIL"):
            return accept_all(line)
        return []  # RCPT and DATA never answered

    (slow, after), server = scripted(script, _then_accept, timeout=0.3)
    assert (slow.status, slow.code) == ("temporary", None)
    assert "Timed out" in slow.reply
    assert after.status == "sent"
    assert server.sessions == 2
