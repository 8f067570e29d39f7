"""SmtpPool against real local SMTP servers: delivery, classification, reconnects, TLS."""

from __future__ import annotations

import asyncio
import email
import gc
import mailbox
import socket
import ssl
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.delivery import smtp as smtp_module
from newsletter.delivery.smtp import SendResult, SmtpConfig, SmtpPool, TlsMode
from newsletter.errors import ConfigError, SmtpUnavailable
from newsletter.mail.capture import MaildirServer, ServerTls
from newsletter.mail.faulty import FaultyServer

T = TypeVar("T")

SENDER = "issues@example.org"


def make_message(n: int) -> bytes:
    """A CRLF message with a line that needs dot-stuffing, so transparency is tested too."""
    return (
        f"From: {SENDER}\r\nTo: reader{n}@example.org\r\nSubject: Issue {n}\r\n"
        f"Message-ID: <{n}@example.org>\r\n\r\nHello reader {n}\r\n.leading dot\r\n"
        + "x" * 500
        + "\r\n"
    ).encode()


def config_for(
    server: FaultyServer | MaildirServer, *, connections: int = 1, tls: TlsMode = "none"
) -> SmtpConfig:
    return SmtpConfig(
        host=server.host,
        port=server.port,
        tls=tls,
        username=None,
        password=None,
        timeout=5.0,
        connections=connections,
    )


def run_with_pool(config: SmtpConfig, body: Callable[[SmtpPool], Awaitable[T]]) -> T:
    async def main() -> T:
        async with SmtpPool(config) as pool:
            return await body(pool)

    return asyncio.run(main())


