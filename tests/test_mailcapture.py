"""The local capture servers: Maildir storage, envelope headers, fault injection."""

from __future__ import annotations

import mailbox
import smtplib
import socket
import threading
import time
from pathlib import Path

import pytest

from newsletter.mail.capture import CapturedMessage, MaildirServer
from newsletter.mail.faulty import FaultyServer

MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: Hello\r\n\r\nFirst line\r\n"


def port_is_closed(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def test_maildir_server_stores_messages_with_envelope(tmp_path: Path) -> None:
    maildir_path = tmp_path / "mail"
    with MaildirServer(maildir_path) as server:
        assert server.host == "127.0.0.1"
        assert server.port > 0
        with smtplib.SMTP(server.host, server.port, timeout=5) as client:
            client.sendmail("bounce@example.org", ["b@example.org", "c@example.org"], MESSAGE)
            client.sendmail("bounce@example.org", ["d@example.org"], MESSAGE)
        assert server.received == 2

    assert {p.name for p in maildir_path.iterdir()} >= {"new", "cur", "tmp"}
    stored = [mailbox.MaildirMessage(m) for m in mailbox.Maildir(maildir_path).values()]
    envelopes = sorted(m["X-Envelope-To"] for m in stored)
    assert envelopes == ["b@example.org, c@example.org", "d@example.org"]
    for message in stored:
        assert message["Return-Path"] == "<bounce@example.org>"
        assert message["Subject"] == "Hello"
        assert message.get_payload() == "First line\n"


def test_maildir_server_stops_cleanly(tmp_path: Path) -> None:
    threads_before = threading.active_count()
    with MaildirServer(tmp_path / "mail") as server:
        host, port = server.host, server.port
        assert not port_is_closed(host, port)
    assert port_is_closed(host, port)
    assert threading.active_count() == threads_before
    assert server.received == 0


def test_servers_get_distinct_ports(tmp_path: Path) -> None:
    with MaildirServer(tmp_path / "a") as first, MaildirServer(tmp_path / "b") as second:
        assert first.port != second.port


def test_faulty_server_records_accepted_messages() -> None:
    with FaultyServer() as server, smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.sendmail("a@example.org", ["b@example.org"], MESSAGE)
    assert server.messages == [
        CapturedMessage("a@example.org", ["b@example.org"], MESSAGE, ("SIZE=70",))
    ]
    assert server.received == 1
    assert server.sessions == 1
    assert port_is_closed(server.host, server.port)


def test_faulty_server_rejects_configured_recipients() -> None:
    replies = {"gone@example.org": "550 5.1.1 no such user"}
    with FaultyServer(rcpt_replies=replies) as server:
        with smtplib.SMTP(server.host, server.port, timeout=5) as client:
            refused = client.sendmail(
                "a@example.org", ["gone@example.org", "b@example.org"], MESSAGE
            )
        assert refused == {"gone@example.org": (550, b"5.1.1 no such user")}
        assert server.messages[0].rcpt_tos == ["b@example.org"]


def test_faulty_server_rejects_sender_and_data() -> None:
    with (
        FaultyServer(
            mail_replies={"spam@example.org": "553 5.7.1 sender rejected"},
            data_replies={"full@example.org": "452 4.2.2 mailbox full"},
        ) as server,
        smtplib.SMTP(server.host, server.port, timeout=5) as client,
    ):
        with pytest.raises(smtplib.SMTPSenderRefused) as sender_refused:
            client.sendmail("spam@example.org", ["b@example.org"], MESSAGE)
        assert sender_refused.value.smtp_code == 553
        with pytest.raises(smtplib.SMTPDataError) as data_refused:
            client.sendmail("a@example.org", ["full@example.org"], MESSAGE)
        assert data_refused.value.smtp_code == 452
    assert server.messages == []
    assert server.data_commands == 1


def test_faulty_server_drops_connection_on_nth_data() -> None:
    with FaultyServer(drop_on_data={2}) as server:
        with smtplib.SMTP(server.host, server.port, timeout=5) as client:
            client.sendmail("a@example.org", ["b@example.org"], MESSAGE)
            with pytest.raises(smtplib.SMTPServerDisconnected):
                client.sendmail("a@example.org", ["c@example.org"], MESSAGE)
        with smtplib.SMTP(server.host, server.port, timeout=5) as client:
            client.sendmail("a@example.org", ["d@example.org"], MESSAGE)
        assert [m.rcpt_tos for m in server.messages] == [["b@example.org"], ["d@example.org"]]
        assert server.data_commands == 3


def test_faulty_server_requires_login_when_given_credentials() -> None:
    with FaultyServer(credentials={"user": "secret"}) as server:
        with smtplib.SMTP(server.host, server.port, timeout=5) as client:
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                client.sendmail("a@example.org", ["b@example.org"], MESSAGE)
            assert refused.value.smtp_code == 530
            with pytest.raises(smtplib.SMTPAuthenticationError):
                client.login("user", "wrong")
            client.login("user", "secret")
            client.sendmail("a@example.org", ["b@example.org"], MESSAGE)
        assert server.received == 1


def test_tls_mode_needs_a_context() -> None:
    with pytest.raises(ValueError, match="ssl_context"):
        FaultyServer(tls="starttls")


def test_open_connections_counts_clients_until_the_server_has_read_them_to_the_end() -> None:
    with FaultyServer() as server:
        client = socket.create_connection((server.host, server.port), timeout=5)
        assert client.recv(1024).startswith(b"220")  # greeted: the server has it
        assert server.open_connections() >= 1  # (the start-up probe may still count)
        client.close()
        deadline = time.monotonic() + 60
        while server.open_connections():  # the server reads the hang-up in its own time
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert server.open_connections() == 0  # stopped