def free_port() -> int:
    """A port nothing listens on: bound to learn a free number, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_concurrent_sends_share_the_configured_connections() -> None:
    messages = {f"reader{n}@example.org": make_message(n) for n in range(30)}
    with FaultyServer() as server:

        async def send_all(pool: SmtpPool) -> list[SendResult]:
            sends = [
                pool.send(sender=SENDER, recipients=[rcpt], message=body)
                for rcpt, body in messages.items()
            ]
            results = await asyncio.gather(*sends)
            assert pool.open_connections == 4
            return results

        results = run_with_pool(config_for(server, connections=4), send_all)

        assert {r.status for r in results} == {"sent"}
        assert {r.code for r in results} == {250}
        received = {m.rcpt_tos[0]: m.data for m in server.messages}
        assert received == messages
        assert all(m.mail_from == SENDER for m in server.messages)
        assert server.sessions == 4


def test_pool_delivers_into_maildir_server(tmp_path: Path) -> None:
    with MaildirServer(tmp_path / "mail") as server:
        result = run_with_pool(
            config_for(server),
            lambda pool: pool.send(
                sender=SENDER, recipients=["reader1@example.org"], message=make_message(1)
            ),
        )
        assert result.status == "sent"
        assert server.received == 1
    (stored,) = mailbox.Maildir(tmp_path / "mail").values()
    original = email.message_from_bytes(make_message(1))
    assert stored["Subject"] == original["Subject"]
    assert stored["Message-ID"] == original["Message-ID"]
    assert stored["X-Envelope-To"] == "reader1@example.org"
    assert stored["Return-Path"] == f"<{SENDER}>"


def test_permanent_rejection_keeps_the_connection_usable() -> None:
    with FaultyServer(rcpt_replies={"gone@example.org": "550 5.1.1 no such user"}) as server:

        async def body(pool: SmtpPool) -> list[SendResult]:
            return [
                await pool.send(sender=SENDER, recipients=[rcpt], message=make_message(n))
                for n, rcpt in enumerate(["a@example.org", "gone@example.org", "b@example.org"])
            ]

        before, rejected, after = run_with_pool(config_for(server), body)

        assert rejected == SendResult(status="permanent", code=550, reply="5.1.1 no such user")
        assert before.status == after.status == "sent"
        assert [m.rcpt_tos for m in server.messages] == [["a@example.org"], ["b@example.org"]]
        assert server.sessions == 1


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        ({"rcpt_replies": {"r@example.org": "451 4.3.0 try later"}}, ("temporary", 451)),
        ({"rcpt_replies": {"r@example.org": "421 4.3.2 shutting down"}}, ("temporary", 421)),
        ({"data_replies": {"r@example.org": "452 4.2.2 mailbox full"}}, ("temporary", 452)),
        ({"data_replies": {"r@example.org": "554 5.6.0 content rejected"}}, ("permanent", 554)),
        ({"mail_replies": {SENDER: "553 5.7.1 sender not allowed"}}, ("permanent", 553)),
    ],
)
def test_rejections_are_classified_by_reply_code(
    faults: dict[str, dict[str, str]], expected: tuple[str, int]
) -> None:
    with FaultyServer(**faults) as server:  # type: ignore[arg-type]

        async def body(pool: SmtpPool) -> tuple[SendResult, SendResult]:
            rejected = await pool.send(
                sender=SENDER, recipients=["r@example.org"], message=make_message(1)
            )
            other_sender = "other@example.org"
            ok = await pool.send(
                sender=other_sender, recipients=["ok@example.org"], message=make_message(2)
            )
            return rejected, ok

        rejected, ok = run_with_pool(config_for(server), body)

        assert (rejected.status, rejected.code) == expected
        assert rejected.reply
        assert ok.status == "sent"
        assert [m.rcpt_tos for m in server.messages] == [["ok@example.org"]]


def test_partial_recipient_refusal_is_sent_with_refusals_listed() -> None:
    with FaultyServer(rcpt_replies={"gone@example.org": "550 5.1.1 no such user"}) as server:
        result = run_with_pool(
            config_for(server),
            lambda pool: pool.send(
                sender=SENDER,
                recipients=["a@example.org", "gone@example.org"],
                message=make_message(1),
            ),
        )
        assert result.status == "sent"
        assert result.refused == (("gone@example.org", 550, "5.1.1 no such user"),)
        assert server.messages[0].rcpt_tos == ["a@example.org"]


def test_all_recipients_refused_prefers_the_temporary_reason() -> None:
    replies = {"gone@example.org": "550 5.1.1 no such user", "busy@example.org": "451 later"}
    with FaultyServer(rcpt_replies=replies) as server:
        result = run_with_pool(
            config_for(server),
            lambda pool: pool.send(
                sender=SENDER, recipients=list(replies), message=make_message(1)
            ),
        )
    assert (result.status, result.code, result.reply) == ("temporary", 451, "later")
    assert len(result.refused) == 2


def test_dropped_connection_is_temporary_and_replaced() -> None:
    with FaultyServer(drop_on_data={2}) as server:

        async def body(pool: SmtpPool) -> list[SendResult]:
            return [
                await pool.send(
                    sender=SENDER, recipients=[f"r{n}@example.org"], message=make_message(n)
                )
                for n in range(3)
            ]

        first, dropped, third = run_with_pool(config_for(server), body)

        assert first.status == third.status == "sent"
        assert dropped.status == "temporary"
        assert dropped.code is None
        assert f"{server.host}:{server.port}" in dropped.reply
        assert [m.rcpt_tos for m in server.messages] == [["r0@example.org"], ["r2@example.org"]]
        assert server.sessions == 2


def test_unreachable_server_raises_smtp_unavailable() -> None:
    port = free_port()
    config = SmtpConfig(
        host="127.0.0.1",
        port=port,
        tls="none",
        username=None,
        password=None,
        timeout=2.0,
        connections=2,
    )
    with pytest.raises(SmtpUnavailable, match=f"127.0.0.1:{port}"):
        run_with_pool(config, lambda pool: asyncio.sleep(0))


def test_server_going_away_raises_smtp_unavailable_during_send() -> None:
    server = FaultyServer()
    server.start()
    try:

        async def body(pool: SmtpPool) -> list[SendResult | SmtpUnavailable]:
            outcomes: list[SendResult | SmtpUnavailable] = [
                await pool.send(sender=SENDER, recipients=["a@example.org"], message=b"x\r\n")
            ]
            server.stop()
            # Let the client notice the hang-up, as it would between two messages.
            await asyncio.sleep(0.05)
            for _ in range(2):
                try:
                    outcomes.append(
                        await pool.send(
                            sender=SENDER, recipients=["b@example.org"], message=b"x\r\n"
                        )
                    )
                except SmtpUnavailable as exc:
                    outcomes.append(exc)
            return outcomes

        sent, *failures = run_with_pool(config_for(server), body)
    finally:
        server.stop()

    assert isinstance(sent, SendResult)
    assert sent.status == "sent"
    assert len(failures) == 2
    for failure in failures:
        assert isinstance(failure, SmtpUnavailable)
        assert f"127.0.0.1:{server.port}" in str(failure)


def test_non_ascii_address_uses_smtputf8() -> None:
    with FaultyServer() as server:
        result = run_with_pool(
            config_for(server),
            lambda pool: pool.send(
                sender=SENDER, recipients=["jürgen@example.org"], message=make_message(1)
            ),
        )
        assert result.status == "sent"
        assert server.messages[0].rcpt_tos == ["jürgen@example.org"]


def test_login_on_plain_connection() -> None:
    with FaultyServer(credentials={"news": "letter"}) as server:
        config = replace(config_for(server), username="news", password="letter")
        result = run_with_pool(
            config,
            lambda pool: pool.send(
                sender=SENDER, recipients=["a@example.org"], message=make_message(1)
            ),
        )
        assert result.status == "sent"

        bad = replace(config, password="wrong")
        with pytest.raises(SmtpUnavailable, match=r"refused the login.*535"):
            run_with_pool(bad, lambda pool: asyncio.sleep(0))


def test_silent_server_times_out_as_unavailable() -> None:
    # A listening socket that never accepts: TCP connects, the greeting never comes.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        config = SmtpConfig(
            host="127.0.0.1",
            port=port,
            tls="none",
            username=None,
            password=None,
            timeout=0.2,
            connections=1,
        )
        with pytest.raises(SmtpUnavailable, match=f"127.0.0.1:{port}.*[Tt]imed out"):
            run_with_pool(config, lambda pool: asyncio.sleep(0))


def test_password_is_not_in_the_config_repr() -> None:
    config = SmtpConfig(
        host="localhost",
        port=25,
        tls="none",
        username="news",
        password="hunter2",
        timeout=1.0,
        connections=1,
    )
    assert "hunter2" not in repr(config)


def test_send_outside_the_context_is_an_error() -> None:
    config = SmtpConfig(
        host="127.0.0.1",
        port=25,
        tls="none",
        username=None,
        password=None,
        timeout=1.0,
        connections=1,
    )
    pool = SmtpPool(config)
    with pytest.raises(RuntimeError, match="not open"):
        asyncio.run(pool.send(sender=SENDER, recipients=["a@example.org"], message=b"x"))


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="connections"):
        SmtpConfig(
            host="localhost",
            port=25,
            tls="none",
            username=None,
            password=None,
            timeout=1.0,
            connections=0,
        )


# TLS: a throwaway self-signed certificate for 127.0.0.1, made with the openssl CLI.


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ssl.SSLContext]:
    """Path of a self-signed certificate and a server context that presents it."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return str(cert), context


@pytest.mark.parametrize("mode", ["starttls", "tls"])
# No socket may outlive its pool (the TLS sessions' close_notify exchange is awaited,
# see test_closing_the_pool_closes_tls_sockets_of_a_relay_that_stopped_answering):
# collected inside the test, an unclosed one fails it here.
def test_tls_modes_with_self_signed_certificate(
    certificate: tuple[str, ssl.SSLContext], mode: ServerTls
) -> None:
    cert, context = certificate
    with FaultyServer(tls=mode, ssl_context=context, credentials={"news": "letter"}) as server:
        config = replace(
            config_for(server, tls=mode), cert_bundle=cert, username="news", password="letter"
        )
        result = run_with_pool(
            config,
            lambda pool: pool.send(
                sender=SENDER, recipients=["a@example.org"], message=make_message(1)
            ),
        )
        assert result.status == "sent"
        assert server.messages[0].data == make_message(1)

        unverified = replace(config, cert_bundle=None, validate_certs=False)
        result = run_with_pool(
            unverified,
            lambda pool: pool.send(
                sender=SENDER, recipients=["b@example.org"], message=make_message(2)
            ),
        )
        assert result.status == "sent"

        untrusted = replace(config, cert_bundle=None)
        with pytest.raises(SmtpUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            run_with_pool(untrusted, lambda pool: asyncio.sleep(0))
    gc.collect()  # inside the test's warning filter


class _StallsAtQuit(FaultyServer):
    """A relay that stops answering at QUIT: its loop is blocked for a while, so it
    answers neither the QUIT nor the TLS close_notify that follows."""

    async def handle_QUIT(self, server: object, session: object, envelope: object) -> str:
        time.sleep(2.0)  # blocks the server's loop, as a hung relay would
        return "221 Bye"


@pytest.mark.filterwarnings("error::ResourceWarning")
def test_closing_the_pool_closes_tls_sockets_of_a_relay_that_stopped_answering(
    certificate: tuple[str, ssl.SSLContext],
) -> None:
    # Closing a TLS session only starts the close_notify exchange; asyncio closes the
    # socket when the relay answers. The pool used to return (and asyncio.run end)
    # before that, leaving the socket to be garbage-collected unclosed: the
    # ResourceWarning that made test_tls_modes_with_self_signed_certificate flaky on
    # a loaded machine. Now it waits for the socket, aborting after the timeout.
    cert, context = certificate
    with _StallsAtQuit(tls="tls", ssl_context=context) as server:
        config = replace(config_for(server, tls="tls"), cert_bundle=cert, timeout=0.5)
        result = run_with_pool(
            config,
            lambda pool: pool.send(
                sender=SENDER, recipients=["a@example.org"], message=make_message(1)
            ),
        )
        assert result.status == "sent"
        gc.collect()  # an unclosed client socket would be reported here
    assert server.messages[0].data == make_message(1)


def test_starttls_required_but_not_offered() -> None:
    with (
        FaultyServer() as server,
        pytest.raises(SmtpUnavailable, match=rf"{server.port}.*STARTTLS"),
    ):
        run_with_pool(config_for(server, tls="starttls"), lambda pool: asyncio.sleep(0))


# --- the fast DATA encoding gives aiosmtplib's bytes exactly ------------------------------


_WIRE = st.lists(
    st.sampled_from([b"\r\n", b"\n", b"\r", b".", b"..", b"a", b" ", b"\r\n.", b"\n.\n"]),
    max_size=40,
).map(b"".join)


def _reference(message: bytes) -> bytes:
    normalized = smtp_module._normalize_line_endings(message)
    return smtp_module._PERIOD_REGEX.sub(b"..", normalized)


def _fast(message: bytes) -> bytes:
    import aiosmtplib.protocol

    normalized = aiosmtplib.protocol.normalize_message_line_endings(message)
    return aiosmtplib.protocol.PERIOD_REGEX.sub(b"..", normalized)


def test_fast_data_encoding_is_installed() -> None:
    assert smtp_module.FAST_DATA_ENCODING


@settings(max_examples=500)
@given(_WIRE)
def test_fast_data_encoding_matches_aiosmtplib_on_any_input(message: bytes) -> None:
    assert _fast(message) == _reference(message)


def test_fast_data_encoding_matches_on_a_real_issue() -> None:
    from datetime import UTC, datetime

    from newsletter.mail.message import MessageHeaders, build_message
    from newsletter.mail.render import RenderedIssue

    rendered = RenderedIssue(
        subject="Über 📚",
        html="<p>x</p>\n.leading dot\n" + "<p>" + "é" * 3000 + "</p>\n",
        text=".starts with a dot\nGrüße\n..two\n",
    )
    message = build_message(
        rendered,
        MessageHeaders(
            sender="N <n@example.org>",
            to_address="a@example.org",
            to_name="A",
            message_id="<m@example.org>",
            list_id="l.example.org",
            list_name="L",
            unsubscribe_url="https://example.org/u/x",
            date=datetime(2026, 5, 27, tzinfo=UTC),
        ),
    )
    assert _fast(message) == _reference(message)
